#!/usr/bin/env python3
"""Turns bench/run.sh's results.jsonl into table.md (targets and ratios) and chart.svg.

Usage: report.py RESULTS.jsonl OUT_DIR
"""
import json
import sys
from pathlib import Path


def load(path):
    out = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            out[rec["name"]] = rec["result"]
    return out


def f(x, digits=1):
    return "—" if x is None else f"{x:,.{digits}f}"


def get(r, name, key):
    return r.get(name, {}).get(key)


def ratio(a, b):
    return None if a is None or not b else a / b


def main(results, out_dir):
    r = load(results)
    out = Path(out_dir)
    disk_1m = get(r, "disk-1MiB", "mb_per_s")
    disk_4k_ms = get(r, "disk-4KiB", "write_ms")
    lines = ["# weir benchmark results", ""]
    lines += [
        "| measurement | value |",
        "|---|---|",
        f"| disk, synced 1 MiB writes | {f(disk_1m)} MB/s |",
        f"| disk, synced 4 KiB writes | {f(get(r, 'disk-4KiB', 'mb_per_s'))} MB/s, {f(disk_4k_ms, 2)} ms per write |",
        f"| disk, 4 KiB append + fdatasync every 10 ms | p50 {f(get(r, 'disk-latency-4KiB', 'p50_ms'), 2)} ms, "
        f"p99 {f(get(r, 'disk-latency-4KiB', 'p99_ms'), 2)} ms, max {f(get(r, 'disk-latency-4KiB', 'max_ms'), 2)} ms |",
        "",
        "## Targets (segment engine unless stated)",
        "",
        "| target | measured | goal | met |",
        "|---|---|---|---|",
    ]

    def target(name, measured, goal_text, ok):
        verdict = "not measured" if "—" in measured else ("yes" if ok else "no")
        lines.append(f"| {name} | {measured} | {goal_text} | {verdict} |")

    p1k = get(r, "produce-1KiB-segment", "mb_per_s")
    rt = ratio(p1k, disk_1m)
    target("1 KiB records, 4 partitions, one producer, acks=all (MB/s ÷ disk 1 MiB rate)",
           f"{f(p1k)} MB/s = {f(rt, 2)}×", "≥ 0.8×", rt is not None and rt >= 0.8)
    p1k5 = get(r, "produce-1KiB-inflight5-segment", "mb_per_s")
    rt5 = ratio(p1k5, disk_1m)
    target("same, the producer keeping 5 requests in flight (as the Java client does by default)",
           f"{f(p1k5)} MB/s = {f(rt5, 2)}×", "≥ 0.8×", rt5 is not None and rt5 >= 0.8)
    amp = get(r, "write-amplification-segment", "ratio")
    target("bytes written to disk per byte produced (the in-flight run; /proc/PID/io write_bytes)",
           f"{f(amp, 2)}", "≤ 1.15", amp is not None and amp <= 1.15)
    for e in ("rocksdb", "redb"):
        a = get(r, f"write-amplification-{e}", "ratio")
        if a is not None:
            lines.append(f"| (context) the same on {e} | {f(a, 2)} | — | — |")
    p256 = get(r, "produce-256B-segment", "records_per_s")
    target("256 B records, same", f"{f(p256, 0)} records/s", "≥ 300,000", p256 is not None and p256 >= 300000)
    lat = get(r, "latency-segment", "p99_ms")
    goal = None if disk_4k_ms is None else 2 * disk_4k_ms + 1
    target("produce p99 at low load (one record at a time)", f"{f(lat, 2)} ms",
           f"≤ 2 × {f(disk_4k_ms, 2)} + 1 = {f(goal, 2)} ms", lat is not None and goal is not None and lat <= goal)
    disk_p99 = get(r, "disk-latency-4KiB", "p99_ms")
    lines.append(f"| (context) the disk's own p99 under the same pattern | {f(disk_p99, 2)} ms | — | — |")
    near = None if disk_p99 is None else disk_p99 + 1
    target("produce p99 at low load within 1 ms of the disk's own p99", f"{f(lat, 2)} ms",
           f"≤ {f(disk_p99, 2)} + 1 = {f(near, 2)} ms", lat is not None and near is not None and lat <= near)
    cons = get(r, "consume-segment", "mb_per_s")
    target("consume from page cache, one consumer", f"{f(cons)} MB/s", "≥ 1,000 MB/s", cons is not None and cons >= 1000)
    single4 = get(r, "produce-1KiB-4producers-segment", "mb_per_s")
    for t in ("grpc", "tcp"):
        three = get(r, f"three-produce-1KiB-4producers-{t}", "mb_per_s")
        rr = ratio(three, single4)
        target(f"3 nodes ({t}) ÷ 1 node, 1 KiB, 4 producers", f"{f(three)} ÷ {f(single4)} MB/s = {f(rr, 2)}×",
               "≥ 0.5×", rr is not None and rr >= 0.5)
    idle = get(r, "idle-rss-segment", "rss_mib")
    target("idle RSS", f"{f(idle)} MiB", "≤ 30 MiB", idle is not None and idle <= 30)
    many = get(r, "rss-1000-partitions-segment", "rss_mib")
    target("RSS with 1,000 partitions", f"{f(many)} MiB", "≤ 300 MiB", many is not None and many <= 300)
    restarts = [(k, v) for k, v in r.items() if k.startswith("restart-")]
    if not restarts:
        target("restart (not run): accepting produce after kill -9", "—", "≤ 1 s", False)
    for rname, v in restarts:
        restart = v.get("seconds")
        dirty = v.get("dirty_mib_at_kill")
        extra = "" if dirty is None else f" ({f(dirty, 0)} MiB dirty at the kill)"
        target(f"{rname}: accepting produce after kill -9", f"{f(restart, 2)} s{extra}", "≤ 1 s",
               restart is not None and restart <= 1)

    lines += ["", "## Every run", "",
              "| run | records/s | MB/s | p50 ms | p99 ms | p99.9 ms | max ms |", "|---|---|---|---|---|---|---|"]
    for name, v in r.items():
        if "records_per_s" in v:
            lines.append(
                f"| {name} | {f(v['records_per_s'], 0)} | {f(v['mb_per_s'])} | {f(v['p50_ms'], 2)} | "
                f"{f(v['p99_ms'], 2)} | {f(v['p999_ms'], 2)} | {f(v['max_ms'], 2)} |")
    failed = [(k, v["failed"]) for k, v in r.items() if "failed" in v]
    if failed:
        lines += ["", "## Runs that failed", ""]
        lines += [f"- {k}: `{msg.strip()[:200]}`" for k, msg in failed]
    others = [(k, v) for k, v in r.items() if k.startswith(("tansu", "nats")) and "mb_per_s" in v]
    if others:
        lines += ["", "## Against other brokers (1 KiB records)", "",
                  "| broker | durability | MB/s | weir segment ÷ it |", "|---|---|---|---|"]
        for k, v in others:
            dur = ("memory storage (nothing synced)" if k.startswith("tansu")
                   else "file store, fsync periodic (not per message)")
            lines.append(f"| {k} | {dur} | {f(v['mb_per_s'])} | {f(ratio(p1k, v['mb_per_s']), 2)}× |")
    (out / "table.md").write_text("\n".join(lines) + "\n")

    # Chart: throughput (MB/s) and p99 (ms) per produce run, two bar groups.
    runs = [(k, v) for k, v in r.items() if k.startswith(("produce", "three", "tansu", "nats"))]
    width, bar_h, gap, left = 900, 18, 6, 330
    height = 60 + len(runs) * (bar_h + gap) * 2 + 40
    max_mb = max([v["mb_per_s"] for _, v in runs] + [disk_1m or 0, 1])
    max_p99 = max([v["p99_ms"] for _, v in runs] + [1])
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
           '<text x="10" y="20" font-size="15">weir bench: throughput (MB/s, blue) and p99 latency (ms, orange)</text>']
    y = 40
    if disk_1m:
        x = left + (width - left - 80) * disk_1m / max_mb
        svg.append(f'<line x1="{x:.0f}" y1="30" x2="{x:.0f}" y2="{height - 30}" stroke="#888" stroke-dasharray="4"/>')
        svg.append(f'<text x="{x + 4:.0f}" y="{height - 16}" fill="#555">disk synced 1 MiB: {disk_1m:.0f} MB/s</text>')
    for name, v in runs:
        w = (width - left - 80) * v["mb_per_s"] / max_mb
        svg.append(f'<text x="10" y="{y + 13}">{name}</text>')
        svg.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="#3b73b9"/>')
        svg.append(f'<text x="{left + w + 4:.0f}" y="{y + 13}">{v["mb_per_s"]:.1f}</text>')
        y += bar_h + 2
        w = (width - left - 80) * v["p99_ms"] / max_p99
        svg.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h - 6}" fill="#e08a2c"/>')
        svg.append(f'<text x="{left + w + 4:.0f}" y="{y + 10}">{v["p99_ms"]:.2f} ms</text>')
        y += bar_h + gap + 4
    svg.append("</svg>")
    (out / "chart.svg").write_text("\n".join(svg) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
