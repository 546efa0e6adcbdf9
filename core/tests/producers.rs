//! Idempotent producers' state is a function of the partition's log that
//! survives a power loss: restored from its checkpoint and the batches after
//! it, or from the Raft log when nothing was flushed, or from the whole
//! partition log when the checkpoint is behind — a retry sent after the
//! restart is still recognised and not stored twice.

use std::sync::Arc;
use std::time::Duration;

use weir_core::batch::{BatchBuilder, set_producer};
use weir_core::memory::MemoryEngine;
use weir_core::pipeline::produce::Acks;
use weir_core::{Engine, Node, PartitionStore, RaftLogStore, StateStore};

mod common;
use common::single_node;

fn idempotent(pid: i64, epoch: i16, seq: i32, n: usize) -> Vec<u8> {
    let mut b = BatchBuilder::new(0);
    for i in 0..n {
        b = b.record(None, Some(format!("v{}", seq as usize + i).as_bytes()));
    }
    let mut b = b.build();
    set_producer(&mut b, pid, epoch, seq);
    b
}

async fn produce(node: &Node, batch: Vec<u8>) -> i64 {
    node.produce("t", 0, &batch, Acks::All, Duration::from_secs(10))
        .await
        .expect("produce")
        .expect("acks=all answers")
        .base_offset
}

async fn start(engine: Arc<dyn Engine>, flush: Duration) -> Node {
    let node = single_node(engine, |c| {
        c.flush_interval = flush;
        c.flush_bytes = u64::MAX;
    })
    .await;
    let _ = node
        .create_topic("t", 1, 1, Default::default(), Duration::from_secs(10))
        .await;
    let g = node.metadata().partition("t", 0).expect("t-0").group;
    node.wait_leader(g, Duration::from_secs(10))
        .await
        .expect("leader");
    node
}

/// Writes batches 0..3 of producer 7 (5 records each), then restarts after a
/// power loss, with `tamper` run on the engine first; a retry of the last batch
/// must get its original offset, and the next batch must follow it.
async fn survives(flush: Duration, tamper: impl FnOnce(&MemoryEngine)) {
    let engine = Arc::new(MemoryEngine::new());
    let node = start(engine.clone(), flush).await;
    for i in 0..3 {
        assert_eq!(
            produce(&node, idempotent(7, 0, i * 5, 5)).await,
            i64::from(i) * 5
        );
    }
    let g = node.metadata().partition("t", 0).expect("t-0").group;
    if flush < Duration::from_secs(60) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while engine.state_get(g).expect("state").is_none() {
            assert!(tokio::time::Instant::now() < deadline, "never checkpointed");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    node.shutdown().await;
    let engine = Arc::new(engine.restart());
    tamper(&engine);
    let node = start(engine.clone(), flush).await;
    assert_eq!(
        produce(&node, idempotent(7, 0, 10, 5)).await,
        10,
        "a retry after the restart"
    );
    assert_eq!(produce(&node, idempotent(7, 0, 15, 5)).await, 15);
    assert!(
        node.produce(
            "t",
            0,
            &idempotent(7, 0, 30, 1),
            Acks::All,
            Duration::from_secs(10)
        )
        .await
        .is_err(),
        "a gap after the restart"
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_state_is_restored_from_its_checkpoint() {
    survives(Duration::from_millis(20), |_| {}).await;
}

/// Nothing flushed: the partition log and the producer state are rebuilt from
/// the Raft log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_state_is_rebuilt_from_the_raft_log() {
    survives(Duration::from_secs(3600), |_| {}).await;
}

/// A checkpoint behind the log (a crash between the log's flush and the
/// checkpoint, here an old one put back): the batches after it are replayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_state_replays_the_log_after_an_old_checkpoint() {
    survives(Duration::from_millis(20), |engine| {
        for g in engine.raft_groups().expect("groups") {
            let old = weir_core::producers::checkpoint(0, &Default::default(), 0).expect("blob");
            let is_partition = engine.log_state(g).is_ok_and(|l| l.next_offset > 0);
            if is_partition {
                engine.state_put(g, &old).expect("put");
            }
        }
    })
    .await;
}

/// The leader stamps each batch's offsets and its term on the entry it
/// proposes (docs/write-path.md), and they are where the batch is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaders_stamp_offsets_on_the_entries_they_propose() {
    let engine = Arc::new(MemoryEngine::new());
    let node = start(engine.clone(), Duration::from_secs(3600)).await;
    let mut answered = Vec::new();
    for i in 0..3 {
        answered.push(produce(&node, idempotent(7, 0, i * 4, 4)).await);
    }
    let plain = BatchBuilder::new(0).record(None, Some(b"plain")).build();
    answered.push(produce(&node, plain).await);
    let g = node.metadata().partition("t", 0).expect("t-0").group;
    let term = node.group_status(g).expect("hosted").term;
    let (first, last) = (
        engine.raft_first_index(g).expect("first"),
        engine.raft_last_index(g).expect("last"),
    );
    let stamped: Vec<(i64, i32)> = engine
        .raft_entries(g, first, last + 1, None)
        .expect("entries")
        .iter()
        .filter(|e| e.data.first() == Some(&weir_core::entry::TAG_PRODUCE_STAMPED))
        .map(|e| {
            let h = weir_core::batch::BatchHeader::parse(&e.data[1..]).expect("batch");
            (h.base_offset, h.leader_epoch)
        })
        .collect();
    let want: Vec<(i64, i32)> = answered.iter().map(|&o| (o, term as i32)).collect();
    assert_eq!(stamped, want);
    assert_eq!(answered, vec![0, 4, 8, 12]);
    node.shutdown().await;
}

/// A partition that only plain producers write still gets a producer-state
/// checkpoint when it flushes, so that a restart reads only the log after it
/// (without one, the restart scanned the whole partition log for idempotent
/// batches: 0.5 s for 10 GiB in `bench/run.sh`'s restart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_partitions_get_a_producer_checkpoint_too() {
    let engine = Arc::new(MemoryEngine::new());
    let node = start(engine.clone(), Duration::from_millis(20)).await;
    let plain = BatchBuilder::new(0).record(None, Some(b"plain")).build();
    for _ in 0..3 {
        produce(&node, plain.clone()).await;
    }
    let g = node.metadata().partition("t", 0).expect("t-0").group;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let blob = loop {
        if let Some(b) = engine.state_get(g).expect("state") {
            break b;
        }
        assert!(tokio::time::Instant::now() < deadline, "never checkpointed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let c = weir_core::checkpoint::decode(g, blob).expect("a checkpoint");
    assert!(c.index >= 1, "{c:?}");
    node.shutdown().await;
}
