//! The metadata group's checkpoint (docs/snapshots.md): a node restarts from
//! it with a compacted log, and a checkpoint left ahead of the Raft log (a
//! crash inside a snapshot install, between the checkpoint and the log's
//! reset) finishes the install when the node starts.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::single_node;
use weir_core::memory::MemoryEngine;
use weir_core::{GroupId, Node, NodeConfig, RaftLogStore, StateStore};

const WAIT: Duration = Duration::from_secs(10);
const META: GroupId = GroupId::METADATA;

fn often(c: &mut NodeConfig) {
    c.metadata_checkpoint_entries = 5;
    c.metadata_keep_entries = 2;
}

async fn topics(node: &Node, n: usize) -> Vec<String> {
    for i in 0..n {
        node.create_topic(&format!("t{i}"), 1, 1, BTreeMap::new(), WAIT)
            .await
            .expect("topic created");
    }
    node.metadata().topics.keys().cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_loads_the_checkpoint_of_a_compacted_metadata_log() {
    let engine = Arc::new(MemoryEngine::new());
    let node = single_node(engine.clone(), often).await;
    let want = topics(&node, 12).await;
    node.shutdown().await;
    assert!(
        engine.raft_first_index(META).unwrap() > 1,
        "the metadata log was compacted"
    );
    let engine = Arc::new(engine.restart());
    let node = single_node(engine.clone(), often).await;
    // The checkpoint is loaded at the start; the entries after it are
    // applied once the node has elected itself again.
    let mut meta = node.watch_metadata();
    let got = tokio::time::timeout(
        WAIT,
        meta.wait_for(|m| m.topics.keys().cloned().collect::<Vec<_>>() == want),
    )
    .await
    .map(|m| m.map(|m| m.topics.keys().cloned().collect::<Vec<String>>()))
    .unwrap_or_else(|_| Ok(node.metadata().topics.keys().cloned().collect()))
    .expect("metadata");
    assert_eq!(got, want);
    node.create_topic("after", 1, 1, BTreeMap::new(), WAIT)
        .await
        .expect("metadata changes go on");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_ahead_of_the_metadata_log_finishes_its_install() {
    let engine = Arc::new(MemoryEngine::new());
    let node = single_node(engine.clone(), often).await;
    let want = topics(&node, 12).await;
    node.shutdown().await;
    // What a crash between the checkpoint and the log's reset leaves: a
    // checkpoint, and a Raft log (here none at all, nor hard state) behind it.
    let blob = engine.state_get(META).unwrap().expect("a checkpoint");
    let at = weir_core::checkpoint::decode(META, blob).unwrap().index;
    engine.raft_remove_group(META).unwrap();
    engine.raft_sync().unwrap();
    let engine = Arc::new(engine.restart());
    let node = single_node(engine.clone(), often).await;
    // The checkpoint's state: the topics created up to its index (the entries
    // after it went with the log).
    let got: Vec<String> = node.metadata().topics.keys().cloned().collect();
    assert!(
        !got.is_empty() && got.iter().all(|t| want.contains(t)),
        "{got:?} is not a state the checkpoint could hold ({want:?})"
    );
    assert!(node.metadata().applied >= at);
    assert!(
        engine.raft_first_index(META).unwrap() > at,
        "the log was reset to the checkpoint at {at}"
    );
    node.create_topic("after", 1, 1, BTreeMap::new(), WAIT)
        .await
        .expect("metadata changes go on");
    node.shutdown().await;
}
