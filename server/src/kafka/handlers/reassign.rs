//! AlterPartitionReassignments and ListPartitionReassignments: moving
//! partitions' replicas (what `kafka-reassign-partitions` and admin clients
//! call; the move itself is `weir_core::pipeline::reassign`).

use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use weir_core::{Error, NodeId};

use super::{str_bytes, topic_name};
use crate::kafka::Context;
use crate::kafka::errors::error_code;

/// Starts (a list of replicas) or cancels (null) each partition's move.
/// Answers once metadata records it; the move goes on in the background and
/// ListPartitionReassignments shows it until it is done.
pub async fn alter(
    req: AlterPartitionReassignmentsRequest,
    ctx: &Context,
) -> AlterPartitionReassignmentsResponse {
    let timeout = Duration::from_millis(req.timeout_ms.clamp(1, 60_000) as u64);
    let mut responses = Vec::new();
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut partitions = Vec::new();
        for p in t.partitions {
            let meta = ctx.node.metadata();
            let part = meta.partition(&name, p.partition_index).cloned();
            let r = match (part, p.replicas) {
                (None, _) => Err((ResponseError::UnknownTopicOrPartition.code(), None)),
                (Some(part), None) if !meta.reassignments.contains_key(&part.group) => Err((
                    ResponseError::NoReassignmentInProgress.code(),
                    Some("no reassignment of this partition is in progress".to_string()),
                )),
                // Cancelling: back to the replicas the move started from.
                (Some(part), None) => ctx
                    .node
                    .reassign(part.group, part.replicas.clone(), timeout)
                    .await
                    .map_err(|e| failed(&e)),
                (Some(part), Some(replicas)) => {
                    let target: Vec<NodeId> =
                        replicas.iter().map(|b| b.0.max(0) as NodeId).collect();
                    ctx.node
                        .reassign(part.group, target, timeout)
                        .await
                        .map_err(|e| failed(&e))
                }
            };
            let res =
                alter_partition_reassignments_response::ReassignablePartitionResponse::default()
                    .with_partition_index(p.partition_index);
            partitions.push(match r {
                Ok(()) => res,
                Err((code, msg)) => res
                    .with_error_code(code)
                    .with_error_message(msg.map(|m| str_bytes(&m))),
            });
        }
        responses.push(
            alter_partition_reassignments_response::ReassignableTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    AlterPartitionReassignmentsResponse::default().with_responses(responses)
}

fn failed(e: &Error) -> (i16, Option<String>) {
    let code = match e {
        Error::Invalid(_) => ResponseError::InvalidReplicaAssignment.code(),
        e => error_code(e),
    };
    (code, Some(e.to_string()))
}

/// The moves under way (of the topics and partitions asked, or all): each
/// partition's replicas with those being added and removed.
pub fn list(
    req: ListPartitionReassignmentsRequest,
    ctx: &Context,
) -> ListPartitionReassignmentsResponse {
    let meta = ctx.node.metadata();
    let wanted = |topic: &str, index: i32| match &req.topics {
        None => true,
        Some(ts) => ts
            .iter()
            .any(|t| t.name.0.as_str() == topic && t.partition_indexes.contains(&index)),
    };
    let ids = |v: Vec<NodeId>| {
        v.into_iter()
            .map(|n| BrokerId(n as i32))
            .collect::<Vec<_>>()
    };
    let mut topics = Vec::new();
    for (name, t) in &meta.topics {
        let partitions: Vec<_> = t
            .partitions
            .iter()
            .filter(|p| wanted(name, p.index))
            .filter_map(|p| {
                let target = meta.reassignments.get(&p.group)?;
                let adding = target
                    .iter()
                    .copied()
                    .filter(|n| !p.replicas.contains(n))
                    .collect();
                let removing = p
                    .replicas
                    .iter()
                    .copied()
                    .filter(|n| !target.contains(n))
                    .collect();
                Some(
                    list_partition_reassignments_response::OngoingPartitionReassignment::default()
                        .with_partition_index(p.index)
                        .with_replicas(ids(meta.replicas_shown(p)))
                        .with_adding_replicas(ids(adding))
                        .with_removing_replicas(ids(removing)),
                )
            })
            .collect();
        if !partitions.is_empty() {
            topics.push(
                list_partition_reassignments_response::OngoingTopicReassignment::default()
                    .with_name(topic_name(name))
                    .with_partitions(partitions),
            );
        }
    }
    ListPartitionReassignmentsResponse::default().with_topics(topics)
}
