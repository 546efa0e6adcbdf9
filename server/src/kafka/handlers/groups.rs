//! Consumer-group APIs over the core's coordinators ([`weir_core::groups`]):
//! FindCoordinator, OffsetCommit and OffsetFetch here; the classic membership
//! APIs (JoinGroup, SyncGroup, Heartbeat, LeaveGroup) in [`super::membership`].

use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use weir_core::groups::{Committer, OffsetCommit};
use weir_core::{Error, GroupError};

use super::{Context, host_port, str_bytes};
use crate::kafka::errors::error_code;

pub(crate) const NO_COORDINATOR: i16 = ResponseError::CoordinatorNotAvailable.code();

/// How long an offset commit may take to be replicated.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);

/// One key's coordinator: (node id, host, port, error code, message).
async fn coordinator_of(
    key: &str,
    key_type: i8,
    ctx: &Context,
) -> (i32, String, i32, i16, Option<String>) {
    if key_type != 0 {
        return (
            -1,
            String::new(),
            -1,
            NO_COORDINATOR,
            Some("weir coordinates consumer groups only (no transactions yet)".into()),
        );
    }
    let found = ctx.node.find_coordinator(key).await.and_then(|node| {
        let meta = ctx.node.metadata();
        let b = meta
            .brokers
            .get(&node)
            .ok_or(Error::Group(GroupError::CoordinatorNotAvailable))?;
        Ok((node, host_port(&b.kafka_addr)))
    });
    match found {
        Ok((node, (host, port))) => (i32::try_from(node).unwrap_or(-1), host, port, 0, None),
        Err(e) => (-1, String::new(), -1, error_code(&e), Some(e.to_string())),
    }
}

/// FindCoordinator, v0–v6 (batched keys from v4).
pub async fn find_coordinator(
    req: FindCoordinatorRequest,
    version: i16,
    ctx: &Context,
) -> FindCoordinatorResponse {
    if version >= 4 {
        let mut coordinators = Vec::with_capacity(req.coordinator_keys.len());
        for key in req.coordinator_keys {
            let (node, host, port, code, msg) = coordinator_of(&key, req.key_type, ctx).await;
            coordinators.push(
                find_coordinator_response::Coordinator::default()
                    .with_key(key)
                    .with_node_id(BrokerId(node))
                    .with_host(str_bytes(&host))
                    .with_port(port)
                    .with_error_code(code)
                    .with_error_message(msg.map(|m| str_bytes(&m))),
            );
        }
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let (node, host, port, code, msg) = coordinator_of(&req.key, req.key_type, ctx).await;
    let r = FindCoordinatorResponse::default()
        .with_error_code(code)
        .with_node_id(BrokerId(node))
        .with_host(str_bytes(&host))
        .with_port(port);
    if version >= 1 {
        r.with_error_message(msg.map(|m| str_bytes(&m)))
    } else {
        r
    }
}

/// OffsetCommit, v2–v9: one code for the whole request (every partition gets it).
pub fn offset_commit(
    req: OffsetCommitRequest,
    ctx: &Context,
) -> impl std::future::Future<Output = OffsetCommitResponse> + Send + 'static {
    let offsets: Vec<OffsetCommit> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| OffsetCommit {
                topic: t.name.to_string(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: p.committed_leader_epoch,
                metadata: p
                    .committed_metadata
                    .as_ref()
                    .map(|m| m.to_string())
                    .unwrap_or_default(),
            })
        })
        .collect();
    let who = Committer {
        member_id: req.member_id.to_string(),
        generation: req.generation_id_or_member_epoch,
        instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
    };
    // Proposed now, before the connection's next request is read: pipelined
    // commits are applied in the order they were sent.
    let started = ctx.node.start_commit(&req.group_id, &who, offsets);
    async move {
        let outcome = match started {
            Ok(pending) => pending.wait(COMMIT_TIMEOUT).await,
            Err(e) => Err(e),
        };
        let code = match outcome {
            Ok(()) => 0,
            Err(e) => {
                tracing::debug!(group = %req.group_id.as_str(), error = %e, "offset commit refused");
                error_code(&e)
            }
        };
        let topics = req
            .topics
            .iter()
            .map(|t| {
                offset_commit_response::OffsetCommitResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                offset_commit_response::OffsetCommitResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(code)
                            })
                            .collect(),
                    )
            })
            .collect();
        OffsetCommitResponse::default().with_topics(topics)
    }
}

