#!/usr/bin/env bash
# Restart time with idempotent producers' state. One node (segment engine)
# takes one batch (10 records of 100 B) from each of N producers (10,000) on
# one partition, either as idempotent producers (each its own id: N producers'
# state to restore) or as plain ones (the same records, no state); 3 s later (a
# flush has written the producer-state checkpoint) it is killed with SIGKILL
# and restarted, ROUNDS times. The figure is the time from spawning
# `weir serve` until the partition takes a produce again (as bench/run.sh
# measures restarts: it is led only once its producer state is restored), and
# the count of producers DescribeProducers lists afterwards.
#
#   bench/restart.sh [BIN]                      # default target/release/weir
#   WEIR_RESTART_PRODUCERS=10000 WEIR_RESTART_ROUNDS=5 bench/restart.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-target/release/weir}"
N="${WEIR_RESTART_PRODUCERS:-10000}"
ROUNDS="${WEIR_RESTART_ROUNDS:-5}"
ROOT="$(mktemp -d "${WEIR_BENCH_DIR:-$PWD}/weir-restart.XXXXXX")"
PORT=19494
B=127.0.0.1:$PORT
NODE=""
cleanup() {
    [ -n "$NODE" ] && kill -9 "$NODE" 2>/dev/null || true
    rm -rf "$ROOT"
}
trap cleanup EXIT

start() {
    "$BIN" serve --engine segment --data-dir "$ROOT/data" --kafka-listen "$B" 2>>"$ROOT/log" &
    NODE=$!
}

kill9() {
    kill -9 "$NODE"
    wait "$NODE" 2>/dev/null || true
    NODE=""
}

for mode in plain idempotent; do
    rm -rf "$ROOT/data"
    start
    until (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; do sleep 0.05; done
    flag=""
    [ "$mode" = idempotent ] && flag="--idempotent"
    "$BIN" bench -b "$B" --json producer-ids --topic restart --partitions 1 \
        --producers "$N" --batch 10 --record-size 100 --in-flight 16 $flag >/dev/null
    sleep 3
    times=()
    for _ in $(seq 1 "$ROUNDS"); do
        kill9
        t0=$(date +%s%N)
        start
        until echo x | "$BIN" produce restart -b "$B" -p 0 >/dev/null 2>&1; do
            sleep 0.01
        done
        t1=$(date +%s%N)
        times+=("$(( (t1 - t0) / 1000000 ))")
    done
    listed=$("$BIN" producers -b "$B" describe restart -p 0)
    count=$(($(printf '%s\n' "$listed" | wc -l) - 1))
    printf '%s\n' "${times[@]}" | sort -n | python3 -c '
import sys
t = [int(x) for x in sys.stdin]
print("%-11s producers listed %6s  restart ms: median %5d  min %5d  max %5d  (%d rounds)" % (
    sys.argv[1], sys.argv[2], t[len(t) // 2], t[0], t[-1], len(t)))
' "$mode" "$count"
    kill9
done
