//! What a peer sends cannot stop a node: a Raft snapshot message (weir installs none
//! yet) is refused and the node keeps serving.

use std::sync::Arc;
use std::time::Duration;

use weir_core::batch::BatchBuilder;
use weir_core::eraftpb::{ConfState, Message, MessageType, Snapshot, SnapshotMetadata};
use weir_core::{Acks, GroupId, GroupMessage, Node, NodeConfig, NodeId, Transport};

/// A single node has nobody to send to.
struct Nobody;

impl Transport for Nobody {
    fn send(&self, _to: NodeId, _msgs: Vec<GroupMessage>) {}
}

async fn single_node() -> Node {
    let mut cfg = NodeConfig::new(1, vec![1], "127.0.0.1:9092");
    cfg.tick = Duration::from_millis(10);
    let engine = Arc::new(weir_core::memory::MemoryEngine::new());
    let node = Node::start(cfg, engine, Arc::new(Nobody)).expect("node starts");
    node.wait_leader(GroupId::METADATA, Duration::from_secs(10))
        .await
        .expect("metadata leader");
    while node.metadata().brokers.is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    node
}

/// Produces one record, retrying while leadership settles.
async fn produce_eventually(node: &Node) -> Result<i64, String> {
    let batch = BatchBuilder::new(0).record(None, Some(b"v")).build();
    let mut last = String::new();
    for _ in 0..500 {
        match node
            .produce("t", 0, &batch, Acks::All, Duration::from_secs(2))
            .await
        {
            Ok(Some(a)) => return Ok(a.base_offset),
            Ok(None) => return Err("no offsets for acks=all".into()),
            Err(e) => last = e.to_string(),
        }
        if let Some(why) = node.fatal_error() {
            return Err(format!("node stopped: {why}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(format!("no produce succeeded: {last}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_from_a_peer_is_refused_without_stopping_the_node() {
    let node = single_node().await;
    node.create_topic("t", 1, 1, Default::default(), Duration::from_secs(10))
        .await
        .expect("topic created");
    produce_eventually(&node).await.expect("first produce");
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
    node.inbound().deliver(2, vec![GroupMessage { group, msg }]);

    // The node still serves the partition, and never stopped.
    produce_eventually(&node)
        .await
        .expect("produce after the snapshot");
    assert_eq!(node.fatal_error(), None);
    node.shutdown().await;
}