/// One partition's answer: index, committed offset, leader epoch, metadata.
type FetchedPartition = (i32, i64, i32, Option<String>);

/// One group's committed offsets for OffsetFetch: the topics and partitions
/// (every committed one when `topics` is `None`), or the group's error code.
type Fetched = Result<Vec<(String, Vec<FetchedPartition>)>, i16>;

fn fetch_group(group: &str, topics: Option<Vec<(String, Vec<i32>)>>, ctx: &Context) -> Fetched {
    let asked: Option<Vec<(String, i32)>> = topics.map(|ts| {
        ts.into_iter()
            .flat_map(|(t, ps)| ps.into_iter().map(move |p| (t.clone(), p)))
            .collect()
    });
    let committed = ctx
        .node
        .committed_offsets(group, asked.as_deref())
        .map_err(|e| error_code(&e))?;
    let mut out: Vec<(String, Vec<FetchedPartition>)> = Vec::new();
    for (topic, partition, o) in committed {
        let entry = match o {
            Some(o) => (partition, o.offset, o.leader_epoch, Some(o.metadata)),
            None => (partition, -1, -1, Some(String::new())),
        };
        match out.last_mut() {
            Some((t, ps)) if *t == topic => ps.push(entry),
            _ => out.push((topic, vec![entry])),
        }
    }
    Ok(out)
}

/// OffsetFetch, v1–v9 (several groups at once from v8).
pub fn offset_fetch(req: OffsetFetchRequest, version: i16, ctx: &Context) -> OffsetFetchResponse {
    if version >= 8 {
        let groups = req
            .groups
            .into_iter()
            .map(|g| {
                let topics = g.topics.map(|ts| {
                    ts.into_iter()
                        .map(|t| (t.name.to_string(), t.partition_indexes))
                        .collect()
                });
                let (code, topics) = match fetch_group(&g.group_id, topics, ctx) {
                    Ok(t) => (0, t),
                    Err(code) => (code, Vec::new()),
                };
                offset_fetch_response::OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id)
                    .with_error_code(code)
                    .with_topics(
                        topics
                            .into_iter()
                            .map(|(t, ps)| {
                                offset_fetch_response::OffsetFetchResponseTopics::default()
                                    .with_name(super::topic_name(&t))
                                    .with_partitions(
                                        ps.into_iter()
                                            .map(|(p, o, e, m)| {
                                                offset_fetch_response::OffsetFetchResponsePartitions::default()
                                                    .with_partition_index(p)
                                                    .with_committed_offset(o)
                                                    .with_committed_leader_epoch(e)
                                                    .with_metadata(m.map(|m| str_bytes(&m)))
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    )
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let topics = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name.to_string(), t.partition_indexes))
            .collect::<Vec<_>>()
    });
    let asked = topics.clone();
    let (code, found) = match fetch_group(&req.group_id, topics, ctx) {
        Ok(t) => (0, t),
        // Before v2 the error goes in every partition; from v2 at the top too.
        Err(code) => (
            code,
            asked
                .unwrap_or_default()
                .into_iter()
                .map(|(t, ps)| (t, ps.into_iter().map(|p| (p, -1, -1, None)).collect()))
                .collect(),
        ),
    };
    let partition_code = if version < 2 { code } else { 0 };
    let topics = found
        .into_iter()
        .map(|(t, ps)| {
            offset_fetch_response::OffsetFetchResponseTopic::default()
                .with_name(super::topic_name(&t))
                .with_partitions(
                    ps.into_iter()
                        .map(|(p, o, e, m)| {
                            offset_fetch_response::OffsetFetchResponsePartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(o)
                                .with_committed_leader_epoch(e)
                                .with_metadata(m.map(|m| str_bytes(&m)))
                                .with_error_code(partition_code)
                        })
                        .collect(),
                )
        })
        .collect();
    let resp = OffsetFetchResponse::default().with_topics(topics);
    if version >= 2 {
        resp.with_error_code(code)
    } else {
        resp
    }
}
