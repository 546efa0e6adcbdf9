//! The Kafka listener: framing, dispatch, and one handler per API.
//!
//! Every request and response goes through the `kafka-protocol` crate. Requests on
//! one connection are handled one at a time, so responses leave in request order
//! (as Kafka does). A frame that is too large, an unknown API key or an undecodable
//! request closes the connection with a log line; each connection runs in its own
//! task, so one client can never take the broker down.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use anyhow::Context as _;
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt as _;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesOrdered;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use weir_core::{Acks, Error, GroupId, LeaderHint, Node, OffsetSpec, Role};

/// Kafka error codes used at the protocol edge.
pub mod code {
    /// No error.
    pub const NONE: i16 = 0;
    /// An unexpected server error.
    pub const UNKNOWN_SERVER_ERROR: i16 = -1;
    /// The requested offset is outside the log.
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    /// A batch failed its CRC or is malformed.
    pub const CORRUPT_MESSAGE: i16 = 2;
    /// Unknown topic or partition.
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    /// No leader right now (election under way).
    pub const LEADER_NOT_AVAILABLE: i16 = 5;
    /// This broker does not lead the partition.
    pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    /// The request timed out.
    pub const REQUEST_TIMED_OUT: i16 = 7;
    /// A batch is larger than allowed.
    pub const MESSAGE_TOO_LARGE: i16 = 10;
    /// No group coordinator (consumer groups are not offered yet).
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    /// A bad topic name.
    pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
    /// Unsupported API version.
    pub const UNSUPPORTED_VERSION: i16 = 35;
    /// The topic exists.
    pub const TOPIC_ALREADY_EXISTS: i16 = 36;
    /// A bad partition count.
    pub const INVALID_PARTITIONS: i16 = 37;
    /// A bad replication factor.
    pub const INVALID_REPLICATION_FACTOR: i16 = 38;
    /// Manual replica assignment is not supported.
    pub const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
    /// A malformed request.
    pub const INVALID_REQUEST: i16 = 42;
    /// A storage failure.
    pub const KAFKA_STORAGE_ERROR: i16 = 56;
    /// An invalid record.
    pub const INVALID_RECORD: i16 = 87;
}

/// The APIs and versions weir answers (intersected with what the crate decodes).
/// Produce and Fetch stop at 12: later versions name topics by id only.
const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 12),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 8),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 5),
    (ApiKey::DescribeConfigs, 1, 4),
    // Group APIs: answered with COORDINATOR_NOT_AVAILABLE (see `groups`). OffsetFetch
    // stops at 7: later versions batch several groups.
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 7),
];

fn supported(key: ApiKey) -> Option<(i16, i16)> {
    let &(_, lo, hi) = SUPPORTED.iter().find(|(k, _, _)| *k == key)?;
    let crate_range = key.valid_versions();
    Some((lo.max(crate_range.min), hi.min(crate_range.max)))
}

/// What the handlers need.
pub struct Context {
    /// The node behind this broker.
    pub node: Node,
    /// Create unknown topics on Metadata and Produce.
    pub auto_create: bool,
    /// Partitions of auto-created topics.
    pub default_partitions: i32,
    /// Replication factor of auto-created topics (capped at the broker count).
    pub default_replication: usize,
    /// Largest request frame accepted.
    pub max_request_bytes: usize,
}

