//! Dispatch: decode a request header, check its API and version against what weir
//! supports, hand the request to its handler and encode the response.

use anyhow::Context as _;
use bytes::{Bytes, BytesMut};
use futures_util::FutureExt as _;
use futures_util::future::BoxFuture;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable};

use super::codec::MIN_REQUEST_BYTES;
use super::connection::Session;
use super::handlers;
use super::{Context, handlers::groups};

/// The APIs and versions weir answers (intersected with what the crate decodes).
/// Produce stops at 12 (13 names topics by id only); Fetch from 13 and
/// DeleteTopics 6 name them by id (KIP-516), which Metadata (v10+) reports.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 12),
    (ApiKey::Fetch, 4, 16),
    (ApiKey::ListOffsets, 1, 8),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::ElectLeaders, 0, 2),
    (ApiKey::DescribeCluster, 0, 2),
    (ApiKey::AlterPartitionReassignments, 0, 1),
    (ApiKey::ListPartitionReassignments, 0, 0),
    // Consumer groups (classic protocol). OffsetFetch 8-9 batch several groups.
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    // Idempotent producers (no transactions yet).
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::DescribeProducers, 0, 0),
    // The consumer group protocol (KIP-848).
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::ConsumerGroupDescribe, 0, 1),
];

/// The versions of `key` ApiVersions advertises: what weir answers, except
/// that Produce is advertised from v0, as Kafka 4.0 does (KAFKA-18659):
/// librdkafka before 2.11.1 (Debian's kcat among its users) checks for Produce
/// v0 before it compresses, and sends gzip, snappy and lz4 batches uncompressed
/// to a broker that does not list it. A Produce request below v3 is still
/// refused, by closing the connection, as Kafka does.
pub fn advertised(key: ApiKey) -> Option<(i16, i16)> {
    let (lo, hi) = supported(key)?;
    Some(if key == ApiKey::Produce {
        (0, hi)
    } else {
        (lo, hi)
    })
}

/// The versions of `key` weir answers, if any.
pub fn supported(key: ApiKey) -> Option<(i16, i16)> {
    let &(_, lo, hi) = SUPPORTED.iter().find(|(k, _, _)| *k == key)?;
    let crate_range = key.valid_versions();
    Some((lo.max(crate_range.min), hi.min(crate_range.max)))
}

/// A request being handled: resolves to the encoded response frame (without its
/// size prefix), or `None` when no response is due (a produce with acks=0). An
/// `Err` closes the connection.
pub type Pending<'a> = BoxFuture<'a, anyhow::Result<Option<Bytes>>>;

/// How a request is answered once decoded.
struct Request {
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    /// When its frame was taken up, and its size (for the metrics).
    started: std::time::Instant,
    frame_bytes: usize,
}

