//! A crash inside a partition snapshot's install (docs/snapshots.md): the
//! staged log was installed (durable) but the Raft log not yet reset to the
//! snapshot's index. Starting the group finishes the install: the node starts,
//! serves the installed log and takes produce after it.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::single_node;
use weir_core::batch::{self, BatchBuilder};
use weir_core::memory::MemoryEngine;
use weir_core::{Acks, Node, PartitionStore, RaftLogStore, StagingStore};

const WAIT: Duration = Duration::from_secs(10);

async fn produce(node: &Node, value: &[u8]) -> i64 {
    let b = BatchBuilder::new(batch::now_ms())
        .record(None, Some(value))
        .build();
    for _ in 0..500 {
        if let Ok(Some(a)) = node
            .produce("t", 0, &b, Acks::All, Duration::from_secs(2))
            .await
        {
            return a.base_offset;
        }
        assert_eq!(node.fatal_error(), None);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no produce succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_install_interrupted_before_the_raft_log_reset_is_finished_at_start() {
    let engine = Arc::new(MemoryEngine::new());
    let node = single_node(engine.clone(), |_| {}).await;
    node.create_topic("t", 1, 1, Default::default(), WAIT)
        .await
        .expect("topic");
    for i in 0..5u8 {
        produce(&node, &[i]).await;
    }
    let g = node.metadata().partition("t", 0).expect("partition").group;
    node.shutdown().await;

    // A leader's log: these 5 batches and 3 more, at a Raft index past this
    // replica's Raft log, staged and installed; the crash came before the
    // Raft log was reset.
    let mut leader_log = engine.log_read(g, 0, 1 << 20).expect("read").to_vec();
    for i in 0..3u8 {
        let mut b = BatchBuilder::new(batch::now_ms())
            .record(None, Some(&[b'x', i]))
            .build();
        batch::stamp(&mut b, 5 + i64::from(i), 1);
        leader_log.extend_from_slice(&b);
    }
    let at = engine.raft_last_index(g).expect("last") + 10;
    engine.stage_begin(g, 0).expect("stage");
    assert_eq!(engine.stage_append(g, &leader_log).expect("append"), 8);
    engine.stage_install(g, at).expect("install");
    let engine = Arc::new(engine.restart());
    assert!(
        engine.log_state(g).expect("state").applied_index
            > engine.raft_last_index(g).expect("last")
    );

    let node = single_node(engine.clone(), |_| {}).await;
    assert_eq!(
        produce(&node, b"after").await,
        8,
        "produce continues after the installed log"
    );
    assert!(
        engine.raft_first_index(g).expect("first") > at,
        "the Raft log was reset"
    );
    assert_eq!(node.fatal_error(), None);
    node.shutdown().await;
}
