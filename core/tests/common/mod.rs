//! Helpers the node-level tests share: a transport to nobody and a started
//! single-node cluster.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::Duration;

use weir_core::{Engine, GroupId, GroupMessage, Node, NodeConfig, NodeId, Transport};

/// A transport for a single node: there is nobody to send to.
pub struct Nobody;

impl Transport for Nobody {
    fn send(&self, _to: NodeId, _msgs: Vec<GroupMessage>) {}
}

/// Node 1 alone on `engine` (10 ms ticks, `adjust`ed), registered and leading its
/// metadata group.
pub async fn single_node(engine: Arc<dyn Engine>, adjust: impl FnOnce(&mut NodeConfig)) -> Node {
    let mut cfg = NodeConfig::new(1, vec![1], "127.0.0.1:9092");
    cfg.tick = Duration::from_millis(10);
    adjust(&mut cfg);
    let node = Node::start(cfg, engine, Arc::new(Nobody)).expect("node starts");
    node.wait_leader(GroupId::METADATA, Duration::from_secs(10))
        .await
        .expect("metadata leader");
    while node.metadata().brokers.is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    node
}
