#!/usr/bin/env bash
# weir's side-by-side benchmark (see BENCHMARKS.md): in one run on this machine,
#   * the disk's synced sequential write rate (dd oflag=dsync) at 4 KiB and 1 MiB,
#     and one 4 KiB synced write's latency;
#   * weir on one node for each engine: produce 1 KiB and 256 B records (acks=all,
#     4 partitions, one producer), produce latency at low load, consume from the
#     page cache, idle RSS; on the segment engine also RSS with 1,000 partitions and
#     the time to accept produce after a kill -9 with WEIR_BENCH_RESTART_GB of data;
#   * weir on 3 nodes on loopback for each transport;
#   * other brokers when present: tansu (Kafka protocol, same load generator) and
#     NATS JetStream (its own Python client, file-backed stream).
# Results go to bench/results/ as JSON lines; bench/report.py turns them into
# bench/results/table.md and bench/results/chart.svg.
#
#   bench/run.sh                       # everything, 20 s per produce run
#   WEIR_BENCH_SECS=60 bench/run.sh    # longer runs
#   WEIR_BENCH_RESTART_GB=0 …          # skip the restart-with-data measurement
#   WEIR_BENCH_DIR=/data …             # where data directories go (the disk measured)
#   WEIR_BENCH_BIN=old/weir …          # measure this binary instead of building one
#                                      # (before/after comparisons, back to back)
#   WEIR_BENCH_LOGS=/tmp/logs …        # keep the segment node's log of each restart
#   WEIR_BENCH_ENGINES="segment" …     # only these engines on one node (default: all
#                                      # three; a binary built without RocksDB, say)
#   WEIR_BENCH_DROP_CACHES=1 …         # drop clean page-cache pages before each produce run
#                                      # (root): on a VM whose host takes back free
#                                      # guest memory, writes into pages never touched
#                                      # since cost several times more than into pages
#                                      # just freed — BENCHMARKS.md, "Page cache on
#                                      # this VM"; a long-running broker reuses pages
#   WEIR_BENCH_WARM_CACHE=1 …          # before each produce run, fill free memory with
#                                      # clean page-cache pages (a file in the bench
#                                      # directory, written once and read again), so
#                                      # that the run's writes recycle pages as on a
#                                      # long-running host — BENCHMARKS.md, "A warm
#                                      # page cache"; takes a third of the free disk
#                                      # at most
set -euo pipefail
cd "$(dirname "$0")/.."

SECS="${WEIR_BENCH_SECS:-20}"
RESTART_GB="${WEIR_BENCH_RESTART_GB:-10}"
ROOT="$(mktemp -d "${WEIR_BENCH_DIR:-$PWD}/weir-bench.XXXXXX")"
OUT=bench/results
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: >"$RESULTS"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    rm -rf "$ROOT"
}
trap cleanup EXIT

source scripts/deps
if [ -n "${WEIR_BENCH_BIN:-}" ]; then
    WEIR="$WEIR_BENCH_BIN"
    echo "== measuring $WEIR"
else
    echo "== building weir (release, every engine and transport)"
    cargo build -q --release -p weir-server --features "$FEATURES"
    WEIR="${CARGO_TARGET_DIR:-target}/release/weir"
fi

# num EXPR: a bc expression as a JSON number.
num() { printf '%.4f' "$(echo "$1" | bc -l)"; }

# record NAME JSON: one result line, tagged.
record() { printf '{"name":"%s","result":%s}\n' "$1" "$2" >>"$RESULTS"; }

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {
    for _ in $(seq 1 400); do
        if ! port_free "$1"; then return 0; fi
        sleep 0.05
    done
    echo "port $1 never opened" >&2
    return 1
}
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
# Bytes a process caused to be written to storage so far (page-cache writeback
# included): what the disk takes for what it was given.
written_bytes() { awk '/^write_bytes/ {print $2}' "/proc/$1/io"; }

