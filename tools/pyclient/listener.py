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
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections import Counter

import websockets

from bt2c_client import (CLOSE_PROTOCOL_ERROR, DEFAULT_MAX_MESSAGE_SIZE,
                         DEFAULT_NETWORK_ID, NONCE_SIZE, ROLE_DIALER, ROLE_LISTENER, SUBPROTOCOL,
                         EnvelopeError, HandshakeError, Identity, build_auth, build_hello,
                         check_auth, check_hello, decode_batch, emit, make_envelope, transcript)


async def one_envelope(ws):
    batch = decode_batch(await ws.recv())
    if len(batch) != 1:
        raise HandshakeError(4000, "handshake message with more than one envelope")
    return batch[0]


async def handshake(ws, me: Identity, network_id: str):
    peer = check_hello(await one_envelope(ws), network_id)
    nonce = os.urandom(NONCE_SIZE)
    await ws.send(make_envelope("peer_handshake", build_hello(me, network_id, nonce),
                                me.node_id).encode())
    signed = transcript(ROLE_LISTENER, network_id, peer.node_id, me.node_id, peer.nonce, nonce)
    await ws.send(make_envelope("peer_handshake", build_auth(me.sign(signed)), me.node_id).encode())
    check_auth(await one_envelope(ws), peer,
               transcript(ROLE_DIALER, network_id, peer.node_id, me.node_id, peer.nonce, nonce))
    return peer


def summary(message: bytes, envelopes) -> dict:
    types = Counter(env.type_name for env in envelopes)
    heights = [env.data().get("height") for env in envelopes if env.type_name == "block"]
    return {"bytes": len(message), "types": dict(types), "heights": heights}


async def serve(ws, me: Identity, args, done: asyncio.Event) -> None:
    try:
        peer = await handshake(ws, me, args.network_id)
        emit({"established": {"self": me.node_id.hex(), "peer": peer.node_id.hex()}})
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


async def main_async(args) -> int:
    me = Identity()
    done = asyncio.Event()
    server = await websockets.serve(lambda ws, *_: serve(ws, me, args, done), "127.0.0.1", 0,
                                    subprotocols=[SUBPROTOCOL], compression=None,
                                    max_size=args.max_message_size, ping_interval=None)
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
    args = p.parse_args(argv)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
