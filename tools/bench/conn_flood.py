#!/usr/bin/python3
"""Connection flood for tools/bench/run: N concurrent, handshaken bt2c peers from
one asyncio process, built on the independent client tools/pyclient/bt2c_client.py.

    conn_flood.py --url ws://127.0.0.1:PORT --peers 1000 [--network-id ID]
                  [--concurrency K] [--timeout S] [--seed TEXT]

Protocol with the driver (one line each way, so that Python's start-up and the
key generation stay out of the measured time):

    -> ready                 identities generated, nothing connected yet
    <- go                    start connecting now
    -> {"established": n, "failed": k, "seconds": s, "cpu_seconds": c, "errors": {...}}
                             every dial finished (handshake completed or failed)
    <- send BYTES            (optional, repeatable) every peer sends one block whose
                             envelope is BYTES long
    -> {"sent": n}
    <- close                 close every connection, then exit
    -> {"closed": n}

While connected, every peer keeps reading (answering the node's pings), as an
idle but live peer would.
"""

import argparse
import asyncio
import collections
import hashlib
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pyclient"))
from bt2c_client import Client, Identity  # noqa: E402


def emit(obj) -> None:
    sys.stdout.write((obj if isinstance(obj, str) else json.dumps(obj)) + "\n")
    sys.stdout.flush()


async def read_line() -> str:
    return (await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)).strip()


async def keep_reading(client: Client) -> None:
    try:
        while True:
            await client.recv()
    except Exception:  # closed: the flood is over or the node dropped us
        pass


async def main_async(args) -> int:
    if args.seed is None:
        identities = [Identity() for _ in range(args.peers)]
    else:  # the same node ids every time: peers that come back
        identities = [Identity.from_seed(hashlib.sha256(f"{args.seed}/{i}".encode()).digest())
                      for i in range(args.peers)]
    emit("ready")
    if await read_line() != "go":
        return 1
    sem = asyncio.Semaphore(args.concurrency if args.concurrency > 0 else args.peers)
    errors: collections.Counter = collections.Counter()
    clients = []

    async def dial(identity: Identity):
        async with sem:
            c = Client(args.url, args.network_id, identity=identity,
                       handshake_timeout=args.timeout, connect_timeout=args.timeout)
            try:
                await c.connect()
            except Exception as e:  # counted and reported; the run is then marked failed
                errors[type(e).__name__ + ": " + str(e)[:80]] += 1
                try:
                    await c.close()
                except Exception:
                    pass
                return None
            clients.append(c)
            return c

    cpu0, t0 = time.process_time(), time.monotonic()
    await asyncio.gather(*(dial(i) for i in identities))
    t1, cpu1 = time.monotonic(), time.process_time()
    readers = [asyncio.create_task(keep_reading(c)) for c in clients]
    emit({"established": len(clients), "failed": args.peers - len(clients),
          "seconds": round(t1 - t0, 4), "cpu_seconds": round(cpu1 - cpu0, 4),
          "errors": dict(errors)})
    while True:
        cmd = (await read_line()).split()  # "send BYTES", "close", or EOF: the driver went away
        if not cmd or cmd[0] != "send":
            break
        pad = max(0, int(cmd[1]) - 64 - len('{"height":1,"pad":""}'))
        results = await asyncio.gather(*(c.send("block", {"height": 1, "pad": "x" * pad})
                                         for c in clients), return_exceptions=True)
        emit({"sent": sum(1 for r in results if not isinstance(r, BaseException))})
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    for r in readers:
        r.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    emit({"closed": len(clients)})
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True)
    p.add_argument("--peers", type=int, default=1000)
    p.add_argument("--network-id", default="bt2c-mainnet")
    p.add_argument("--concurrency", type=int, default=0,
                   help="dials in flight at once (0: all of them)")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="seconds allowed for each upgrade and each handshake")
    p.add_argument("--seed", help="derive the peers' keys from this text (default: fresh keys)")
    args = p.parse_args()
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
