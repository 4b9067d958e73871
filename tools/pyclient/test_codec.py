#!/usr/bin/python3
"""Self-test of bt2c_client.py against docs/PROTOCOL.md.

Run with: /usr/bin/python3 tools/pyclient/test_codec.py
"""

import asyncio
import hashlib
import os
import re
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bt2c_client as bt  # noqa: E402

PROTOCOL_MD = os.path.join(HERE, "..", "..", "docs", "PROTOCOL.md")

# Section 9 of PROTOCOL.md: a peer_ping from node 1111…11, payload {"nonce":7,"pong":false}.
WORKED_EXAMPLE = bytes.fromhex(
    "01030000000000000000001811111111"
    "11111111111111111111111111111111"
    "2e6675536c66c7534de765ce7f444dab"
    "1b75fba85cc2fe66dbf115c8d985abe7"
    "7b226e6f6e6365223a372c22706f6e67"
    "223a66616c73657d"
)


def hex_dump_of_section_9():
    """The bytes of the envelope hex dump in section 9 of PROTOCOL.md."""
    with open(PROTOCOL_MD, encoding="utf-8") as f:
        text = f.read()
    section = text[text.index("## 9."):]
    section = section[section.index("### An envelope"):]
    dump = section[section.index("```") + 3:]
    dump = dump[:dump.index("```")]
    out = bytearray()
    for line in dump.strip().splitlines():
        m = re.match(r"^[0-9a-f]{4}  ((?:[0-9a-f]{2} )*[0-9a-f]{2})", line)
        out += bytes.fromhex(m.group(1).replace(" ", ""))
    return bytes(out)


def ping_example():
    return bt.make_envelope("peer_ping", {"nonce": 7, "pong": False}, b"\x11" * 20)


class WorkedExample(unittest.TestCase):
    def test_document_dump_is_the_expected_bytes(self):
        self.assertEqual(hex_dump_of_section_9(), WORKED_EXAMPLE)

    def test_encoder_matches_byte_for_byte(self):
        wire = ping_example().encode()
        self.assertEqual(88, len(wire))
        self.assertEqual(WORKED_EXAMPLE.hex(), wire.hex())

    def test_message_id(self):
        payload = b'{"nonce":7,"pong":false}'
        self.assertEqual(hashlib.sha256(b"\x03" + payload).digest(), bt.message_id(3, payload))
        self.assertEqual(WORKED_EXAMPLE[32:64], bt.message_id(3, payload))

    def test_decoder_reads_it(self):
        [env] = bt.decode_batch(WORKED_EXAMPLE)
        self.assertEqual("peer_ping", env.type_name)
        self.assertEqual(b"\x11" * 20, env.origin)
        self.assertEqual({"nonce": 7, "pong": False}, env.data())
        self.assertEqual((0, 0, [], None), (env.flags, env.hops, env.path, env.target))


class Batches(unittest.TestCase):
    def test_round_trip_of_a_batch(self):
        envs = [
            ping_example(),
            bt.make_envelope("transaction", {"hash": "ab" * 32, "amount": 1.5, "to": "é"},
                             b"\x01" * 20, flags=bt.FLAG_RELAY, hops=2,
                             path=[b"\x02" * 20, b"\x03" * 20]),
            bt.make_envelope("block", {"height": 5}, b"\x04" * 20, flags=bt.FLAG_DIRECT,
                             target=b"\x05" * 20),
            bt.make_envelope("network_status", {}, b"\x06" * 20),
        ]
        wire = bt.encode_batch(envs)
        self.assertEqual(sum(64 + 20 * len(e.path) + (20 if e.target else 0) + len(e.payload)
                             for e in envs), len(wire))
        out = bt.decode_batch(wire)
        self.assertEqual(len(envs), len(out))
        for sent, got in zip(envs, out):
            self.assertEqual(sent.encode(), got.encode())
            self.assertEqual(sent.data(), got.data())
        self.assertEqual(bt.FLAG_DIRECT | bt.FLAG_TARGET, out[2].flags)
        self.assertEqual(b"\x05" * 20, out[2].target)
        self.assertEqual([b"\x02" * 20, b"\x03" * 20], out[1].path)
        self.assertEqual(2, out[1].hops)

    def test_many_envelopes(self):
        envs = [bt.make_envelope("transaction", {"n": i}, b"x" * 20) for i in range(50)]
        out = bt.decode_batch(bt.encode_batch(envs))
        self.assertEqual([{"n": i} for i in range(50)], [e.data() for e in out])

    def test_rejects_malformed_envelopes(self):
        good = bt.make_envelope("block", {}, b"o" * 20).encode()
        too_long_path = bytearray(good)
        too_long_path[4] = 33
        cases = {
            "empty": b"",
            "truncated header": good[:63],
            "version 2": b"\x02" + good[1:],
            "type 0": good[:1] + b"\x00" + good[2:],
            "type 14": good[:1] + b"\x0e" + good[2:],
            "unknown flag": good[:2] + b"\x08" + good[3:],
            "DIRECT without TARGET": good[:2] + b"\x02" + good[3:],
            "reserved byte": good[:6] + b"\x01" + good[7:],
            "path of 33": bytes(too_long_path),
            "payload past the end": good[:-1],
            "trailing garbage": good + b"\x01",
            "id mismatch": good[:40] + bytes([good[40] ^ 1]) + good[41:],
        }
        for name, wire in cases.items():
            with self.subTest(name), self.assertRaises(bt.EnvelopeError):
                bt.decode_batch(wire)


