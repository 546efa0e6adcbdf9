//! CreateTopics and DeleteTopics.

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;

use super::str_bytes;
use crate::kafka::Context;
use crate::kafka::errors::error_code;

/// Creates topics (or only validates them, with `validate_only`).
pub async fn create(req: CreateTopicsRequest, version: i16, ctx: &Context) -> CreateTopicsResponse {
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
                ResponseError::InvalidReplicaAssignment.code(),
                "manual replica assignment is not supported".to_string(),
            ))
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

/// Deletes topics by name.
pub async fn delete(req: DeleteTopicsRequest, version: i16, ctx: &Context) -> DeleteTopicsResponse {
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
