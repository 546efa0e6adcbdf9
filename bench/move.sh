#!/usr/bin/env bash
# Moving a partition to a new node (issue 22, BENCHMARKS.md "Cluster
# lifecycle"). Three nodes on loopback form the cluster; a topic of one
# partition replicated 3 ways gets WEIR_MOVE_MB (1024) of 1 KiB records; node 4
# joins (`weir serve --join`) and the partition is reassigned from [1,2,3] to
# [4,2,3] (`weir topics reassign`): node 4 downloads the partition's log by
# snapshot, becomes a voter, node 1 leaves. Reported: the time from the
# reassignment to its end (metadata's replicas are the target), the rate
# (partition bytes over that time) beside the disk's synced 1 MiB rate
# (dd oflag=dsync) measured right before, and the produce latency of a
# steady load on another topic before the move and during it.
#
#   bench/move.sh BIN                       # a release build of weir
#   WEIR_TRANSPORT=tcp bench/move.sh BIN
#   WEIR_MOVE_RATE=52428800 bench/move.sh BIN   # reassignment_bytes_per_sec
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 1 ] || { echo "usage: bench/move.sh BIN" >&2; exit 2; }
BIN="$1"
MB="${WEIR_MOVE_MB:-1024}"
ENGINE="${WEIR_MOVE_ENGINE:-segment}"
TRANSPORT="${WEIR_TRANSPORT:-grpc}"
ROOT="$(mktemp -d "${WEIR_BENCH_DIR:-$PWD}/weir-move.XXXXXX")"
PIDS=(0 0 0 0)
cleanup() {
    for p in "${PIDS[@]}"; do [ "$p" != 0 ] && kill -9 "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$ROOT"
}
trap cleanup EXIT
KAFKA=(19711 19712 19713 19714)
PEER=(19721 19722 19723 19724)
ADMIN=(19731 19732 19733 19734)
BOOT="127.0.0.1:${KAFKA[0]},127.0.0.1:${KAFKA[1]},127.0.0.1:${KAFKA[2]}"
JOIN="127.0.0.1:${ADMIN[0]},127.0.0.1:${ADMIN[1]},127.0.0.1:${ADMIN[2]}"
# A partition log beyond 64 MiB of Raft log is sent by snapshot.
echo "raft_log_max_bytes = 67108864" >"$ROOT/weir.toml"
[ -n "${WEIR_MOVE_RATE:-}" ] && echo "reassignment_bytes_per_sec = $WEIR_MOVE_RATE" >>"$ROOT/weir.toml"

start() { # NODE(0-based)
    local i=$1 args=()
    if [ "$i" -lt 3 ]; then
        for j in 0 1 2; do
            [ "$i" = "$j" ] || args+=(--peer "$((j + 1))=127.0.0.1:${PEER[$j]}")
        done
    else
        args+=(--join "$JOIN")
    fi
    RUST_LOG=info "$BIN" serve --config "$ROOT/weir.toml" --node-id $((i + 1)) \
        --engine "$ENGINE" --transport "$TRANSPORT" --data-dir "$ROOT/d$i" \
        --kafka-listen "127.0.0.1:${KAFKA[$i]}" --peer-listen "127.0.0.1:${PEER[$i]}" \
        --admin-listen "127.0.0.1:${ADMIN[$i]}" "${args[@]}" 2>>"$ROOT/log$i" &
    PIDS[$i]=$!
    until (exec 3<>"/dev/tcp/127.0.0.1/${KAFKA[$i]}") 2>/dev/null; do sleep 0.1; done
}
now() { date +%s.%N; }

for i in 0 1 2; do start $i; done
sleep 2
"$BIN" topics -b "$BOOT" create moved --partitions 1 --replication 3 >/dev/null
"$BIN" topics -b "$BOOT" create load --partitions 2 --replication 3 >/dev/null
"$BIN" bench -b "$BOOT" --json produce --topic moved --partitions 1 --producers 2 \
    --record-size 1024 --batch 500 --records $((MB * 1024)) >/dev/null
# The steady load whose latency the move must not ruin (other topic).
load() {
    "$BIN" bench -b "$BOOT" --json produce --topic load --partitions 2 --producers 2 \
        --record-size 1024 --batch 100 --linger-ms 5 --duration "$1" 2>/dev/null |
        tail -1 | python3 -c 'import json,sys; r=json.load(sys.stdin); print("p50 %.2f ms, p99 %.2f ms, %.1f MB/s" % (r["p50_ms"], r["p99_ms"], r["mb_per_s"]))'
}
rm -f "$ROOT/dd"
dd_start=$(now)
dd if=/dev/zero of="$ROOT/dd" bs=1M count=256 oflag=dsync status=none
disk=$(python3 -c "print('%.0f' % (256 * 1.048576 / ($(now) - $dd_start)))")
rm -f "$ROOT/dd"
before=$(load 8)
start 3
until "$BIN" cluster -b "$BOOT" status 2>/dev/null | grep -q "broker 4 .*: reachable"; do sleep 0.2; done
sleep 2
load "${WEIR_MOVE_LOAD_SECS:-10}" >"$ROOT/load-during" &
LOAD=$!
t0=$(now)
"$BIN" topics -b "$BOOT" reassign moved -p 0 --replicas 4,2,3 >/dev/null
until "$BIN" topics -b "$BOOT" describe moved 2>/dev/null | grep -q "replicas \[4, 2, 3\]" &&
      "$BIN" topics -b "$BOOT" reassignments 2>/dev/null | grep -q "no partition is being moved"; do
    sleep 0.2
    if python3 -c "import sys; sys.exit(0 if $(now) - $t0 > 600 else 1)"; then
        echo "the move did not end in 10 minutes; see $ROOT/log*" >&2
        trap - EXIT; exit 1
    fi
done
t1=$(now)
wait "$LOAD" || true
bytes=$(du -sb "$ROOT/d3" | cut -f1)
snap=$(grep -c "installed a partition snapshot" "$ROOT/log3" || true)
python3 - "$t0" "$t1" "$MB" "$bytes" "$disk" "$ENGINE" "$TRANSPORT" "$snap" <<'PY'
import sys
t0, t1, mb, moved, disk, engine, transport, snap = sys.argv[1:]
secs = float(t1) - float(t0)
rate = int(mb) * 1.048576 / secs
print(f"{engine}/{transport}: moved a {mb} MiB partition to a new node in {secs:.1f} s: "
      f"{rate:.0f} MB/s ({rate / float(disk):.2f}x the disk's synced 1 MiB rate, {disk} MB/s); "
      f"node 4 holds {int(moved) / 1e6:.0f} MB; snapshots installed there: {snap}")
PY
echo "produce load on another topic: before the move $before; during it $(cat "$ROOT/load-during")"
