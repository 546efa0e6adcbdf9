#!/usr/bin/env bash
# The write path (issue 19, docs/write-path.md): bytes written to storage per
# produced byte, and single-producer produce throughput against the disk's own
# synced rate, for each given broker binary on one node (segment engine).
#
# Per run: the disk's synced 1 MiB write rate (dd oflag=dsync, 512 MiB), then a
# fresh node and one producer of 1 KiB records, 4 partitions, 1000-record
# batches, 5 requests in flight, for SECS seconds; the node's `write_bytes`
# (/proc/PID/io) over the run divided by the record bytes produced. Runs each
# binary in turn, ROUNDS times, the order rotating from round to round, after
# one warm-up run that is not reported (the first heavy run after a pause was
# consistently slower on this disk). The load comes from the last binary given.
#
#   bench/write-path.sh BIN [BIN…]                 # 2 rounds, 20 s per run
#   WEIR_BENCH_SECS=10 WEIR_AB_ROUNDS=3 bench/write-path.sh old/weir new/weir
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: bench/write-path.sh BIN [BIN…]" >&2; exit 2; }
SECS="${WEIR_BENCH_SECS:-20}"
ROUNDS="${WEIR_AB_ROUNDS:-2}"
ROOT="$(mktemp -d "${WEIR_BENCH_DIR:-$PWD}/weir-wpath.XXXXXX")"
PORT=19596
B=127.0.0.1:$PORT
CLIENT="${!#}"
NODE=""
cleanup() {
    [ -n "$NODE" ] && kill -9 "$NODE" 2>/dev/null || true
    rm -rf "$ROOT"
}
trap cleanup EXIT

dd_mb_per_s() {
    local t0 t1
    t0=$(date +%s.%N)
    dd if=/dev/zero of="$ROOT/dd" bs=1M count=512 oflag=dsync status=none
    t1=$(date +%s.%N)
    rm -f "$ROOT/dd"
    echo "512 * 1048576 / ($t1 - $t0) / 1000000" | bc -l
}

one() { # BIN LABEL: prints a summary line unless LABEL is empty
    local bin=$1 label=$2 disk out w0 w1
    disk=$(dd_mb_per_s)
    rm -rf "$ROOT/data"
    "$bin" serve --engine segment --data-dir "$ROOT/data" --kafka-listen "$B" 2>"$ROOT/log" &
    NODE=$!
    for _ in $(seq 1 400); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
        sleep 0.05
    done
    w0=$(awk '/^write_bytes/ {print $2}' "/proc/$NODE/io")
    out=$("$CLIENT" bench -b "$B" --json produce --topic t --partitions 4 --producers 1 \
        --record-size 1024 --batch 1000 --in-flight 5 --duration "$SECS")
    w1=$(awk '/^write_bytes/ {print $2}' "/proc/$NODE/io")
    kill -9 "$NODE"
    wait "$NODE" 2>/dev/null || true
    NODE=""
    [ -n "$label" ] || return 0
    python3 -c '
import json, sys
r = json.loads(sys.argv[2])
disk, written = float(sys.argv[3]), int(sys.argv[4])
print("%-40s %7.1f MB/s produced  disk %7.1f MB/s  ratio to disk %.2f  written/produced %.3f" % (
    sys.argv[1], r["mb_per_s"], disk, r["mb_per_s"] / disk, written / max(r["bytes"], 1)))
' "$label" "$out" "$disk" "$((w1 - w0))"
}

one "$CLIENT" ""
for round in $(seq 1 "$ROUNDS"); do
    bins=("$@")
    shift_by=$(((round - 1) % ${#bins[@]}))
    order=("${bins[@]:shift_by}" "${bins[@]:0:shift_by}")
    for bin in "${order[@]}"; do
        one "$bin" "round $round $bin"
    done
done
