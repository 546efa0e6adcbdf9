//! Producer state through kill -9 and restart (one node): 10,000 idempotent
//! producers write one batch each; the node is killed and restarted; every
//! producer's state is back — DescribeProducers lists all 10,000, and a retry
//! of a batch sent before the kill is answered with its original offset and
//! not stored again; on the segment, redb and (when built in) rocksdb engines.
//! (How long the restart takes is `bench/restart.sh`'s.)

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::time::Duration;

use common::{Cluster, weir};
use weir_core::batch::{BatchBuilder, iter_batches, set_producer};
use weir_server::client::Client;

const PRODUCERS: usize = 10_000;

/// `weir producers describe pr -p 0`: (producer id, epoch, last sequence).
fn described(b: &str) -> Vec<(i64, i16, i32)> {
    let (ok, out) = weir(&["producers", "-b", b, "describe", "pr", "-p", "0"]);
    assert!(ok, "{out}");
    out.lines()
        .skip(1)
        .map(|l| {
            let c: Vec<&str> = l.split_whitespace().collect();
            (
                c[1].parse().unwrap(),
                c[2].parse().unwrap(),
                c[3].parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn ten_thousand_producers_state_survives_kill_9_and_restart() {
    survives("segment");
}

#[cfg(feature = "engine-redb")]
#[test]
fn producer_state_survives_restart_on_redb() {
    survives("redb");
}

#[cfg(feature = "engine-rocksdb")]
#[test]
fn producer_state_survives_restart_on_rocksdb() {
    survives("rocksdb");
}

/// The scenario on one node with `engine`.
fn survives(engine: &str) {
    let mut c = Cluster::start_with(1, "grpc", &format!("engine = \"{engine}\"\n"));
    let b = c.bootstrap(0);
    let (ok, out) = weir(&[
        "bench",
        "producer-ids",
        "-b",
        &b,
        "--topic",
        "pr",
        "--partitions",
        "1",
        "--producers",
        &PRODUCERS.to_string(),
        "--batch",
        "1",
        "--record-size",
        "16",
        "--in-flight",
        "16",
        "--idempotent",
        "--json",
    ]);
    assert!(ok, "{out}");
    let before = described(&b);
    assert_eq!(before.len(), PRODUCERS);
    assert!(
        before.iter().all(|&(_, epoch, seq)| (epoch, seq) == (0, 0)),
        "{before:?}"
    );

    c.kill9(0);
    c.launch(0);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut client = Client::new(&b);
    // The partition is led again once a latest-offset lookup answers.
    let high = rt.block_on(async {
        for _ in 0..300 {
            if let Ok(o) = client.list_offset("pr", 0, -1).await {
                return o;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("pr-0 has no leader 30 s after the restart");
    });
    assert_eq!(high, PRODUCERS as i64);
    assert_eq!(described(&b), before, "producer state after the restart");

    // Retries of batches sent before the kill (same producer, epoch and
    // sequence): each answered with its first copy's offset, nothing stored.
    for &(pid, epoch, _) in before.iter().step_by(997) {
        let mut retry = BatchBuilder::new(0).record(None, Some(b"retry")).build();
        set_producer(&mut retry, pid, epoch, 0);
        let offset = rt.block_on(client.produce("pr", 0, retry.into())).unwrap();
        assert!((0..PRODUCERS as i64).contains(&offset), "{offset}");
        let (records, _) = rt
            .block_on(client.fetch("pr", 0, offset, Duration::ZERO))
            .unwrap();
        let (h, _) = iter_batches(&records).next().unwrap().unwrap();
        assert_eq!((h.base_offset, h.producer_id), (offset, pid));
    }
    assert_eq!(
        rt.block_on(client.list_offset("pr", 0, -1)).unwrap(),
        PRODUCERS as i64,
        "a retry was stored again"
    );
}