/// Decodes one request frame, does the first part of its handling (a produce
/// waits for room in the node's produce budget and makes its proposals before
/// this returns) and returns the rest.
///
/// # Errors
/// A frame too small to hold a header, an unknown or unsupported API or version
/// (other than ApiVersions, which is answered), or an undecodable request.
pub async fn start<'a>(
    mut frame: Bytes,
    ctx: &'a Context,
    session: &mut Session,
) -> anyhow::Result<Pending<'a>> {
    anyhow::ensure!(
        frame.len() >= MIN_REQUEST_BYTES,
        "request frame of {} bytes is too small",
        frame.len()
    );
    let frame_bytes = frame.len();
    let started = std::time::Instant::now();
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
            let resp = api_versions().with_error_code(ResponseError::UnsupportedVersion.code());
            let req = Request {
                key,
                version: 0,
                correlation_id,
                started,
                frame_bytes,
            };
            let frame = encode(&req, &ResponseKind::ApiVersions(resp));
            return Ok(async move { frame.map(Some) }.boxed());
        }
        anyhow::bail!("{key:?} v{version} is not supported (supported: v{lo}-v{hi})");
    }
    let header = RequestHeader::decode(&mut frame, key.request_header_version(version))
        .with_context(|| format!("decoding a {key:?} v{version} request header"))?;
    if let Some(id) = &header.client_id
        && session.client_id.as_deref() != Some(id.as_str())
    {
        session.client_id = Some(id.to_string());
    }
    let body = RequestKind::decode(key, &mut frame, version)
        .with_context(|| format!("decoding a {key:?} v{version} request"))?;
    let req = Request {
        key,
        version,
        correlation_id: header.correlation_id,
        started,
        frame_bytes,
    };
    Ok(match body {
        RequestKind::ApiVersions(_) => respond(req, async {
            Some(ResponseKind::ApiVersions(api_versions()))
        }),
        RequestKind::Metadata(r) => respond(req, async move {
            Some(ResponseKind::Metadata(
                handlers::metadata::handle(r, version, ctx).await,
            ))
        }),
        RequestKind::Produce(r) => {
            // The proposals carry less than the frame did. Waiting here holds up the
            // connection's next request, which is the backpressure.
            let credit = ctx.node.reserve_produce(frame_bytes).await;
            // Proposals are made here, before the next request is read.
            let produced = handlers::produce::start(r, version, ctx, credit);
            respond(
                req,
                async move { produced.await.map(ResponseKind::Produce) },
            )
        }
        RequestKind::Fetch(r) => respond(req, async move {
            Some(ResponseKind::Fetch(
                handlers::fetch::handle(r, version, ctx).await,
            ))
        }),
        RequestKind::ListOffsets(r) => respond(req, async move {
            Some(ResponseKind::ListOffsets(handlers::offsets::handle(
                r, version, ctx,
            )))
        }),
        RequestKind::OffsetForLeaderEpoch(r) => respond(req, async move {
            Some(ResponseKind::OffsetForLeaderEpoch(
                handlers::offsets::epochs(r, ctx),
            ))
        }),
        RequestKind::CreateTopics(r) => respond(req, async move {
            Some(ResponseKind::CreateTopics(
                handlers::topics::create(r, version, ctx).await,
            ))
        }),
        RequestKind::DeleteTopics(r) => respond(req, async move {
            Some(ResponseKind::DeleteTopics(
                handlers::topics::delete(r, version, ctx).await,
            ))
        }),
        RequestKind::DescribeConfigs(r) => respond(req, async move {
            Some(ResponseKind::DescribeConfigs(handlers::configs::describe(
                r, ctx,
            )))
        }),
        RequestKind::AlterConfigs(r) => respond(req, async move {
            Some(ResponseKind::AlterConfigs(
                handlers::alter_configs::alter(r, ctx).await,
            ))
        }),
        RequestKind::IncrementalAlterConfigs(r) => respond(req, async move {
            Some(ResponseKind::IncrementalAlterConfigs(
                handlers::alter_configs::incremental(r, ctx).await,
            ))
        }),
        RequestKind::DeleteRecords(r) => respond(req, async move {
            Some(ResponseKind::DeleteRecords(
                handlers::records::delete(r, ctx).await,
            ))
        }),
        RequestKind::CreatePartitions(r) => respond(req, async move {
            Some(ResponseKind::CreatePartitions(
                handlers::cluster::create_partitions(r, ctx).await,
            ))
        }),
        RequestKind::ElectLeaders(r) => {
            let forwarded =
                session.client_id.as_deref() == Some(crate::client::FORWARDED_CLIENT_ID);
            respond(req, async move {
                Some(ResponseKind::ElectLeaders(
                    handlers::cluster::elect_leaders(r, ctx, forwarded).await,
                ))
            })
        }
        RequestKind::AlterPartitionReassignments(r) => respond(req, async move {
            Some(ResponseKind::AlterPartitionReassignments(
                handlers::reassign::alter(r, ctx).await,
            ))
        }),
        RequestKind::ListPartitionReassignments(r) => respond(req, async move {
            Some(ResponseKind::ListPartitionReassignments(
                handlers::reassign::list(r, ctx),
            ))
        }),
        RequestKind::DescribeCluster(_) => respond(req, async move {
            Some(ResponseKind::DescribeCluster(
                handlers::cluster::describe_cluster(ctx),
            ))
        }),
        RequestKind::FindCoordinator(r) => respond(req, async move {
            Some(ResponseKind::FindCoordinator(
                groups::find_coordinator(r, version, ctx).await,
            ))
        }),
        RequestKind::OffsetCommit(r) => {
            let committed = groups::offset_commit(r, ctx);
            respond(req, async move {
                Some(ResponseKind::OffsetCommit(committed.await))
            })
        }
        RequestKind::OffsetFetch(r) => respond(req, async move {
            Some(ResponseKind::OffsetFetch(groups::offset_fetch(
                r, version, ctx,
            )))
        }),
        RequestKind::JoinGroup(r) => {
            let (client, host) = handlers::membership::client_of(session);
            respond(req, async move {
                Some(ResponseKind::JoinGroup(
                    handlers::membership::join(r, version, ctx, client, host).await,
                ))
            })
        }
        RequestKind::SyncGroup(r) => respond(req, async move {
            Some(ResponseKind::SyncGroup(
                handlers::membership::sync(r, ctx).await,
            ))
        }),
        RequestKind::Heartbeat(r) => respond(req, async move {
            Some(ResponseKind::Heartbeat(handlers::membership::heartbeat(
                r, ctx,
            )))
        }),
        RequestKind::LeaveGroup(r) => respond(req, async move {
            Some(ResponseKind::LeaveGroup(
                handlers::membership::leave(r, version, ctx).await,
            ))
        }),
        RequestKind::ListGroups(r) => respond(req, async move {
            Some(ResponseKind::ListGroups(handlers::group_admin::list(
                r, ctx,
            )))
        }),
        RequestKind::DescribeGroups(r) => respond(req, async move {
            Some(ResponseKind::DescribeGroups(
                handlers::group_admin::describe(r, ctx),
            ))
        }),
        RequestKind::DeleteGroups(r) => respond(req, async move {
            Some(ResponseKind::DeleteGroups(
                handlers::group_admin::delete(r, ctx).await,
            ))
        }),
        RequestKind::OffsetDelete(r) => respond(req, async move {
            Some(ResponseKind::OffsetDelete(
                handlers::group_admin::delete_offsets(r, ctx).await,
            ))
        }),
        RequestKind::ConsumerGroupHeartbeat(r) => {
            let (client, host) = handlers::membership::client_of(session);
            respond(req, async move {
                Some(ResponseKind::ConsumerGroupHeartbeat(
                    handlers::consumer_groups::heartbeat(r, ctx, client, host).await,
                ))
            })
        }
        RequestKind::InitProducerId(r) => respond(req, async move {
            Some(ResponseKind::InitProducerId(
                handlers::producers::init_producer_id(r, ctx).await,
            ))
        }),
        RequestKind::DescribeProducers(r) => respond(req, async move {
            Some(ResponseKind::DescribeProducers(
                handlers::producers::describe_producers(r, ctx),
            ))
        }),
        RequestKind::ConsumerGroupDescribe(r) => respond(req, async move {
            Some(ResponseKind::ConsumerGroupDescribe(
                handlers::consumer_groups::describe(r, ctx),
            ))
        }),
        _ => anyhow::bail!("{key:?} is not handled"),
    })
}

