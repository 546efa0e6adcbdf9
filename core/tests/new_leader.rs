//! A new leader and what it has not applied yet (KIP-207): until it has applied
//! an entry of its own term, the entries before it may be committed — and
//! acknowledged by an earlier leader — without being in its partition log, so
//! the latest offset it could answer may be older than one clients have seen.
//! It answers OFFSET_NOT_AVAILABLE (retriable) instead (DeleteRecords too), and a
//! fetch at the end clients know waits rather than being told the offset is out
//! of range.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use weir_core::batch::BatchBuilder;
use weir_core::eraftpb::Entry;
use weir_core::memory::MemoryEngine;
use weir_core::{Error, Node, NodeConfig, OffsetSpec, PartitionStore, RaftLogStore};

mod common;

/// Batches produced before the restart, and entries left after them.
const PRODUCED: i64 = 20;
const LEFT: u64 = 5;
/// No group.
const NONE: u64 = u64::MAX;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_answers_offsets_only_once_it_has_caught_up() {
    // The group whose next Raft-log write is synced 1.5 s late: the new leader's
    // first entry then stays uncommitted that long.
    let slow = Arc::new(AtomicU64::new(NONE));
    let delay_sync = Arc::new(AtomicBool::new(false));
    let mut engine = common::Hooked::new(MemoryEngine::new());
    let (s, d) = (slow.clone(), delay_sync.clone());
    engine.before_raft_append = Box::new(move |group| {
        if s.compare_exchange(group.0, NONE, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            d.store(true, Ordering::Relaxed);
        }
        Ok(())
    });
    let d = delay_sync.clone();
    engine.before_raft_sync = Box::new(move || {
        if d.swap(false, Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(1500));
        }
        Ok(())
    });
    let engine = Arc::new(engine);
    let node = common::single_node(engine.clone(), |_| {}).await;
    node.create_topic("t", 1, 1, Default::default(), Duration::from_secs(10))
        .await
        .expect("topic created");
    for _ in 0..PRODUCED {
        common::produce_eventually(&node, "t")
            .await
            .expect("produce");
    }
    let group = node.metadata().partition("t", 0).expect("partition").group;
    node.shutdown().await;
    assert_eq!(
        engine.log_state(group).expect("state").next_offset,
        PRODUCED
    );

    // What kill -9 can leave: entries the leader wrote, committed, applied and
    // acknowledged, while neither the commit index saying so nor the partition
    // log's copy reached the disk: five produce entries of the last term.
    let last = engine.raft_last_index(group).expect("last index");
    let term = engine.raft_term(group, last).expect("term");
    let mut data = vec![weir_core::entry::TAG_PRODUCE];
    data.extend_from_slice(&BatchBuilder::new(0).record(None, Some(b"v")).build());
    let left: Vec<Entry> = (1..=LEFT)
        .map(|i| Entry {
            index: last + i,
            term,
            data: data.clone().into(),
            ..Entry::default()
        })
        .collect();
    engine.raft_append(group, &left).expect("append");
    engine.raft_sync().expect("sync");
    let end = PRODUCED + LEFT as i64;

    slow.store(group.0, Ordering::Relaxed);
    let mut cfg = NodeConfig::new(1, vec![1], "127.0.0.1:9092");
    cfg.tick = Duration::from_millis(10);
    let node = Node::start(cfg, engine.clone(), Arc::new(common::Nobody)).expect("starts");
    let (answer, not_ready) = latest_once_led(&node).await;
    assert_eq!(
        answer, end,
        "the latest offset answered after the restart (clients had seen {end})"
    );
    assert!(
        not_ready > 0,
        "the new leader was never seen before catching up: the test did not test"
    );
    node.shutdown().await;
}

/// Asks for `t`-0's latest offset every 5 ms until a leader answers; the answer,
/// and how many times the leader said it had not caught up. Meanwhile neither a
/// fetch at the offset clients reached nor DeleteRecords up to it may be told it
/// is out of range.
async fn latest_once_led(node: &Node) -> (i64, usize) {
    let end = PRODUCED + LEFT as i64;
    let mut not_ready = 0;
    for _ in 0..2000 {
        match node.list_offset("t", 0, OffsetSpec::Latest) {
            Ok(Some(o)) => return (o, not_ready),
            Ok(None) => panic!("no latest offset"),
            Err(Error::LeaderNotReady(_)) => {
                not_ready += 1;
                let fetched = node
                    .fetch("t", 0, end, 1 << 20, Duration::ZERO, 1)
                    .await
                    .expect("a fetch at the end clients reached");
                assert!(fetched.records.is_empty() || fetched.high_watermark == end);
                // Nor is DeleteRecords up to that end.
                match node
                    .delete_records("t", 0, end, Duration::from_secs(5))
                    .await
                {
                    Ok(_) | Err(Error::LeaderNotReady(_)) => {}
                    Err(e) => panic!("DeleteRecords to the end clients reached: {e}"),
                }
            }
            Err(Error::NotLeader { .. } | Error::NotFound(_)) => {}
            Err(e) => panic!("{e}"),
        }
        assert_eq!(node.fatal_error(), None);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("t-0 had no leader 10 s after the restart");
}
