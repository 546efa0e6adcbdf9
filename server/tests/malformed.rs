//! Malformed input: truncated frames, wrong sizes, unknown API keys, unsupported
//! versions, garbage. The broker closes (or answers) that connection, keeps serving
//! the others, and loses no data.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt as _, StreamExt as _};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::{Encoder as _, Framed, FramedRead};
use weir_core::batch::BatchBuilder;
use weir_server::config::{Config, EngineKind};
use weir_server::kafka::frame_codec;

async fn start() -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = Config {
        engine: EngineKind::Memory,
        kafka_listen: addr,
        raft_tick_ms: 10,
        ..Config::default()
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(weir_server::run(config, listener, async move {
        let _ = rx.await;
    }));
    (addr, tx, task)
}

async fn call(s: &mut TcpStream, key: ApiKey, version: i16, req: RequestKind) -> ResponseKind {
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("t")))
        .encode(&mut buf, key.request_header_version(version))
        .unwrap();
    req.encode(&mut buf, version).unwrap();
    let mut framed = Framed::new(s, frame_codec(1 << 30));
    framed.send(buf.freeze()).await.unwrap();
    let mut body = framed.next().await.unwrap().unwrap().freeze();
    let hv = if key == ApiKey::ApiVersions {
        0
    } else {
        key.response_header_version(version)
    };
    let h = ResponseHeader::decode(&mut body, hv).unwrap();
    assert_eq!(h.correlation_id, 7);
    ResponseKind::decode(key, &mut body, version).unwrap()
}

fn topic(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.into()))
}

