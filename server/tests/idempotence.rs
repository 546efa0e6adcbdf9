//! Idempotent producers at the protocol level: InitProducerId hands out
//! cluster-unique ids (and the next epoch to a producer that gives its own);
//! a resent batch is answered with its first copy's offset and stored once; a
//! gap or a reordering is refused with OUT_OF_ORDER_SEQUENCE_NUMBER, an old
//! epoch with INVALID_PRODUCER_EPOCH, and a new epoch must start at sequence 0.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod inproc;

use kafka_protocol::messages::*;
use weir_core::batch::{BatchBuilder, set_producer};
use weir_server::kafka::Context;

use inproc::{broker, call, one_partition_topic};

/// A batch of `n` records from producer `pid` at `epoch`, sequences from `seq`.
fn idempotent(pid: i64, epoch: i16, seq: i32, n: usize) -> Vec<u8> {
    let mut b = BatchBuilder::new(0);
    for i in 0..n {
        b = b.record(
            None,
            Some(format!("{pid}-{epoch}-{}", seq as usize + i).as_bytes()),
        );
    }
    let mut b = b.build();
    set_producer(&mut b, pid, epoch, seq);
    b
}

async fn produce(ctx: &Context, batch: Vec<u8>) -> (i16, i64) {
    let (code, _, base) = inproc::produce_batch(ctx, "t", 9, batch).await;
    (code, base)
}

async fn init(ctx: &Context, current: Option<(i64, i16)>) -> (i64, i16) {
    let (id, epoch) = current.unwrap_or((-1, -1));
    let ResponseKind::InitProducerId(r) = call(
        ctx,
        ApiKey::InitProducerId,
        4,
        RequestKind::InitProducerId(
            InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000)
                .with_producer_id(ProducerId(id))
                .with_producer_epoch(epoch),
        ),
    )
    .await
    else {
        panic!("not an InitProducerId response");
    };
    assert_eq!(r.error_code, 0, "{r:?}");
    (r.producer_id.0, r.producer_epoch)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_are_stored_once_and_bad_sequences_get_kafkas_codes() {
    let b = broker(|_| {}, |_| {}).await;
    let ctx = &b.ctx;
    one_partition_topic(ctx, "t").await;
    let (pid, epoch) = init(ctx, None).await;
    assert!(pid >= 0 && epoch == 0);
    let (other, _) = init(ctx, None).await;
    assert_ne!(other, pid, "every producer gets its own id");

    assert_eq!(produce(ctx, idempotent(pid, 0, 0, 5)).await, (0, 0));
    // A retry: the first copy's offset, nothing appended — not even a Raft
    // entry, since the first copy is committed.
    let g = ctx.node.metadata().partition("t", 0).unwrap().group;
    let last_index = || ctx.node.group_status(g).unwrap().commit;
    let before = last_index();
    assert_eq!(produce(ctx, idempotent(pid, 0, 0, 5)).await, (0, 0));
    assert_eq!(
        last_index(),
        before,
        "a retry of a committed batch was proposed"
    );
    assert_eq!(produce(ctx, idempotent(pid, 0, 5, 5)).await, (0, 5));
    // Reordered: 15 before 10 is refused, then both go in, in order.
    assert_eq!(produce(ctx, idempotent(pid, 0, 15, 5)).await.0, 45);
    assert_eq!(produce(ctx, idempotent(pid, 0, 10, 5)).await, (0, 10));
    assert_eq!(produce(ctx, idempotent(pid, 0, 15, 5)).await, (0, 15));
    // An older retry, still among the last five.
    assert_eq!(produce(ctx, idempotent(pid, 0, 5, 5)).await, (0, 5));
    // A sequence skipped.
    assert_eq!(produce(ctx, idempotent(pid, 0, 21, 1)).await.0, 45);

    // The producer re-initialises with its id: the same id, the next epoch.
    let (same, bumped) = init(ctx, Some((pid, 0))).await;
    assert_eq!((same, bumped), (pid, 1));
    assert_eq!(produce(ctx, idempotent(pid, 1, 3, 1)).await.0, 45);
    assert_eq!(produce(ctx, idempotent(pid, 1, 0, 1)).await, (0, 20));
    // The old epoch is fenced.
    assert_eq!(produce(ctx, idempotent(pid, 0, 20, 1)).await.0, 47);
    // Batches without a producer id are not checked.
    let plain = BatchBuilder::new(0).record(None, Some(b"plain")).build();
    assert_eq!(produce(ctx, plain.clone()).await, (0, 21));
    assert_eq!(produce(ctx, plain).await, (0, 22));
    // Another producer starts anywhere (Kafka accepts an unknown producer at
    // any sequence: its state may have expired).
    assert_eq!(produce(ctx, idempotent(other, 0, 7, 2)).await, (0, 23));

    // DescribeProducers shows both, with their epochs and last sequences; a
    // partition that does not exist gets UNKNOWN_TOPIC_OR_PARTITION.
    let described = describe_producers(ctx, "t", &[0, 1]).await;
    let mut active: Vec<_> = described[0]
        .active_producers
        .iter()
        .map(|p| {
            (
                p.producer_id.0,
                p.producer_epoch,
                p.last_sequence,
                p.coordinator_epoch,
            )
        })
        .collect();
    active.sort_unstable();
    let mut want = vec![(pid, 1, 0, -1), (other, 0, 8, -1)];
    want.sort_unstable();
    assert_eq!((described[0].error_code, active), (0, want));
    // The test's batches are stamped at time 0 (BatchBuilder::new(0)).
    assert!(
        described[0]
            .active_producers
            .iter()
            .all(|p| p.last_timestamp == 0)
    );
    assert_eq!(described[1].error_code, 3, "{:?}", described[1]);
}

async fn describe_producers(
    ctx: &Context,
    topic: &str,
    partitions: &[i32],
) -> Vec<describe_producers_response::PartitionResponse> {
    let ResponseKind::DescribeProducers(r) = call(
        ctx,
        ApiKey::DescribeProducers,
        0,
        RequestKind::DescribeProducers(DescribeProducersRequest::default().with_topics(vec![
            describe_producers_request::TopicRequest::default()
                .with_name(TopicName(topic.to_string().into()))
                .with_partition_indexes(partitions.to_vec()),
        ])),
    )
    .await
    else {
        panic!("not a DescribeProducers response");
    };
    assert_eq!(r.topics.len(), 1);
    r.topics.into_iter().next().unwrap().partitions
}