echo "== disk: synced sequential writes in $ROOT"
dd_rate() { # block-size count -> seconds
    local t0 t1
    t0=$(date +%s.%N)
    dd if=/dev/zero of="$ROOT/dd" bs="$1" count="$2" oflag=dsync status=none
    t1=$(date +%s.%N)
    rm -f "$ROOT/dd"
    echo "$t1 - $t0" | bc -l
}
# warm_cache: fills free memory with clean page-cache pages of one file (written
# the first time, read again after), for WEIR_BENCH_WARM_CACHE.
warm_cache() {
    local fill="$ROOT/page-cache-fill" mb disk_mb
    if [ ! -f "$fill" ]; then
        mb=$(awk '/^MemFree:/ {printf "%d", $2 / 1024 - 1024}' /proc/meminfo)
        disk_mb=$(df -Pm "$ROOT" | awk 'NR == 2 {printf "%d", $4 / 3}')
        [ "$disk_mb" -lt "$mb" ] && mb=$disk_mb
        [ "$mb" -gt 0 ] || return 0
        dd if=/dev/zero of="$fill" bs=1M count="$mb" status=none
        sync
    fi
    cat "$fill" >/dev/null
}

# The disk's rates under the same page-cache conditions as the produce runs.
if [ -n "${WEIR_BENCH_WARM_CACHE:-}" ]; then warm_cache; fi
s=$(dd_rate 1M 512)
record disk-1MiB "{\"mb_per_s\":$(num "512*1048576/$s/1000000")}"
s=$(dd_rate 4k 4000)
record disk-4KiB "{\"mb_per_s\":$(num "4000*4096/$s/1000000"),\"write_ms\":$(num "$s*1000/4000")}"
# The same disk under the low-load produce pattern (4 KiB + fdatasync every 10 ms):
# its own p99 is the floor for weir's.
record disk-latency-4KiB "$(python3 bench/disk_latency.py "$ROOT" --seconds "$SECS" --interval-ms 10)"

# start_node NAME ENGINE PORT [extra args…]: a single node in its own directory.
start_node() {
    local name=$1 engine=$2 port=$3
    shift 3
    mkdir -p "$ROOT/$name"
    "$WEIR" serve --engine "$engine" --data-dir "$ROOT/$name/data" \
        --kafka-listen "127.0.0.1:$port" "$@" 2>"$ROOT/$name/log" &
    PIDS+=($!)
    NODE_PID=$!
    wait_port "$port"
}

bench() { # NAME BOOTSTRAP ARGS… (a failed run is reported and recorded, the rest goes on)
    local name=$1 b=$2 out
    shift 2
    echo "   $name"
    if [ -n "${WEIR_BENCH_DROP_CACHES:-}" ] && [ "$1" = produce ]; then
        sync
        echo 1 >/proc/sys/vm/drop_caches
    fi
    if [ -n "${WEIR_BENCH_WARM_CACHE:-}" ] && [ "$1" = produce ]; then
        warm_cache
    fi
    if out=$("$WEIR" bench -b "$b" --json "$@" 2>&1); then
        while read -r line; do record "$name" "$line"; done <<<"$out"
    else
        echo "   $name FAILED: $out" >&2
        record "$name" "{\"failed\":$(printf '%s' "$out" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read()))')}"
    fi
}

