//! An in-process single-node broker for listener and handler tests: the memory
//! engine, served by `weir_server::kafka::serve` with a Context the test shapes.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::net::TcpListener;
use weir_core::{Node, NodeConfig};
use weir_server::kafka::{Context, ListenerStats, RequestMemory, serve};

/// A broker being served until `stop` fires.
pub struct Broker {
    pub addr: std::net::SocketAddr,
    pub ctx: Arc<Context>,
    pub stop: tokio::sync::oneshot::Sender<()>,
    pub served: tokio::task::JoinHandle<()>,
}

/// Starts a broker on the memory engine; `node` and `ctx` adjust the defaults.
pub async fn broker(node: impl FnOnce(&mut NodeConfig), ctx: impl FnOnce(&mut Context)) -> Broker {
    broker_on(Arc::new(weir_core::memory::MemoryEngine::new()), node, ctx).await
}

/// Starts a broker on `engine`; `node` and `ctx` adjust the defaults.
pub async fn broker_on(
    engine: Arc<dyn weir_core::Engine>,
    node: impl FnOnce(&mut NodeConfig),
    ctx: impl FnOnce(&mut Context),
) -> Broker {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut cfg = NodeConfig::new(1, vec![1], addr.to_string());
    cfg.tick = Duration::from_millis(10);
    node(&mut cfg);
    let node = Node::start(cfg, engine, Arc::new(weir_server::NoPeers)).unwrap();
    let mut context = Context {
        node,
        cluster_id: "weir".into(),
        auto_create: true,
        default_partitions: 1,
        default_replication: 1,
        max_request_bytes: 1 << 20,
        max_connections: 16,
        max_connections_per_ip: 1000,
        max_partitions_per_topic: 1000,
        max_auto_create_per_request: 16,
        connections_max_idle: Duration::from_secs(600),
        request_read_timeout: Duration::from_secs(30),
        stats: ListenerStats::default(),
        request_memory: RequestMemory::new(64 << 20),
    };
    ctx(&mut context);
    let ctx = Arc::new(context);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while ctx.node.metadata().brokers.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the node never registered"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(serve(listener, ctx.clone(), async move {
        let _ = rx.await;
    }));
    Broker {
        addr,
        ctx,
        stop,
        served,
    }
}

/// Creates a topic of one partition on the broker's node and waits for its leader.
pub async fn one_partition_topic(ctx: &Context, name: &str) {
    let wait = Duration::from_secs(10);
    ctx.node
        .create_topic(name, 1, 1, Default::default(), wait)
        .await
        .unwrap();
    let group = ctx.node.metadata().partition(name, 0).unwrap().group;
    ctx.node.wait_leader(group, wait).await.unwrap();
}

/// Waits (bounded) until `cond` holds.
pub async fn until(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A request frame (without its size prefix).
pub fn request(key: ApiKey, version: i16, correlation_id: i32, body: RequestKind) -> Bytes {
    let mut buf = bytes::BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("t")))
        .encode(&mut buf, key.request_header_version(version))
        .unwrap();
    body.encode(&mut buf, version).unwrap();
    buf.freeze()
}

/// Handles one request in process, as a connection would, and decodes the answer.
pub async fn call(ctx: &Context, key: ApiKey, version: i16, body: RequestKind) -> ResponseKind {
    let frame = request(key, version, 1, body);
    let mut answer = weir_server::kafka::handle_frame(frame, ctx)
        .await
        .unwrap()
        .unwrap();
    let hv = if key == ApiKey::ApiVersions {
        0
    } else {
        key.response_header_version(version)
    };
    ResponseHeader::decode(&mut answer, hv).unwrap();
    ResponseKind::decode(key, &mut answer, version).unwrap()
}

/// Produces one batch (acks=all, Produce `version`) to partition 0 of `topic`:
/// the partition's error code, error message and base offset.
pub async fn produce_batch(
    ctx: &Context,
    topic: &str,
    version: i16,
    batch: Vec<u8>,
) -> (i16, String, i64) {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![
            produce_request::TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partition_data(vec![
                    produce_request::PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(Bytes::from(batch))),
                ]),
        ]);
    let ResponseKind::Produce(r) =
        call(ctx, ApiKey::Produce, version, RequestKind::Produce(req)).await
    else {
        panic!("not a produce response");
    };
    let p = &r.responses[0].partition_responses[0];
    let msg = p
        .error_message
        .as_ref()
        .map(|m| m.to_string())
        .unwrap_or_default();
    (p.error_code, msg, p.base_offset)
}

/// ListOffsets (`version`, 1 or later) of partition 0 of `topic` at `timestamp`
/// (-1 latest, -2 earliest): the partition's answer.
pub async fn list_offsets(
    ctx: &Context,
    version: i16,
    topic: &str,
    timestamp: i64,
) -> list_offsets_response::ListOffsetsPartitionResponse {
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![
            list_offsets_request::ListOffsetsTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(vec![
                    list_offsets_request::ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(timestamp),
                ]),
        ]);
    let ResponseKind::ListOffsets(mut r) = call(
        ctx,
        ApiKey::ListOffsets,
        version,
        RequestKind::ListOffsets(req),
    )
    .await
    else {
        panic!("not a ListOffsets response");
    };
    r.topics.remove(0).partitions.remove(0)
}

/// Fetch (`version`) of partition 0 of `topic` — named by `with_topic` up to
/// v12, by `with_topic_id` from v13 — from `offset`, answered at once: the
/// topic's answer.
pub async fn fetch(
    ctx: &Context,
    version: i16,
    topic: fetch_request::FetchTopic,
    offset: i64,
) -> fetch_response::FetchableTopicResponse {
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![topic.with_partitions(vec![
            fetch_request::FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20),
        ])]);
    let ResponseKind::Fetch(mut r) =
        call(ctx, ApiKey::Fetch, version, RequestKind::Fetch(req)).await
    else {
        panic!("not a Fetch response");
    };
    r.responses.remove(0)
}

/// Fetch v12 of partition 0 of `topic` (by name) from `offset`, answered at once:
/// the partition's answer.
pub async fn fetch_by_name(
    ctx: &Context,
    topic: &str,
    offset: i64,
) -> fetch_response::PartitionData {
    let topic = fetch_request::FetchTopic::default()
        .with_topic(TopicName(StrBytes::from_string(topic.to_string())));
    fetch(ctx, 12, topic, offset).await.partitions.remove(0)
}
