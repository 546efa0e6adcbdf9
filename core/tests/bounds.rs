//! What clients and peers can make a node hold is bounded (DESIGN.md §10): produce
//! proposals wait for the node-wide budget, and a group's inbox of peer messages
//! drops what is over its bound.

use std::sync::Arc;
use std::time::Duration;

use weir_core::batch::BatchBuilder;
use weir_core::eraftpb::{Entry, Message, MessageType};
use weir_core::memory::MemoryEngine;
use weir_core::{Acks, GroupId, GroupMessage, Node, NodeConfig, OffsetSpec};

mod common;

/// A single node on the memory engine.
async fn single_node(adjust: impl FnOnce(&mut NodeConfig)) -> Node {
    common::single_node(Arc::new(MemoryEngine::new()), adjust).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_proposals_wait_for_the_node_wide_budget() {
    const BUDGET: usize = 64 << 10;
    let node = single_node(|c| c.max_pending_produce_bytes = BUDGET).await;
    node.create_topic("t", 1, 1, Default::default(), Duration::from_secs(10))
        .await
        .expect("topic");
    let group = node.metadata().partition("t", 0).expect("partition").group;
    node.wait_leader(group, Duration::from_secs(10))
        .await
        .expect("leader");

    // acks=0 answers nothing, so nothing else holds these producers back: 16 of
    // them propose 5 MiB at once, 80 times the budget.
    let value = vec![1u8; 8 << 10];
    let batch = BatchBuilder::new(0).record(None, Some(&value)).build();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (node, batch) = (node.clone(), batch.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..40 {
                node.produce("t", 0, &batch, Acks::None, Duration::from_secs(10))
                    .await
                    .expect("proposed");
            }
        }));
    }
    for t in tasks {
        t.await.expect("producer");
    }
    // Every batch is appended: the budget slows producers, it drops nothing.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while node
        .list_offset("t", 0, OffsetSpec::Latest)
        .expect("offset")
        != Some(16 * 40)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not every batch was appended"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let peak = node.peak_pending_produce_bytes();
    assert!(
        peak <= BUDGET,
        "{peak} bytes of proposals were pending at once, over the budget of {BUDGET}"
    );
    assert!(peak >= 8 << 10, "peak {peak}");
    assert_eq!(node.pending_produce_bytes(), 0);
    node.shutdown().await;
}

/// On a current-thread runtime the group's task cannot run while this test
/// delivers, so everything delivered stays queued: the bound is all that keeps
/// the inbox from holding all of it.
#[tokio::test]
async fn a_groups_inbox_of_peer_messages_is_bounded() {
    const BOUND: usize = 2 << 20;
    let node = single_node(|c| c.max_queued_peer_bytes_per_group = BOUND).await;
    let inbound = node.inbound();
    // 1,000 appends of 64 KiB from a "peer" in an old term: 64 MiB.
    for i in 0..1000u64 {
        let msg = Message {
            msg_type: MessageType::MsgAppend,
            from: 2,
            to: 1,
            term: 0,
            index: i,
            entries: vec![Entry {
                index: i + 1,
                data: vec![0u8; 64 << 10].into(),
                ..Entry::default()
            }]
            .into(),
            ..Message::default()
        };
        inbound.deliver(
            2,
            vec![GroupMessage {
                group: GroupId::METADATA,
                msg,
            }],
        );
    }
    let queued = node.queued_peer_bytes(GroupId::METADATA).expect("hosted");
    assert!(queued <= BOUND, "{queued} bytes queued, bound {BOUND}");
    assert!(queued >= BOUND / 2, "queued {queued}");
    // The group drains its inbox and keeps working.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while node.queued_peer_bytes(GroupId::METADATA) != Some(0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the inbox never drained"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    node.create_topic("t", 1, 1, Default::default(), Duration::from_secs(10))
        .await
        .expect("the metadata group still works");
    assert!(node.fatal_error().is_none());
    node.shutdown().await;
}
