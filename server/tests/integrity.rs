//! Produced batches are checked as Kafka's log validator checks them: a batch whose
//! records disagree with its header, that uses an unknown codec, whose compressed
//! records do not decompress (or expand past the bound), or that is transactional
//! without a producer id is refused with the code a client expects, for its
//! partition only, and nothing of it is stored; the partition goes on serving.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;
mod inproc;

use std::io::Write as _;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use weir_core::batch::{BatchBuilder, HEADER_LEN, compute_crc, iter_batches};

use inproc::{broker, call};

/// Rewrites the CRC after a header or body was changed, as a hostile client would.
fn fix_crc(b: &mut [u8]) {
    let crc = compute_crc(b);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
}

fn set_attributes(b: &mut [u8], attributes: i16) {
    b[21..23].copy_from_slice(&attributes.to_be_bytes());
}

fn three_records() -> Vec<u8> {
    BatchBuilder::new(0)
        .record(None, Some(b"a"))
        .record(None, Some(b"b"))
        .record(None, Some(b"c"))
        .build()
}

/// A batch whose body is replaced by `body` (compressed records), with `codec`.
fn with_body(codec: i16, body: &[u8]) -> Vec<u8> {
    let mut b = BatchBuilder::new(0).record(None, Some(b"x")).build();
    b.truncate(HEADER_LEN);
    b.extend_from_slice(body);
    let len = (b.len() - 12) as i32;
    b[8..12].copy_from_slice(&len.to_be_bytes());
    set_attributes(&mut b, codec);
    fix_crc(&mut b);
    b
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

async fn produce(ctx: &weir_server::kafka::Context, batch: Vec<u8>) -> (i16, String, i64) {
    inproc::produce_batch(ctx, "t", 8, batch).await
}

/// Each malformed batch kind with the code and words its refusal must carry: a
/// count that lies, codec 7, "gzip" that is not, a bomb (8 MiB of zeros; refused
/// under a 1 MiB `max_decompressed_batch_bytes`), transactional without a
/// producer id.
fn malformed() -> Vec<(&'static str, Vec<u8>, i16, &'static str)> {
    let mut count_lies = three_records();
    count_lies[23..27].copy_from_slice(&0i32.to_be_bytes()); // lastOffsetDelta
    count_lies[57..61].copy_from_slice(&1i32.to_be_bytes()); // records count
    fix_crc(&mut count_lies);

    let mut codec_7 = three_records();
    set_attributes(&mut codec_7, 7);
    fix_crc(&mut codec_7);

    let records = &three_records()[HEADER_LEN..];
    let not_gzip = with_body(1, records);
    let bomb = with_body(1, &gzip(&vec![0u8; 8 << 20]));

    let mut transactional = three_records();
    set_attributes(&mut transactional, 0x10);
    fix_crc(&mut transactional);

    let invalid = ResponseError::InvalidRecord.code();
    vec![
        (
            "header counts 1 of 3 records",
            count_lies,
            invalid,
            "holds more",
        ),
        (
            "codec 7",
            codec_7,
            ResponseError::UnsupportedCompressionType.code(),
            "codec 7",
        ),
        ("gzip that is not", not_gzip, invalid, "do not decompress"),
        ("8 MiB of zeros", bomb, invalid, "decompression bomb"),
        (
            "transactional, no producer id",
            transactional,
            invalid,
            "producer id",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_batches_are_refused_with_kafkas_codes_and_nothing_is_stored() {
    let b = broker(|n| n.max_decompressed_batch_bytes = 1 << 20, |_| {}).await;
    let ctx = &b.ctx;
    inproc::one_partition_topic(ctx, "t").await;
    let (code, _, base) = produce(ctx, three_records()).await;
    assert_eq!((code, base), (0, 0), "a good batch first");

    for (what, batch, want, says) in malformed() {
        let (code, msg, _) = produce(ctx, batch).await;
        assert_eq!(code, want, "{what}: {msg}");
        assert!(msg.contains(says), "{what}: {msg:?} should say {says:?}");
    }

    // Nothing of them was stored: the next good batch lands right after the first.
    let (code, _, base) = produce(ctx, three_records()).await;
    assert_eq!((code, base), (0, 3));
    let fetched = ctx
        .node
        .fetch("t", 0, 0, 1 << 20, std::time::Duration::ZERO, 1)
        .await
        .unwrap();
    let offsets: Vec<(i64, i64)> = iter_batches(&fetched.records)
        .map(|r| {
            let (h, _) = r.unwrap();
            (h.base_offset, h.last_offset())
        })
        .collect();
    assert_eq!(offsets, vec![(0, 2), (3, 5)]);
    b.stop.send(()).unwrap();
    b.served.await.unwrap();
}

/// Produce to a topic whose name cannot exist answers INVALID_TOPIC_EXCEPTION, which
/// clients do not retry (UNKNOWN_TOPIC_OR_PARTITION made them retry until their
/// delivery timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_to_an_invalid_topic_name_answers_invalid_topic() {
    let b = broker(|_| {}, |_| {}).await;
    for name in ["bad/name", "", "..", &"x".repeat(250)] {
        let req = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(10_000)
            .with_topic_data(vec![
                produce_request::TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_string(name.to_string())))
                    .with_partition_data(vec![
                        produce_request::PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(Bytes::from(three_records()))),
                    ]),
            ]);
        let ResponseKind::Produce(r) =
            call(&b.ctx, ApiKey::Produce, 8, RequestKind::Produce(req)).await
        else {
            panic!("not a produce response");
        };
        let p = &r.responses[0].partition_responses[0];
        assert_eq!(
            p.error_code,
            ResponseError::InvalidTopicException.code(),
            "{name:?}: {:?}",
            p.error_message
        );
    }
    b.stop.send(()).unwrap();
    b.served.await.unwrap();
}

