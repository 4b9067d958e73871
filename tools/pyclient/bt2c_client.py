#!/usr/bin/python3
"""An independent bt2c peer written from docs/PROTOCOL.md alone.

It is both a small library (envelopes, batches, identities, the handshake and a
`Client` that dials a node) and a command line tool for testing a running bt2cd.
Section numbers below (§n) refer to docs/PROTOCOL.md.

Command line
------------

    /usr/bin/python3 tools/pyclient/bt2c_client.py --url ws://127.0.0.1:PORT \\
        --network-id bt2c-mainnet [--send TYPE JSON]... [--ping] [--expect TYPE] \\
        [--timeout S] [--record FILE] [--mode MODE] [--replay-file FILE] \\
        [--key FILE] [--pong-delay S] [--stay S] [--send-invalid N]

Normal mode connects, completes the handshake as the dialer, sends each --send
message in order, optionally pings (--ping) and waits for a message of type
--expect. Everything it prints on stdout is one JSON object per line:

    {"established": {"self": "<own node id>", "peer": "<node id>"}}
    {"type": "block", "origin": "<hex>", "data": {...}}      (each message received)
    {"pong": {"rtt_ms": 0.41}}                               (answer to --ping)
    {"closed": 4010, "reason": "banned"}                     (the node closed the connection)

It exits 0 on success and 1 otherwise, with the reason on stderr (including the
close code and reason when the node closed the connection). --record FILE saves
the HELLO and AUTH it sent, for --mode replay.

Options for scoring tests (all in normal mode):

    --key FILE        a persistent identity: the Ed25519 private key (32 bytes, hex) is
                      read from FILE, or created there (mode 0600) if FILE does not exist,
                      so that successive runs are the same node id
    --pong-delay S    answer the node's pings S seconds late (a slow peer)
    --stay S          after the sends (and --ping), stay connected S seconds, printing
                      what arrives and answering pings, then close with 1000
    --send-invalid N  after the --send messages, send N `block` envelopes whose payload is
                      not JSON (a valid envelope, so the node must answer 4012; it closes
                      the connection after the first); then print {"closed": CODE,
                      "reason": "...", "invalid_sent": n} and exit 0 once the node has
                      closed the connection (1 if it did not within --timeout)

A node that refuses the handshake after its own AUTH (4010 banned, 4003, 4005,
4006) closes right after it: the handshake looks complete from here ("established"
is printed), then {"closed": ...} follows.

--mode selects a misbehaviour for negative tests; the tool then prints the
node's reaction as {"closed": CODE, "reason": "..."} and exits 0 if the node
closed the connection, 1 if it did not within --timeout:

    bad-signature   a well-formed AUTH whose signature covers garbage     (expect 4001)
    wrong-network   a HELLO announcing another network id                 (expect 4002)
    no-handshake    a block sent right after the upgrade, before any HELLO (expect 4000)
    replay          the HELLO and AUTH saved by an earlier run with --record FILE,
                    sent again verbatim (--replay-file FILE)              (expect 4001)
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import struct
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Optional

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

# --------------------------------------------------------------------------
# Constants (§1, §3, §4, §8)
# --------------------------------------------------------------------------

PROTOCOL_VERSION = 1
SUBPROTOCOL = "bt2c.v1"
DEFAULT_NETWORK_ID = "bt2c-mainnet"
DEFAULT_MAX_MESSAGE_SIZE = 1_048_576

HEADER_SIZE = 64
ID_SIZE = 20
MESSAGE_ID_SIZE = 32
MAX_PATH = 32

FLAG_RELAY = 0x01
FLAG_DIRECT = 0x02
FLAG_TARGET = 0x04
KNOWN_FLAGS = FLAG_RELAY | FLAG_DIRECT | FLAG_TARGET

# Header layout: version, type, flags, hops, path length, 3 reserved bytes,
# payload length, origin, message id.
_HEADER = struct.Struct(">BBBBB3sI20s32s")
assert _HEADER.size == HEADER_SIZE

MESSAGE_TYPES = {
    1: "peer_handshake",
    2: "peer_exchange",
    3: "peer_ping",
    4: "block",
    5: "transaction",
    6: "block_request",
    7: "transaction_request",
    8: "consensus_vote",
    9: "consensus_proposal",
    10: "validator_set",
    11: "nat_traversal",
    12: "relay",
    13: "network_status",
}
TYPE_CODES = {name: code for code, name in MESSAGE_TYPES.items()}

HANDSHAKE_LABEL = b"bt2c/handshake/v1"
ROLE_DIALER = 0x01
ROLE_LISTENER = 0x02
NONCE_SIZE = 32
MAX_HELLO_SIZE = 16 * 1024
MAX_METADATA_SIZE = 4 * 1024

CLOSE_NORMAL = 1000
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_TEXT_MESSAGE = 1003
CLOSE_BAD_HANDSHAKE = 4000
CLOSE_AUTH_FAILED = 4001
CLOSE_WRONG_NETWORK = 4002
CLOSE_HANDSHAKE_TIMEOUT = 4007
CLOSE_MALFORMED_PAYLOAD = 4012


def type_code(type_name_or_code) -> int:
    """The numeric type of a message type name (or code)."""
    if isinstance(type_name_or_code, int):
        if type_name_or_code not in MESSAGE_TYPES:
            raise ValueError(f"unknown message type {type_name_or_code}")
        return type_name_or_code
    try:
        return TYPE_CODES[type_name_or_code]
    except KeyError:
        raise ValueError(f"unknown message type {type_name_or_code!r}") from None


# --------------------------------------------------------------------------
# Envelopes and batches (§2, §3)
# --------------------------------------------------------------------------


class EnvelopeError(ValueError):
    """A malformed envelope; a receiver closes with 1002 and this reason."""


def encode_json(obj) -> bytes:
    """Compact UTF-8 JSON, as in the worked example of §9."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def message_id(type_: int, payload: bytes) -> bytes:
    """SHA-256(type byte ‖ payload) (§3)."""
    return hashlib.sha256(bytes([type_]) + payload).digest()


