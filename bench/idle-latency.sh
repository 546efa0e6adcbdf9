#!/usr/bin/env bash
# Does a busy node stay responsive? One node on the redb engine takes acks=all
# writes on 16 partitions (16 producers, one request in flight each, 64 KiB
# batches of 1 KiB records) while a probe asks for the latest offset of an idle
# partition every 5 ms; the probe's latency percentiles are the figure (an idle
# request must not wait for other partitions' disk writes). Runs each given broker
# binary in turn (interleaved ROUNDS times), with the load and probe clients taken
# from the last binary given.
#
#   bench/idle-latency.sh BIN [BIN…]            # 2 rounds, 10 s per run
#   WEIR_BENCH_SECS=20 WEIR_AB_ROUNDS=3 WEIR_BENCH_ENGINE=segment bench/idle-latency.sh old/weir new/weir
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: bench/idle-latency.sh BIN [BIN…]" >&2; exit 2; }
SECS="${WEIR_BENCH_SECS:-10}"
ROUNDS="${WEIR_AB_ROUNDS:-2}"
ENGINE="${WEIR_BENCH_ENGINE:-redb}"
ROOT="$(mktemp -d "${WEIR_BENCH_DIR:-$PWD}/weir-idle.XXXXXX")"
PORT=19393
CLIENT="${!#}"
NODE=""
cleanup() {
    [ -n "$NODE" ] && kill -9 "$NODE" 2>/dev/null || true
    rm -rf "$ROOT"
}
trap cleanup EXIT

summary() { # LABEL, JSON lines on stdin
    python3 -c '
import json, sys
for line in sys.stdin:
    if line.startswith("{"):
        r = json.loads(line)
        print("%-28s %-8s p50 %7.2f ms  p99 %7.2f ms  max %7.2f ms  %8.1f MB/s" % (
            sys.argv[1], r["mode"], r["p50_ms"], r["p99_ms"], r["max_ms"], r["mb_per_s"]))
' "$1"
}

run_one() { # BIN LABEL
    local bin=$1 label=$2 b=127.0.0.1:$PORT
    rm -rf "$ROOT/data"
    "$bin" serve --engine "$ENGINE" --data-dir "$ROOT/data" --kafka-listen "$b" 2>"$ROOT/log" &
    NODE=$!
    until (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; do sleep 0.05; done
    "$CLIENT" bench -b $b --json probe --topic idle --linger-ms 5 --duration 1 >/dev/null
    "$CLIENT" bench -b $b --json produce --topic busy --partitions 16 --producers 16 \
        --record-size 1024 --batch 64 --duration "$SECS" >"$ROOT/load" &
    local load=$!
    sleep 1
    "$CLIENT" bench -b $b --json probe --topic idle --linger-ms 5 --duration "$((SECS - 2))" | summary "$label"
    wait "$load"
    summary "$label" <"$ROOT/load"
    kill "$NODE"
    wait "$NODE" 2>/dev/null || true
    NODE=""
}

for round in $(seq 1 "$ROUNDS"); do
    i=0
    for bin in "$@"; do
        i=$((i + 1))
        run_one "$bin" "bin$i#$round"
    done
done
