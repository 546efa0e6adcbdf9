#!/usr/bin/env bash
# Catch-up by snapshot (issue 20 item 4, docs/snapshots.md). Three nodes on
# loopback (an engine that installs snapshots: redb by default), a topic of 4
# partitions replicated 3 ways, raft_log_max_bytes = 64 MiB. Node 3 is killed,
# WEIR_CATCHUP_MB of 1 KiB records are produced (its partitions' Raft logs are
# compacted past it), node 3 restarts and downloads each partition's log. From
# node 3's log: the time from its restart to the last partition downloaded and
# installed, and the transfer rate (the partition logs' bytes over that time);
# the leaders' peak heap (RssAnon) meanwhile; the data directories' sizes.
#
#   bench/snapshot-catchup.sh BIN        # a weir built with the engine's feature
#   WEIR_CATCHUP_ENGINE=rocksdb WEIR_TRANSPORT=tcp bench/snapshot-catchup.sh BIN
#   WEIR_SNAPSHOT_RATE=104857600 bench/snapshot-catchup.sh BIN   # paced leaders
#   WEIR_CATCHUP_NICE=19 bench/snapshot-catchup.sh BIN   # the restarted node under
#                    # `nice -n 19`: on one machine, what its CPU costs the others
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 1 ] || { echo "usage: bench/snapshot-catchup.sh BIN" >&2; exit 2; }
BIN="$1"
MB="${WEIR_CATCHUP_MB:-1024}"
ENGINE="${WEIR_CATCHUP_ENGINE:-redb}"
TRANSPORT="${WEIR_TRANSPORT:-grpc}"
ROOT="$(mktemp -d "${WEIR_BENCH_DIR:-$PWD}/weir-snapcatch.XXXXXX")"
PIDS=(0 0 0)
cleanup() {
    for p in "${PIDS[@]}"; do [ "$p" != 0 ] && kill -9 "$p" 2>/dev/null || true; done
    rm -rf "$ROOT"
}
trap cleanup EXIT
KAFKA=(19611 19612 19613)
PEER=(19621 19622 19623)
echo "raft_log_max_bytes = 67108864" >"$ROOT/weir.toml"
# WEIR_SNAPSHOT_RATE=BYTES: the leaders' snapshot_bytes_per_sec.
[ -n "${WEIR_SNAPSHOT_RATE:-}" ] && echo "snapshot_bytes_per_sec = $WEIR_SNAPSHOT_RATE" >>"$ROOT/weir.toml"

start() { # NODE(0-based)
    local i=$1 args=()
    for j in 0 1 2; do
        [ "$i" = "$j" ] || args+=(--peer "$((j + 1))=127.0.0.1:${PEER[$j]}")
    done
    local pre=()
    [ "$i" = 2 ] && [ -n "${WEIR_CATCHUP_NICE:-}" ] && pre=(nice -n "$WEIR_CATCHUP_NICE")
    RUST_LOG=info "${pre[@]}" "$BIN" serve --config "$ROOT/weir.toml" --node-id $((i + 1)) \
        --engine "$ENGINE" --transport "$TRANSPORT" --data-dir "$ROOT/d$i" \
        --kafka-listen "127.0.0.1:${KAFKA[$i]}" --peer-listen "127.0.0.1:${PEER[$i]}" \
        "${args[@]}" 2>>"$ROOT/log$i" &
    PIDS[$i]=$!
}
rss_mb() { awk '/RssAnon/ {printf "%d", $2 / 1024}' "/proc/$1/status" 2>/dev/null || echo 0; }