@dataclass
class Envelope:
    type: int
    origin: bytes
    payload: bytes
    flags: int = 0
    hops: int = 0
    path: list = field(default_factory=list)
    target: Optional[bytes] = None
    id: bytes = b""  # filled in by encode() and decode_batch()

    @property
    def type_name(self) -> str:
        return MESSAGE_TYPES[self.type]

    def data(self):
        """The payload decoded as a JSON object."""
        obj = json.loads(self.payload.decode("utf-8"))
        if not isinstance(obj, dict):
            raise ValueError("payload is not a JSON object")
        return obj

    def encode(self) -> bytes:
        """The envelope's bytes; the TARGET flag follows the presence of target."""
        flags = self.flags & ~FLAG_TARGET
        if self.target is not None:
            flags |= FLAG_TARGET
        if flags & ~KNOWN_FLAGS:
            raise EnvelopeError("unknown flags")
        if flags & FLAG_DIRECT and not flags & FLAG_TARGET:
            raise EnvelopeError("DIRECT requires a target")
        if len(self.path) > MAX_PATH:
            raise EnvelopeError("path longer than 32")
        for node_id in [self.origin, *self.path] + ([self.target] if self.target else []):
            if len(node_id) != ID_SIZE:
                raise EnvelopeError("node ids are 20 bytes")
        self.id = message_id(self.type, self.payload)
        header = _HEADER.pack(PROTOCOL_VERSION, self.type, flags, self.hops, len(self.path),
                              b"\0\0\0", len(self.payload), self.origin, self.id)
        return header + b"".join(self.path) + (self.target or b"") + self.payload


def make_envelope(type_name, data, origin: bytes, **fields) -> Envelope:
    """An envelope of the given type carrying `data` as its JSON payload."""
    return Envelope(type=type_code(type_name), origin=origin, payload=encode_json(data), **fields)


def encode_batch(envelopes) -> bytes:
    """One WebSocket message: the envelopes back to back (§2)."""
    return b"".join(e.encode() for e in envelopes)


