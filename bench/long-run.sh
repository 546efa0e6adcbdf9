#!/usr/bin/env bash
# Disk usage over a long run with retention and a follower down (issue 20's
# long run). Three nodes (segment engine, TCP) on loopback; a topic of 4
# partitions replicated 3 ways with retention.bytes = 256 MiB per partition
# (1 GiB in all) and 64 MiB segments; raft_log_max_bytes = 64 MiB. Node 3 is
# stopped, then WEIR_LONG_MB (5120) of 1 KiB records are produced at a steady
# pace (about 10 minutes); every 30 s each data directory's size is sampled.
# Node 3 restarts and catches up; finally every node's partition logs are
# compared batch by batch (base offsets and CRCs) over the range all of them
# hold.
#
#   bench/long-run.sh BIN
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 1 ] || { echo "usage: bench/long-run.sh BIN" >&2; exit 2; }
BIN="$1"
MB="${WEIR_LONG_MB:-5120}"
LINGER="${WEIR_LONG_LINGER_MS:-40}"
ROOT="$(mktemp -d "${WEIR_BENCH_DIR:-$PWD}/weir-long.XXXXXX")"
PIDS=(0 0 0)
cleanup() {
    for p in "${PIDS[@]}"; do [ "$p" != 0 ] && kill -9 "$p" 2>/dev/null || true; done
    rm -rf "$ROOT"
}
trap cleanup EXIT
KAFKA=(19711 19712 19713)
PEER=(19721 19722 19723)
printf 'raft_log_max_bytes = 67108864\nretention_check_interval_ms = 10000\n' >"$ROOT/weir.toml"

start() { # NODE(0-based)
    local i=$1 args=()
    for j in 0 1 2; do
        [ "$i" = "$j" ] || args+=(--peer "$((j + 1))=127.0.0.1:${PEER[$j]}")
    done
    RUST_LOG=info "$BIN" serve --config "$ROOT/weir.toml" --node-id $((i + 1)) \
        --engine segment --transport tcp --data-dir "$ROOT/d$i" \
        --kafka-listen "127.0.0.1:${KAFKA[$i]}" --peer-listen "127.0.0.1:${PEER[$i]}" \
        "${args[@]}" 2>>"$ROOT/log$i" &
    PIDS[$i]=$!
}
sizes() { for i in 0 1 2; do printf '%s ' "$(du -sm "$ROOT/d$i" | cut -f1)"; done; }

for i in 0 1 2; do start $i; done
until (exec 3<>"/dev/tcp/127.0.0.1/${KAFKA[0]}") 2>/dev/null; do sleep 0.1; done
sleep 2
"$BIN" topics -b "127.0.0.1:${KAFKA[0]}" create long --partitions 4 --replication 3 \
    --config retention.bytes=268435456 --config segment.bytes=67108864 >/dev/null
sleep 2
kill -9 "${PIDS[2]}"; wait "${PIDS[2]}" 2>/dev/null || true; PIDS[2]=0
echo "seconds  node1_MB node2_MB node3_MB (node 3 down)"
t0=$(date +%s)
"$BIN" bench -b "127.0.0.1:${KAFKA[0]}" --json produce --topic long --partitions 4 \
    --producers 4 --record-size 1024 --batch 100 --linger-ms "$LINGER" \
    --records $((MB * 1024)) >"$ROOT/produce.json" 2>/dev/null &
BENCH=$!
while kill -0 "$BENCH" 2>/dev/null; do
    sleep 30
    echo "$(( $(date +%s) - t0 ))  $(sizes)"
done
wait "$BENCH"
echo "produced: $(tail -1 "$ROOT/produce.json")"
restarted=$(date +%s)
start 2
echo "node 3 restarted"
for k in 1 2 3 4 5 6 7 8 9 10 11 12; do
    sleep 10
    echo "$(( $(date +%s) - t0 ))  $(sizes)  (installs on node 3: $(grep -c 'installed a partition snapshot' "$ROOT/log2" || true))"
done
sleep 5
for i in 0 1 2; do kill -TERM "${PIDS[$i]}"; done
for i in 0 1 2; do wait "${PIDS[$i]}" 2>/dev/null || true; PIDS[$i]=0; done
echo "after a clean stop: $(sizes)"
python3 - "$ROOT" <<'PY'
import os, struct, sys, zlib
root = sys.argv[1]
def batches(pdir):
    out = {}
    for f in sorted(os.listdir(pdir)):
        if not f.endswith(".log"):
            continue
        data = open(os.path.join(pdir, f), "rb").read()
        at = 4096
        while at + 61 <= len(data):
            base, length = struct.unpack(">qi", data[at:at + 12])
            if length <= 0 or at + 12 + length > len(data):
                break
            last = base + struct.unpack(">i", data[at + 23:at + 27])[0]
            crc = struct.unpack(">I", data[at + 17:at + 21])[0]
            out[base] = (last, crc)
            at += 12 + length
    return out
ok = True
for g in sorted(os.listdir(os.path.join(root, "d0", "partitions"))):
    if "." in g:
        continue
    logs = [batches(os.path.join(root, f"d{i}", "partitions", g)) for i in range(3)]
    lo = max(min(l) for l in logs if l)
    hi = min(max(l) for l in logs if l)
    views = [{b: v for b, v in l.items() if lo <= b <= hi} for l in logs]
    same = views[0] == views[1] == views[2]
    ok &= same
    print(f"group {int(g)}: batches {lo}..{hi} on every node: {len(views[0])} batches, identical on all three: {same}")
print("data identical" if ok else "DATA DIFFERS")
PY
