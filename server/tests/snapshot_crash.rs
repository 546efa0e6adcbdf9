//! A follower killed inside a snapshot install (issue 20: "kill -9 during
//! install leaves a consistent replica"). Three `weir serve` processes, the
//! segment engine, `raft_log_max_bytes` = 1 MiB: node 3 is down while 20 MB
//! are written, so it comes back by snapshot; it is started with
//! `WEIR_CRASH_AT` naming a step of the install and aborts there; restarted,
//! it finishes (or redoes) the install and catches up, and its partition log
//! then equals the leader's batch for batch. Needs the `crash-points` feature.

#![cfg(feature = "crash-points")]
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Cluster, weir};
use weir_core::{GroupId, PartitionStore};
use weir_engine_segment::{Config, SegmentEngine};

const RECORDS: u64 = 20_000;

/// The highest offset + 1 of the batches in a partition directory's segment
/// files, read while the node runs (what was written, applied or not).
fn written_end(dir: &Path) -> i64 {
    let mut end = 0;
    let Ok(files) = std::fs::read_dir(dir) else {
        return 0;
    };
    for f in files.flatten() {
        if f.path().extension().is_none_or(|x| x != "log") {
            continue;
        }
        let Ok(data) = std::fs::read(f.path()) else {
            continue;
        };
        let mut at = 4096;
        while at + 61 <= data.len() {
            let base = i64::from_be_bytes(data[at..at + 8].try_into().unwrap());
            let len = i32::from_be_bytes(data[at + 8..at + 12].try_into().unwrap());
            if len <= 0 || at + 12 + len as usize > data.len() {
                break;
            }
            let delta = i32::from_be_bytes(data[at + 23..at + 27].try_into().unwrap());
            end = end.max(base + i64::from(delta) + 1);
            at += 12 + len as usize;
        }
    }
    end
}

/// The data partitions' directories of a node (`partitions/<group>`).
fn partition_dirs(data: &Path) -> Vec<(GroupId, std::path::PathBuf)> {
    let mut v: Vec<_> = std::fs::read_dir(data.join("partitions"))
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.parse::<u64>().ok().map(|g| (GroupId(g), e.path()))
        })
        .collect();
    v.sort();
    v
}

/// Every batch of `g`'s log on the engine over `data`, from its start.
fn log_of(data: &Path, g: GroupId) -> (i64, Vec<Vec<u8>>) {
    let e = SegmentEngine::open(data, Config::default()).unwrap();
    let st = e.log_state(g).unwrap();
    let mut out = Vec::new();
    let mut at = st.start_offset;
    while at < st.next_offset {
        let bytes = e.log_read(g, at, 1 << 20).unwrap();
        assert!(!bytes.is_empty(), "an empty read at {at}");
        for b in weir_core::batch::iter_batches(&bytes) {
            let (h, one) = b.unwrap();
            out.push(one.to_vec());
            at = h.last_offset() + 1;
        }
    }
    (st.next_offset, out)
}

/// One case at a time: three clusters writing 20 MB at once on a small CI
/// machine slow each other past the point of a snapshot.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn crash_inside_install(point: &str) {
    let _one = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // Compaction proposed often, so that the leader has compacted past node 3
    // by the time the writes end (else node 3 catches up by entries).
    let mut c = Cluster::start_with(
        3,
        "tcp",
        "raft_log_max_bytes = 1048576\ncompact_bytes = 65536\ncompact_interval_ms = 100\n",
    );
    let (ok, out) = weir(&[
        "topics",
        "-b",
        &c.all(),
        "create",
        "s",
        "--partitions",
        "1",
        "--replication",
        "3",
    ]);
    assert!(ok, "{out}");
    let bench = |c: &Cluster, records: u64| {
        let (ok, out) = weir(&[
            "bench",
            "-b",
            &c.all(),
            "produce",
            "--topic",
            "s",
            "--partitions",
            "1",
            "--producers",
            "1",
            "--batch",
            "100",
            "--record-size",
            "1000",
            "--records",
            &records.to_string(),
        ]);
        assert!(ok, "{out}");
    };
    bench(&c, 100);
    c.kill9(2);
    bench(&c, RECORDS - 100);
    // Node 3 comes back with a crash point armed: it must get as far as the
    // install, and stop there.
    c.env[2] = vec![("WEIR_CRASH_AT".into(), point.into())];
    c.launch(2);
    let status = c.wait_exit(2, Duration::from_secs(120));
    assert!(
        status.is_some_and(|s| !s.success()),
        "node 3 did not stop at the crash point {point} ({status:?}): it did not install a snapshot"
    );
    // Restarted without it, it completes the install and catches up.
    c.env[2].clear();
    c.launch(2);
    let deadline = Instant::now() + Duration::from_secs(60);
    let target = RECORDS as i64;
    loop {
        let caught_up = partition_dirs(&c.data_dir(2))
            .iter()
            .any(|(_, d)| written_end(d) >= target);
        if caught_up {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 3 did not catch up after {point}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // A last batch, acknowledged by all three (acks=all, three up), so that
    // every replica holds all of the above.
    bench(&c, 100);
    for i in 0..3 {
        c.stop(i);
    }
    // The partition logs as they are durable on each node (applied entries
    // past that are replayed from the Raft log at a start): equal over the
    // range every node holds, and node 3's holds far more than the 100
    // records it had before it went down — the installed snapshot.
    for (g, _) in partition_dirs(&c.data_dir(0)) {
        let logs: Vec<_> = (0..3).map(|i| log_of(&c.data_dir(i), g)).collect();
        if logs[0].0 < target / 2 {
            continue; // not the topic's partition
        }
        assert!(
            logs[2].0 > target / 2,
            "{g}: node 3's log ends at {} after {point}",
            logs[2].0
        );
        let common = logs.iter().map(|l| l.1.len()).min().unwrap();
        for i in 1..3 {
            assert!(
                logs[i].1[..common] == logs[0].1[..common],
                "{g}: node {} differs from node 1 after {point}",
                i + 1
            );
        }
        return;
    }
    panic!("no partition holds the records written");
}

#[test]
fn killed_after_the_install_marker_the_install_is_finished() {
    crash_inside_install("install-marked");
}

#[test]
fn killed_after_the_rename_the_install_is_finished() {
    crash_inside_install("install-renamed");
}

#[test]
fn killed_before_the_raft_log_is_reset_the_replica_is_consistent() {
    crash_inside_install("install-before-raft-reset");
}