/// Accepts Kafka connections until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let ctx = ctx.clone();
                    tokio::spawn(async move {
                        let _ = stream.set_nodelay(true);
                        if let Err(e) = connection(stream, &ctx).await {
                            tracing::debug!(%peer, error = %format!("{e:#}"), "Kafka connection closed");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a Kafka connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// Requests of one connection handled at once (clients pipeline produce requests:
/// the Java client keeps up to 5 in flight, librdkafka more).
const MAX_IN_FLIGHT: usize = 8;

/// Serves one client connection, pipelined: up to [`MAX_IN_FLIGHT`] requests are
/// handled at once and their responses written in request order, as Kafka requires.
/// Each request's handling is polled once as soon as it is read, and a produce makes
/// its proposals in that first poll, so batches one connection sends to a partition
/// are appended in the order it sent them.
async fn connection(stream: TcpStream, ctx: &Context) -> anyhow::Result<()> {
    let (rd, mut wr) = stream.into_split();
    let (tx, mut frames) = tokio::sync::mpsc::channel(1);
    let reader = AbortOnDrop(tokio::spawn(read_frames(rd, ctx.max_request_bytes, tx)));
    let mut in_flight: FuturesOrdered<BoxFuture<'_, anyhow::Result<Option<Bytes>>>> =
        FuturesOrdered::new();
    let mut reading = true;
    loop {
        tokio::select! {
            biased;
            Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                if let Some(response) = done? {
                    wr.write_all(&response).await?;
                }
            }
            frame = frames.recv(), if reading && in_flight.len() < MAX_IN_FLIGHT => match frame {
                Some(Ok(frame)) => {
                    let mut handling = Box::pin(handle_frame(frame, ctx));
                    let first = std::future::poll_fn(|cx| Poll::Ready(handling.as_mut().poll(cx))).await;
                    match first {
                        Poll::Ready(r) => in_flight.push_back(Box::pin(std::future::ready(r))),
                        Poll::Pending => in_flight.push_back(handling),
                    }
                }
                Some(Err(e)) => return Err(e),
                // The client closed its side: answer what is in flight, then stop.
                None => reading = false,
            },
            else => break,
        }
    }
    drop(reader);
    Ok(())
}

/// Aborts a task when dropped (the frame reader, when its connection ends).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads request frames into `tx` until the client closes the connection or sends a
/// frame that is too small or too large (then the error, which closes it).
async fn read_frames(
    mut rd: tokio::net::tcp::OwnedReadHalf,
    max_request_bytes: usize,
    tx: tokio::sync::mpsc::Sender<anyhow::Result<Bytes>>,
) {
    let frame = async |rd: &mut tokio::net::tcp::OwnedReadHalf| -> anyhow::Result<Option<Bytes>> {
        let size = match rd.read_i32().await {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        anyhow::ensure!(size >= 8, "request frame of {size} bytes is too small");
        anyhow::ensure!(
            size as usize <= max_request_bytes,
            "request frame of {size} bytes exceeds max_request_bytes {max_request_bytes}"
        );
        let mut buf = vec![0u8; size as usize];
        rd.read_exact(&mut buf)
            .await
            .context("reading a request frame")?;
        Ok(Some(Bytes::from(buf)))
    };
    loop {
        match frame(&mut rd).await {
            Ok(Some(f)) => {
                if tx.send(Ok(f)).await.is_err() {
                    return;
                }
            }
            Ok(None) => return,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        }
    }
}

/// Decodes one request frame and returns the encoded response frame (`None` for a
/// produce with acks=0). An `Err` closes the connection.
pub async fn handle_frame(mut frame: Bytes, ctx: &Context) -> anyhow::Result<Option<Bytes>> {
    anyhow::ensure!(
        frame.len() >= 8,
        "request frame of {} bytes is too small",
        frame.len()
    );
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let key =
        ApiKey::try_from(raw_key).map_err(|()| anyhow::anyhow!("unknown API key {raw_key}"))?;
    let Some((lo, hi)) = supported(key) else {
        anyhow::bail!("API {key:?} is not supported");
    };
    if version < lo || version > hi {
        if key == ApiKey::ApiVersions {
            // Answer in v0 form, with the versions we do support (KIP-511).
            let resp = api_versions().with_error_code(code::UNSUPPORTED_VERSION);
            return encode_response(correlation_id, 0, 0, &ResponseKind::ApiVersions(resp))
                .map(Some);
        }
        anyhow::bail!("{key:?} v{version} is not supported (supported: v{lo}-v{hi})");
    }
    let header = RequestHeader::decode(&mut frame, key.request_header_version(version))
        .with_context(|| format!("decoding a {key:?} v{version} request header"))?;
    let request = RequestKind::decode(key, &mut frame, version)
        .with_context(|| format!("decoding a {key:?} v{version} request"))?;
    let response = match request {
        RequestKind::ApiVersions(_) => Some(ResponseKind::ApiVersions(api_versions())),
        RequestKind::Metadata(r) => Some(ResponseKind::Metadata(metadata(r, version, ctx).await)),
        RequestKind::Produce(r) => produce(r, version, ctx).await.map(ResponseKind::Produce),
        RequestKind::Fetch(r) => Some(ResponseKind::Fetch(fetch(r, version, ctx).await)),
        RequestKind::ListOffsets(r) => {
            Some(ResponseKind::ListOffsets(list_offsets(r, version, ctx)))
        }
        RequestKind::CreateTopics(r) => Some(ResponseKind::CreateTopics(
            create_topics(r, version, ctx).await,
        )),
        RequestKind::DeleteTopics(r) => Some(ResponseKind::DeleteTopics(
            delete_topics(r, version, ctx).await,
        )),
        RequestKind::FindCoordinator(r) => {
            Some(ResponseKind::FindCoordinator(find_coordinator(r, version)))
        }
        RequestKind::DescribeConfigs(r) => {
            Some(ResponseKind::DescribeConfigs(describe_configs(r, ctx)))
        }
        other => match crate::groups::answer(&other, version) {
            Some(r) => Some(r),
            None => anyhow::bail!("{key:?} is not handled"),
        },
    };
    let Some(response) = response else {
        return Ok(None);
    };
    // ApiVersions responses always use header v0 (so that old clients can read them).
    let header_version = if key == ApiKey::ApiVersions {
        0
    } else {
        key.response_header_version(version)
    };
    encode_response(header.correlation_id, header_version, version, &response).map(Some)
}

fn encode_response(
    correlation_id: i32,
    header_version: i16,
    version: i16,
    resp: &ResponseKind,
) -> anyhow::Result<Bytes> {
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, header_version)?;
    resp.encode(&mut buf, version)?;
    let len = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf.freeze())
}

fn api_versions() -> ApiVersionsResponse {
    let keys = SUPPORTED
        .iter()
        .filter_map(|(k, _, _)| {
            let (lo, hi) = supported(*k)?;
            Some(
                api_versions_response::ApiVersion::default()
                    .with_api_key(*k as i16)
                    .with_min_version(lo)
                    .with_max_version(hi),
            )
        })
        .collect();
    ApiVersionsResponse::default().with_api_keys(keys)
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn topic_name(s: &str) -> TopicName {
    TopicName(str_bytes(s))
}

/// Splits "host:port".
fn host_port(addr: &str) -> (String, i32) {
    match addr.rsplit_once(':') {
        Some((h, p)) => (
            h.trim_start_matches('[').trim_end_matches(']').to_string(),
            p.parse().unwrap_or(9092),
        ),
        None => (addr.to_string(), 9092),
    }
}

/// The Kafka error code for a core error.
pub fn error_code(e: &Error) -> i16 {
    match e {
        Error::NotLeader { hint: None, .. } => code::LEADER_NOT_AVAILABLE,
        Error::NotLeader { .. } => code::NOT_LEADER_OR_FOLLOWER,
        Error::NotFound(_) => code::UNKNOWN_TOPIC_OR_PARTITION,
        Error::OutOfRange { .. } => code::OFFSET_OUT_OF_RANGE,
        Error::Corrupt(_) => code::CORRUPT_MESSAGE,
        Error::Invalid(m) if m.contains("exceeds the limit") => code::MESSAGE_TOO_LARGE,
        Error::Invalid(_) => code::INVALID_RECORD,
        Error::Timeout(_) => code::REQUEST_TIMED_OUT,
        Error::AlreadyExists(_) => code::TOPIC_ALREADY_EXISTS,
        Error::Io { .. } | Error::Poisoned(_) => code::KAFKA_STORAGE_ERROR,
        _ => code::UNKNOWN_SERVER_ERROR,
    }
}

/// Starts creating `name` with the defaults, without waiting.
fn auto_create(ctx: &Context, name: &str) {
    let node = ctx.node.clone();
    let name = name.to_string();
    let brokers = node.metadata().brokers.len().max(1);
    let (partitions, rf) = (ctx.default_partitions, ctx.default_replication.min(brokers));
    tokio::spawn(async move {
        match node
            .create_topic(
                &name,
                partitions,
                rf,
                BTreeMap::new(),
                Duration::from_secs(10),
            )
            .await
        {
            Ok(()) => {
                tracing::info!(topic = %name, partitions, replication = rf, "auto-created topic")
            }
            Err(Error::AlreadyExists(_)) => {}
            Err(e) => tracing::warn!(topic = %name, error = %e, "auto-creating a topic failed"),
        }
    });
}

/// Leader of a partition as this broker knows it: the local replica's view when it
/// hosts one, else the last leader recorded in metadata.
fn leader_of(ctx: &Context, p: &weir_core::metadata::PartitionMeta) -> Option<LeaderHint> {
    ctx.node
        .group_status(p.group)
        .and_then(|s| s.leader_hint())
        .or(p.leader.map(|(node, term)| LeaderHint { node, term }))
}

async fn metadata(req: MetadataRequest, version: i16, ctx: &Context) -> MetadataResponse {
    let meta = ctx.node.metadata();
    let wanted: Vec<String> = match &req.topics {
        None => meta.topics.keys().cloned().collect(),
        Some(ts) => ts
            .iter()
            .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
            .collect(),
    };
    let may_create = ctx.auto_create && (version < 4 || req.allow_auto_topic_creation);
    let brokers = meta
        .brokers
        .values()
        .map(|b| {
            let (host, port) = host_port(&b.kafka_addr);
            metadata_response::MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.id as i32))
                .with_host(str_bytes(&host))
                .with_port(port)
        })
        .collect();
    let controller = ctx
        .node
        .group_status(GroupId::METADATA)
        .map_or(-1, |s| if s.leader == 0 { -1 } else { s.leader as i32 });
    let mut topics = Vec::new();
    for name in wanted {
        let t =
            metadata_response::MetadataResponseTopic::default().with_name(Some(topic_name(&name)));
        let Some(topic) = meta.topics.get(&name) else {
            let valid = weir_core::node::validate_topic_name(&name).is_ok();
            let code = if !valid {
                code::INVALID_TOPIC_EXCEPTION
            } else if may_create {
                auto_create(ctx, &name);
                code::LEADER_NOT_AVAILABLE
            } else {
                code::UNKNOWN_TOPIC_OR_PARTITION
            };
            topics.push(t.with_error_code(code));
            continue;
        };
        let partitions = topic
            .partitions
            .iter()
            .map(|p| {
                let replicas: Vec<BrokerId> =
                    p.replicas.iter().map(|&r| BrokerId(r as i32)).collect();
                let leader = leader_of(ctx, p);
                let isr = match ctx.node.group_status(p.group) {
                    Some(s) if s.role == Role::Leader => s
                        .progress
                        .iter()
                        .filter(|(_, matched)| matched + 10_000 >= s.commit)
                        .map(|(id, _)| BrokerId(*id as i32))
                        .collect(),
                    _ => replicas.clone(),
                };
                let mp = metadata_response::MetadataResponsePartition::default()
                    .with_error_code(if leader.is_some() {
                        code::NONE
                    } else {
                        code::LEADER_NOT_AVAILABLE
                    })
                    .with_partition_index(p.index)
                    .with_leader_id(BrokerId(leader.map_or(-1, |l| l.node as i32)))
                    .with_replica_nodes(replicas)
                    .with_isr_nodes(isr);
                if version >= 7 {
                    mp.with_leader_epoch(leader.map_or(-1, |l| l.term as i32))
                } else {
                    mp
                }
            })
            .collect();
        topics.push(t.with_partitions(partitions));
    }
    let mut resp = MetadataResponse::default()
        .with_brokers(brokers)
        .with_topics(topics);
    if version >= 1 {
        resp = resp.with_controller_id(BrokerId(controller));
    }
    if version >= 2 {
        resp = resp.with_cluster_id(Some(str_bytes("weir")));
    }
    resp
}

