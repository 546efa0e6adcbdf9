//! Faults against real `weir serve` processes on 127.0.0.1, checked by the history
//! checker: producers write unique values with acks=all while a seeded schedule
//! kills (SIGKILL) the leader, a random node or every node, pauses nodes
//! (SIGSTOP/SIGCONT), restarts them, partitions the network (every peer link runs
//! through a proxy the test can cut: one node isolated, a minority split from the
//! majority, a "bridge" node reaching two sides that cannot reach each other) and
//! skews a node's clock (libfaketime), and changes the cluster's membership
//! ([`fault_members`]: nodes join, joined nodes are drained and removed,
//! partitions move to other replicas); a consumer reads along; after healing, a
//! drain reads every partition from the start. Clusters of 3 and of 5 nodes. The run must
//! show no lost, moved, unexpected or inconsistent data and no gaps. Members of a
//! consumer group read along too ([`fault_group`]): together they must read every
//! acknowledged record, and the group's committed offsets must never go back.
//!
//! CI runs a short seeded run; `WEIR_FAULT_SECS=1800 WEIR_FAULT_SEED=7 cargo test
//! --release -p weir-server --test faults -- --nocapture` runs a long one, and
//! `WEIR_FAULTS=0` the same workload without faults (the baseline for acks/s and
//! latency).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;
mod fault_group;
mod fault_members;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::Cluster;
use parking_lot::Mutex;
use rand::{Rng, SeedableRng, rngs::StdRng};
use weir_conformance::history::{self, History, Read, Write, WriteOutcome};
use weir_core::batch::{BatchBuilder, decode_records, iter_batches};
use weir_server::client::Client;

const PARTITIONS: i32 = 2;
const DRAIN: u32 = 999;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Stats {
    latencies_ms: Vec<u64>,
}

/// Producers 0 and 1 are idempotent (their retries must never store a value
/// twice); producer 2 is not, so that both paths stay tested.
fn idempotent(id: u64) -> bool {
    id < 2
}

async fn producer(
    id: u64,
    bootstrap: String,
    stop: Arc<std::sync::atomic::AtomicBool>,
    hist: Arc<Mutex<History>>,
    stats: Arc<Mutex<Stats>>,
) {
    let mut seq = 0u64;
    let mut client = Client::new(&bootstrap);
    // (producer id, epoch) and the next sequence of each partition.
    let mut session: Option<(i64, i16)> = None;
    let mut sequences = [0i32; PARTITIONS as usize];
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        if idempotent(id) && session.is_none() {
            match tokio::time::timeout(Duration::from_secs(5), client.init_producer_id(None)).await
            {
                Ok(Ok(s)) => {
                    session = Some(s);
                    sequences = [0; PARTITIONS as usize];
                }
                _ => {
                    client = Client::new(&bootstrap);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            }
        }
        let value = (id << 40) | seq;
        seq += 1;
        let partition = (seq % PARTITIONS as u64) as i32;
        let mut batch = BatchBuilder::new(weir_core::batch::now_ms())
            .record(None, Some(&value.to_be_bytes()))
            .build();
        if let Some((pid, epoch)) = session {
            let s = &mut sequences[partition as usize];
            weir_core::batch::set_producer(&mut batch, pid, epoch, *s);
            *s = s.wrapping_add(1);
        }
        let batch = Bytes::from(batch);
        let started = Instant::now();
        let r = tokio::time::timeout(
            Duration::from_secs(10),
            client.produce("f", partition, batch),
        )
        .await;
        let outcome = match r {
            Ok(Ok(offset)) => {
                stats
                    .lock()
                    .latencies_ms
                    .push(started.elapsed().as_millis() as u64);
                WriteOutcome::Ok { partition, offset }
            }
            // The client retries errors it can explain; what is left is ambiguous.
            // An idempotent producer cannot know where its sequence stands: it
            // starts over as a new producer.
            Ok(Err(_)) | Err(_) => {
                client = Client::new(&bootstrap);
                session = None;
                WriteOutcome::TimedOut
            }
        };
        hist.lock().writes.push(Write { value, outcome });
    }
}

/// Reads every partition from `next` to the end, recording what it reads.
async fn read_all(
    client: &mut Client,
    consumer: u32,
    hist: &Mutex<History>,
    next: &mut [i64],
) -> anyhow::Result<()> {
    for p in 0..PARTITIONS {
        read_partition(client, consumer, hist, next, p).await?;
    }
    Ok(())
}

