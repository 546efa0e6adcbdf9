#!/usr/bin/env bash
# Idempotent producers against plain ones on one node (segment engine): the
# same load twice on a fresh data directory each time — 1 KiB records, 4
# partitions, 4 producers with 5 requests in flight each (1000-record batches)
# for SECS seconds — once as plain producers and once with --idempotent; then a
# low load (one producer, one 1 KiB record per request every 10 ms) both ways,
# whose p99 is the figure. Runs each given broker binary in turn, ROUNDS times,
# the order of the runs rotating from round to round and each block of runs
# preceded by a warm-up run that is not reported (the first run after a pause
# was consistently slower here, whatever it ran). The load comes from the last
# binary given (or WEIR_BENCH_CLIENT); only binaries whose `weir bench` has
# --idempotent run the idempotent loads.
#
#   bench/idempotent.sh BIN [BIN…]              # 2 rounds, 5 s per run
#   WEIR_BENCH_SECS=10 WEIR_AB_ROUNDS=3 bench/idempotent.sh old/weir new/weir
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: bench/idempotent.sh BIN [BIN…]" >&2; exit 2; }
SECS="${WEIR_BENCH_SECS:-5}"
ROUNDS="${WEIR_AB_ROUNDS:-2}"
ROOT="$(mktemp -d "${WEIR_BENCH_DIR:-$PWD}/weir-idem.XXXXXX")"
PORT=19595
B=127.0.0.1:$PORT
CLIENT="${WEIR_BENCH_CLIENT:-${!#}}"
NODE=""
cleanup() {
    [ -n "$NODE" ] && kill -9 "$NODE" 2>/dev/null || true
    rm -rf "$ROOT"
}
trap cleanup EXIT

summary() { # LABEL, a JSON line on stdin
    python3 -c '
import json, sys
r = json.loads(sys.stdin.readline())
print("%-26s %10.0f records/s %8.1f MB/s  p50 %7.2f ms  p99 %7.2f ms  p99.9 %7.2f ms" % (
    sys.argv[1], r["records_per_s"], r["mb_per_s"], r["p50_ms"], r["p99_ms"], r["p999_ms"]))
' "$1"
}

run_one() { # BIN LABEL FLAG LOAD
    local bin=$1 label=$2 flag=$3 load=$4
    rm -rf "$ROOT/data"
    "$bin" serve --engine segment --data-dir "$ROOT/data" --kafka-listen "$B" 2>"$ROOT/log" &
    NODE=$!
    until (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; do sleep 0.05; done
    if [ "$load" = high ]; then
        "$CLIENT" bench -b "$B" --json produce --topic t --partitions 4 --producers 4 \
            --in-flight 5 --record-size 1024 --batch 1000 --duration "$SECS" $flag | summary "$label high"
    else
        "$CLIENT" bench -b "$B" --json produce --topic t --partitions 1 --producers 1 \
            --record-size 1024 --batch 1 --linger-ms 10 --duration "$SECS" $flag | summary "$label low"
    fi
    kill "$NODE"
    wait "$NODE" 2>/dev/null || true
    NODE=""
}

# The runs: "BIN LABEL FLAG" for each binary, plain and (when it can) idempotent.
runs=()
i=0
for bin in "$@"; do
    i=$((i + 1))
    runs+=("$bin|bin$i plain|")
    if "$bin" bench --help 2>/dev/null | grep -q -- --idempotent; then
        runs+=("$bin|bin$i idempotent|--idempotent")
    fi
done

for round in $(seq 1 "$ROUNDS"); do
    for load in high low; do
        SECS_RUN=$SECS
        SECS=3
        run_one "${!#}" "warm-up" "" "$load" >/dev/null
        SECS=$SECS_RUN
        n=${#runs[@]}
        for k in $(seq 0 $((n - 1))); do
            IFS='|' read -r bin label flag <<<"${runs[$(((k + round - 1) % n))]}"
            run_one "$bin" "$label #$round" "$flag" "$load"
        done
    done
done