async fn produce(req: ProduceRequest, version: i16, ctx: &Context) -> Option<ProduceResponse> {
    let acks = if req.acks == 0 { Acks::None } else { Acks::All };
    let timeout = Duration::from_millis(req.timeout_ms.max(1) as u64);
    // Not spawned: `join_all` polls them in order, so each partition's proposal is
    // made in the request's first poll (see `connection`).
    let mut jobs = Vec::new();
    let mut slots: Vec<(String, i32)> = Vec::new();
    for t in &req.topic_data {
        let name = t.name.0.to_string();
        if ctx.auto_create
            && !ctx.node.metadata().topics.contains_key(&name)
            && weir_core::node::validate_topic_name(&name).is_ok()
        {
            auto_create(ctx, &name);
        }
        for p in &t.partition_data {
            let slot = slots.len();
            slots.push((name.clone(), p.index));
            let node = &ctx.node;
            let (name, index, records) =
                (name.clone(), p.index, p.records.clone().unwrap_or_default());
            jobs.push(async move {
                (
                    slot,
                    node.produce(&name, index, &records, acks, timeout).await,
                )
            });
        }
    }
    let mut results: Vec<Option<weir_core::Result<Option<weir_core::Appended>>>> =
        (0..slots.len()).map(|_| None).collect();
    for (slot, r) in futures_util::future::join_all(jobs).await {
        results[slot] = Some(r);
    }
    if acks == Acks::None {
        return None;
    }
    let meta = ctx.node.metadata();
    let mut endpoints: BTreeMap<u64, produce_response::NodeEndpoint> = BTreeMap::new();
    let mut by_topic: BTreeMap<String, Vec<produce_response::PartitionProduceResponse>> =
        BTreeMap::new();
    for ((name, index), r) in slots.into_iter().zip(results) {
        let mut pr = produce_response::PartitionProduceResponse::default()
            .with_index(index)
            .with_log_append_time_ms(-1);
        match r.unwrap_or(Err(Error::Shutdown)) {
            Ok(Some(a)) => pr = pr.with_base_offset(a.base_offset),
            Ok(None) => {}
            Err(e) => {
                if let (Error::NotLeader { hint: Some(h), .. }, true) = (&e, version >= 10) {
                    pr = pr.with_current_leader(
                        produce_response::LeaderIdAndEpoch::default()
                            .with_leader_id(BrokerId(h.node as i32))
                            .with_leader_epoch(h.term as i32),
                    );
                    if let Some(b) = meta.brokers.get(&h.node) {
                        let (host, port) = host_port(&b.kafka_addr);
                        endpoints.insert(
                            h.node,
                            produce_response::NodeEndpoint::default()
                                .with_node_id(BrokerId(h.node as i32))
                                .with_host(str_bytes(&host))
                                .with_port(port),
                        );
                    }
                }
                pr = pr.with_error_code(error_code(&e)).with_base_offset(-1);
                if version >= 8 {
                    pr = pr.with_error_message(Some(str_bytes(&e.to_string())));
                }
            }
        }
        by_topic.entry(name).or_default().push(pr);
    }
    let responses = by_topic
        .into_iter()
        .map(|(name, parts)| {
            produce_response::TopicProduceResponse::default()
                .with_name(topic_name(&name))
                .with_partition_responses(parts)
        })
        .collect();
    Some(
        ProduceResponse::default()
            .with_responses(responses)
            .with_node_endpoints(endpoints.into_values().collect()),
    )
}