def decode_batch(message: bytes, check_ids: bool = True) -> list:
    """Splits one WebSocket message into envelopes; raises EnvelopeError."""
    if not message:
        raise EnvelopeError("empty message")
    envelopes, pos = [], 0
    while pos < len(message):
        if len(message) - pos < HEADER_SIZE:
            raise EnvelopeError("truncated header")
        (version, type_, flags, hops, n, reserved, p, origin,
         mid) = _HEADER.unpack_from(message, pos)
        if version != PROTOCOL_VERSION:
            raise EnvelopeError("unsupported envelope version")
        if type_ not in MESSAGE_TYPES:
            raise EnvelopeError("unknown message type")
        if flags & ~KNOWN_FLAGS or reserved != b"\0\0\0":
            raise EnvelopeError("unknown flags or reserved bits set")
        if flags & FLAG_DIRECT and not flags & FLAG_TARGET:
            raise EnvelopeError("DIRECT without a target")
        if n > MAX_PATH:
            raise EnvelopeError("path too long")
        pos += HEADER_SIZE
        size = ID_SIZE * n + (ID_SIZE if flags & FLAG_TARGET else 0) + p
        if len(message) - pos < size:
            raise EnvelopeError("envelope runs past the end of the message")
        path = [message[pos + ID_SIZE * i: pos + ID_SIZE * (i + 1)] for i in range(n)]
        pos += ID_SIZE * n
        target = None
        if flags & FLAG_TARGET:
            target, pos = message[pos:pos + ID_SIZE], pos + ID_SIZE
        payload, pos = message[pos:pos + p], pos + p
        if check_ids and mid != message_id(type_, payload):
            raise EnvelopeError("message id does not match the payload")
        envelopes.append(Envelope(type=type_, origin=origin, payload=payload, flags=flags,
                                  hops=hops, path=path, target=target, id=mid))
    return envelopes


# --------------------------------------------------------------------------
# Identity (§4)
# --------------------------------------------------------------------------


def node_id_of(public_key: bytes) -> bytes:
    """The first 20 bytes of SHA-256(raw public key)."""
    return hashlib.sha256(public_key).digest()[:ID_SIZE]


def verify_signature(public_key: bytes, signature: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
        return True
    except (InvalidSignature, ValueError):
        return False


class Identity:
    """An Ed25519 key pair and the node id derived from it."""

    def __init__(self, private_key: Optional[Ed25519PrivateKey] = None):
        self._key = private_key or Ed25519PrivateKey.generate()
        self.public_key = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.node_id = node_id_of(self.public_key)

    @classmethod
    def from_seed(cls, seed: bytes) -> "Identity":
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)

    def private_bytes(self) -> bytes:
        """The raw 32-byte private key (RFC 8032 seed)."""
        return self._key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())

    @classmethod
    def load_or_create(cls, path: str) -> "Identity":
        """The identity kept in `path` (64 hex digits: the private key), created there
        with mode 0600 if the file does not exist."""
        try:
            with open(path) as f:
                text = f.read().strip()
        except FileNotFoundError:
            identity = cls()
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # created by a concurrent run: use that one
                return cls.load_or_create(path)
            with os.fdopen(fd, "w") as f:
                f.write(identity.private_bytes().hex() + "\n")
            return identity
        if not re.fullmatch(r"[0-9a-fA-F]{64}", text):
            raise ValueError(f"{path}: not an Ed25519 private key (64 hex digits)")
        return cls.from_seed(bytes.fromhex(text))


# --------------------------------------------------------------------------
# Handshake (§4)
# --------------------------------------------------------------------------


class ProtocolError(Exception):
    """A fault of the peer and the close code §8 assigns to it."""

    def __init__(self, code: int, reason: str):
        super().__init__(f"{code} {reason}")
        self.code, self.reason = code, reason


class HandshakeError(ProtocolError):
    """A handshake failure (4000, 4001, 4002 or 4007)."""


