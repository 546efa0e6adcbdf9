#!/usr/bin/env bash
# Interleaved before/after comparison of two weir binaries on the hot path that
# bench/run.sh measures for one node (segment engine): produce 1 KiB records (one
# producer; one producer with 5 requests in flight; 4 producers) and consume from
# the page cache. Each binary runs ROUNDS times, alternating, each run on a fresh
# node and data directory, so that the disk's drift between runs hits both alike.
#
#   bench/ab.sh BEFORE_BIN AFTER_BIN            # 2 rounds, 10 s per produce run
#   WEIR_BENCH_SECS=20 WEIR_AB_ROUNDS=3 bench/ab.sh old/weir new/weir
#
# Prints one line per run: binary, load, MB/s (and p99 ms for produce).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 2 ] || { echo "usage: bench/ab.sh BEFORE_BIN AFTER_BIN" >&2; exit 2; }
SECS="${WEIR_BENCH_SECS:-10}"
ROUNDS="${WEIR_AB_ROUNDS:-2}"
ROOT="$(mktemp -d "${WEIR_BENCH_DIR:-$PWD}/weir-ab.XXXXXX")"
PORT=19392
NODE=""
cleanup() {
    [ -n "$NODE" ] && kill -9 "$NODE" 2>/dev/null || true
    rm -rf "$ROOT"
}
trap cleanup EXIT

summary() { # LABEL JSON-LINES: MB/s and p99 of each line
    python3 -c '
import json, sys
label = sys.argv[1]
for line in sys.stdin:
    line = line.strip()
    if not line.startswith("{"):
        continue
    r = json.loads(line)
    p99 = r.get("p99_ms")
    mb = r.get("mb_per_s", 0)
    extra = "  p99 %.2f ms" % p99 if r.get("mode") == "produce" else ""
    print("%-40s %8.1f MB/s%s" % (label, mb, extra))
' "$1"
}

run_one() { # BIN TAG
    local bin=$1 tag=$2 b=127.0.0.1:$PORT
    rm -rf "$ROOT/data"
    "$bin" serve --engine segment --data-dir "$ROOT/data" --kafka-listen "$b" 2>"$ROOT/log" &
    NODE=$!
    until (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; do sleep 0.05; done
    "$bin" bench -b $b --json produce --topic t1k --partitions 4 --producers 1 \
        --record-size 1024 --batch 1000 --duration "$SECS" | summary "$tag produce-1KiB"
    "$bin" bench -b $b --json produce --topic t1k5 --partitions 4 --producers 1 \
        --record-size 1024 --batch 1000 --in-flight 5 --duration "$SECS" | summary "$tag produce-1KiB-inflight5"
    "$bin" bench -b $b --json produce --topic t4p --partitions 4 --producers 4 \
        --record-size 1024 --batch 1000 --duration "$SECS" | summary "$tag produce-1KiB-4producers"
    "$bin" bench -b $b --json consume --topic t1k --partitions 4 --consumers 1 | summary "$tag consume"
    kill "$NODE"
    wait "$NODE" 2>/dev/null || true
    NODE=""
}

for round in $(seq 1 "$ROUNDS"); do
    run_one "$1" "before#$round"
    run_one "$2" "after#$round"
done
