//! Committed offsets are replicated state of a coordinator partition: they
//! survive a power loss (checkpoint plus the Raft log after it), and the
//! partition's Raft log stays bounded (compacted through each checkpoint).

use std::sync::Arc;
use std::time::Duration;

use weir_core::groups::{Committer, OffsetCommit};
use weir_core::memory::MemoryEngine;
use weir_core::{Engine, GroupError, Node, RaftLogStore, StateStore};

mod common;
use common::single_node;

async fn coordinator(node: &Node, group: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match node.find_coordinator(group).await {
            Ok(n) => {
                assert_eq!(n, node.id());
                // Leading is not enough: the partition must have applied its log.
                if node.committed_offsets(group, Some(&[])).is_ok() {
                    return;
                }
            }
            Err(weir_core::Error::Group(GroupError::CoordinatorNotAvailable)) => {}
            Err(e) => panic!("find_coordinator: {e}"),
        }
        assert!(tokio::time::Instant::now() < deadline, "no coordinator");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn commit(node: &Node, offset: i64) {
    let o = OffsetCommit {
        topic: "t".into(),
        partition: 0,
        offset,
        leader_epoch: -1,
        metadata: format!("m{offset}"),
    };
    node.commit_offsets(
        "g",
        &Committer {
            generation: -1,
            ..Committer::default()
        },
        vec![o],
        Duration::from_secs(5),
    )
    .await
    .expect("commit");
}

fn committed(node: &Node) -> Option<i64> {
    let got = node
        .committed_offsets("g", Some(&[("t".into(), 0)]))
        .expect("committed offsets");
    got[0].2.as_ref().map(|o| o.offset)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_survive_a_power_loss_and_the_log_stays_bounded() {
    let engine = Arc::new(MemoryEngine::new());
    let adjust = |c: &mut weir_core::NodeConfig| {
        c.group_partitions = 1;
        c.flush_interval = Duration::from_millis(20);
        c.compact_interval = Duration::from_millis(20);
    };
    let node = single_node(engine.clone(), adjust).await;
    coordinator(&node, "g").await;
    let g = node
        .metadata()
        .coordinator_topic()
        .expect("the internal topic")
        .partitions[0]
        .group;
    for i in 0..300 {
        commit(&node, i).await;
    }
    // Checkpointed, and the Raft log compacted through the checkpoint: 300
    // commits leave a short log.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while engine.raft_first_index(g).expect("first") < 250 {
        assert!(tokio::time::Instant::now() < deadline, "never compacted");
        commit(&node, 300).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(engine.state_get(g).expect("checkpoint").is_some());
    // Commits after the checkpoint live in the Raft log only, until the next one.
    for i in 301..306 {
        commit(&node, i).await;
    }
    assert_eq!(committed(&node), Some(305));
    node.shutdown().await;

    // A power loss: only what was synced is left.
    let engine = Arc::new(engine.restart());
    let left =
        engine.raft_last_index(g).expect("last") + 1 - engine.raft_first_index(g).expect("first");
    assert!(left < 100, "{left} Raft entries kept for 306 commits");
    let node = single_node(engine.clone() as Arc<dyn Engine>, adjust).await;
    coordinator(&node, "g").await;
    assert_eq!(committed(&node), Some(305), "every acknowledged commit");
    node.shutdown().await;
}

fn static_join(member: &str) -> weir_core::groups::classic::JoinRequest {
    weir_core::groups::classic::JoinRequest {
        group: "s".into(),
        member_id: member.into(),
        instance_id: Some("i1".into()),
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), vec![0, 1])],
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 10_000,
        client_id: "c".into(),
        client_host: "h".into(),
        require_known_member_id: true,
    }
}

/// A static member that restarts takes its old member's place without a
/// rebalance; its new member id is replicated, so a coordinator that starts
/// from the stored state (here: after a restart) knows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_static_members_id_survives_a_restart() {
    let engine = Arc::new(MemoryEngine::new());
    let adjust = |c: &mut weir_core::NodeConfig| {
        c.group_partitions = 1;
        c.group_initial_rebalance_delay = Duration::ZERO;
    };
    let node = single_node(engine.clone(), adjust).await;
    coordinator(&node, "s").await;
    let first = node.join_group(static_join("")).await.expect("join");
    node.sync_group(
        weir_core::groups::classic::SyncRequest {
            group: "s".into(),
            member_id: first.member_id.clone(),
            instance_id: Some("i1".into()),
            generation: first.generation,
            assignments: vec![(first.member_id.clone(), vec![9])],
            ..Default::default()
        },
        Duration::from_secs(5),
    )
    .await
    .expect("sync");
    // The instance restarts: a new member id, the same generation.
    let second = node.join_group(static_join("")).await.expect("rejoin");
    assert_ne!(second.member_id, first.member_id);
    assert_eq!(second.generation, first.generation);
    node.shutdown().await;

    let engine = Arc::new(engine.restart());
    let node = single_node(engine as Arc<dyn Engine>, adjust).await;
    coordinator(&node, "s").await;
    node.heartbeat("s", &second.member_id, Some("i1"), second.generation)
        .expect("the new member id is known after a restart");
    assert!(
        node.heartbeat("s", &first.member_id, Some("i1"), first.generation)
            .is_err(),
        "the replaced id is fenced"
    );
    node.shutdown().await;
}