def transcript(role: int, network_id: str, dialer_id: bytes, listener_id: bytes,
               dialer_nonce: bytes, listener_nonce: bytes,
               version: int = PROTOCOL_VERSION) -> bytes:
    """The bytes an AUTH signature covers; `role` is the signer's."""
    net = network_id.encode("utf-8")
    if len(net) > 255:
        raise ValueError("network id longer than 255 bytes")
    for value, size in ((dialer_id, ID_SIZE), (listener_id, ID_SIZE),
                        (dialer_nonce, NONCE_SIZE), (listener_nonce, NONCE_SIZE)):
        if len(value) != size:
            raise ValueError("transcript field of the wrong size")
    return (HANDSHAKE_LABEL + bytes([role, version, len(net)]) + net
            + dialer_id + listener_id + dialer_nonce + listener_nonce)


def build_hello(identity: Identity, network_id: str, nonce: bytes, *, listen_port: int = 0,
                metadata: Optional[dict] = None, height: int = 0,
                time_ms: Optional[int] = None) -> dict:
    return {
        "step": "hello",
        "version": PROTOCOL_VERSION,
        "networkId": network_id,
        "nodeId": identity.node_id.hex(),
        "publicKey": identity.public_key.hex(),
        "nonce": nonce.hex(),
        "time": int(time.time() * 1000) if time_ms is None else time_ms,
        "listenPort": listen_port,
        "metadata": {"version": "0.1.0", "isValidator": False} if metadata is None else metadata,
        "height": height,
    }


def build_auth(signature: bytes) -> dict:
    return {"step": "auth", "signature": signature.hex()}


def _hex_field(obj: dict, key: str, size: int) -> bytes:
    """obj[key] as bytes; it must be 2*size lowercase hex digits."""
    value = obj.get(key)
    if not isinstance(value, str) or not re.fullmatch(f"[0-9a-f]{{{2 * size}}}", value):
        raise HandshakeError(CLOSE_BAD_HANDSHAKE, f"{key} is not {2 * size} lowercase hex digits")
    return bytes.fromhex(value)


def _handshake_payload(env: Envelope, step: str) -> dict:
    if env.type != TYPE_CODES["peer_handshake"]:
        raise HandshakeError(CLOSE_BAD_HANDSHAKE, f"{env.type_name} before the handshake")
    if env.flags or env.hops or env.path or env.target is not None:
        raise HandshakeError(CLOSE_BAD_HANDSHAKE, "handshake envelope with flags, hops or path")
    try:
        obj = env.data()
    except ValueError:
        raise HandshakeError(CLOSE_BAD_HANDSHAKE, "handshake payload is not a JSON object") from None
    if obj.get("step") != step:
        raise HandshakeError(CLOSE_BAD_HANDSHAKE, f"expected {step}, got {obj.get('step')!r}")
    return obj


@dataclass
class PeerHello:
    node_id: bytes
    public_key: bytes
    nonce: bytes
    hello: dict


def check_hello(env: Envelope, network_id: str) -> PeerHello:
    """Checks a received HELLO (§4); raises HandshakeError with the close code."""
    if len(env.payload) > MAX_HELLO_SIZE:
        raise HandshakeError(CLOSE_BAD_HANDSHAKE, "HELLO larger than 16 KiB")
    hello = _handshake_payload(env, "hello")
    version = hello.get("version")
    if type(version) is not int or not isinstance(hello.get("networkId"), str):
        raise HandshakeError(CLOSE_BAD_HANDSHAKE, "HELLO lacks version or networkId")
    node_id = _hex_field(hello, "nodeId", ID_SIZE)
    public_key = _hex_field(hello, "publicKey", 32)
    nonce = _hex_field(hello, "nonce", NONCE_SIZE)
    metadata = hello.get("metadata", {})
    if not isinstance(metadata, dict) or len(encode_json(metadata)) > MAX_METADATA_SIZE:
        raise HandshakeError(CLOSE_BAD_HANDSHAKE, "bad metadata")
    if hello["networkId"] != network_id:
        raise HandshakeError(CLOSE_WRONG_NETWORK, f"wrong network {hello['networkId']!r}")
    if node_id != node_id_of(public_key) or node_id != env.origin:
        raise HandshakeError(CLOSE_AUTH_FAILED, "node id does not match key or origin")
    return PeerHello(node_id, public_key, nonce, hello)