for i in 0 1 2; do start $i; done
until (exec 3<>"/dev/tcp/127.0.0.1/${KAFKA[0]}") 2>/dev/null; do sleep 0.1; done
# The topics need all three brokers registered: retried until they are (bounded).
create() {
    for _ in $(seq 1 100); do
        "$BIN" topics -b "127.0.0.1:${KAFKA[0]}" create "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    "$BIN" topics -b "127.0.0.1:${KAFKA[0]}" create "$@" >/dev/null
}
create catchup --partitions 4 --replication 3
create load --partitions 2 --replication 3
sleep 2
kill -9 "${PIDS[2]}"; wait "${PIDS[2]}" 2>/dev/null || true; PIDS[2]=0
"$BIN" bench -b "127.0.0.1:${KAFKA[0]}" --json produce --topic catchup --partitions 4 \
    --producers 4 --record-size 1024 --batch 500 --records $((MB * 1024)) >/dev/null
sleep 3
# A light produce load on another topic (leaders on nodes 1 and 2), before
# and while node 3 catches up: its latency is what producers on the nodes
# serving the snapshot see.
load() {
    "$BIN" bench -b "127.0.0.1:${KAFKA[0]},127.0.0.1:${KAFKA[1]}" --json produce --topic load \
        --partitions 2 --producers 2 --record-size 1024 --batch 100 --linger-ms 5 --duration "$1" 2>/dev/null |
        tail -1 | python3 -c 'import json,sys; r=json.load(sys.stdin); print("p50 %.2f ms, p99 %.2f ms" % (r["p50_ms"], r["p99_ms"]))'
}
before_load=$(load 8)
load 6 >"$ROOT/load-during" &
LOAD=$!
restarted=$(date +%s.%N)
start 2
peak=0 t0=$(date +%s)
while [ "$(grep -c 'installed a partition snapshot' "$ROOT/log2" || true)" -lt 4 ] &&
      [ $(( $(date +%s) - t0 )) -lt 120 ]; do
    sleep 0.5
    for i in 0 1; do r=$(rss_mb "${PIDS[$i]}"); [ "$r" -gt "$peak" ] && peak=$r; done
done
wait "$LOAD" || true
echo "produce load (other topic): before the catch-up $before_load; during it $(cat "$ROOT/load-during")"
python3 - "$ROOT/log2" "$restarted" "$MB" "$peak" "$ENGINE" "$TRANSPORT" <<'PY'
import re, sys, datetime
log, restarted, mb, peak, engine, transport = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
def ts(line):
    m = re.search(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z", re.sub(r"\x1b\[[0-9;]*m", "", line))
    return datetime.datetime.fromisoformat(m.group(1)).replace(tzinfo=datetime.timezone.utc).timestamp()
lines = open(log).read().splitlines()
began = [ts(l) for l in lines if "downloading a snapshot" in l]
down = [ts(l) for l in lines if "snapshot downloaded" in l]
inst = [ts(l) for l in lines if "installed a partition snapshot" in l]
if not inst:
    sys.exit(f"no partition installed a snapshot; see {log}")
if len(inst) < 4:
    # A partition whose leader had not compacted past node 3 catches up by
    # entries instead: the figures cover the partitions that installed.
    print(f"note: {len(inst)} of 4 partitions installed a snapshot; the others caught up by entries")
    mb = mb * len(inst) // 4
secs = max(inst) - restarted
print(f"{engine}/{transport}: {mb} MB in 4 partitions caught up by snapshot in {secs:.1f} s "
      f"(last download done {max(down) - restarted:.1f} s after the restart): {mb * 1.048576 / secs:.0f} MB/s; "
      f"leaders' heap (RssAnon) peak {peak} MB")
if began:
    print(f"  phases after the restart: first download asked {min(began) - restarted:.1f} s, "
          f"last downloaded {max(down) - restarted:.1f} s, last installed {secs:.1f} s "
          f"(downloading alone: {mb * 1.048576 / max(max(down) - min(began), 1e-3):.0f} MB/s)")
PY
sleep 2
echo "data directories (MB), node 1/2/3: $(du -sm "$ROOT/d0" | cut -f1)/$(du -sm "$ROOT/d1" | cut -f1)/$(du -sm "$ROOT/d2" | cut -f1)"