class Identities(unittest.TestCase):
    # RFC 8032, section 7.1, TEST 1
    SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    SIG_EMPTY = bytes.fromhex(
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b")

    def test_rfc8032_vector_and_node_id(self):
        ident = bt.Identity.from_seed(self.SEED)
        self.assertEqual(self.PUBLIC, ident.public_key)
        self.assertEqual(self.SIG_EMPTY, ident.sign(b""))
        self.assertEqual(hashlib.sha256(self.PUBLIC).digest()[:20], ident.node_id)
        self.assertEqual(40, len(ident.node_id.hex()))

    def test_sign_and_verify(self):
        a, b = bt.Identity(), bt.Identity()
        msg = b"bt2c"
        sig = a.sign(msg)
        self.assertEqual(64, len(sig))
        self.assertTrue(bt.verify_signature(a.public_key, sig, msg))
        self.assertFalse(bt.verify_signature(b.public_key, sig, msg))
        self.assertFalse(bt.verify_signature(a.public_key, sig, msg + b"!"))
        self.assertFalse(bt.verify_signature(a.public_key, b"\0" * 64, msg))


class Transcript(unittest.TestCase):
    D_ID, L_ID = b"\xd1" * 20, b"\x1e" * 20
    D_NONCE, L_NONCE = b"\xaa" * 32, b"\xbb" * 32

    def test_layout(self):
        t = bt.transcript(bt.ROLE_LISTENER, "bt2c-mainnet", self.D_ID, self.L_ID,
                          self.D_NONCE, self.L_NONCE)
        net = b"bt2c-mainnet"
        self.assertEqual(17 + 1 + 1 + 1 + len(net) + 20 + 20 + 32 + 32, len(t))
        self.assertEqual(b"bt2c/handshake/v1", t[:17])
        self.assertEqual(bytes([0x02, 1, len(net)]), t[17:20])
        rest = t[20:]
        self.assertEqual(net, rest[:12])
        self.assertEqual(self.D_ID + self.L_ID + self.D_NONCE + self.L_NONCE, rest[12:])
        dialer = bt.transcript(bt.ROLE_DIALER, "bt2c-mainnet", self.D_ID, self.L_ID,
                               self.D_NONCE, self.L_NONCE)
        self.assertEqual(t[:17] + b"\x01" + t[18:], dialer)

    def test_exact_bytes(self):
        t = bt.transcript(bt.ROLE_DIALER, "n", b"\x01" * 20, b"\x02" * 20, b"\x03" * 32, b"\x04" * 32)
        self.assertEqual(
            "627432632f68616e647368616b652f7631" "01" "01" "01" "6e"
            + "01" * 20 + "02" * 20 + "03" * 32 + "04" * 32, t.hex())

    def test_roles_are_not_interchangeable(self):
        ident = bt.Identity()
        sig = ident.sign(bt.transcript(bt.ROLE_DIALER, "net", self.D_ID, self.L_ID,
                                       self.D_NONCE, self.L_NONCE))
        as_listener = bt.transcript(bt.ROLE_LISTENER, "net", self.D_ID, self.L_ID,
                                    self.D_NONCE, self.L_NONCE)
        self.assertFalse(bt.verify_signature(ident.public_key, sig, as_listener))


class HelloChecks(unittest.TestCase):
    def setUp(self):
        self.ident = bt.Identity()
        self.hello = bt.build_hello(self.ident, "net", os.urandom(32), listen_port=8765)

    def env(self, hello, origin=None):
        return bt.make_envelope("peer_handshake", hello, origin or self.ident.node_id)

    def code(self, hello, origin=None):
        with self.assertRaises(bt.HandshakeError) as cm:
            bt.check_hello(self.env(hello, origin), "net")
        return cm.exception.code

    def test_good_hello(self):
        peer = bt.check_hello(self.env(self.hello), "net")
        self.assertEqual(self.ident.node_id, peer.node_id)
        self.assertEqual(set(self.hello), {"step", "version", "networkId", "nodeId", "publicKey",
                                           "nonce", "time", "listenPort", "metadata", "height"})

    def test_failures_and_close_codes(self):
        self.assertEqual(4002, self.code(dict(self.hello, networkId="other")))
        self.assertEqual(4001, self.code(dict(self.hello, nodeId="00" * 20)))
        self.assertEqual(4001, self.code(self.hello, origin=b"\0" * 20))
        self.assertEqual(4000, self.code(dict(self.hello, nonce="zz")))
        self.assertEqual(4000, self.code(dict(self.hello, step="auth")))
        with self.assertRaises(bt.HandshakeError) as cm:
            bt.check_hello(bt.make_envelope("block", {}, self.ident.node_id), "net")
        self.assertEqual(4000, cm.exception.code)


class LoopbackHandshake(unittest.TestCase):
    """The Client against a minimal listener written with the same primitives."""

    def listener(self, ident, network_id, corrupt_auth=False):
        import websockets

        self.seen = []  # what the listener received once established

        async def handler(ws):
            nonce = os.urandom(32)
            hello = bt.build_hello(ident, network_id, nonce, listen_port=1)
            await ws.send(bt.make_envelope("peer_handshake", hello, ident.node_id).encode())
            try:
                [env] = bt.decode_batch(await ws.recv())
                peer = bt.check_hello(env, network_id)
                t = bt.transcript(bt.ROLE_LISTENER, network_id, peer.node_id, ident.node_id,
                                  peer.nonce, nonce)
                sig = ident.sign(b"garbage" if corrupt_auth else t)
                await ws.send(bt.make_envelope("peer_handshake", bt.build_auth(sig),
                                               ident.node_id).encode())
                [env] = bt.decode_batch(await ws.recv())
                bt.check_auth(env, peer, bt.transcript(bt.ROLE_DIALER, network_id, peer.node_id,
                                                       ident.node_id, peer.nonce, nonce))
            except bt.HandshakeError as e:
                await ws.close(e.code, e.reason)
                return
            # established: a ping and a block in one batch, then echo what comes back
            await ws.send(bt.encode_batch([
                bt.make_envelope("peer_ping", {"nonce": 9, "pong": False}, ident.node_id),
                bt.make_envelope("block", {"height": 5}, ident.node_id)]))
            try:
                async for message in ws:
                    for env in bt.decode_batch(message):
                        self.seen.append((env.type_name, env.data()))
                        if env.type_name == "transaction":
                            await ws.send(bt.make_envelope("transaction", env.data(),
                                                           ident.node_id).encode())
            except websockets.ConnectionClosed:
                pass

        return websockets.serve(handler, "127.0.0.1", 0, subprotocols=[bt.SUBPROTOCOL])

    def run_client(self, network_id="net", corrupt_auth=False):
        async def go():
            node = bt.Identity()
            async with self.listener(node, "net", corrupt_auth) as server:
                port = server.sockets[0].getsockname()[1]
                client = bt.Client(f"ws://127.0.0.1:{port}", network_id)
                peer = await client.connect()
                self.assertEqual(node.node_id, peer.node_id)
                block = await client.expect("block", 5)
                await client.send("transaction", {"amount": 1.5})
                echo = await client.expect("transaction", 5)
                await client.close()
                return client, block, echo

        return asyncio.run(go())

    def test_handshake_and_messages(self):
        client, block, echo = self.run_client()
        self.assertEqual({"height": 5}, block.data())
        self.assertEqual({"amount": 1.5}, echo.data())
        self.assertEqual(["peer_ping", "block", "transaction"],
                         [e.type_name for e in client.received])
        self.assertEqual(2, len(client.sent_handshake))
        self.assertEqual([("peer_ping", {"nonce": 9, "pong": True}),
                          ("transaction", {"amount": 1.5})], self.seen)

    def test_client_rejects_a_bad_listener_signature(self):
        with self.assertRaises(bt.HandshakeError) as cm:
            self.run_client(corrupt_auth=True)
        self.assertEqual(4001, cm.exception.code)

    def test_client_rejects_another_network(self):
        with self.assertRaises(bt.HandshakeError) as cm:
            self.run_client(network_id="elsewhere")
        self.assertEqual(4002, cm.exception.code)


if __name__ == "__main__":
    unittest.main()