/// Encodes what `handling` resolves to as the response to `req`.
fn respond<'a>(
    req: Request,
    handling: impl Future<Output = Option<ResponseKind>> + Send + 'a,
) -> Pending<'a> {
    async move {
        let resp = handling.await;
        let frame = resp.as_ref().map(|r| encode(&req, r)).transpose()?;
        crate::metrics::request_done(
            req.key,
            req.version,
            req.started.elapsed(),
            req.frame_bytes,
            frame.as_ref().map_or(0, Bytes::len),
        );
        if let Some(r) = &resp {
            error_codes(r, &mut |code| crate::metrics::request_error(req.key, code));
        }
        Ok(frame)
    }
    .boxed()
}

/// Calls `each` with the non-zero error codes a response carries (top level
/// and per topic or partition), for the error counters; APIs without
/// per-item errors give their top-level code only.
fn error_codes(resp: &ResponseKind, each: &mut dyn FnMut(i16)) {
    let mut v = Codes(each);
    match resp {
        ResponseKind::Produce(r) => v.extend(
            r.responses
                .iter()
                .flat_map(|t| t.partition_responses.iter().map(|p| p.error_code)),
        ),
        ResponseKind::Fetch(r) => {
            v.push(r.error_code);
            v.extend(
                r.responses
                    .iter()
                    .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
            );
        }
        ResponseKind::ListOffsets(r) => v.extend(
            r.topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
        ),
        ResponseKind::Metadata(r) => v.extend(r.topics.iter().map(|t| t.error_code)),
        ResponseKind::CreateTopics(r) => v.extend(r.topics.iter().map(|t| t.error_code)),
        ResponseKind::DeleteTopics(r) => v.extend(r.responses.iter().map(|t| t.error_code)),
        ResponseKind::OffsetCommit(r) => v.extend(
            r.topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
        ),
        ResponseKind::FindCoordinator(r) => {
            v.push(r.error_code);
            v.extend(r.coordinators.iter().map(|c| c.error_code));
        }
        ResponseKind::JoinGroup(r) => v.push(r.error_code),
        ResponseKind::SyncGroup(r) => v.push(r.error_code),
        ResponseKind::Heartbeat(r) => v.push(r.error_code),
        ResponseKind::LeaveGroup(r) => v.push(r.error_code),
        ResponseKind::InitProducerId(r) => v.push(r.error_code),
        ResponseKind::ConsumerGroupHeartbeat(r) => v.push(r.error_code),
        ResponseKind::ApiVersions(r) => v.push(r.error_code),
        _ => {}
    }
}

