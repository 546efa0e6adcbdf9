#!/usr/bin/env bash
# The cleaner of compacted topics against produce latency (issue 20 item 3,
# docs/compaction.md). One node, segment engine. A compacted topic gets
# WEIR_CLEAN_MB of 1 KiB records over 1,000 keys (nearly all of it superseded),
# then a steady produce load on another topic (4 producers, 100-record
# batches, 5 ms apart) runs for WEIR_CLEAN_SECS while the cleaner works through
# the compacted topic, paced to WEIR_CLEANER_RATE bytes/s. Baseline: the same
# with the cleaner off. Prints the load's latency both ways, and the cleaner's
# work from the log (units rewritten, bytes before and after).
#
#   bench/cleaner.sh BIN
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 1 ] || { echo "usage: bench/cleaner.sh BIN" >&2; exit 2; }
BIN="$1"
MB="${WEIR_CLEAN_MB:-2048}"
SECS="${WEIR_CLEAN_SECS:-30}"
RATE="${WEIR_CLEANER_RATE:-67108864}"
ROOT="$(mktemp -d "${WEIR_BENCH_DIR:-$PWD}/weir-cleaner.XXXXXX")"
PID=0
cleanup() {
    [ "$PID" != 0 ] && kill -9 "$PID" 2>/dev/null || true
    rm -rf "$ROOT"
}
trap cleanup EXIT
BS=127.0.0.1:19631

run() { # NAME CLEANER_INTERVAL_MS
    local name=$1 interval=$2 dir="$ROOT/$1"
    mkdir -p "$dir"
    printf 'cleaner_check_interval_ms = %s\ncleaner_io_bytes_per_sec = %s\n' "$interval" "$RATE" >"$dir/weir.toml"
    RUST_LOG=info "$BIN" serve --config "$dir/weir.toml" --data-dir "$dir/data" \
        --kafka-listen "$BS" --peer-listen 127.0.0.1:19632 2>"$dir/log" &
    PID=$!
    until (exec 3<>/dev/tcp/127.0.0.1/19631) 2>/dev/null; do sleep 0.1; done
    sleep 1
    "$BIN" topics -b "$BS" create compacted --partitions 4 --config cleanup.policy=compact \
        --config min.cleanable.dirty.ratio=0.5 >/dev/null
    "$BIN" topics -b "$BS" create load --partitions 4 >/dev/null
    "$BIN" bench -b "$BS" --json produce --topic compacted --partitions 4 --producers 4 \
        --record-size 1024 --batch 500 --keys 1000 --records $((MB * 1024)) >/dev/null
    local t0; t0=$(date +%s)
    local report
    report=$("$BIN" bench -b "$BS" --json produce --topic load --partitions 4 --producers 4 \
        --record-size 1024 --batch 100 --linger-ms 5 --duration "$SECS")
    local t1; t1=$(date +%s)
    sleep 1
    local cleaned
    cleaned=$(grep 'cleaned a compacted partition' "$dir/log" | sed 's/\x1b\[[0-9;]*m//g' || true)
    python3 - "$name" "$report" "$cleaned" "$t0" "$t1" <<'PY'
import json, re, sys
name, report, cleaned = sys.argv[1], json.loads(sys.argv[2].splitlines()[-1]), sys.argv[3]
units = sum(int(m) for m in re.findall(r"units=(\d+)", cleaned))
before = sum(int(m) for m in re.findall(r"bytes_before=(\d+)", cleaned))
after = sum(int(m) for m in re.findall(r"bytes_after=(\d+)", cleaned))
print(f"{name:8} load: {report['mb_per_s']:.1f} MB/s, p50 {report['p50_ms']:.2f} ms, "
      f"p99 {report['p99_ms']:.2f} ms, p99.9 {report['p999_ms']:.2f} ms; "
      f"cleaner: {units} segments rewritten, {before / 1e6:.0f} MB -> {after / 1e6:.1f} MB "
      f"(partitions finished during the run: {cleaned.count('cleaned a compacted')})")
PY
    kill -9 "$PID"; wait "$PID" 2>/dev/null || true; PID=0
}

echo "cleaner: ${MB} MB over 1,000 keys in a compacted topic, ${SECS} s of load, cleaner paced to $((RATE / 1048576)) MiB/s"
run off 86400000
run on 1000
