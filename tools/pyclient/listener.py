#!/usr/bin/env python3
"""The listener side of bt2c, independent of bt2cd: a node dials it.

Written from docs/PROTOCOL.md with the codec of bt2c_client.py. It listens on
127.0.0.1 (port chosen by the OS), accepts one connection, performs the
listener's half of the handshake (section 4), then prints one JSON line per
WebSocket message it receives until --seconds pass or the node closes:

  {"listening": PORT}
  {"established": {"self": HEX, "peer": HEX}}
  {"message": {"bytes": N, "types": {"block": K, ...}, "heights": [...]}}
  {"closed": CODE, "reason": TEXT}          (if the node closed)

Every envelope's id is checked against its payload (decode_batch), pings are
answered, and the websockets library refuses client frames that are not
masked (RFC 6455 section 5.1: it closes with 1002). So a dialling node whose
frames are malformed, unmasked or masked wrongly fails here.

Options that make it a varied or misbehaving server, to test the dialler's
WebSocket client (each after the handshake unless said otherwise):

  --fragment          send HELLO and AUTH each as one message in 3 fragments
                      (a text/binary frame and two continuation frames)
  --ping              send a ping with payload "abc"; then
                      {"pong": true} when the matching pong arrives, or
                      {"pong": false} if none within 5 s
  --close CODE [--reason TEXT]
                      after 0.5 s close with CODE and TEXT; then
                      {"closed_by_us": CODE, "answer": {"code": C, "reason": R}}
                      (the close frame the node answered with, or null)
  --bad-frame KIND    write one invalid frame straight to the socket, then read
                      on until the node closes ({"closed": ...} as above):
                        masked            a binary frame with the MASK bit set
                        rsv               a binary frame with RSV1 set
                        opcode            a frame with the reserved opcode 0x3
                        long-ping         a ping with a 126-byte payload (16-bit length)
                        bad-continuation  a continuation frame with no message open
                        close-1005        a close frame with code 1005 (never sent)
  --bad-upgrade KIND  no WebSocket at all: a plain TCP server reads the request
                      head, prints {"request": {HEADER: VALUE, ...},
                      "request_line": "GET / HTTP/1.1"}, answers with a bad
                      response, and prints {"eof": true} once the node has
                      closed the TCP connection:
                        status       HTTP/1.1 403 Forbidden
                        accept       a 101 with a wrong Sec-WebSocket-Accept
                        subprotocol  a correct 101 without Sec-WebSocket-Protocol
                        upgrade      a 101 without the Upgrade header
                        silent       no answer at all
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import os
import ssl
import struct
import sys
from collections import Counter

import websockets

from bt2c_client import (CLOSE_PROTOCOL_ERROR, DEFAULT_MAX_MESSAGE_SIZE,
                         DEFAULT_NETWORK_ID, NONCE_SIZE, ROLE_DIALER, ROLE_LISTENER, SUBPROTOCOL,
                         EnvelopeError, HandshakeError, Identity, build_auth, build_hello,
                         check_auth, check_hello, decode_batch, emit, make_envelope, transcript)


WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
FRAGMENTS = 3
PONG_TIMEOUT = 5.0
CLOSE_DELAY = 0.5

BAD_FRAME_KINDS = ("masked", "rsv", "opcode", "long-ping", "bad-continuation", "close-1005")
BAD_UPGRADE_KINDS = ("status", "accept", "subprotocol", "upgrade", "silent")


def frame(first_byte: int, payload: bytes, mask_key: bytes = b"") -> bytes:
    """One raw WebSocket frame; masked (MASK bit and key) when mask_key is given."""
    n = len(payload)
    mask_bit = 0x80 if mask_key else 0
    if n < 126:
        head = bytes([first_byte, mask_bit | n])
    elif n < 65536:
        head = bytes([first_byte, mask_bit | 126]) + struct.pack(">H", n)
    else:
        head = bytes([first_byte, mask_bit | 127]) + struct.pack(">Q", n)
    if mask_key:
        payload = bytes(b ^ mask_key[i % 4] for i, b in enumerate(payload))
    return head + mask_key + payload


def bad_frame(kind: str) -> bytes:
    """The bytes of an invalid server-to-client frame (RFC 6455 section 5)."""
    if kind == "masked":  # servers must not mask (5.1)
        return frame(0x82, b"masked", mask_key=b"\x01\x02\x03\x04")
    if kind == "rsv":  # RSV1 without a negotiated extension (5.2)
        return frame(0xC2, b"rsv1")
    if kind == "opcode":  # 0x3 is reserved for further non-control frames (5.2)
        return frame(0x83, b"op3")
    if kind == "long-ping":  # control frames carry at most 125 bytes (5.5)
        return frame(0x89, b"p" * 126)
    if kind == "bad-continuation":  # opcode 0 with no fragmented message open (5.4)
        return frame(0x80, b"cont")
    if kind == "close-1005":  # a close code that is never sent (7.4.1)
        return frame(0x88, (1005).to_bytes(2, "big") + b"none")
    raise ValueError(f"unknown bad frame kind {kind!r}")


def accept_value(key: str) -> str:
    """The Sec-WebSocket-Accept a server answers `key` with (RFC 6455 section 4.2.2)."""
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode("ascii")).digest()).decode()


def bad_response(kind: str, key: str) -> bytes:
    """The response head of a server that refuses or botches the upgrade."""
    if kind == "status":
        return b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    upgrade = "Upgrade: websocket\r\n"
    accept = accept_value(key)
    protocol = f"Sec-WebSocket-Protocol: {SUBPROTOCOL}\r\n"
    if kind == "accept":
        accept = accept_value(key + "x")
    elif kind == "subprotocol":
        protocol = ""
    elif kind == "upgrade":
        upgrade = ""
    else:
        raise ValueError(f"unknown bad upgrade kind {kind!r}")
    return (f"HTTP/1.1 101 Switching Protocols\r\n{upgrade}Connection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept}\r\n{protocol}\r\n").encode("ascii")


def fragments(data: bytes, count: int = FRAGMENTS) -> list:
    """data cut into `count` pieces (websockets sends a list as a fragmented message)."""
    cuts = [len(data) * i // count for i in range(count + 1)]
    return [data[cuts[i]:cuts[i + 1]] for i in range(count)]


async def one_envelope(ws):
    batch = decode_batch(await ws.recv())
    if len(batch) != 1:
        raise HandshakeError(4000, "handshake message with more than one envelope")
    return batch[0]


async def handshake(ws, me: Identity, network_id: str, fragment: bool = False):
    async def send(data: dict) -> None:
        message = make_envelope("peer_handshake", data, me.node_id).encode()
        await ws.send(fragments(message) if fragment else message)

    peer = check_hello(await one_envelope(ws), network_id)
    nonce = os.urandom(NONCE_SIZE)
    await send(build_hello(me, network_id, nonce))
    signed = transcript(ROLE_LISTENER, network_id, peer.node_id, me.node_id, peer.nonce, nonce)
    await send(build_auth(me.sign(signed)))
    check_auth(await one_envelope(ws), peer,
               transcript(ROLE_DIALER, network_id, peer.node_id, me.node_id, peer.nonce, nonce))
    return peer


def summary(message: bytes, envelopes) -> dict:
    types = Counter(env.type_name for env in envelopes)
    heights = [env.data().get("height") for env in envelopes if env.type_name == "block"]
    return {"bytes": len(message), "types": dict(types), "heights": heights}


async def ping(ws) -> None:
    waiter = await ws.ping(b"abc")
    try:
        await asyncio.wait_for(waiter, PONG_TIMEOUT)
        emit({"pong": True})
    except TimeoutError:
        emit({"pong": False})


async def close(ws, code: int, reason: str) -> None:
    await asyncio.sleep(CLOSE_DELAY)
    await ws.close(code, reason)
    answer = ws.close_rcvd
    emit({"closed_by_us": code,
          "answer": {"code": answer.code, "reason": answer.reason} if answer else None})
    await ws.wait_closed()


async def serve(ws, me: Identity, args, done: asyncio.Event) -> None:
    try:
        peer = await handshake(ws, me, args.network_id, args.fragment)
        emit({"established": {"self": me.node_id.hex(), "peer": peer.node_id.hex()}})
        if args.ping:
            await ping(ws)
        if args.close is not None:
            await close(ws, args.close, args.reason)
            return
        if args.bad_frame:
            ws.transport.write(bad_frame(args.bad_frame))
        if args.send_big:  # one binary message of that many bytes: over the node's limit?
            await ws.send(b"\0" * args.send_big)
        if args.send_text:  # bt2c uses binary messages only (docs/PROTOCOL.md 1)
            await ws.send("this is text")
        while True:
            message = await ws.recv()
            envelopes = decode_batch(message)
            for env in envelopes:
                data = env.data()
                if env.type_name == "peer_ping" and data.get("pong") is False:
                    pong = {"nonce": data.get("nonce"), "pong": True}
                    await ws.send(make_envelope("peer_ping", pong, me.node_id).encode())
            emit({"message": summary(message, envelopes)})
    except HandshakeError as e:
        emit({"handshake_failed": e.code, "reason": e.reason})
        await ws.close(e.code, e.reason)
    except (EnvelopeError, ValueError) as e:
        emit({"bad_message": str(e)})
        await ws.close(CLOSE_PROTOCOL_ERROR, str(e)[:100])
    except websockets.ConnectionClosed as e:
        got = e.rcvd
        emit({"closed": got.code if got else None, "reason": got.reason if got else "",
              "sent": {"code": e.sent.code, "reason": e.sent.reason} if e.sent else None})
    finally:
        done.set()


async def refuse_upgrade(reader, writer, kind: str, done: asyncio.Event) -> None:
    """Reads the upgrade request, answers it badly, waits for the node to hang up."""
    try:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        request_line, *lines = head[:-4].split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip()] = value.strip()
        key = next((v for k, v in headers.items() if k.lower() == "sec-websocket-key"), "")
        emit({"request": headers, "request_line": request_line})
        if kind != "silent":  # silent: no answer at all, the node's timeout must act
            writer.write(bad_response(kind, key))
            await writer.drain()
        while await reader.read(4096):
            pass
        emit({"eof": True})
    except (asyncio.IncompleteReadError, ConnectionError) as e:
        emit({"eof": True, "error": str(e)})
    finally:
        writer.close()
        done.set()


async def main_bad_upgrade(args) -> int:
    done = asyncio.Event()
    server = await asyncio.start_server(
        lambda r, w: refuse_upgrade(r, w, args.bad_upgrade, done), "127.0.0.1", 0)
    emit({"listening": server.sockets[0].getsockname()[1]})
    try:
        await asyncio.wait_for(done.wait(), args.seconds)
    except TimeoutError:
        pass
    server.close()
    await server.wait_closed()
    return 0


async def main_async(args) -> int:
    if args.bad_upgrade:
        return await main_bad_upgrade(args)
    me = Identity()
    done = asyncio.Event()
    tls = None
    if args.tls:  # wss://: the node dials with TLS (it checks no certificate)
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(*args.tls)
    server = await websockets.serve(lambda ws, *_: serve(ws, me, args, done), "127.0.0.1", 0,
                                    subprotocols=[SUBPROTOCOL], compression=None,
                                    max_size=args.max_message_size, ping_interval=None,
                                    ssl=tls)
    emit({"listening": server.sockets[0].getsockname()[1], "id": me.node_id.hex()})
    try:
        await asyncio.wait_for(done.wait(), args.seconds)
    except TimeoutError:
        pass
    server.close()
    await server.wait_closed()
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="bt2c listener for one dialling node.")
    p.add_argument("--network-id", default=DEFAULT_NETWORK_ID)
    p.add_argument("--seconds", type=float, default=20.0, help="give up after S seconds")
    p.add_argument("--max-message-size", type=int, default=DEFAULT_MAX_MESSAGE_SIZE)
    p.add_argument("--fragment", action="store_true",
                   help=f"send HELLO and AUTH in {FRAGMENTS} fragments each")
    p.add_argument("--ping", action="store_true", help="ping the node after the handshake")
    p.add_argument("--close", type=int, metavar="CODE", help="close with CODE after the handshake")
    p.add_argument("--reason", default="", help="the reason sent with --close")
    p.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"),
                   help="serve wss:// with this certificate and key (PEM files)")
    p.add_argument("--send-big", type=int, default=0, metavar="BYTES",
                   help="after the handshake, send one binary message of BYTES bytes")
    p.add_argument("--send-text", action="store_true",
                   help="after the handshake, send one text message")
    p.add_argument("--bad-frame", choices=BAD_FRAME_KINDS,
                   help="send an invalid frame after the handshake")
    p.add_argument("--bad-upgrade", choices=BAD_UPGRADE_KINDS,
                   help="answer the upgrade request badly (no WebSocket)")
    args = p.parse_args(argv)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