/// Over the wire to `weir serve` on each engine: every malformed batch between
/// two good ones is refused with its code, and confluent-kafka and kafka-python
/// then read the partition from its start to its end — the six good records at
/// offsets 0..=5, nothing of the refused batches.
fn malformed_batches_leave_the_partition_readable(engine: &str) {
    let c = common::Cluster::start_with(
        1,
        "grpc",
        &format!("engine = \"{engine}\"\nmax_decompressed_batch_bytes = 1048576\n"),
    );
    let bootstrap = c.bootstrap(0);
    let topic = format!("malformed-{engine}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut client = weir_server::client::Client::new(&bootstrap);
        client.create_topic(&topic, 1, 1, &[]).await.unwrap();
        let good = Bytes::from(three_records());
        assert_eq!(client.produce(&topic, 0, good.clone()).await.unwrap(), 0);
        for (what, batch, want, _) in malformed() {
            let got = client
                .produce_to(&bootstrap, &topic, 0, Bytes::from(batch))
                .await
                .unwrap();
            assert_eq!(got, Err(want), "{engine}: {what}");
        }
        assert_eq!(client.produce(&topic, 0, good).await.unwrap(), 3);
    });
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/read_values.py");
    for reader in ["confluent", "kafka-python"] {
        let out = std::process::Command::new("python3")
            .arg(&script)
            .args([&bootstrap, &topic, reader])
            .output()
            .expect("python3 runs (scripts/test installs the clients)");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{engine}, {reader}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            text.lines().collect::<Vec<_>>(),
            ["0 a", "1 b", "2 c", "3 a", "4 b", "5 c"],
            "{engine}, {reader}"
        );
    }
}

#[test]
fn malformed_batches_leave_a_segment_partition_readable_by_real_clients() {
    malformed_batches_leave_the_partition_readable("segment");
}

#[cfg(feature = "engine-redb")]
#[test]
fn malformed_batches_leave_a_redb_partition_readable_by_real_clients() {
    malformed_batches_leave_the_partition_readable("redb");
}

#[cfg(feature = "engine-rocksdb")]
#[test]
fn malformed_batches_leave_a_rocksdb_partition_readable_by_real_clients() {
    malformed_batches_leave_the_partition_readable("rocksdb");
}