def check_auth(env: Envelope, peer: PeerHello, expected_transcript: bytes) -> None:
    """Checks a received AUTH against the transcript signed in the peer's role."""
    auth = _handshake_payload(env, "auth")
    signature = _hex_field(auth, "signature", 64)
    if not verify_signature(peer.public_key, signature, expected_transcript):
        raise HandshakeError(CLOSE_AUTH_FAILED, "bad signature")


# --------------------------------------------------------------------------
# The client (a dialer)
# --------------------------------------------------------------------------


class ConnectionClosedError(Exception):
    """The connection ended; code and reason come from the node's close frame."""

    def __init__(self, code: Optional[int], reason: str):
        super().__init__(f"connection closed: code {code}, reason {reason!r}")
        self.code, self.reason = code, reason


class Client:
    """Dials a node, performs the handshake as the dialer, then exchanges messages.

    Received envelopes go to `on_message` (if given) and to `received`; pings
    are answered automatically once the connection is established.
    """

    def __init__(self, url: str, network_id: str = DEFAULT_NETWORK_ID,
                 identity: Optional[Identity] = None, *, listen_port: int = 0,
                 metadata: Optional[dict] = None, height: int = 0,
                 max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
                 handshake_timeout: float = 5.0, connect_timeout: float = 10.0,
                 on_message: Optional[Callable[[Envelope], None]] = None,
                 local_addr: Optional[tuple] = None, pong_delay: float = 0.0):
        self.url, self.network_id = url, network_id
        self.identity = identity or Identity()
        self.listen_port, self.metadata, self.height = listen_port, metadata, height
        self.max_message_size = max_message_size
        self.handshake_timeout, self.connect_timeout = handshake_timeout, connect_timeout
        self.on_message = on_message
        self.local_addr = local_addr  # (host, port) to dial from, e.g. ("127.0.3.1", 0)
        self.pong_delay = pong_delay  # seconds to wait before answering a ping
        self._pong_tasks: set = set()
        self.ws = None
        self.peer: Optional[PeerHello] = None
        self.established = False
        self.received: list = []
        self.sent_handshake: list = []  # our HELLO and AUTH messages, for --record
        self._pending: deque = deque()

    # -- transport --------------------------------------------------------

    async def open(self) -> None:
        """The WebSocket upgrade only (§1)."""
        import websockets  # imported here so the codec works without it

        extra = {"local_addr": self.local_addr} if self.local_addr else {}
        self.ws = await websockets.connect(
            self.url, subprotocols=[SUBPROTOCOL], max_size=self.max_message_size,
            open_timeout=self.connect_timeout, compression=None, ping_interval=None, **extra)
        if self.ws.subprotocol != SUBPROTOCOL:
            await self.ws.close(CLOSE_PROTOCOL_ERROR, "subprotocol bt2c.v1 not selected")
            raise ConnectionClosedError(None, "listener did not select bt2c.v1")

    async def send_raw(self, message: bytes) -> None:
        """Sends one WebSocket binary message as is."""
        await self._guard(self.ws.send(message))

    async def send_envelopes(self, envelopes) -> None:
        await self.send_raw(encode_batch(envelopes))

    async def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        if self.ws is not None:
            await self.ws.close(code, reason)

    async def _guard(self, awaitable):
        """Awaits, turning the library's close exception into ConnectionClosedError."""
        import websockets

        try:
            return await awaitable
        except websockets.ConnectionClosed as e:
            if e.rcvd is not None:
                raise ConnectionClosedError(e.rcvd.code, e.rcvd.reason) from None
            raise ConnectionClosedError(None, "closed without a close frame") from None

    async def next_envelope(self) -> Envelope:
        """The next received envelope, reading and splitting batches as needed."""
        while not self._pending:
            message = await self._guard(self.ws.recv())
            if isinstance(message, str):
                await self.close(CLOSE_TEXT_MESSAGE, "text message")
                raise EnvelopeError("node sent a text message")
            try:
                self._pending.extend(decode_batch(message))
            except EnvelopeError as e:
                await self.close(CLOSE_PROTOCOL_ERROR, str(e))
                raise
        return self._pending.popleft()

    async def wait_closed(self, timeout: float):
        """Discards input until the node closes; returns (code, reason) or None on timeout."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    await self.next_envelope()
        except ConnectionClosedError as e:
            return e.code, e.reason
        except (TimeoutError, EnvelopeError):
            return None

    # -- handshake (§4) ---------------------------------------------------

    def hello_envelope(self, network_id: str, nonce: bytes) -> Envelope:
        hello = build_hello(self.identity, network_id, nonce, listen_port=self.listen_port,
                            metadata=self.metadata, height=self.height)
        return make_envelope("peer_handshake", hello, self.identity.node_id)

    def auth_envelope(self, signature: bytes) -> Envelope:
        return make_envelope("peer_handshake", build_auth(signature), self.identity.node_id)

    def _transcript(self, role: int, nonce: bytes) -> bytes:
        return transcript(role, self.network_id, self.identity.node_id, self.peer.node_id,
                          nonce, self.peer.nonce)

    async def handshake(self, sign: Optional[Callable[[bytes], bytes]] = None) -> PeerHello:
        """HELLO, then AUTH once the node's HELLO checks out, then the node's AUTH.

        `sign` replaces the signing of our transcript (used to misbehave)."""
        nonce = os.urandom(NONCE_SIZE)
        hello = self.hello_envelope(self.network_id, nonce)
        await self._send_handshake(hello)
        try:
            async with asyncio.timeout(self.handshake_timeout):
                self.peer = check_hello(await self.next_envelope(), self.network_id)
                ours = self._transcript(ROLE_DIALER, nonce)
                await self._send_handshake(self.auth_envelope((sign or self.identity.sign)(ours)))
                check_auth(await self.next_envelope(), self.peer,
                           self._transcript(ROLE_LISTENER, nonce))
        except HandshakeError as e:
            await self.close(e.code, e.reason)
            raise
        except TimeoutError:
            await self.close(CLOSE_HANDSHAKE_TIMEOUT, "handshake timeout")
            raise HandshakeError(CLOSE_HANDSHAKE_TIMEOUT, "handshake timeout") from None
        self.established = True
        return self.peer

    async def _send_handshake(self, env: Envelope) -> None:
        message = env.encode()
        self.sent_handshake.append(message)
        await self.send_raw(message)

    async def connect(self) -> PeerHello:
        await self.open()
        return await self.handshake()

    # -- established connection --------------------------------------------

    async def send(self, type_name, data: dict, **fields) -> Envelope:
        """Sends one message of any type; returns the envelope sent."""
        env = make_envelope(type_name, data, self.identity.node_id, **fields)
        await self.send_raw(env.encode())
        return env

    async def recv(self) -> Envelope:
        """The next message; pings are answered before being returned."""
        env = await self.next_envelope()
        try:
            if env.type == TYPE_CODES["peer_handshake"]:
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, "peer_handshake after the handshake")
            try:
                data = env.data()
            except ValueError:
                raise ProtocolError(CLOSE_MALFORMED_PAYLOAD,
                                    f"{env.type_name} payload is not a JSON object") from None
        except ProtocolError as e:
            await self.close(e.code, e.reason)
            raise
        if env.type == TYPE_CODES["peer_ping"] and data.get("pong") is False:
            pong = {"nonce": data.get("nonce"), "pong": True}
            if self.pong_delay > 0:
                task = asyncio.get_running_loop().create_task(self._pong_later(pong))
                self._pong_tasks.add(task)
                task.add_done_callback(self._pong_tasks.discard)
            else:
                await self.send("peer_ping", pong)
        self.received.append(env)
        if self.on_message:
            self.on_message(env)
        return env

    async def _pong_later(self, pong: dict) -> None:
        await asyncio.sleep(self.pong_delay)
        try:
            await self.send("peer_ping", pong)
        except ConnectionClosedError:
            pass  # closed meanwhile; recv() reports it

    async def stay(self, seconds: float) -> None:
        """Receives (answering pings) for `seconds`."""
        try:
            async with asyncio.timeout(seconds):
                while True:
                    await self.recv()
        except TimeoutError:
            pass

    async def send_invalid(self, type_name="block", payload: bytes = b"this is not JSON {") -> None:
        """One well-formed envelope (its id matches) whose payload is not JSON."""
        env = Envelope(type=type_code(type_name), origin=self.identity.node_id, payload=payload)
        await self.send_raw(env.encode())

    async def expect(self, type_name, timeout: float,
                     match: Callable[[Envelope], bool] = lambda env: True) -> Envelope:
        """Receives until a message of the given type (and matching) arrives."""
        wanted = type_code(type_name)
        async with asyncio.timeout(timeout):
            while True:
                env = await self.recv()
                if env.type == wanted and match(env):
                    return env

    async def ping(self, timeout: float) -> float:
        """Sends a ping and waits for its pong; returns the round trip in ms."""
        nonce = int.from_bytes(os.urandom(4), "big")
        start = time.monotonic()
        await self.send("peer_ping", {"nonce": nonce, "pong": False})
        await self.expect("peer_ping", timeout,
                          lambda env: env.data() == {"nonce": nonce, "pong": True})
        return (time.monotonic() - start) * 1000


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def message_json(env: Envelope) -> dict:
    return {"type": env.type_name, "origin": env.origin.hex(), "data": env.data()}


def emit(obj) -> None:
    print(json.dumps(obj, ensure_ascii=False), flush=True)


async def run_normal(args) -> int:
    client = Client(args.url, args.network_id, args.identity,
                    on_message=lambda env: emit(message_json(env)),
                    pong_delay=args.pong_delay)
    await client.open()
    try:
        peer = await client.handshake()
        emit({"established": {"self": client.identity.node_id.hex(), "peer": peer.node_id.hex()}})
        if args.record:
            with open(args.record, "w") as f:
                hello, auth = client.sent_handshake
                json.dump({"hello": hello.hex(), "auth": auth.hex()}, f)
        for type_name, data in args.send:
            await client.send(type_name, data)
        if args.send_invalid:
            return await send_invalid(client, args)
        if args.ping:
            rtt = await client.ping(args.timeout)
            emit({"pong": {"rtt_ms": round(rtt, 3)}})
        if args.expect and not any(env.type_name == args.expect for env in client.received):
            await client.expect(args.expect, args.timeout)
        if args.stay:
            await client.stay(args.stay)
        await client.close(CLOSE_NORMAL, "done")
        return 0
    except ConnectionClosedError as e:
        emit({"closed": e.code, "reason": e.reason})
        fail(f"the node closed the connection: code {e.code}, reason {e.reason!r}")
    except HandshakeError as e:
        fail(f"handshake failed, closed with {e.code}: {e.reason}")
    except ProtocolError as e:
        fail(f"the node broke the protocol, closed with {e.code}: {e.reason}")
    except EnvelopeError as e:
        fail(f"the node sent a malformed envelope, closed with 1002: {e}")
    except TimeoutError:
        await client.close(CLOSE_NORMAL, "timeout")
        fail(f"timed out after {args.timeout} s waiting for {args.expect or 'a pong'}")
    return 1


async def send_invalid(client: Client, args) -> int:
    """--send-invalid N: up to N non-JSON payloads, then the node's close."""
    sent = 0
    try:
        for _ in range(args.send_invalid):
            await client.send_invalid()
            sent += 1
            # Give the node's close frame time to arrive before sending more: data
            # sent after the node closed makes its TCP stack reset the connection,
            # and a reset discards the close frame before we can read it.
            try:
                await asyncio.wait_for(asyncio.shield(client.ws.wait_closed()), 0.2)
                break
            except TimeoutError:
                pass
    except ConnectionClosedError:
        pass  # closed after the first (or refused before it): wait_closed() reports it
    closed = await client.wait_closed(args.timeout)
    if closed is None:
        await client.close(CLOSE_NORMAL, "test over")
        fail(f"--send-invalid: the node did not close the connection within {args.timeout} s")
        return 1
    emit({"closed": closed[0], "reason": closed[1], "invalid_sent": sent})
    return 0


