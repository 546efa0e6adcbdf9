#!/usr/bin/env python3
"""The disk's synced-write latency distribution, with the load pattern of weir's
low-load produce benchmark: append 4 KiB to a file and fdatasync it, once every
`--interval-ms`, for `--seconds`. Prints one JSON line (milliseconds).

    bench/disk_latency.py DIR [--seconds 10] [--interval-ms 10]
"""
import argparse
import json
import os
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--interval-ms", type=float, default=10)
    a = ap.parse_args()
    path = os.path.join(a.dir, "disk-latency.tmp")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    block = b"\0" * 4096
    lat = []
    end = time.monotonic() + a.seconds
    try:
        while time.monotonic() < end:
            t = time.monotonic()
            os.write(fd, block)
            os.fdatasync(fd)
            lat.append((time.monotonic() - t) * 1000)
            time.sleep(a.interval_ms / 1000)
    finally:
        os.close(fd)
        os.unlink(path)
    lat.sort()

    def pct(p):
        return round(lat[min(len(lat) - 1, int(len(lat) * p))], 3)

    print(json.dumps({
        "writes": len(lat),
        "mean_ms": round(sum(lat) / len(lat), 3),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "p999_ms": pct(0.999),
        "max_ms": round(lat[-1], 3),
    }))


if __name__ == "__main__":
    main()