/// Passes on the non-zero codes it is given.
struct Codes<'a>(&'a mut dyn FnMut(i16));

impl Codes<'_> {
    fn push(&mut self, code: i16) {
        if code != 0 {
            (self.0)(code);
        }
    }

    fn extend(&mut self, codes: impl IntoIterator<Item = i16>) {
        for c in codes {
            self.push(c);
        }
    }
}

/// Decodes one request frame (without its size prefix) and returns the encoded
/// response frame (`None` for a produce with acks=0), as a connection would. An
/// `Err` closes the connection.
///
/// # Errors
/// As [`start`], and a response that cannot be encoded.
pub async fn handle_frame(frame: Bytes, ctx: &Context) -> anyhow::Result<Option<Bytes>> {
    let mut session = Session::new(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    start(frame, ctx, &mut session).await?.await
}

fn encode(req: &Request, resp: &ResponseKind) -> anyhow::Result<Bytes> {
    // ApiVersions responses always use header v0 (so that old clients can read them).
    let header_version = if req.key == ApiKey::ApiVersions {
        0
    } else {
        req.key.response_header_version(req.version)
    };
    let mut buf = BytesMut::with_capacity(256);
    ResponseHeader::default()
        .with_correlation_id(req.correlation_id)
        .encode(&mut buf, header_version)
        .with_context(|| format!("encoding a {:?} response header", req.key))?;
    resp.encode(&mut buf, req.version)
        .with_context(|| format!("encoding a {:?} v{} response", req.key, req.version))?;
    Ok(buf.freeze())
}

fn api_versions() -> ApiVersionsResponse {
    let keys = SUPPORTED
        .iter()
        .filter_map(|(k, _, _)| {
            let (lo, hi) = advertised(*k)?;
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
