#!/usr/bin/env bash
# Compressed producers, before/after: one node (segment engine), one producer,
# 4 partitions, batches of 1,000 records of 1 KiB of text (compresses 2-4x), for
# each codec, each broker binary in turn (interleaved ROUNDS times). The load
# client is the last binary given (it has `weir bench --compression`).
#
#   bench/compressed.sh OLD_BIN NEW_BIN     # 10 s per run, 1 round
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: bench/compressed.sh BIN [BIN…]" >&2; exit 2; }
SECS="${WEIR_BENCH_SECS:-10}"
ROUNDS="${WEIR_AB_ROUNDS:-1}"
ROOT="$(mktemp -d "${WEIR_BENCH_DIR:-$PWD}/weir-z.XXXXXX")"
PORT=19394
CLIENT="${!#}"
NODE=""
cleanup() {
    [ -n "$NODE" ] && kill -9 "$NODE" 2>/dev/null || true
    rm -rf "$ROOT"
}
trap cleanup EXIT
for round in $(seq 1 "$ROUNDS"); do
    for codec in none gzip snappy lz4 zstd; do
        i=0
        for bin in "$@"; do
            i=$((i + 1))
            rm -rf "$ROOT/data"
            "$bin" serve --engine segment --data-dir "$ROOT/data" --kafka-listen "127.0.0.1:$PORT" 2>"$ROOT/log" &
            NODE=$!
            until (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; do sleep 0.05; done
            "$CLIENT" bench -b "127.0.0.1:$PORT" --json produce --topic z --partitions 4 --producers 1 \
                --record-size 1024 --batch 1000 --compression "$codec" --duration "$SECS" |
                python3 -c '
import json, sys
for line in sys.stdin:
    if line.startswith("{"):
        r = json.loads(line)
        print("%-8s bin%s#%s %9.0f records/s  p99 %6.2f ms" % (sys.argv[1], sys.argv[2], sys.argv[3], r["records_per_s"], r["p99_ms"]))
' "$codec" "$i" "$round"
            kill "$NODE"; wait "$NODE" 2>/dev/null || true; NODE=""
        done
    done
done
