//! Pipelined requests on one connection: the broker handles several at once, answers
//! in request order, and appends one connection's batches to a partition in the order
//! they were sent.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::codec::{Encoder as _, FramedRead};
use weir_core::batch::{BatchBuilder, iter_batches};
use weir_server::client::Client;
use weir_server::config::{Config, EngineKind};
use weir_server::kafka::frame_codec;

const PRODUCE_V: i16 = 8;

fn produce_frame(id: i32, value: u32) -> BytesMut {
    let batch = Bytes::from(
        BatchBuilder::new(0)
            .record(None, Some(&value.to_be_bytes()))
            .build(),
    );
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![
            produce_request::TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str("pipe")))
                .with_partition_data(vec![
                    produce_request::PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(batch)),
                ]),
        ]);
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(ApiKey::Produce as i16)
        .with_request_api_version(PRODUCE_V)
        .with_correlation_id(id)
        .with_client_id(Some(StrBytes::from_static_str("t")))
        .encode(&mut buf, ApiKey::Produce.request_header_version(PRODUCE_V))
        .unwrap();
    req.encode(&mut buf, PRODUCE_V).unwrap();
    let mut framed = BytesMut::new();
    frame_codec(1 << 30)
        .encode(buf.freeze(), &mut framed)
        .unwrap();
    framed
}

/// The record value of every batch in `records`, in log order.
fn values(records: &[u8]) -> Vec<u32> {
    iter_batches(records)
        .map(|b| {
            let (_, bytes) = b.unwrap();
            // One record per batch; its 4-byte value ends the batch.
            u32::from_be_bytes(bytes[bytes.len() - 5..bytes.len() - 1].try_into().unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_produces_are_answered_and_appended_in_order() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = Config {
        engine: EngineKind::Memory,
        kafka_listen: addr,
        raft_tick_ms: 10,
        ..Config::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(weir_server::run(config, listener, async move {
        let _ = stopped.await;
    }));
    let mut client = Client::new(&addr.to_string());
    // Auto-creates the topic (one partition) and waits until it takes writes.
    client
        .produce_many(
            "pipe",
            &[(
                0,
                Bytes::from(BatchBuilder::new(0).record(None, Some(b"warm")).build()),
            )],
            -1,
        )
        .await
        .unwrap();

    // 200 requests written back to back before any answer is read.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut all = BytesMut::new();
    for i in 0..200u32 {
        all.extend_from_slice(&produce_frame(i as i32, i));
    }
    let (rd, mut wr) = s.split();
    let write = async {
        wr.write_all(&all).await.unwrap();
    };
    let read = async {
        let mut offsets = Vec::new();
        let mut responses = FramedRead::new(rd, frame_codec(1 << 30));
        for i in 0..200 {
            let mut body = responses.next().await.unwrap().unwrap().freeze();
            let h = ResponseHeader::decode(
                &mut body,
                ApiKey::Produce.response_header_version(PRODUCE_V),
            )
            .unwrap();
            assert_eq!(h.correlation_id, i, "answers come in request order");
            let r = ProduceResponse::decode(&mut body, PRODUCE_V).unwrap();
            let p = &r.responses[0].partition_responses[0];
            assert_eq!(p.error_code, 0);
            offsets.push(p.base_offset);
        }
        offsets
    };
    let ((), offsets) = tokio::join!(write, read);
    assert!(
        offsets.windows(2).all(|w| w[0] < w[1]),
        "offsets follow request order: {offsets:?}"
    );

    // The log holds the values in the order they were sent.
    let mut got = Vec::new();
    let mut at = offsets[0];
    while got.len() < 200 {
        let (records, _) = client
            .fetch("pipe", 0, at, std::time::Duration::ZERO)
            .await
            .unwrap();
        let v = values(&records);
        assert!(!v.is_empty(), "fetch at {at} returned nothing");
        at += v.len() as i64;
        got.extend(v);
    }
    assert_eq!(got, (0..200).collect::<Vec<u32>>());
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
