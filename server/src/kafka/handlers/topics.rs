//! CreateTopics and DeleteTopics.

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;

use super::str_bytes;
use crate::kafka::Context;
use crate::kafka::errors::error_code;

/// Creates topics (or only validates them, with `validate_only`), answering once
/// every partition of each has a leader (within the request's timeout), so that
/// a client reading Metadata next does not cache LEADER_NOT_AVAILABLE.
pub async fn create(req: CreateTopicsRequest, version: i16, ctx: &Context) -> CreateTopicsResponse {
    let timeout = Duration::from_millis(req.timeout_ms.clamp(1, 60_000) as u64);
    let deadline = tokio::time::Instant::now() + timeout;
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
            create_assigned(&t, &name, configs, req.validate_only, timeout, ctx).await
        } else if partitions < 1 || partitions > ctx.max_partitions_per_topic {
            Err((
                ResponseError::InvalidPartitions.code(),
                format!(
                    "{partitions} partitions: 1 to max_partitions_per_topic = {} allowed",
                    ctx.max_partitions_per_topic
                ),
            ))
        } else if rf < 1 || rf > brokers {
            Err((
                ResponseError::InvalidReplicationFactor.code(),
                format!("replication factor {rf} with {brokers} broker(s)"),
            ))
        } else if let Err(e) = weir_core::validate_topic_name(&name) {
            Err((ResponseError::InvalidTopicException.code(), e.to_string()))
        } else if req.validate_only {
            ctx.node
                .check_new_topic(&name, partitions, rf)
                .and_then(|_| weir_core::validate_topic_configs(&configs))
                .map_err(|e| (error_code(&e), e.to_string()))
        } else {
            ctx.node
                .create_topic(&name, partitions, rf, configs, timeout)
                .await
                .map_err(|e| (error_code(&e), e.to_string()))
        };
        let r = match r {
            Ok(()) if !req.validate_only => wait_leaders(&name, deadline, ctx).await,
            r => r,
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

/// A topic with its replicas named, per partition (`--replica-assignment`).
async fn create_assigned(
    t: &create_topics_request::CreatableTopic,
    name: &str,
    configs: BTreeMap<String, String>,
    validate_only: bool,
    timeout: Duration,
    ctx: &Context,
) -> Result<(), (i16, String)> {
    let invalid = |msg: String| (ResponseError::InvalidReplicaAssignment.code(), msg);
    if t.num_partitions != -1 || t.replication_factor != -1 {
        return Err((
            ResponseError::InvalidRequest.code(),
            "with replica assignments, num_partitions and replication_factor must be -1".into(),
        ));
    }
    let mut assigned: Vec<(i32, Vec<i32>)> = t
        .assignments
        .iter()
        .map(|a| {
            (
                a.partition_index,
                a.broker_ids.iter().map(|b| b.0).collect(),
            )
        })
        .collect();
    assigned.sort_unstable_by_key(|(p, _)| *p);
    if assigned.len() > ctx.max_partitions_per_topic as usize {
        return Err((
            ResponseError::InvalidPartitions.code(),
            format!(
                "{} partitions: 1 to max_partitions_per_topic = {} allowed",
                assigned.len(),
                ctx.max_partitions_per_topic
            ),
        ));
    }
    let mut replicas = Vec::with_capacity(assigned.len());
    for (i, (p, brokers)) in assigned.into_iter().enumerate() {
        if p != i as i32 {
            return Err(invalid(format!(
                "partitions must be numbered 0 to {} without gaps",
                t.assignments.len() - 1
            )));
        }
        let ids: Option<Vec<weir_core::NodeId>> =
            brokers.iter().map(|&b| u64::try_from(b).ok()).collect();
        replicas.push(ids.ok_or_else(|| invalid(format!("partition {p}: negative broker id")))?);
    }
    let code = |e: weir_core::Error| match e {
        weir_core::Error::Invalid(m) => invalid(m),
        e => (error_code(&e), e.to_string()),
    };
    if validate_only {
        return ctx.node.check_assignment(name, &replicas).map_err(code);
    }
    ctx.node
        .create_topic_assigned(name, replicas, configs, timeout)
        .await
        .map_err(code)
}

/// Waits (until the request's deadline) for every partition of a created topic
/// to have a leader; REQUEST_TIMED_OUT when some do not, as Kafka answers.
async fn wait_leaders(
    name: &str,
    deadline: tokio::time::Instant,
    ctx: &Context,
) -> Result<(), (i16, String)> {
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    ctx.node
        .wait_topic_leaders(name, left)
        .await
        .map_err(|e| (error_code(&e), e.to_string()))
}

/// Deletes topics by name, or (v6) by id; an id no topic has is answered
/// UNKNOWN_TOPIC_ID.
pub async fn delete(req: DeleteTopicsRequest, version: i16, ctx: &Context) -> DeleteTopicsResponse {
    let timeout = Duration::from_millis(req.timeout_ms.clamp(1, 60_000) as u64);
    let mut results = Vec::new();
    let names: Vec<TopicName> = if version >= 6 {
        let meta = ctx.node.metadata();
        req.topics
            .into_iter()
            .filter_map(|t| {
                if let Some(n) = t.name {
                    return Some(n);
                }
                let found = meta.topic_by_id(*t.topic_id.as_bytes());
                if found.is_none() {
                    results.push(
                        delete_topics_response::DeletableTopicResult::default()
                            .with_topic_id(t.topic_id)
                            .with_error_code(ResponseError::UnknownTopicId.code())
                            .with_error_message(Some(str_bytes("no topic has this id"))),
                    );
                }
                found.map(|t| super::topic_name(&t.name))
            })
            .collect()
    } else {
        req.topic_names
    };
    for n in names {
        let id = ctx.node.metadata().topics.get(n.0.as_str()).map(|t| t.id);
        let r = ctx.node.delete_topic(&n.0, timeout).await;
        let mut res = delete_topics_response::DeletableTopicResult::default().with_name(Some(n));
        if let (Some(id), true) = (id, version >= 6) {
            res = res.with_topic_id(uuid::Uuid::from_bytes(id));
        }
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
