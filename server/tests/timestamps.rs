//! Offsets for times (ListOffsets with a timestamp) answer the first *record* at
//! or after the time, with its timestamp, as Kafka does, and the broker computes a
//! batch's max timestamp from its records (Sarama leaves it at -1).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod inproc;

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use weir_core::batch::{BatchBuilder, compute_crc};

use inproc::{broker, call};

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
        let p = inproc::list_offsets(ctx, 7, "t", asked).await;
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

/// A batch of one record stamped `ts`.
fn stamped(ts: i64) -> Vec<u8> {
    BatchBuilder::new(ts).record(None, Some(b"v")).build()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// `message.timestamp.type=LogAppendTime`: the broker stamps its own time as the
/// batch's max timestamp and marks the batch so (attribute bit 3), which is what
/// consumers and time lookups then use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_append_time_topics_carry_the_brokers_time() {
    let b = broker(|_| {}, |_| {}).await;
    let ctx = &b.ctx;
    let wait = std::time::Duration::from_secs(10);
    let configs = [(
        "message.timestamp.type".to_string(),
        "LogAppendTime".to_string(),
    )];
    ctx.node
        .create_topic("lat", 1, 1, configs.into_iter().collect(), wait)
        .await
        .unwrap();
    let group = ctx.node.metadata().partition("lat", 0).unwrap().group;
    ctx.node.wait_leader(group, wait).await.unwrap();
    let before = now_ms();
    ctx.node
        .produce("lat", 0, &stamped(1000), weir_core::Acks::All, wait)
        .await
        .unwrap();
    let after = now_ms();
    let f = ctx
        .node
        .fetch("lat", 0, 0, 1 << 20, std::time::Duration::ZERO, 1)
        .await
        .unwrap();
    let (h, bytes) = weir_core::batch::iter_batches(&f.records)
        .next()
        .unwrap()
        .unwrap();
    assert_ne!(h.attributes & 0x08, 0, "the batch is marked LogAppendTime");
    assert!(
        (before..=after).contains(&h.max_timestamp),
        "max timestamp {} is the broker's time ({before}..={after})",
        h.max_timestamp
    );
    assert_eq!(compute_crc(bytes), h.crc, "the CRC covers the new header");
    // Time lookups use the broker's time.
    let found = ctx.node.offset_for_timestamp("lat", 0, before).unwrap();
    assert_eq!(found.map(|(o, _)| o), Some(0));
    // Produce answers the time it stamped (clients report it as the record's).
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![
            produce_request::TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str("lat")))
                .with_partition_data(vec![
                    produce_request::PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(stamped(1000).into())),
                ]),
        ]);
    let ResponseKind::Produce(r) = call(ctx, ApiKey::Produce, 9, RequestKind::Produce(req)).await
    else {
        panic!("not a Produce response");
    };
    let p = &r.responses[0].partition_responses[0];
    assert_eq!((p.error_code, p.base_offset), (0, 1));
    assert!(
        p.log_append_time_ms >= after,
        "log_append_time_ms {} is the broker's time",
        p.log_append_time_ms
    );
}

/// `message.timestamp.before.max.ms` / `after.max.ms` (KIP-937): records too far
/// in the past or the future are refused with INVALID_TIMESTAMP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamps_out_of_the_topics_bounds_are_refused() {
    let b = broker(|_| {}, |_| {}).await;
    let ctx = &b.ctx;
    let wait = std::time::Duration::from_secs(10);
    let configs = [
        (
            "message.timestamp.before.max.ms".to_string(),
            "60000".to_string(),
        ),
        (
            "message.timestamp.after.max.ms".to_string(),
            "60000".to_string(),
        ),
    ];
    ctx.node
        .create_topic("bounded", 1, 1, configs.into_iter().collect(), wait)
        .await
        .unwrap();
    let group = ctx.node.metadata().partition("bounded", 0).unwrap().group;
    ctx.node.wait_leader(group, wait).await.unwrap();
    let now = now_ms();
    for (ts, ok) in [
        (now, true),
        (1000, false),
        (now + 3_600_000, false),
        (now - 30_000, true),
    ] {
        let r = ctx
            .node
            .produce("bounded", 0, &stamped(ts), weir_core::Acks::All, wait)
            .await;
        match r {
            Ok(_) => assert!(ok, "timestamp {ts} (now {now}) was accepted"),
            Err(e) => {
                assert!(!ok, "timestamp {ts} refused: {e}");
                assert_eq!(weir_server::kafka::errors::error_code(&e), 32, "{e}");
            }
        }
    }
}
