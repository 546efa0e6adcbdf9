#!/usr/bin/env bash
# Leader memory while a follower catches up. Three nodes (segment engine, gRPC)
# on loopback; a topic of 4 partitions replicated 3 ways; node 3 is stopped,
# WEIR_CATCHUP_MB of 1 KiB records are produced, node 3 restarts, and the RSS of
# nodes 1 and 2 is sampled every 0.5 s until node 3's data directory stops
# growing (caught up), then 10 s more (idle). Prints the peak and final RSS of the
# busier of nodes 1 and 2 (RssAnon: the heap, not the mapped segment files),
# for each binary given.
#
#   bench/catchup-rss.sh BIN [BIN…]        # WEIR_CATCHUP_MB=1024 by default
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: bench/catchup-rss.sh BIN [BIN…]" >&2; exit 2; }
MB="${WEIR_CATCHUP_MB:-1024}"
ROOT="$(mktemp -d "${WEIR_BENCH_DIR:-$PWD}/weir-catchup.XXXXXX")"
PIDS=(0 0 0)
cleanup() {
    for p in "${PIDS[@]}"; do [ "$p" != 0 ] && kill -9 "$p" 2>/dev/null || true; done
    rm -rf "$ROOT"
}
trap cleanup EXIT
KAFKA=(19511 19512 19513)
PEER=(19521 19522 19523)

start() { # BIN NODE(0-based)
    local i=$2 args=()
    for j in 0 1 2; do
        [ "$i" = "$j" ] || args+=(--peer "$((j + 1))=127.0.0.1:${PEER[$j]}")
    done
    "$1" serve --node-id $((i + 1)) --engine segment --data-dir "$ROOT/d$i" \
        --kafka-listen "127.0.0.1:${KAFKA[$i]}" --peer-listen "127.0.0.1:${PEER[$i]}" \
        "${args[@]}" 2>"$ROOT/log$i" &
    PIDS[$i]=$!
}
rss_mb() { awk '/RssAnon/ {printf "%d", $2 / 1024}' "/proc/$1/status" 2>/dev/null || echo 0; }

for bin in "$@"; do
    rm -rf "$ROOT"/d*
    for i in 0 1 2; do start "$bin" $i; done
    until (exec 3<>"/dev/tcp/127.0.0.1/${KAFKA[0]}") 2>/dev/null; do sleep 0.1; done
    sleep 2
    "$bin" topics -b "127.0.0.1:${KAFKA[0]}" create catchup --partitions 4 --replication 3 >/dev/null
    sleep 2
    kill -9 "${PIDS[2]}"; wait "${PIDS[2]}" 2>/dev/null || true; PIDS[2]=0
    "$bin" bench -b "127.0.0.1:${KAFKA[0]}" --json produce --topic catchup --partitions 4 \
        --producers 4 --record-size 1024 --batch 500 --records $((MB * 1024)) >/dev/null
    start "$bin" 2
    peak=0 last=-1 same=0 t0=$(date +%s)
    while [ "$same" -lt 6 ] && [ $(( $(date +%s) - t0 )) -lt 600 ]; do
        sleep 0.5
        for i in 0 1; do r=$(rss_mb "${PIDS[$i]}"); [ "$r" -gt "$peak" ] && peak=$r; done
        size=$(du -sm "$ROOT/d2" | cut -f1)
        if [ "$size" = "$last" ]; then same=$((same + 1)); else same=0; fi
        last=$size
    done
    secs=$(( $(date +%s) - t0 ))
    sleep 10
    idle=0
    for i in 0 1; do r=$(rss_mb "${PIDS[$i]}"); [ "$r" -gt "$idle" ] && idle=$r; done
    logs="$(du -sm "$ROOT/d0/partitions" | cut -f1)/$(du -sm "$ROOT/d2/partitions" | cut -f1)"
    echo "$bin: ${MB} MB caught up in ~${secs} s (partition logs node 1/node 3: ${logs} MB); leader heap (RssAnon) peak ${peak} MB, idle after ${idle} MB"
    for i in 0 1 2; do kill -9 "${PIDS[$i]}" 2>/dev/null || true; PIDS[$i]=0; done
    wait 2>/dev/null || true
done