async def misbehave(client: Client, args) -> None:
    """Does what --mode asks; the node is expected to close the connection."""
    if args.mode == "bad-signature":
        garbage = os.urandom(64)
        await client.handshake(sign=lambda _transcript: client.identity.sign(garbage))
    elif args.mode == "wrong-network":
        await client.send_raw(client.hello_envelope(args.network_id + "-other", os.urandom(NONCE_SIZE)).encode())
    elif args.mode == "no-handshake":
        await client.send("block", {"height": 1})
    elif args.mode == "replay":
        with open(args.replay_file) as f:
            recorded = json.load(f)
        await client.send_raw(bytes.fromhex(recorded["hello"]))
        await client.next_envelope()  # the node's HELLO, as a real replayer would wait for
        await client.send_raw(bytes.fromhex(recorded["auth"]))


async def run_misbehaving(args) -> int:
    client = Client(args.url, args.network_id)
    await client.open()
    try:
        async with asyncio.timeout(args.timeout):
            await misbehave(client, args)
    except (ConnectionClosedError, ProtocolError, TimeoutError):
        pass  # wait_closed() below reports how the connection ended
    closed = await client.wait_closed(args.timeout)
    if closed is None:
        await client.close(CLOSE_NORMAL, "test over")
        fail(f"mode {args.mode}: the node did not close the connection within {args.timeout} s")
        return 1
    emit({"closed": closed[0], "reason": closed[1]})
    return 0