/// Reads one partition from `next[p]` to its end.
async fn read_partition(
    client: &mut Client,
    consumer: u32,
    hist: &Mutex<History>,
    next: &mut [i64],
    p: i32,
) -> anyhow::Result<()> {
    {
        loop {
            let (records, high) = client
                .fetch("f", p, next[p as usize], Duration::ZERO)
                .await?;
            for b in iter_batches(&records) {
                let (_, bytes) = b?;
                for r in decode_records(bytes)? {
                    if r.offset < next[p as usize] {
                        continue;
                    }
                    let v = u64::from_be_bytes(
                        r.value.unwrap_or_default().try_into().unwrap_or([0; 8]),
                    );
                    hist.lock().reads.push(Read {
                        consumer,
                        partition: p,
                        offset: r.offset,
                        value: v,
                    });
                    next[p as usize] = r.offset + 1;
                }
            }
            if next[p as usize] >= high {
                break;
            }
        }
    }
    Ok(())
}

#[test]
fn faults_keep_acknowledged_writes() {
    run_faults(3);
}

#[test]
fn faults_keep_acknowledged_writes_five_nodes() {
    run_faults(5);
}

/// libfaketime's preload library, when installed (`scripts/deps` installs it).
fn libfaketime() -> Option<String> {
    [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/faketime/libfaketime.so.1",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())
    .map(str::to_string)
}

/// `k` distinct nodes of `0..n`, shuffled.
fn pick(rng: &mut StdRng, n: usize, k: usize) -> Vec<usize> {
    let mut all: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        all.swap(i, rng.gen_range(0..=i));
    }
    all.truncate(k);
    all
}

