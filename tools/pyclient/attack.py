#!/usr/bin/python3
"""attack.py: send one kind of bad input to a live bt2cd and report its reaction.

Used by spec/badinput_spec.lua. Each CASE opens one connection (two for
`replay`), misbehaves in one precise way, and prints exactly one JSON line on
stdout describing what the node did:

    {"closed": 1002, "reason": "...", "after_s": 0.01, ...}   WebSocket close frame received
    {"closed": null, "reason": "", "after_s": 0.01, ...}      WebSocket dropped without a close frame
    {"tcp_closed": true, "after_s": 1.2, ...}                 raw TCP connection closed (EOF or reset)
    {"open": true, ...}                                       still open when the case ended

`after_s` counts from the moment the offending input was sent (for the idle
cases: from the TCP connect, or from the completed upgrade). Extra fields:
`local` (our "ip:port", as the node logs it in remote=...), `self` (our node id
when the case sends a HELLO), and case-specific details (`http_status`,
`fragments_sent`, `pings_sent`, ...). Exit status: 0 when the case ran (whatever
the node did), 2 when it could not (usage, connection refused, handshake failed).

    /usr/bin/python3 tools/pyclient/attack.py CASE --url ws://127.0.0.1:PORT \\
        [--network-id ID] [--source IP] [--timeout S] [--size N] [--fragment N] [--count N]
        [--pace S]

--timeout bounds every wait for the node's reaction (default 5 s). Run with
--list for the cases and what the protocol says the node must do with each.
Section numbers refer to docs/PROTOCOL.md; the envelopes, identities and the
handshake come from bt2c_client.py, written from that document alone.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import struct
import sys
import time
from urllib.parse import urlparse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bt2c_client as bt  # noqa: E402

CASES = {}


def case(name, doc):
    def register(fn):
        CASES[name] = (fn, doc)
        return fn
    return register


class Ctx:
    def __init__(self, args):
        self.args = args
        u = urlparse(args.url)
        if u.scheme != "ws" or not u.hostname or not u.port:
            raise SystemExit("attack.py: --url must be ws://HOST:PORT")
        self.host, self.port = u.hostname, u.port
        self.url = args.url
        self.network_id = args.network_id
        self.timeout = args.timeout
        # Where our connections come from: bans of one source (address or
        # range) must not decide the next case, so callers give each case its own.
        self.source = (args.source, 0) if args.source else None
        self.extra = {}

    def client(self, **kw) -> bt.Client:
        return bt.Client(self.url, self.network_id, handshake_timeout=self.timeout,
                         connect_timeout=self.timeout, local_addr=self.source, **kw)


def local_of(sock_or_addr) -> str:
    addr = sock_or_addr.getsockname() if hasattr(sock_or_addr, "getsockname") else sock_or_addr
    return f"{addr[0]}:{addr[1]}"


# --------------------------------------------------------------------------
# Raw TCP (before any WebSocket)
# --------------------------------------------------------------------------


def raw_connect(ctx: Ctx) -> socket.socket:
    s = socket.create_connection((ctx.host, ctx.port), timeout=ctx.timeout,
                                 source_address=ctx.source)
    ctx.extra["local"] = local_of(s)
    return s


def raw_wait_closed(ctx: Ctx, s: socket.socket, t0: float) -> dict:
    """Reads until EOF/reset or the timeout; returns the report."""
    received = b""
    deadline = t0 + ctx.timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return {"open": True, "received": len(received), **ctx.extra}
            s.settimeout(left)
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                break
            received += chunk
    except (ConnectionResetError, BrokenPipeError):
        ctx.extra["reset"] = True
    after = time.monotonic() - t0
    s.close()
    report = {"tcp_closed": True, "after_s": round(after, 3), "received": len(received)}
    if received.startswith(b"HTTP/"):
        line = received.split(b"\r\n", 1)[0].decode("latin-1")
        parts = line.split(" ", 2)
        if len(parts) >= 2 and parts[1].isdigit():
            report["http_status"] = int(parts[1])
        report["status_line"] = line
    report.update(ctx.extra)
    return report


def raw_send(s: socket.socket, data: bytes) -> None:
    try:
        s.sendall(data)
    except (ConnectionResetError, BrokenPipeError):
        pass  # the node already closed; raw_wait_closed sees it


@case("garbage-tcp", "random non-HTTP bytes over raw TCP (expect the TCP connection closed)")
def garbage_tcp(ctx):
    s = raw_connect(ctx)
    t0 = time.monotonic()
    raw_send(s, b"\x16\x03\x01\x00\xa5\x01\x00\x00" + os.urandom(200) + b"\r\n\r\n")
    return raw_wait_closed(ctx, s, t0)


@case("http-get", "a plain HTTP GET without Upgrade (expect the TCP connection closed)")
def http_get(ctx):
    s = raw_connect(ctx)
    t0 = time.monotonic()
    raw_send(s, f"GET / HTTP/1.1\r\nHost: {ctx.host}:{ctx.port}\r\nUser-Agent: attack.py\r\n"
                "Accept: */*\r\n\r\n".encode())
    return raw_wait_closed(ctx, s, t0)


def upgrade_request(ctx, protocol_header: str | None) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    lines = ["GET / HTTP/1.1", f"Host: {ctx.host}:{ctx.port}", "Upgrade: websocket",
             "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
    if protocol_header is not None:
        lines.append(f"Sec-WebSocket-Protocol: {protocol_header}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@case("no-subprotocol", "a WebSocket upgrade that offers no subprotocol (expect refusal)")
def no_subprotocol(ctx):
    s = raw_connect(ctx)
    t0 = time.monotonic()
    raw_send(s, upgrade_request(ctx, None))
    return raw_wait_closed(ctx, s, t0)


@case("wrong-subprotocol", "a WebSocket upgrade offering only 'bt2c.v2, chat' (expect refusal)")
def wrong_subprotocol(ctx):
    s = raw_connect(ctx)
    t0 = time.monotonic()
    raw_send(s, upgrade_request(ctx, "bt2c.v2, chat"))
    return raw_wait_closed(ctx, s, t0)


@case("slow-upgrade", "a valid upgrade request trickled one byte every 200 ms (expect the TCP "
                      "connection closed once connectionTimeout has passed since the accept)")
def slow_upgrade(ctx):
    s = raw_connect(ctx)
    t0 = time.monotonic()
    request = upgrade_request(ctx, bt.SUBPROTOCOL)
    s.settimeout(0.2)
    sent = 0
    try:
        while sent < len(request) - 4 and time.monotonic() - t0 < ctx.timeout:
            s.sendall(request[sent:sent + 1])  # never the final CRLF CRLF
            sent += 1
            try:
                if not s.recv(65536):
                    break  # EOF: the node closed
            except socket.timeout:
                pass
    except (ConnectionResetError, BrokenPipeError):
        ctx.extra["reset"] = True
    ctx.extra["bytes_sent"] = sent
    if ctx.extra.get("reset"):
        return {"tcp_closed": True, "after_s": round(time.monotonic() - t0, 3), **ctx.extra}
    return raw_wait_closed(ctx, s, t0)


@case("idle-tcp", "connect over TCP and send nothing (expect a close after connectionTimeout)")
def idle_tcp(ctx):
    s = raw_connect(ctx)
    return raw_wait_closed(ctx, s, time.monotonic())


@case("idle-flood", "--count idle TCP connections at once (64 fills bt2cd's queue of "
                    "connections not yet upgraded), then a well-behaved newcomer tries to "
                    "connect every 0.25 s (expect the idle ones dropped after connectionTimeout "
                    "and the newcomer let in by then)")
def idle_flood(ctx):
    import selectors

    sel = selectors.DefaultSelector()
    socks = []
    for _ in range(ctx.args.count):
        s = socket.create_connection((ctx.host, ctx.port), timeout=ctx.timeout,
                                     source_address=ctx.source)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        socks.append(s)
    t0 = time.monotonic()
    ctx.extra["local"] = local_of(socks[0])
    closed_at = {}
    newcomer_at, attempts, last_error = None, 0, ""

    async def newcomer():  # another party: from the default address, not --source
        client = bt.Client(ctx.url, ctx.network_id, handshake_timeout=1, connect_timeout=1)
        try:
            await client.connect()
            await client.close(bt.CLOSE_NORMAL, "newcomer done")
        finally:
            if client.ws is not None:
                client.ws.transport.abort()

    next_try = t0
    while time.monotonic() - t0 < ctx.timeout:
        for key, _ in sel.select(timeout=0.05):
            try:
                data = key.fileobj.recv(4096)
            except (ConnectionResetError, BlockingIOError):
                data = b""
            if not data:
                closed_at[key.fileobj] = time.monotonic() - t0
                sel.unregister(key.fileobj)
        if newcomer_at is None and time.monotonic() >= next_try:
            attempts += 1
            try:
                asyncio.run(newcomer())
                newcomer_at = time.monotonic() - t0
            except Exception as e:  # noqa: BLE001 - refused in any way: try again
                last_error = f"{type(e).__name__}: {e}"
            next_try = time.monotonic() + 0.25
        if newcomer_at is not None and len(closed_at) == len(socks):
            break
    for s in socks:
        s.close()
    ctx.extra.update(connections=len(socks), dropped=len(closed_at),
                     newcomer_after_s=None if newcomer_at is None else round(newcomer_at, 3),
                     newcomer_attempts=attempts, newcomer_last_error=last_error[:200])
    if len(closed_at) == len(socks):
        return {"tcp_closed": True, "after_s": round(max(closed_at.values()), 3), **ctx.extra}
    return {"open": True, **ctx.extra}


# --------------------------------------------------------------------------
# WebSocket (after the upgrade)
# --------------------------------------------------------------------------


async def ws_open(ctx: Ctx, max_size=None):
    import websockets

    extra = {"local_addr": ctx.source} if ctx.source else {}
    ws = await websockets.connect(ctx.url, subprotocols=[bt.SUBPROTOCOL], max_size=max_size,
                                  open_timeout=ctx.timeout, close_timeout=2, compression=None,
                                  ping_interval=None, **extra)
    if ws.subprotocol != bt.SUBPROTOCOL:
        raise SystemExit("attack.py: the node did not select bt2c.v1")
    ctx.extra["local"] = local_of(ws.local_address)
    return ws


async def ws_wait_closed(ctx: Ctx, ws, t0: float) -> dict:
    """Discards input until the node closes; the report."""
    import websockets

    try:
        async with asyncio.timeout(ctx.timeout):
            while True:
                await ws.recv()
    except websockets.ConnectionClosed as e:
        after = time.monotonic() - t0
        if e.rcvd is not None:
            return {"closed": e.rcvd.code, "reason": e.rcvd.reason, "after_s": round(after, 3),
                    **ctx.extra}
        return {"closed": None, "reason": "", "after_s": round(after, 3), **ctx.extra}
    except TimeoutError:
        await ws.close(bt.CLOSE_NORMAL, "test over")
        return {"open": True, **ctx.extra}


async def ws_send(ws, data) -> bool:
    """Sends, tolerating a connection the node already closed; False if it had."""
    import websockets

    try:
        await ws.send(data)
        return True
    except websockets.ConnectionClosed:
        return False


async def ws_attack(ctx: Ctx, data) -> dict:
    """Upgrade, send `data` as one message (bytes: binary, str: text), report."""
    ws = await ws_open(ctx)
    t0 = time.monotonic()
    await ws_send(ws, data)
    return await ws_wait_closed(ctx, ws, t0)


async def established(ctx: Ctx) -> bt.Client:
    """A client that completed the handshake (as the dialer)."""
    client = ctx.client()
    await client.open()
    client.ws.close_timeout = 2
    await client.handshake()
    ctx.extra["local"] = local_of(client.ws.local_address)
    ctx.extra["self"] = client.identity.node_id.hex()
    return client


def envelope_bytes(type_=4, payload=b'{"height":1}', origin=None) -> bytearray:
    """A well-formed envelope, as a mutable byte array to damage."""
    origin = origin or os.urandom(bt.ID_SIZE)
    return bytearray(bt.Envelope(type=type_, origin=origin, payload=payload).encode())


@case("idle-ws", "upgrade, then never send the bt2c HELLO (expect 4007 after handshakeTimeout)")
async def idle_ws(ctx):
    ws = await ws_open(ctx)
    return await ws_wait_closed(ctx, ws, time.monotonic())


@case("text-frame", "a text message right after the upgrade (expect 1003)")
async def text_frame(ctx):
    return await ws_attack(ctx, '{"step":"hello"}')


@case("text-frame-established", "a text message after a completed handshake (expect 1003)")
async def text_frame_established(ctx):
    client = await established(ctx)
    t0 = time.monotonic()
    await ws_send(client.ws, '{"height":1}')
    return await ws_wait_closed(ctx, client.ws, t0)


@case("empty-binary", "an empty binary message (expect 1002)")
async def empty_binary(ctx):
    return await ws_attack(ctx, b"")


@case("truncated-header", "a binary message of 10 bytes, shorter than a header (expect 1002)")
async def truncated_header(ctx):
    return await ws_attack(ctx, bytes(envelope_bytes()[:10]))


@case("truncated-batch", "after the handshake, a valid ping followed by 20 stray bytes in the same "
                         "message (expect 1002)")
async def truncated_batch(ctx):
    client = await established(ctx)
    ping = bt.make_envelope("peer_ping", {"nonce": 1, "pong": False}, client.identity.node_id)
    t0 = time.monotonic()
    await ws_send(client.ws, ping.encode() + bytes(envelope_bytes()[:20]))
    return await ws_wait_closed(ctx, client.ws, t0)


@case("bad-version", "an envelope with version 2 (expect 1002)")
async def bad_version(ctx):
    e = envelope_bytes()
    e[0] = 2
    return await ws_attack(ctx, bytes(e))


@case("unknown-type", "an envelope of type 99 (expect 1002)")
async def unknown_type(ctx):
    e = envelope_bytes()
    e[1] = 99
    return await ws_attack(ctx, bytes(e))


@case("unknown-flags", "an envelope with flag bit 0x80 set (expect 1002)")
async def unknown_flags(ctx):
    e = envelope_bytes()
    e[2] = 0x80
    return await ws_attack(ctx, bytes(e))


@case("reserved-nonzero", "an envelope with a nonzero reserved byte (expect 1002)")
async def reserved_nonzero(ctx):
    e = envelope_bytes()
    e[6] = 0x01
    return await ws_attack(ctx, bytes(e))


@case("direct-without-target", "flags DIRECT without TARGET (expect 1002)")
async def direct_without_target(ctx):
    e = envelope_bytes()
    e[2] = bt.FLAG_DIRECT
    return await ws_attack(ctx, bytes(e))


@case("payload-length-lie", "payload length 100000 in a 76-byte message (expect 1002)")
async def payload_length_lie(ctx):
    e = envelope_bytes()
    struct.pack_into(">I", e, 8, 100000)
    return await ws_attack(ctx, bytes(e))


@case("payload-length-huge", "payload length 0xFFFFFFFF (overflow bait) (expect 1002)")
async def payload_length_huge(ctx):
    e = envelope_bytes()
    struct.pack_into(">I", e, 8, 0xFFFFFFFF)
    return await ws_attack(ctx, bytes(e))


@case("path-beyond-message", "a relayed block claiming 5 path ids (hops 5) when the message ends "
                             "after 2 of them (expect 1002)")
async def path_beyond_message(ctx):
    e = envelope_bytes(payload=b"")
    e[2], e[3], e[4] = bt.FLAG_RELAY, 5, 5
    return await ws_attack(ctx, bytes(e) + os.urandom(2 * bt.ID_SIZE))


@case("target-without-direct", "TARGET without DIRECT, target present (expect 1002)")
async def target_without_direct(ctx):
    origin = os.urandom(bt.ID_SIZE)
    payload = b'{"height":1}'
    e = bytearray(bt.Envelope(type=4, origin=origin, payload=payload,
                              target=os.urandom(bt.ID_SIZE)).encode())
    return await ws_attack(ctx, bytes(e))


@case("relay-and-direct", "RELAY and DIRECT together, target present (expect 1002)")
async def relay_and_direct(ctx):
    origin = os.urandom(bt.ID_SIZE)
    e = bytearray(bt.Envelope(type=4, origin=origin, payload=b'{"height":1}', flags=bt.FLAG_DIRECT,
                              target=os.urandom(bt.ID_SIZE)).encode())
    e[2] |= bt.FLAG_RELAY
    return await ws_attack(ctx, bytes(e))


@case("hops-mismatch", "a relayed block with hops 3 and an empty path (expect 1002)")
async def hops_mismatch(ctx):
    e = envelope_bytes()
    e[2], e[3] = bt.FLAG_RELAY, 3
    return await ws_attack(ctx, bytes(e))


@case("path-too-long", "path length 33 with 33 ids present (expect 1002)")
async def path_too_long(ctx):
    origin = os.urandom(bt.ID_SIZE)
    payload = b'{"height":1}'
    e = bytearray(bt.Envelope(type=4, origin=origin, payload=payload, flags=bt.FLAG_RELAY,
                              hops=33, path=[os.urandom(bt.ID_SIZE)] * 32).encode())
    e[4] = 33  # the codec refuses to build it; patch the count and add the 33rd id
    e[bt.HEADER_SIZE:bt.HEADER_SIZE] = os.urandom(bt.ID_SIZE)
    return await ws_attack(ctx, bytes(e))


def oversize_message(size: int) -> bytes:
    """A well-formed envelope of `size` bytes (a block with a long field)."""
    filler = size - bt.HEADER_SIZE - len(b'{"pad":""}')
    return bytes(envelope_bytes(payload=b'{"pad":"' + b"a" * filler + b'"}'))


@case("oversized", "one 100000-byte message (use with maxMessageSize 65536; expect 1009)")
async def oversized(ctx):
    data = oversize_message(ctx.args.size)
    ctx.extra["sent_bytes"] = len(data)
    return await ws_attack(ctx, data)


@case("oversized-fragmented", "after the handshake, one --size-byte message sent as --fragment-byte "
                              "frames 50 ms apart, each frame well under the limit (expect 1009 "
                              "as soon as the frames received exceed maxMessageSize, long before "
                              "the message ends)")
async def oversized_fragmented(ctx):
    import websockets

    frag = ctx.args.fragment
    data = oversize_message(ctx.args.size)
    pieces = [data[i:i + frag] for i in range(0, len(data), frag)]
    client = await established(ctx)
    ws = client.ws
    sent = 0
    t0 = time.monotonic()

    async def fragments():
        nonlocal sent
        for piece in pieces:
            if ws.close_rcvd is not None or ws.closed:
                return
            sent += 1
            yield piece
            await asyncio.sleep(0.05)

    try:
        await ws.send(fragments())
    except (websockets.ConnectionClosed, websockets.InvalidState, RuntimeError):
        pass  # the node closed mid-message; ws_wait_closed reports how
    ctx.extra.update(fragments_sent=sent, fragments_total=len(pieces), fragment_size=frag,
                     message_bytes=len(data))
    return await ws_wait_closed(ctx, ws, t0)


# --- handshake ------------------------------------------------------------


def hello_envelope(ctx, identity=None, *, nonce=None, hello_changes=None, origin=None, flags=0):
    identity = identity or bt.Identity()
    hello = bt.build_hello(identity, ctx.network_id, nonce or os.urandom(bt.NONCE_SIZE))
    hello.update(hello_changes or {})
    ctx.extra["self"] = hello["nodeId"]
    return bt.make_envelope("peer_handshake", hello, origin or identity.node_id, flags=flags)


@case("bad-json-hello", "a peer_handshake whose payload is not JSON (expect 4000)")
async def bad_json_hello(ctx):
    e = bt.Envelope(type=1, origin=os.urandom(bt.ID_SIZE),
                    payload=b'{"step":"hello","version":1,"networkId":')
    return await ws_attack(ctx, e.encode())


@case("hello-relay-flag", "a HELLO (otherwise valid) in an envelope with the RELAY flag "
                          "(expect 4000, section 3)")
async def hello_relay_flag(ctx):
    env = hello_envelope(ctx, flags=bt.FLAG_RELAY)
    return await ws_attack(ctx, env.encode())


@case("hello-version-2", "a valid HELLO announcing protocol version 2 (expect 4000)")
async def hello_version_2(ctx):
    return await ws_attack(ctx, hello_envelope(ctx, hello_changes={"version": 2}).encode())


@case("hello-no-nonce", "a HELLO without its nonce field (expect 4000)")
async def hello_no_nonce(ctx):
    env = hello_envelope(ctx)
    hello = env.data()
    del hello["nonce"]
    env = bt.make_envelope("peer_handshake", hello, env.origin)
    return await ws_attack(ctx, env.encode())


@case("id-mismatch", "a HELLO whose nodeId is not derived from its publicKey (expect 4001)")
async def id_mismatch(ctx):
    other = bt.Identity()
    env = hello_envelope(ctx, hello_changes={"nodeId": other.node_id.hex()}, origin=other.node_id)
    return await ws_attack(ctx, env.encode())


@case("origin-mismatch", "a HELLO whose envelope origin is not its nodeId (expect 4001)")
async def origin_mismatch(ctx):
    env = hello_envelope(ctx, origin=os.urandom(bt.ID_SIZE))
    return await ws_attack(ctx, env.encode())


@case("bad-signature", "a well-formed AUTH whose signature covers garbage (expect 4001)")
async def bad_signature(ctx):
    client = ctx.client()
    await client.open()
    client.ws.close_timeout = 2
    ctx.extra["local"] = local_of(client.ws.local_address)
    ctx.extra["self"] = client.identity.node_id.hex()
    garbage = os.urandom(64)
    t0 = time.monotonic()
    try:
        await client.handshake(sign=lambda _t: client.identity.sign(garbage))
        ctx.extra["handshake_completed"] = True
    except (bt.ConnectionClosedError, bt.HandshakeError):
        pass  # ws_wait_closed reports the close
    return await ws_wait_closed(ctx, client.ws, t0)


@case("replay", "a full handshake recorded, then its HELLO and AUTH sent again verbatim on a "
                "new connection (expect 4001)")
async def replay(ctx):
    first = await established(ctx)
    hello, auth = first.sent_handshake
    await first.close(bt.CLOSE_NORMAL, "recorded")
    ctx.extra["recorded_local"] = ctx.extra.pop("local")
    ws = await ws_open(ctx)
    t0 = time.monotonic()
    await ws_send(ws, hello)
    try:  # wait for the node's HELLO, as a replaying attacker would
        async with asyncio.timeout(ctx.timeout):
            await ws.recv()
    except Exception:  # noqa: BLE001 - a close is reported below
        pass
    await ws_send(ws, auth)
    return await ws_wait_closed(ctx, ws, t0)


@case("wrong-network", "a HELLO announcing another network id (expect 4002)")
async def wrong_network(ctx):
    env = hello_envelope(ctx, hello_changes={"networkId": ctx.network_id + "-other"})
    return await ws_attack(ctx, env.encode())


@case("before-handshake", "a block right after the upgrade, before any HELLO (expect 4000)")
async def before_handshake(ctx):
    return await ws_attack(ctx, bt.make_envelope("block", {"height": 1},
                                                 os.urandom(bt.ID_SIZE)).encode())


@case("second-hello", "a valid HELLO, then a second HELLO instead of the AUTH (expect 4000)")
async def second_hello(ctx):
    ident = bt.Identity()
    ws = await ws_open(ctx)
    await ws_send(ws, hello_envelope(ctx, ident).encode())
    t0 = time.monotonic()
    await ws_send(ws, hello_envelope(ctx, ident).encode())
    return await ws_wait_closed(ctx, ws, t0)


@case("auth-before-hello", "a well-formed AUTH as the first message (expect 4000)")
async def auth_before_hello(ctx):
    ident = bt.Identity()
    ctx.extra["self"] = ident.node_id.hex()
    env = bt.make_envelope("peer_handshake", bt.build_auth(ident.sign(b"x")), ident.node_id)
    return await ws_attack(ctx, env.encode())


@case("handshake-after-handshake", "a HELLO after the handshake completed (expect 4000)")
async def handshake_after_handshake(ctx):
    client = await established(ctx)
    t0 = time.monotonic()
    env = client.hello_envelope(ctx.network_id, os.urandom(bt.NONCE_SIZE))
    await ws_send(client.ws, env.encode())
    return await ws_wait_closed(ctx, client.ws, t0)


# --- after the handshake ----------------------------------------------------


@case("bad-json-app", "after the handshake, a block whose payload is not JSON (expect 4012)")
async def bad_json_app(ctx):
    client = await established(ctx)
    env = bt.Envelope(type=bt.TYPE_CODES["block"], origin=client.identity.node_id,
                      payload=b'{"height":1,')
    t0 = time.monotonic()
    await ws_send(client.ws, env.encode())
    return await ws_wait_closed(ctx, client.ws, t0)


@case("ping-flood", "after the handshake, up to --count pings, each its own message, one every "
                    "--pace s (default 0.0005: 2000 a second), reading between them; stops when "
                    "the node's close arrives (expect 4011 after 20 answered + 50 unanswered)")
async def ping_flood(ctx):
    return await flood(ctx, burst=False)


@case("ping-flood-burst", "after the handshake, --count pings (use 3000) written all at once, "
                          "then only reading (expect 4011 all the same)")
async def ping_flood_burst(ctx):
    return await flood(ctx, burst=True)


async def flood(ctx, burst: bool) -> dict:
    import websockets

    client = await established(ctx)
    ws = client.ws
    pings = [bt.make_envelope("peer_ping", {"nonce": i, "pong": False},
                              client.identity.node_id).encode() for i in range(ctx.args.count)]
    sent = 0
    t0 = time.monotonic()
    if burst:
        for ping in pings:  # straight into the transport's buffer: no read in between
            ws.write_frame_sync(True, 0x2, ping)
        sent = len(pings)
    else:
        for ping in pings:
            if ws.close_rcvd is not None:
                break
            if not await ws_send(ws, ping):
                break
            sent += 1
            # Let the library's reader run, so that the close is seen when it comes
            # (see ping-flood-burst for what writing on into a closed connection does).
            await asyncio.sleep(ctx.args.pace)
    ctx.extra["pings_sent"] = sent
    ctx.extra["send_s"] = round(time.monotonic() - t0, 3)
    pongs = 0
    try:
        async with asyncio.timeout(ctx.timeout):
            while True:
                message = await ws.recv()
                for env in bt.decode_batch(message):
                    if env.type == bt.TYPE_CODES["peer_ping"] and env.data().get("pong") is True:
                        pongs += 1
    except websockets.ConnectionClosed as e:
        rcvd = e.rcvd
        report = {"closed": rcvd.code if rcvd else None, "reason": rcvd.reason if rcvd else "",
                  "after_s": round(time.monotonic() - t0, 3)}
        if rcvd is None:
            report["lost"] = f"{type(e.__cause__ or e).__name__}: {e.__cause__ or e}"[:200]
    except TimeoutError:
        await ws.close(bt.CLOSE_NORMAL, "test over")
        report = {"open": True}
    report.update(pongs=pongs, **ctx.extra)
    return report


@case("app-payload-array", "after the handshake, a block whose payload is a JSON array, not an "
                           "object (expect 4012)")
async def app_payload_array(ctx):
    client = await established(ctx)
    env = bt.Envelope(type=bt.TYPE_CODES["block"], origin=client.identity.node_id,
                      payload=b'[1,2,3]')
    t0 = time.monotonic()
    await ws_send(client.ws, env.encode())
    return await ws_wait_closed(ctx, client.ws, t0)


@case("control-relay-flag", "after the handshake, a peer_ping with the RELAY flag (expect 1002)")
async def control_relay_flag(ctx):
    client = await established(ctx)
    env = bt.make_envelope("peer_ping", {"nonce": 5, "pong": False}, client.identity.node_id,
                           flags=bt.FLAG_RELAY)
    t0 = time.monotonic()
    await ws_send(client.ws, env.encode())
    return await ws_wait_closed(ctx, client.ws, t0)


@case("control-foreign-origin", "after the handshake, a peer_ping whose origin is another node "
                                "(expect 1002)")
async def control_foreign_origin(ctx):
    client = await established(ctx)
    env = bt.make_envelope("peer_ping", {"nonce": 5, "pong": False}, os.urandom(bt.ID_SIZE))
    t0 = time.monotonic()
    await ws_send(client.ws, env.encode())
    return await ws_wait_closed(ctx, client.ws, t0)


@case("relay-bad-id", "after the handshake, a RELAY block whose message id does not match its "
                      "payload (expect 1002, section 3)")
async def relay_bad_id(ctx):
    client = await established(ctx)
    e = bytearray(bt.make_envelope("block", {"height": 7, "attack": "relay-bad-id"},
                                   client.identity.node_id, flags=bt.FLAG_RELAY).encode())
    e[32:64] = bytes(32)  # message id: all zeros
    t0 = time.monotonic()
    await ws_send(client.ws, bytes(e))
    return await ws_wait_closed(ctx, client.ws, t0)


@case("unsolicited-exchange", "after the handshake, answer the node's peer_exchange request, then "
                              "send a second response nobody asked for, then ping (expect the "
                              "connection to stay open; we close it with 1000)")
async def unsolicited_exchange(ctx):
    client = await established(ctx)
    try:
        # The node asks every new peer for addresses soon after the handshake (§6).
        await client.expect("peer_exchange", ctx.timeout, lambda e: e.data().get("request") is True)
        await client.send("peer_exchange", {"response": True, "peers": []})
        t0 = time.monotonic()
        bogus = [{"nodeId": os.urandom(20).hex(), "address": "ws://203.0.113.9:8765",
                  "lastSeen": int(time.time() * 1000), "validator": True}]
        await client.send("peer_exchange", {"response": True, "peers": bogus})
        # The node handles a connection's messages in order: a pong proves it read the
        # unsolicited response and kept the connection.
        rtt = await client.ping(ctx.timeout)
        ctx.extra.update(pong_rtt_ms=round(rtt, 3), after_s=round(time.monotonic() - t0, 3))
    except bt.ConnectionClosedError as e:
        return {"closed": e.code, "reason": e.reason, **ctx.extra}
    except TimeoutError:
        ctx.extra["timed_out"] = True
    await client.close(bt.CLOSE_NORMAL, "test over")
    return {"open": True, **ctx.extra}


@case("stall", "after the handshake, stop reading for --timeout seconds while the node sends "
               "(expect the node to drop us with 4009 once its send queue for us is full)")
async def stall(ctx):
    client = await established(ctx)
    client.ws.transport.pause_reading()  # the kernel buffers fill, then the node's queue
    ctx.extra["self"] = client.identity.node_id.hex()
    print(json.dumps({"established": ctx.extra["self"]}), flush=True)
    await asyncio.sleep(ctx.timeout)
    return {"stalled": True, **ctx.extra}


# --------------------------------------------------------------------------


def parse_args(argv):
    p = argparse.ArgumentParser(description="Send one kind of bad input to a bt2cd node.")
    p.add_argument("case", nargs="?", help="the case to run (--list shows them)")
    p.add_argument("--url", help="ws://HOST:PORT of the node")
    p.add_argument("--network-id", default=bt.DEFAULT_NETWORK_ID)
    p.add_argument("--source", metavar="IP",
                   help="local address to connect from (e.g. 127.0.3.1; default: any)")
    p.add_argument("--timeout", type=float, default=5.0,
                   help="seconds to wait for the node's reaction (default 5)")
    p.add_argument("--size", type=int, default=100_000,
                   help="message size for the oversized cases (default 100000)")
    p.add_argument("--fragment", type=int, default=16_384,
                   help="fragment size for oversized-fragmented (default 16384)")
    p.add_argument("--count", type=int, default=None,
                   help="pings for ping-flood (default 500), connections for idle-flood (64)")
    p.add_argument("--pace", type=float, default=0.0005,
                   help="seconds between pings for ping-flood (default 0.0005)")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    args = p.parse_args(argv)
    if args.list:
        for name, (_, doc) in CASES.items():
            print(f"{name:26} {doc}")
        raise SystemExit(0)
    if args.case not in CASES:
        p.error(f"unknown case {args.case!r} (see --list)")
    if args.count is None:
        args.count = 64 if args.case == "idle-flood" else 500
    if not args.url:
        p.error("--url is required")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    ctx = Ctx(args)
    fn, _ = CASES[args.case]
    try:
        if asyncio.iscoroutinefunction(fn):
            report = asyncio.run(fn(ctx))
        else:
            report = fn(ctx)
    except (OSError, bt.HandshakeError, bt.ConnectionClosedError) as e:
        print(f"attack.py: {args.case}: could not run: {e!r}", file=sys.stderr)
        return 2
    except Exception as e:  # websockets' InvalidHandshake and friends
        print(f"attack.py: {args.case}: could not run: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