def fail(message: str) -> None:
    print(f"bt2c_client: {message}", file=sys.stderr, flush=True)


def parse_args(argv):
    p = argparse.ArgumentParser(description="Independent bt2c test client (docs/PROTOCOL.md).")
    p.add_argument("--url", required=True, help="ws://HOST:PORT of the node")
    p.add_argument("--network-id", default=DEFAULT_NETWORK_ID)
    p.add_argument("--send", nargs=2, action="append", default=[], metavar=("TYPE", "JSON"),
                   help="send a message after the handshake (repeatable)")
    p.add_argument("--expect", metavar="TYPE", help="wait for a message of this type")
    p.add_argument("--ping", action="store_true", help="ping the node and wait for the pong")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait (default 10)")
    p.add_argument("--record", metavar="FILE", help="save our HELLO and AUTH (for --mode replay)")
    p.add_argument("--mode", choices=["normal", "bad-signature", "replay", "wrong-network",
                                      "no-handshake"], default="normal")
    p.add_argument("--replay-file", metavar="FILE", help="file written by --record")
    p.add_argument("--key", metavar="FILE",
                   help="persistent identity: load the private key from FILE, or create it (0600)")
    p.add_argument("--pong-delay", type=float, default=0.0, metavar="S",
                   help="answer the node's pings S seconds late")
    p.add_argument("--stay", type=float, default=0.0, metavar="S",
                   help="stay connected S seconds (answering pings), then close")
    p.add_argument("--send-invalid", type=int, default=0, metavar="N",
                   help="send N block envelopes whose payload is not JSON, report the close")
    args = p.parse_args(argv)
    if args.pong_delay < 0 or args.stay < 0 or args.send_invalid < 0:
        p.error("--pong-delay, --stay and --send-invalid must not be negative")
    if args.mode == "replay" and not args.replay_file:
        p.error("--mode replay needs --replay-file")
    for t in [args.expect] + [t for t, _ in args.send]:
        if t is not None and t not in TYPE_CODES:
            p.error(f"unknown message type {t!r}")
    try:
        args.send = [(t, json.loads(text)) for t, text in args.send]
    except json.JSONDecodeError as e:
        p.error(f"--send JSON: {e}")
    if not all(isinstance(data, dict) for _, data in args.send):
        p.error("--send JSON must be an object")
    return args


def main(argv=None) -> int:
    from websockets.exceptions import InvalidHandshake

    args = parse_args(argv)
    runner = run_normal if args.mode == "normal" else run_misbehaving
    try:
        args.identity = Identity.load_or_create(args.key) if args.key else None
    except (OSError, ValueError) as e:
        fail(f"--key: {e}")
        return 1
    try:
        return asyncio.run(runner(args))
    except (OSError, TimeoutError, InvalidHandshake) as e:  # from Client.open()
        fail(f"cannot connect to {args.url}: {e or type(e).__name__}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