# restart_after GIB TOPIC PARTITIONS BATCH NAME: the segment node takes GIB GiB
# into TOPIC (64 KiB records, BATCH per partition per request: a request stays
# under max_request_bytes), is killed with SIGKILL and restarted; records the
# time from spawning `weir serve` until partition 0 takes a produce again.
restart_after() {
    local gib=$1 topic=$2 parts=$3 batch=$4 name=$5 t0 t1 dirty_mib
    "$WEIR" bench -b "$b" produce --json --topic "$topic" --partitions "$parts" --producers 4 \
        --record-size 65536 --batch "$batch" --records $((gib * 16384)) >/dev/null
    kill -9 "$NODE_PID"
    wait "$NODE_PID" 2>/dev/null || true
    # What the killed node left for the kernel to write back: a restart's first
    # fdatasync may wait behind it (ext4 orders a journal commit after the data
    # of the blocks it allocates).
    dirty_mib=$(awk '/^(Dirty|Writeback):/ {s += $2} END {printf "%.1f", s / 1024}' /proc/meminfo)
    t0=$(date +%s.%N)
    "$WEIR" serve --engine segment --data-dir "$ROOT/one-segment/data" \
        --kafka-listen 127.0.0.1:19092 2>>"$ROOT/one-segment/log" &
    PIDS+=($!)
    NODE_PID=$!
    until echo x | "$WEIR" produce "$topic" -b "$b" -p 0 >/dev/null 2>&1; do sleep 0.02; done
    t1=$(date +%s.%N)
    record "$name" "{\"seconds\":$(num "$t1 - $t0"),\"dirty_mib_at_kill\":$dirty_mib}"
    if [ -n "${WEIR_BENCH_LOGS:-}" ]; then cp "$ROOT/one-segment/log" "$WEIR_BENCH_LOGS/$name.log"; fi
}

for engine in ${WEIR_BENCH_ENGINES:-segment rocksdb redb}; do
    echo "== weir, one node, $engine engine"
    start_node "one-$engine" "$engine" 19092
    sleep 1
    record "idle-rss-$engine" "{\"rss_mib\":$(num "$(rss_kib "$NODE_PID")/1024")}"
    b=127.0.0.1:19092
    if [ "$engine" = segment ]; then
        # Before any data: pages of mmap'd segments a node wrote count in its RSS
        # (RssFile), which would measure the data, not the partitions.
        "$WEIR" topics -b $b create many --partitions 1000 --replication 1 >/dev/null
        sleep 5
        record "rss-1000-partitions-segment" "{\"rss_mib\":$(num "$(rss_kib "$NODE_PID")/1024")}"
    fi
    bench "produce-1KiB-$engine" $b produce --topic t1k --partitions 4 --producers 1 \
        --record-size 1024 --batch 1000 --duration "$SECS"
    w0=$(written_bytes "$NODE_PID")
    bench "produce-1KiB-inflight5-$engine" $b produce --topic t1k5 --partitions 4 --producers 1 \
        --record-size 1024 --batch 1000 --in-flight 5 --duration "$SECS"
    # Write amplification: bytes this node wrote to storage (counted when pages
    # are dirtied, so nothing waits in the page cache uncounted) per byte of
    # record values produced in that run.
    w1=$(written_bytes "$NODE_PID")
    produced=$(tail -1 "$RESULTS" | python3 -c 'import json,sys; print(json.load(sys.stdin)["result"].get("bytes", 0))')
    if [ "$produced" != 0 ]; then
        record "write-amplification-$engine" "{\"written_bytes\":$((w1 - w0)),\"produced_bytes\":$produced,\"ratio\":$(num "($w1 - $w0) / $produced")}"
    fi
    bench "produce-256B-$engine" $b produce --topic t256 --partitions 4 --producers 1 \
        --record-size 256 --batch 3500 --duration "$SECS"
    bench "produce-1KiB-4producers-$engine" $b produce --topic t4p --partitions 4 --producers 4 \
        --record-size 1024 --batch 1000 --duration "$SECS"
    bench "latency-$engine" $b produce --topic tlat --partitions 1 --producers 1 \
        --record-size 100 --batch 1 --linger-ms 10 --duration "$SECS"
    bench "consume-$engine" $b consume --topic t1k --partitions 4 --consumers 1
    if [ "$engine" = segment ]; then
        if [ "$RESTART_GB" != 0 ]; then
            echo "   restart with $RESTART_GB GiB in 4 partitions"
            restart_after "$RESTART_GB" big 4 15 "restart-${RESTART_GB}GiB-segment"
            # The first restart's data goes first: the disk holds one at a time.
            "$WEIR" topics -b $b delete big >/dev/null
            echo "   restart with $RESTART_GB GiB in 1,000 partitions"
            restart_after "$RESTART_GB" many 1000 1 "restart-${RESTART_GB}GiB-1000p-segment"
        fi
    fi
    kill "$NODE_PID"
    wait "$NODE_PID" 2>/dev/null || true
    # Tens of GiB per engine: free the disk for the next one.
    rm -rf "$ROOT/one-$engine/data"
