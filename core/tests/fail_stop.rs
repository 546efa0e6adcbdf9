//! Fail-stop (DESIGN.md §10): a panic in a task that owns node state stops the node
//! with the cause, instead of leaving it running without the task; and what a peer
//! sends cannot stop a node (a Raft snapshot, which weir installs none of yet, is
//! refused and the node keeps serving).

use std::sync::Arc;
use std::time::Duration;

use weir_core::eraftpb::{ConfState, Message, MessageType, Snapshot, SnapshotMetadata};
use weir_core::memory::MemoryEngine;
use weir_core::node::recover::accept_loss;

mod common;
use weir_core::{
    Engine, Error, GroupId, GroupMessage, Node, NodeConfig, PartitionStore, RaftLogStore,
};

/// The memory engine, except that reading a term of any partition group's Raft log
/// reports corruption — what raft-rs cannot handle but by panicking.
fn corrupt_partition_terms() -> common::Hooked {
    let mut engine = common::Hooked::new(MemoryEngine::new());
    engine.before_raft_term = Box::new(|group| {
        if group == GroupId::METADATA {
            Ok(())
        } else {
            Err(Error::Corrupt(format!("{group}: a damaged Raft log")))
        }
    });
    engine
}

use common::Nobody;

/// A single node on `engine`.
async fn single_node(engine: Arc<dyn Engine>) -> Node {
    common::single_node(engine, |_| {}).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_starting_a_group_stops_the_node_with_its_cause() {
    let node = single_node(Arc::new(corrupt_partition_terms())).await;
    // Hosting the new partition makes raft-rs read a term, which fails: it panics.
    let _ = node
        .create_topic("t", 1, 1, Default::default(), Duration::from_secs(10))
        .await;
    let why = tokio::time::timeout(Duration::from_secs(10), node.wait_fatal())
        .await
        .expect("the node stopped within 10 s");
    assert!(why.contains("panicked"), "{why}");
    assert!(
        why.contains("damaged Raft log"),
        "the cause is named: {why}"
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_from_a_peer_is_refused_without_stopping_the_node() {
    let engine = Arc::new(MemoryEngine::new());
    let node = single_node(engine).await;
    node.create_topic("t", 1, 1, Default::default(), Duration::from_secs(10))
        .await
        .expect("topic created");
    common::produce_eventually(&node, "t")
        .await
        .expect("first produce");
    let group = node.metadata().partition("t", 0).expect("partition").group;
    let term = node.group_status(group).expect("hosted").term;

    // A snapshot from "node 2" in a later term, far past the local log.
    let mut meta = SnapshotMetadata {
        index: 1_000,
        term: term + 1,
        ..SnapshotMetadata::default()
    };
    meta.set_conf_state(ConfState {
        voters: vec![1, 2],
        ..ConfState::default()
    });
    let mut snapshot = Snapshot::default();
    snapshot.set_metadata(meta);
    let mut msg = Message {
        msg_type: MessageType::MsgSnapshot,
        from: 2,
        to: 1,
        term: term + 1,
        ..Message::default()
    };
    msg.set_snapshot(snapshot);
    node.inbound().deliver(
        2,
        vec![GroupMessage {
            group,
            msg: msg.clone(),
        }],
    );
    // The metadata group installs snapshots, but not one whose data does not
    // decode.
    msg.mut_snapshot().data = vec![1, 0xff, 0xff, 0xff].into();
    node.inbound().deliver(
        2,
        vec![GroupMessage {
            group: GroupId::METADATA,
            msg,
        }],
    );

    // The node still serves the partition and changes metadata, and never
    // stopped.
    common::produce_eventually(&node, "t")
        .await
        .expect("produce after the snapshot");
    node.create_topic("t2", 1, 1, Default::default(), Duration::from_secs(10))
        .await
        .expect("metadata after the snapshot");
    assert_eq!(node.fatal_error(), None);
    node.shutdown().await;
}

/// A partition log lost after its Raft log was compacted (a removed directory or
/// table) stops the node at start with the loss named, instead of serving the
/// partition empty from offset 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_log_lost_after_compaction_stops_the_node_at_start() {
    let engine = Arc::new(MemoryEngine::new());
    let mut cfg = NodeConfig::new(1, vec![1], "127.0.0.1:9092");
    cfg.tick = Duration::from_millis(10);
    cfg.flush_interval = Duration::from_millis(20);
    cfg.compact_interval = Duration::from_millis(20);
    let node = Node::start(cfg.clone(), engine.clone(), Arc::new(Nobody)).expect("starts");
    node.wait_leader(GroupId::METADATA, Duration::from_secs(10))
        .await
        .expect("metadata leader");
    // The topic needs a registered broker (a leader is not enough).
    while node.metadata().brokers.is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    node.create_topic("t", 1, 1, Default::default(), Duration::from_secs(10))
        .await
        .expect("topic created");
    for _ in 0..20 {
        common::produce_eventually(&node, "t")
            .await
            .expect("produce");
    }
    let group = node.metadata().partition("t", 0).expect("partition").group;
    // Wait until the partition's Raft log is compacted (its log flushed first).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while engine.raft_first_index(group).expect("first index") <= 2 {
        assert!(tokio::time::Instant::now() < deadline, "never compacted");
        common::produce_eventually(&node, "t")
            .await
            .expect("produce");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    node.shutdown().await;
    // The partition's data is lost; its Raft state is not.
    engine.log_remove(group).expect("remove");

    let node = Node::start(cfg.clone(), engine.clone(), Arc::new(Nobody)).expect("starts");
    let why = tokio::time::timeout(Duration::from_secs(10), node.wait_fatal())
        .await
        .expect("the node stopped within 10 s");
    assert!(
        why.contains("corrupt data")
            && why.contains("compacted through")
            && why.contains(&format!("weir recover --accept-loss {group}")),
        "{why}"
    );
    node.shutdown().await;

    // The operator accepts the loss: the group starts again and takes produce, at
    // the offsets after what remains (nothing, here).
    let first = engine.raft_first_index(group).expect("first index");
    let loss = accept_loss(engine.as_ref(), group)
        .expect("recovers")
        .expect("a loss to accept");
    assert_eq!(
        (loss.first_entry, loss.last_entry),
        (1, first - 1),
        "{loss}"
    );
    assert_eq!(loss.next_offset, 0);
    assert_eq!(accept_loss(engine.as_ref(), group).expect("again"), None);
    assert!(accept_loss(engine.as_ref(), GroupId::METADATA).is_err());
    assert!(accept_loss(engine.as_ref(), GroupId(999)).is_err());
    let node = Node::start(cfg, engine.clone(), Arc::new(Nobody)).expect("starts");
    common::produce_eventually(&node, "t")
        .await
        .expect("produce after recovery");
    assert_eq!(node.fatal_error(), None);
    node.shutdown().await;
}