async fn produce_one(addr: std::net::SocketAddr, value: &[u8]) -> i64 {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let batch = Bytes::from(BatchBuilder::new(0).record(None, Some(value)).build());
    for _ in 0..200 {
        let req = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(5000)
            .with_topic_data(vec![
                produce_request::TopicProduceData::default()
                    .with_name(topic("m"))
                    .with_partition_data(vec![
                        produce_request::PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(batch.clone())),
                    ]),
            ]);
        if let ResponseKind::Produce(r) =
            call(&mut s, ApiKey::Produce, 9, RequestKind::Produce(req)).await
        {
            let p = &r.responses[0].partition_responses[0];
            if p.error_code == 0 {
                return p.base_offset;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("produce never succeeded");
}

async fn fetch_count(addr: std::net::SocketAddr) -> usize {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![
            fetch_request::FetchTopic::default()
                .with_topic(topic("m"))
                .with_partitions(vec![
                    fetch_request::FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(0)
                        .with_partition_max_bytes(1 << 20),
                ]),
        ]);
    let ResponseKind::Fetch(r) = call(&mut s, ApiKey::Fetch, 11, RequestKind::Fetch(req)).await
    else {
        panic!()
    };
    let p = &r.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    let records = p.records.clone().unwrap();
    let batches: Vec<_> = weir_core::batch::iter_batches(&records).collect();
    assert!(
        batches.iter().all(Result::is_ok),
        "fetched batches must be valid"
    );
    batches.len()
}

/// Sends raw bytes on a fresh connection, then waits until the broker closes it or
/// answers; returns what it answered.
async fn send_raw(addr: std::net::SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let _ = s.shutdown().await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_close_only_their_connection() {
    let (addr, stop, task) = start().await;
    produce_one(addr, b"before").await;
    let frame = |key: i16, version: i16, body: &[u8]| {
        let mut b = Vec::new();
        b.extend_from_slice(&((8 + body.len()) as i32).to_be_bytes());
        b.extend_from_slice(&key.to_be_bytes());
        b.extend_from_slice(&version.to_be_bytes());
        b.extend_from_slice(&1i32.to_be_bytes());
        b.extend_from_slice(body);
        b
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "garbage",
            b"\x7f\x12\x00\x99garbage that is not kafka at all".to_vec(),
        ),
        ("truncated frame", {
            let mut f = frame(3, 9, &[0, 0, 0, 0, 0, 0]);
            f.truncate(9);
            f
        }),
        ("negative size", (-5i32).to_be_bytes().to_vec()),
        ("huge size", i32::MAX.to_be_bytes().to_vec()),
        (
            "tiny size",
            3i32.to_be_bytes()
                .iter()
                .chain(&[1, 2, 3])
                .copied()
                .collect(),
        ),
        ("unknown api key", frame(9999, 0, &[0, 0])),
        // Produce v0-v2 are advertised (KAFKA-18659), never served.
        ("produce v0", frame(0, 0, &[0, 0, 0, 0])),
        ("produce v1", frame(0, 1, &[0, 0, 0, 0])),
        ("produce v2", frame(0, 2, &[0, 0, 0, 0])),
        ("garbage produce body", frame(0, 9, &[0xff; 40])),
        ("garbage metadata body", frame(3, 12, &[0x80; 13])),
        ("truncated fetch body", frame(1, 11, &[0, 1])),
    ];
    for (what, bytes) in &cases {
        let answer = send_raw(addr, bytes).await;
        assert!(
            answer.is_empty(),
            "{what}: expected the connection to close, got {} bytes",
            answer.len()
        );
        // Other connections still work, and nothing was lost.
        let mut s = TcpStream::connect(addr).await.unwrap();
        let r = call(
            &mut s,
            ApiKey::ApiVersions,
            3,
            RequestKind::ApiVersions(ApiVersionsRequest::default()),
        )
        .await;
        assert!(
            matches!(r, ResponseKind::ApiVersions(v) if v.error_code == 0),
            "{what}: ApiVersions after"
        );
    }
    // An unsupported ApiVersions version gets error 35 in v0 form, not a closed socket.
    let answer = send_raw(addr, &frame(18, 99, &[])).await;
    assert!(answer.len() >= 10, "ApiVersions v99 must be answered");
    let mut body = Bytes::from(answer[4..].to_vec());
    ResponseHeader::decode(&mut body, 0).unwrap();
    let v = ApiVersionsResponse::decode(&mut body, 0).unwrap();
    assert_eq!(v.error_code, 35);
    // Produce is advertised from v0, as Kafka 4.0 does, so that librdkafka before
    // 2.11.1 compresses (it checks for v0); requests below v3 close (above).
    let produce = v
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::Produce as i16)
        .expect("Produce is advertised");
    assert_eq!((produce.min_version, produce.max_version), (0, 12));
    produce_one(addr, b"after").await;
    assert_eq!(fetch_count(addr).await, 2, "both batches are there");
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let (addr, stop, task) = start().await;
    produce_one(addr, b"x").await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    // Write ten requests at once (alternating APIs), then read ten answers.
    let mut buf = BytesMut::new();
    for i in 0..10i32 {
        let (key, version) = if i % 2 == 0 {
            (ApiKey::ApiVersions, 3)
        } else {
            (ApiKey::Metadata, 12)
        };
        let mut frame = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(i)
            .encode(&mut frame, key.request_header_version(version))
            .unwrap();
        let req = if i % 2 == 0 {
            RequestKind::ApiVersions(ApiVersionsRequest::default())
        } else {
            RequestKind::Metadata(MetadataRequest::default())
        };
        req.encode(&mut frame, version).unwrap();
        frame_codec(1 << 30)
            .encode(frame.freeze(), &mut buf)
            .unwrap();
    }
    s.write_all(&buf).await.unwrap();
    let mut responses = FramedRead::new(&mut s, frame_codec(1 << 30));
    for i in 0..10i32 {
        let body = responses.next().await.unwrap().unwrap();
        let corr = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
        assert_eq!(corr, i, "responses in request order");
    }
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_apis_answer_coordinator_not_available() {
    let (addr, stop, task) = start().await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let group = GroupId(StrBytes::from_static_str("g"));
    let r = call(
        &mut s,
        ApiKey::JoinGroup,
        5,
        RequestKind::JoinGroup(JoinGroupRequest::default().with_group_id(group.clone())),
    )
    .await;
    assert!(matches!(r, ResponseKind::JoinGroup(j) if j.error_code == 15));
    let r = call(
        &mut s,
        ApiKey::Heartbeat,
        3,
        RequestKind::Heartbeat(HeartbeatRequest::default().with_group_id(group.clone())),
    )
    .await;
    assert!(matches!(r, ResponseKind::Heartbeat(h) if h.error_code == 15));
    let commit = OffsetCommitRequest::default()
        .with_group_id(group.clone())
        .with_topics(vec![
            offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(topic("t"))
                .with_partitions(vec![
                    offset_commit_request::OffsetCommitRequestPartition::default()
                        .with_partition_index(3)
                        .with_committed_offset(7),
                ]),
        ]);
    let r = call(
        &mut s,
        ApiKey::OffsetCommit,
        8,
        RequestKind::OffsetCommit(commit),
    )
    .await;
    assert!(
        matches!(r, ResponseKind::OffsetCommit(c) if c.topics[0].partitions[0].error_code == 15 && c.topics[0].partitions[0].partition_index == 3)
    );
    let fetch = OffsetFetchRequest::default()
        .with_group_id(group)
        .with_topics(Some(vec![
            offset_fetch_request::OffsetFetchRequestTopic::default()
                .with_name(topic("t"))
                .with_partition_indexes(vec![0]),
        ]));
    let r = call(
        &mut s,
        ApiKey::OffsetFetch,
        7,
        RequestKind::OffsetFetch(fetch),
    )
    .await;
    assert!(matches!(r, ResponseKind::OffsetFetch(f) if f.error_code == 15));
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}
