//! OffsetForLeaderEpoch over the wire (issue 16 item 8, KIP-101/KIP-320): the
//! current epoch's end, undefined epochs, the fencing of the caller's current
//! epoch, and ListOffsets and the stored batches agreeing on the epoch (the
//! partition's Raft term).

#![allow(clippy::unwrap_used)]

mod inproc;

use std::time::Duration;

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use weir_core::Acks;

fn topic(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// (current leader epoch, leader epoch) per partition 0 of "e" →
/// (error code, epoch, end offset).
async fn ask(ctx: &weir_server::kafka::Context, asks: &[(i32, i32)]) -> Vec<(i16, i32, i64)> {
    let parts = asks
        .iter()
        .map(|&(current, epoch)| {
            offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                .with_partition(0)
                .with_current_leader_epoch(current)
                .with_leader_epoch(epoch)
        })
        .collect();
    let req = OffsetForLeaderEpochRequest::default().with_topics(vec![
        offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
            .with_topic(topic("e"))
            .with_partitions(parts),
    ]);
    let ResponseKind::OffsetForLeaderEpoch(r) = inproc::call(
        ctx,
        ApiKey::OffsetForLeaderEpoch,
        4,
        RequestKind::OffsetForLeaderEpoch(req),
    )
    .await
    else {
        panic!("not an OffsetForLeaderEpoch response");
    };
    r.topics[0]
        .partitions
        .iter()
        .map(|p| (p.error_code, p.leader_epoch, p.end_offset))
        .collect()
}

async fn produce(ctx: &weir_server::kafka::Context, n: usize) {
    for _ in 0..n {
        let batch = weir_core::batch::BatchBuilder::new(0)
            .record(None, Some(b"v"))
            .build();
        ctx.node
            .produce("e", 0, &batch, Acks::All, Duration::from_secs(10))
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_for_leader_epoch_answers_over_the_wire() {
    let b = inproc::broker(|_| {}, |_| {}).await;
    let ctx = &b.ctx;
    inproc::one_partition_topic(ctx, "e").await;
    let group = ctx.node.metadata().partition("e", 0).unwrap().group;
    let term = ctx.node.group_status(group).unwrap().term as i32;
    produce(ctx, 3).await;
    // Where epochs end across leader changes is the conformance suite's
    // (cluster_leader_epochs_end_where_the_next_begins); here, the wire.
    let got = ask(
        ctx,
        &[
            (term, term),     // the current epoch ends at the log end
            (-1, term - 1),   // older than any batch: the first batch
            (-1, term + 1),   // newer than the leader's: undefined
            (term - 1, term), // the caller's current epoch is older: fenced
            (term + 1, term), // newer: unknown to this leader
        ],
    )
    .await;
    assert_eq!(
        got,
        vec![
            (0, term, 3),
            (0, term - 1, 0),
            (0, -1, -1),
            (74, -1, -1),
            (75, -1, -1),
        ]
    );
    // ListOffsets reports the same epoch, and the batches carry it.
    let p = inproc::list_offsets(ctx, 8, "e", -1).await;
    assert_eq!((p.offset, p.leader_epoch), (3, term));
    let fetched = ctx
        .node
        .fetch("e", 0, 0, 1 << 20, Duration::ZERO, 1)
        .await
        .unwrap();
    let epochs: Vec<i32> = weir_core::batch::iter_batches(&fetched.records)
        .map(|b| b.unwrap().0.leader_epoch)
        .collect();
    assert_eq!(epochs, vec![term; 3]);
}