done

for transport in grpc tcp; do
    echo "== weir, three nodes on loopback, $transport transport"
    peers=(19192 19193 19194)
    pids=()
    for i in 0 1 2; do
        args=()
        for j in 0 1 2; do
            [ "$i" = "$j" ] || args+=(--peer "$((j + 1))=127.0.0.1:${peers[$j]}")
        done
        mkdir -p "$ROOT/three-$transport"
        "$WEIR" serve --node-id $((i + 1)) --transport "$transport" \
            --data-dir "$ROOT/three-$transport/n$i" --kafka-listen "127.0.0.1:$((19092 + i))" \
            --peer-listen "127.0.0.1:${peers[$i]}" "${args[@]}" 2>"$ROOT/three-$transport/log$i" &
        PIDS+=($!)
        pids+=($!)
    done
    for i in 0 1 2; do wait_port $((19092 + i)); done
    sleep 2
    b=127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094
    bench "three-produce-1KiB-4producers-$transport" $b produce --topic t4p --partitions 4 \
        --producers 4 --record-size 1024 --batch 1000 --duration "$SECS"
    kill "${pids[@]}"
    wait "${pids[@]}" 2>/dev/null || true
    rm -rf "$ROOT/three-$transport"/n*
done

# tansu needs a storage engine compiled in: `cargo install tansu --features dynostore`.
TANSU="${TANSU:-$(command -v tansu || echo /opt/tansu/bin/tansu)}"
if [ -x "$TANSU" ]; then
    echo "== tansu ($("$TANSU" --version 2>/dev/null || echo unknown version))"
    mkdir -p "$ROOT/tansu"
    "$TANSU" broker --listener-url tcp://127.0.0.1:19092 --advertised-listener-url tcp://127.0.0.1:19092 \
        --storage-engine "memory://tansu/" >"$ROOT/tansu/log" 2>&1 &
    PIDS+=($!)
    tpid=$!
    if wait_port 19092; then
        sleep 1
        bench "tansu-produce-1KiB" 127.0.0.1:19092 produce --topic t1k --partitions 4 --producers 1 \
            --record-size 1024 --batch 1000 --duration "$SECS"
        kill "$tpid"
    else
        # The default build of tansu 0.6 has no storage engine compiled in
        # (memory:// needs `--features dynostore`).
        echo "   tansu did not start: $(tail -1 "$ROOT/tansu/log")"
    fi
    wait "$tpid" 2>/dev/null || true
else
    echo "== tansu: not installed (cargo install tansu --features dynostore --root /opt/tansu), skipped"
fi

if command -v nats-server >/dev/null && python3 -c 'import nats' 2>/dev/null; then
    echo "== NATS JetStream ($(nats-server --version))"
    mkdir -p "$ROOT/nats"
    nats-server -js -sd "$ROOT/nats" -p 14222 >"$ROOT/nats/log" 2>&1 &
    PIDS+=($!)
    npid=$!
    wait_port 14222
    python3 bench/nats_bench.py 127.0.0.1:14222 "$SECS" 1024 | while read -r line; do
        record "nats-jetstream-1KiB" "$line"
    done
    kill "$npid"
    wait "$npid" 2>/dev/null || true
else
    echo "== NATS: nats-server or the nats-py client missing (apt-get install nats-server; pip install nats-py), skipped"
fi

python3 bench/report.py "$RESULTS" "$OUT"
echo "== results: $OUT/table.md, $OUT/chart.svg"