/// The fault run on `n` nodes; see the module docs. `WEIR_FAULT_SECS` (default 30),
/// `WEIR_FAULT_SEED` (default 42), `WEIR_FAULTS=0` for the no-fault baseline.
fn run_faults(n: usize) {
    let secs = env_u64("WEIR_FAULT_SECS", 30);
    let seed = env_u64("WEIR_FAULT_SEED", 42);
    // The metadata log is checkpointed and compacted often, and partition
    // Raft logs stop waiting for a replica 1 MiB behind, so that nodes killed
    // or cut off come back by snapshot.
    let mut c = Cluster::start_proxied_with(
        n,
        "grpc",
        "metadata_checkpoint_entries = 20\nmetadata_keep_entries = 5\nraft_log_max_bytes = 1048576\n",
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut admin = Client::new(&c.bootstrap(0));
        admin.create_topic("f", PARTITIONS, 3, &[]).await.unwrap();
    });
    let hist = Arc::new(Mutex::new(History {
        drain: DRAIN,
        ..History::default()
    }));
    let stats = Arc::new(Mutex::new(Stats {
        latencies_ms: Vec::new(),
    }));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let producers: Vec<_> = (0..3u64)
        .map(|id| {
            rt.spawn(producer(
                id,
                c.all(),
                stop.clone(),
                hist.clone(),
                stats.clone(),
            ))
        })
        .collect();
    // A consumer reading along (its reads are checked for gaps and consistency).
    let consumer = {
        let (hist, stop, bootstrap) = (hist.clone(), stop.clone(), c.all());
        rt.spawn(async move {
            let mut client = Client::new(&bootstrap);
            let mut next = vec![0i64; PARTITIONS as usize];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if read_all(&mut client, 1, &hist, &mut next).await.is_err() {
                    client = Client::new(&bootstrap);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    // Members of a consumer group reading along, and a sampler of its commits.
    let group_log = Arc::new(Mutex::new(fault_group::GroupLog::default()));
    let group_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut group_tasks: Vec<_> = (0..2)
        .map(|_| {
            rt.spawn(fault_group::member(
                c.all(),
                group_stop.clone(),
                group_log.clone(),
            ))
        })
        .collect();
    group_tasks.push(rt.spawn(fault_group::sampler(
        c.all(),
        group_stop.clone(),
        group_log.clone(),
    )));
    // The fault schedule.
    let mut rng = StdRng::seed_from_u64(seed);
    let mut faults: std::collections::BTreeMap<&str, usize> = Default::default();
    let mut restarts = 0usize;
    let faketime = libfaketime();
    if faketime.is_none() {
        eprintln!("fault run: libfaketime is not installed; no clock-skew faults");
    }
    let deadline = Instant::now() + Duration::from_secs(secs);
    // WEIR_FAULTS=0 runs the same workload without faults, as the baseline.
    let inject = env_u64("WEIR_FAULTS", 1) != 0;
    let minority = (n - 1) / 2;
    let mut members = fault_members::Members::default();
    let mut first = true;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(rng.gen_range(500..1500)));
        if !inject {
            continue;
        }
        members.poll(&rt, &mut c, false);
        let running = members.running(&c);
        let restartable = members.restartable(&c);
        // The first fault adds a node, so that the others meet a joined one.
        let kind = if first { 8 } else { rng.gen_range(0..11) };
        first = false;
        let heal_after = |rng: &mut StdRng, c: &Cluster| {
            std::thread::sleep(Duration::from_millis(rng.gen_range(500..3000)));
            c.heal();
        };
        let victim = match kind {
            0 => {
                *faults.entry("kill -9 leader").or_default() += 1;
                c.leader("f") - 1
            }
            1 => {
                *faults.entry("kill -9 random").or_default() += 1;
                running[rng.gen_range(0..running.len())]
            }
            2 => {
                *faults.entry("pause (SIGSTOP)").or_default() += 1;
                let v = running[rng.gen_range(0..running.len())];
                c.signal(v, "-STOP");
                std::thread::sleep(Duration::from_millis(rng.gen_range(300..1500)));
                c.signal(v, "-CONT");
                continue;
            }
            3 => {
                *faults.entry("kill -9 all, restart").or_default() += 1;
                for &i in &running {
                    c.kill9(i);
                }
                for &i in &restartable {
                    c.launch(i);
                    restarts += 1;
                }
                continue;
            }
            4 => {
                // One node cut off from all others.
                *faults.entry("partition: isolate a node").or_default() += 1;
                c.isolate(rng.gen_range(0..n));
                heal_after(&mut rng, &c);
                continue;
            }
            5 => {
                // A minority (1 of 3, 2 of 5) split from the majority.
                *faults.entry("partition: majority/minority").or_default() += 1;
                let order = pick(&mut rng, n, n);
                c.cut_between(&order[..minority], &order[minority..]);
                heal_after(&mut rng, &c);
                continue;
            }
            6 => {
                // A bridge: two sides that cannot reach each other, and one node
                // that reaches both — overlapping majorities.
                *faults.entry("partition: bridge").or_default() += 1;
                let order = pick(&mut rng, n, n);
                let (left, rest) = order.split_at((n - 1) / 2);
                let right = &rest[1..];
                c.cut_between(left, right);
                heal_after(&mut rng, &c);
                continue;
            }
            8 => {
                if members.add(&mut c) {
                    *faults.entry("membership: add a node").or_default() += 1;
                }
                continue;
            }
            9 => {
                if members.start_removal(&rt, &c, &mut rng) {
                    *faults.entry("membership: remove a node").or_default() += 1;
                }
                continue;
            }
            10 => {
                *faults
                    .entry("membership: reassign a partition")
                    .or_default() += 1;
                members.reassign(&rt, &c, &mut rng, "f", PARTITIONS);
                continue;
            }
            _ => {
                // Clock skew: restart a node with its clocks offset by libfaketime
                // (it stays skewed across its restarts; skewing it again resets it).
                let Some(lib) = faketime.as_ref() else {
                    continue;
                };
                *faults.entry("clock skew (libfaketime)").or_default() += 1;
                let v = restartable[rng.gen_range(0..restartable.len())];
                if c.env[v].is_empty() {
                    let skew = rng.gen_range(1..600) * if rng.gen_bool(0.5) { 1 } else { -1 };
                    c.env[v] = vec![
                        ("LD_PRELOAD".into(), lib.clone()),
                        ("FAKETIME".into(), format!("{skew:+}s")),
                    ];
                } else {
                    c.env[v].clear();
                }
                v
            }
        };
        if c.is_up(victim) {
            c.kill9(victim);
        }
        std::thread::sleep(Duration::from_millis(rng.gen_range(200..1000)));
        if restartable.contains(&victim) {
            c.launch(victim);
            restarts += 1;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    rt.block_on(async {
        for p in producers {
            let _ = p.await;
        }
        let _ = consumer.await;
    });
    // Heal, let a removal under way end, then drain every partition from
    // the start.
    c.heal();
    members.poll(&rt, &mut c, true);
    c.wait_brokers(members.brokers(&c));
    rt.block_on(async {
        let mut client = Client::new(&c.all());
        let mut next = vec![0i64; PARTITIONS as usize];
        let deadline = Instant::now() + Duration::from_secs(60);
        while let Err(e) = read_all(&mut client, DRAIN, &hist, &mut next).await {
            assert!(Instant::now() < deadline, "drain failed: {e}");
            client = Client::new(&c.all());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let group_anomalies = rt.block_on(finish_group(&c, &hist, group_stop, group_tasks, &group_log));
    let report = history::check(&hist.lock());
    let (idempotent_duplicates, plain_duplicates) = duplicates_by_producer_kind(&hist.lock());
    let mut lat = stats.lock().latencies_ms.clone();
    lat.sort_unstable();
    let p99 = lat.get(lat.len() * 99 / 100).copied().unwrap_or(0);
    eprintln!(
        "fault run: {n} nodes, seed {seed}, {secs} s, faults {faults:?}, node restarts {restarts}"
    );
    eprintln!("fault run: membership changes {:?}", members.outcomes);
    eprintln!(
        "fault run: {report}; acks/s {:.0}, p99 latency {p99} ms",
        report.acknowledged as f64 / secs as f64
    );
    eprintln!(
        "fault run: duplicates from idempotent producers {idempotent_duplicates}, from the plain one {plain_duplicates}"
    );
    assert!(report.acknowledged > 0, "nothing was acknowledged");
    assert!(report.is_valid(), "anomalies: {report:?}");
    assert_eq!(
        idempotent_duplicates, 0,
        "an idempotent producer's retry was stored twice"
    );
    assert!(
        group_anomalies.is_empty(),
        "consumer group anomalies: {group_anomalies:?}"
    );
}

/// Extra copies of values in the drain, from idempotent producers and from
/// the plain one.
fn duplicates_by_producer_kind(h: &History) -> (usize, usize) {
    let mut copies: std::collections::HashMap<u64, usize> = Default::default();
    for r in h.reads.iter().filter(|r| r.consumer == DRAIN) {
        *copies.entry(r.value).or_default() += 1;
    }
    let (mut idem, mut plain) = (0, 0);
    for (v, n) in copies {
        if n > 1 {
            if idempotent(v >> 40) {
                idem += n - 1;
            } else {
                plain += n - 1;
            }
        }
    }
    (idem, plain)
}

/// Lets the group's members catch up with every partition's end once the
/// faults are over, stops them, and checks the group's log against what was
/// acknowledged.
async fn finish_group(
    c: &Cluster,
    hist: &Mutex<History>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    log: &Mutex<fault_group::GroupLog>,
) -> Vec<String> {
    let mut client = Client::new(&c.all());
    let mut ends = std::collections::BTreeMap::new();
    for p in 0..PARTITIONS {
        ends.insert(p, client.list_offset("f", p, -1).await.unwrap());
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    let committed = loop {
        let now: Result<std::collections::BTreeMap<i32, i64>, String> = client
            .committed_offsets(fault_group::GROUP)
            .await
            .map(|o| o.into_iter().map(|(_, p, o)| (p, o)).collect())
            .map_err(|e| e.to_string());
        if let Ok(now) = &now
            && ends.iter().all(|(p, e)| now.get(p).is_some_and(|o| o >= e))
        {
            break now.clone();
        }
        if now.is_err() {
            client = Client::new(&c.all());
        }
        assert!(
            Instant::now() < deadline,
            "the group did not catch up: committed {now:?}, ends {ends:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let acknowledged: Vec<(i32, i64, u64)> = hist
        .lock()
        .writes
        .iter()
        .filter_map(|w| match w.outcome {
            WriteOutcome::Ok { partition, offset } => Some((partition, offset, w.value)),
            _ => None,
        })
        .collect();
    let log = log.lock();
    eprintln!(
        "fault run: consumer group read {} values, {} commits, committed {committed:?}",
        log.read.len(),
        log.commits
    );
    fault_group::check(&log, &acknowledged, &committed)
}

/// The negative control: with the leadership check bypassed (a test-only switch),
/// followers accept writes and report offsets they never assigned. The checker
/// must see it — a checker that cannot fail proves nothing. Needs the binary built
/// with the `negative-controls` feature (CI's features include it).
#[cfg(feature = "negative-controls")]
#[test]
fn negative_control_bypassed_leader_check_is_caught() {
    let c = Cluster::start_with(3, "grpc", "unsafe_bypass_leader_check = true\n");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        Client::new(&c.bootstrap(0))
            .create_topic("f", 1, 3, &[])
            .await
            .unwrap();
    });
    let leader = c.leader("f");
    let hist = Arc::new(Mutex::new(History {
        drain: DRAIN,
        ..History::default()
    }));
    rt.block_on(async {
        let mut tasks = Vec::new();
        for node in 1..=3usize {
            let (hist, addr) = (hist.clone(), c.bootstrap(node - 1));
            tasks.push(tokio::spawn(async move {
                let mut client = Client::new(&addr);
                for seq in 0..300u64 {
                    let value = ((node as u64) << 40) | seq;
                    let batch = Bytes::from(
                        BatchBuilder::new(weir_core::batch::now_ms())
                            .record(None, Some(&value.to_be_bytes()))
                            .build(),
                    );
                    let outcome = match client.produce_to(&addr, "f", 0, batch).await {
                        Ok(Ok(offset)) => WriteOutcome::Ok {
                            partition: 0,
                            offset,
                        },
                        _ => WriteOutcome::Failed,
                    };
                    hist.lock().writes.push(Write { value, outcome });
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let mut client = Client::new(&c.all());
        let mut next = vec![0i64; PARTITIONS as usize];
        read_partition(&mut client, DRAIN, &hist, &mut next, 0)
            .await
            .unwrap();
    });
    let report = history::check(&hist.lock());
    eprintln!("negative control (leader {leader}): {report}");
    assert!(report.acknowledged > 0);
    assert!(
        !report.is_valid(),
        "the checker missed acknowledgements from followers: {report}"
    );
}

/// The consumer group checks' negative control: a coordinator that keeps
/// committed offsets only in its memory (a test-only switch) loses them when
/// its node is killed; members that join afterwards start over, and the
/// group's committed offsets go back — which the group check must report.
#[cfg(feature = "negative-controls")]
#[test]
fn negative_control_group_offsets_in_memory_are_caught() {
    let mut c = Cluster::start_with(
        3,
        "grpc",
        "unsafe_group_offsets_in_memory = true\ngroup_partitions = 1\n",
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut admin = Client::new(&c.bootstrap(0));
        admin.create_topic("f", PARTITIONS, 3, &[]).await.unwrap();
    });
    let hist = Arc::new(Mutex::new(History::default()));
    let stats = Arc::new(Mutex::new(Stats {
        latencies_ms: Vec::new(),
    }));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let producer = rt.spawn(producer(0, c.all(), stop.clone(), hist.clone(), stats));
    let log = Arc::new(Mutex::new(fault_group::GroupLog::default()));
    let all = c.all();
    let start_members = |stop: &Arc<std::sync::atomic::AtomicBool>| -> Vec<_> {
        let mut tasks: Vec<_> = (0..2)
            .map(|_| rt.spawn(fault_group::member(all.clone(), stop.clone(), log.clone())))
            .collect();
        tasks.push(rt.spawn(fault_group::sampler(all.clone(), stop.clone(), log.clone())));
        tasks
    };
    let first_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let first = start_members(&first_stop);
    let deadline = Instant::now() + Duration::from_secs(60);
    while log
        .lock()
        .committed
        .values()
        .map(|v| v.last().copied().unwrap_or(0))
        .sum::<i64>()
        < 200
    {
        assert!(Instant::now() < deadline, "the group never committed");
        std::thread::sleep(Duration::from_millis(100));
    }
    first_stop.store(true, std::sync::atomic::Ordering::Relaxed);
    rt.block_on(async {
        for t in first {
            let _ = t.await;
        }
    });
    let coordinator = c.leader("__consumer_offsets");
    c.kill9(coordinator - 1);
    c.launch(coordinator - 1);
    let second_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let second = start_members(&second_stop);
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = rt.block_on(producer);
    c.wait_brokers(3);
    let anomalies = rt.block_on(finish_group(&c, &hist, second_stop, second, &log));
    eprintln!("negative control (group offsets in memory): {anomalies:?}");
    assert!(
        anomalies
            .iter()
            .any(|a| a.contains("went back") || a.contains("below the commit")),
        "the group check missed commits that were lost: {anomalies:?}"
    );
}