async fn fetch(req: FetchRequest, version: i16, ctx: &Context) -> FetchResponse {
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64);
    let min_bytes = req.min_bytes.max(0) as usize;
    let mut signal = ctx.node.data_signal();
    loop {
        signal.borrow_and_update();
        let mut total = 0usize;
        let mut budget = req.max_bytes.max(0) as usize;
        let mut responses = Vec::new();
        for t in &req.topics {
            let name = t.topic.0.to_string();
            let mut parts = Vec::new();
            for p in &t.partitions {
                let max = (p.partition_max_bytes.max(0) as usize).min(budget.max(1));
                let r = ctx
                    .node
                    .fetch(&name, p.partition, p.fetch_offset, max, Duration::ZERO, 0)
                    .await;
                let pd = fetch_response::PartitionData::default().with_partition_index(p.partition);
                parts.push(match r {
                    Ok(f) => {
                        total += f.records.len();
                        budget = budget.saturating_sub(f.records.len());
                        let pd = pd
                            .with_high_watermark(f.high_watermark)
                            .with_last_stable_offset(f.high_watermark);
                        let pd = if version >= 5 {
                            pd.with_log_start_offset(f.log_start_offset)
                        } else {
                            pd
                        };
                        pd.with_records(Some(f.records))
                    }
                    Err(e) => {
                        let mut pd = pd
                            .with_error_code(error_code(&e))
                            .with_high_watermark(-1)
                            .with_records(Some(Bytes::new()));
                        if let (Error::NotLeader { hint: Some(h), .. }, true) = (e, version >= 12) {
                            pd = pd.with_current_leader(
                                fetch_response::LeaderIdAndEpoch::default()
                                    .with_leader_id(BrokerId(h.node as i32))
                                    .with_leader_epoch(h.term as i32),
                            );
                        }
                        pd
                    }
                });
            }
            responses.push(
                fetch_response::FetchableTopicResponse::default()
                    .with_topic(t.topic.clone())
                    .with_partitions(parts),
            );
        }
        if total >= min_bytes.max(1) || tokio::time::Instant::now() >= deadline {
            return FetchResponse::default().with_responses(responses);
        }
        if tokio::time::timeout_at(deadline, signal.changed())
            .await
            .is_err()
        {
            continue;
        }
    }
}

