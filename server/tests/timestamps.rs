//! Offsets for times (ListOffsets with a timestamp) answer the first *record* at
//! or after the time, with its timestamp, as Kafka does, and the broker computes a
//! batch's max timestamp from its records (Sarama leaves it at -1).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod inproc;

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use weir_core::batch::{BatchBuilder, compute_crc};

use inproc::{broker, call};

fn list(topic: &str, timestamp: i64) -> RequestKind {
    RequestKind::ListOffsets(
        ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![
                list_offsets_request::ListOffsetsTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partitions(vec![
                        list_offsets_request::ListOffsetsPartition::default()
                            .with_partition_index(0)
                            .with_timestamp(timestamp),
                    ]),
            ]),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_for_times_answer_the_record_inside_a_batch() {
    let b = broker(|_| {}, |_| {}).await;
    let ctx = &b.ctx;
    inproc::one_partition_topic(ctx, "t").await;
    let wait = std::time::Duration::from_secs(10);

    // Two batches: offsets 0-2 at 1000, 3000, 2000 (max timestamp left at -1, as
    // Sarama sends it), then offsets 3-4 at 4000, 5000.
    let mut first = BatchBuilder::new(1000)
        .record_at(1000, None, Some(b"a"), &[])
        .record_at(3000, None, Some(b"b"), &[])
        .record_at(2000, None, Some(b"c"), &[])
        .build();
    first[35..43].copy_from_slice(&(-1i64).to_be_bytes());
    let crc = compute_crc(&first);
    first[17..21].copy_from_slice(&crc.to_be_bytes());
    let second = BatchBuilder::new(4000)
        .record_at(4000, None, Some(b"d"), &[])
        .record_at(5000, None, Some(b"e"), &[])
        .build();
    for batch in [first, second] {
        ctx.node
            .produce("t", 0, &batch, weir_core::Acks::All, wait)
            .await
            .unwrap();
    }
    for (asked, offset, timestamp) in [
        (0, 0, 1000),
        (1500, 1, 3000),
        (3000, 1, 3000),
        (3500, 3, 4000),
        (4500, 4, 5000),
        (5001, -1, -1),
    ] {
        let ResponseKind::ListOffsets(r) =
            call(ctx, ApiKey::ListOffsets, 7, list("t", asked)).await
        else {
            panic!("not a ListOffsets response");
        };
        let p = &r.topics[0].partitions[0];
        assert_eq!(p.error_code, 0, "T={asked}");
        assert_eq!(
            (p.offset, p.timestamp),
            (offset, timestamp),
            "first record at or after T={asked}"
        );
    }
    // The stored batch's header carries the max timestamp of its records.
    let fetched = ctx
        .node
        .fetch("t", 0, 0, 1 << 20, std::time::Duration::ZERO, 1)
        .await
        .unwrap();
    let (h, _) = weir_core::batch::iter_batches(&fetched.records)
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(h.max_timestamp, 3000);
    b.stop.send(()).unwrap();
    b.served.await.unwrap();
}
