#!/usr/bin/env python3
"""NATS JetStream publish benchmark for bench/run.sh, with NATS's own client (nats-py).

Usage: nats_bench.py HOST:PORT SECONDS RECORD_SIZE

Creates a file-backed stream and publishes RECORD_SIZE-byte messages for SECONDS
seconds, 256 publishes in flight, each awaiting its PubAck (JetStream's "acks=all":
stored by the stream; a single server fsyncs its file store periodically, not per
message). Prints one JSON line like `weir bench --json`.
"""
import asyncio
import json
import sys
import time


async def main(addr, seconds, size):
    import nats

    nc = await nats.connect(f"nats://{addr}")
    js = nc.jetstream()
    await js.add_stream(name="bench", subjects=["bench.>"], storage="file")
    payload = b"x" * size
    lat = []
    sent = 0
    deadline = time.monotonic() + seconds
    start = time.monotonic()

    async def one():
        nonlocal sent
        t = time.monotonic()
        await js.publish("bench.a", payload)
        lat.append(time.monotonic() - t)
        sent += 1

    while time.monotonic() < deadline:
        await asyncio.gather(*(one() for _ in range(256)))
    elapsed = time.monotonic() - start
    await nc.close()
    lat.sort()
    pct = lambda q: lat[min(len(lat) - 1, int(len(lat) * q))] * 1000
    print(json.dumps({
        "mode": "produce",
        "records": sent,
        "bytes": sent * size,
        "seconds": elapsed,
        "records_per_s": sent / elapsed,
        "mb_per_s": sent * size / elapsed / 1e6,
        "p50_ms": pct(0.5),
        "p99_ms": pct(0.99),
        "p999_ms": pct(0.999),
        "max_ms": lat[-1] * 1000,
    }))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3])))