fn list_offsets(req: ListOffsetsRequest, version: i16, ctx: &Context) -> ListOffsetsResponse {
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let parts = t
                .partitions
                .iter()
                .map(|p| {
                    let spec = match p.timestamp {
                        -2 => OffsetSpec::Earliest,
                        ts if ts < 0 => OffsetSpec::Latest,
                        ts => OffsetSpec::Timestamp(ts),
                    };
                    let r = list_offsets_response::ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_timestamp(-1);
                    match ctx.node.list_offset(&name, p.partition_index, spec) {
                        Ok(offset) => {
                            let epoch = ctx
                                .node
                                .metadata()
                                .partition(&name, p.partition_index)
                                .and_then(|m| ctx.node.group_status(m.group))
                                .map_or(-1, |s| s.term as i32);
                            let r = r.with_offset(offset.unwrap_or(-1));
                            if version >= 4 {
                                r.with_leader_epoch(epoch)
                            } else {
                                r
                            }
                        }
                        Err(e) => r.with_error_code(error_code(&e)).with_offset(-1),
                    }
                })
                .collect();
            list_offsets_response::ListOffsetsTopicResponse::default()
                .with_name(t.name.clone())
                .with_partitions(parts)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

async fn create_topics(
    req: CreateTopicsRequest,
    version: i16,
    ctx: &Context,
) -> CreateTopicsResponse {
    let timeout = Duration::from_millis(req.timeout_ms.clamp(1, 60_000) as u64);
    let brokers = ctx.node.metadata().brokers.len().max(1);
    let mut results = Vec::new();
    for t in req.topics {
        let name = t.name.0.to_string();
        let partitions = if t.num_partitions < 0 {
            ctx.default_partitions
        } else {
            t.num_partitions
        };
        let rf = if t.replication_factor < 0 {
            ctx.default_replication.min(brokers)
        } else {
            t.replication_factor as usize
        };
        let configs: BTreeMap<String, String> = t
            .configs
            .iter()
            .filter_map(|c| {
                c.value
                    .as_ref()
                    .map(|v| (c.name.to_string(), v.to_string()))
            })
            .collect();
        let r = if !t.assignments.is_empty() {
            Err((
                code::INVALID_REPLICA_ASSIGNMENT,
                "manual replica assignment is not supported".to_string(),
            ))
        } else if partitions < 1 {
            Err((code::INVALID_PARTITIONS, format!("{partitions} partitions")))
        } else if rf < 1 || rf > brokers {
            Err((
                code::INVALID_REPLICATION_FACTOR,
                format!("replication factor {rf} with {brokers} broker(s)"),
            ))
        } else if let Err(e) = weir_core::node::validate_topic_name(&name) {
            Err((code::INVALID_TOPIC_EXCEPTION, e.to_string()))
        } else if req.validate_only {
            Ok(())
        } else {
            ctx.node
                .create_topic(&name, partitions, rf, configs, timeout)
                .await
                .map_err(|e| (error_code(&e), e.to_string()))
        };
        let mut res = create_topics_response::CreatableTopicResult::default().with_name(t.name);
        if version >= 5 {
            res = res
                .with_num_partitions(partitions)
                .with_replication_factor(rf as i16);
        }
        results.push(match r {
            Ok(()) => res,
            Err((code, msg)) => res
                .with_error_code(code)
                .with_error_message(Some(str_bytes(&msg))),
        });
    }
    CreateTopicsResponse::default().with_topics(results)
}

async fn delete_topics(
    req: DeleteTopicsRequest,
    version: i16,
    ctx: &Context,
) -> DeleteTopicsResponse {
    let timeout = Duration::from_millis(req.timeout_ms.clamp(1, 60_000) as u64);
    let names: Vec<TopicName> = if version >= 6 {
        req.topics.into_iter().filter_map(|t| t.name).collect()
    } else {
        req.topic_names
    };
    let mut results = Vec::new();
    for n in names {
        let r = ctx.node.delete_topic(&n.0, timeout).await;
        let res = delete_topics_response::DeletableTopicResult::default().with_name(Some(n));
        results.push(match r {
            Ok(()) => res,
            Err(e) if version >= 5 => res
                .with_error_code(error_code(&e))
                .with_error_message(Some(str_bytes(&e.to_string()))),
            Err(e) => res.with_error_code(error_code(&e)),
        });
    }
    DeleteTopicsResponse::default().with_responses(results)
}

/// Topic configs as stored in metadata (resource type 2); brokers (type 4) have
/// none that clients can set yet.
fn describe_configs(req: DescribeConfigsRequest, ctx: &Context) -> DescribeConfigsResponse {
    const TOPIC: i8 = 2;
    const BROKER: i8 = 4;
    const TOPIC_CONFIG_SOURCE: i8 = 1;
    let meta = ctx.node.metadata();
    let results = req
        .resources
        .into_iter()
        .map(|r| {
            let res = describe_configs_response::DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            match r.resource_type {
                TOPIC => match meta.topics.get(r.resource_name.as_str()) {
                    None => res
                        .with_error_code(code::UNKNOWN_TOPIC_OR_PARTITION)
                        .with_error_message(Some(str_bytes(&format!(
                            "unknown topic {}",
                            r.resource_name.as_str()
                        )))),
                    Some(t) => {
                        let wanted = |k: &str| {
                            r.configuration_keys
                                .as_ref()
                                .is_none_or(|keys| keys.iter().any(|w| w.as_str() == k))
                        };
                        let configs = t
                            .configs
                            .iter()
                            .filter(|(k, _)| wanted(k))
                            .map(|(k, v)| {
                                describe_configs_response::DescribeConfigsResourceResult::default()
                                    .with_name(str_bytes(k))
                                    .with_value(Some(str_bytes(v)))
                                    .with_config_source(TOPIC_CONFIG_SOURCE)
                            })
                            .collect();
                        res.with_configs(configs)
                    }
                },
                BROKER => res,
                other => res
                    .with_error_code(code::INVALID_REQUEST)
                    .with_error_message(Some(str_bytes(&format!(
                        "resource type {other} is not supported"
                    )))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

fn find_coordinator(req: FindCoordinatorRequest, version: i16) -> FindCoordinatorResponse {
    let msg = Some(str_bytes(
        "consumer groups are not supported by weir yet; assign partitions instead",
    ));
    if version >= 4 {
        let coordinators = req
            .coordinator_keys
            .into_iter()
            .map(|key| {
                find_coordinator_response::Coordinator::default()
                    .with_key(key)
                    .with_node_id(BrokerId(-1))
                    .with_port(-1)
                    .with_error_code(code::COORDINATOR_NOT_AVAILABLE)
                    .with_error_message(msg.clone())
            })
            .collect();
        FindCoordinatorResponse::default().with_coordinators(coordinators)
    } else {
        let r = FindCoordinatorResponse::default()
            .with_error_code(code::COORDINATOR_NOT_AVAILABLE)
            .with_node_id(BrokerId(-1))
            .with_port(-1);
        if version >= 1 {
            r.with_error_message(msg)
        } else {
            r
        }
    }
}
