//! Cluster administration: CreatePartitions, ElectLeaders (preferred only)
//! and DescribeCluster.

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use weir_core::pipeline::leaders::Elect;
use weir_core::{Error, NodeId};

use super::{host_port, str_bytes, topic_name};
use crate::kafka::Context;
use crate::kafka::errors::error_code;

/// Grows topics to the partition counts asked (with the replicas given, or
/// continuing each topic's rotation over the brokers); with `validate_only`
/// only checks.
pub async fn create_partitions(
    req: CreatePartitionsRequest,
    ctx: &Context,
) -> CreatePartitionsResponse {
    let timeout = Duration::from_millis(req.timeout_ms.clamp(1, 60_000) as u64);
    let mut results = Vec::new();
    for t in req.topics {
        let name = t.name.0.to_string();
        // No assignments (null, or empty from some encoders): the broker assigns.
        let assignment = t.assignments.as_ref().filter(|a| !a.is_empty()).map(|a| {
            a.iter()
                .map(|r| r.broker_ids.iter().map(|b| b.0.max(0) as NodeId).collect())
                .collect::<Vec<Vec<NodeId>>>()
        });
        let current = ctx
            .node
            .metadata()
            .topics
            .get(&name)
            .map(|t| t.partitions.len() as i32);
        let r = match current {
            Some(n) if t.count <= n => Err((
                ResponseError::InvalidPartitions.code(),
                format!(
                    "topic {name} has {n} partitions; it can only grow (asked for {})",
                    t.count
                ),
            )),
            _ => ctx
                .node
                .create_partitions(&name, t.count, assignment, req.validate_only, timeout)
                .await
                .map_err(|e| {
                    let code = match &e {
                        Error::Invalid(_) => ResponseError::InvalidReplicaAssignment.code(),
                        Error::LimitExceeded(_) => ResponseError::InvalidPartitions.code(),
                        e => error_code(e),
                    };
                    (code, e.to_string())
                }),
        };
        if let Err((_, why)) = &r {
            tracing::debug!(topic = %name, error = %why, "CreatePartitions refused");
        } else if !req.validate_only {
            tracing::info!(topic = %name, partitions = t.count, "added partitions");
        }
        let res =
            create_partitions_response::CreatePartitionsTopicResult::default().with_name(t.name);
        results.push(match r {
            Ok(()) => res,
            Err((code, msg)) => res
                .with_error_code(code)
                .with_error_message(Some(str_bytes(&msg))),
        });
    }
    CreatePartitionsResponse::default().with_results(results)
}

/// The cluster's brokers and its controller (the metadata group's leader).
pub fn describe_cluster(ctx: &Context) -> DescribeClusterResponse {
    let meta = ctx.node.metadata();
    let brokers = meta
        .brokers
        .values()
        .map(|b| {
            let (host, port) = host_port(&b.kafka_addr);
            describe_cluster_response::DescribeClusterBroker::default()
                .with_broker_id(BrokerId(b.id as i32))
                .with_host(str_bytes(&host))
                .with_port(port)
                .with_rack(meta.racks.get(&b.id).map(|r| str_bytes(r)))
        })
        .collect();
    DescribeClusterResponse::default()
        .with_cluster_id(str_bytes(&ctx.cluster_id))
        .with_controller_id(BrokerId(ctx.node.controller().map_or(-1, |id| id as i32)))
        .with_brokers(brokers)
        .with_cluster_authorized_operations(i32::MIN)
}

/// ElectLeaders: with PREFERRED, moves each partition's leadership to its
/// preferred replica (its first) when that replica is in sync, answering once
/// it leads (or at the timeout). Partitions led by another broker are
/// forwarded to it, once (`forwarded` marks a request that was). UNCLEAN is
/// refused: Raft never elects a replica without the committed log.
pub async fn elect_leaders(
    req: ElectLeadersRequest,
    ctx: &Context,
    forwarded: bool,
) -> ElectLeadersResponse {
    let timeout = Duration::from_millis(req.timeout_ms.clamp(1, 60_000) as u64);
    let meta = ctx.node.metadata();
    let wanted: Vec<(String, i32)> = match &req.topic_partitions {
        None => meta
            .topics
            .values()
            .filter(|t| !t.is_internal())
            .flat_map(|t| t.partitions.iter().map(|p| (t.name.clone(), p.index)))
            .collect(),
        Some(ts) => ts
            .iter()
            .flat_map(|t| t.partitions.iter().map(|&p| (t.topic.0.to_string(), p)))
            .collect(),
    };
    let mut results: BTreeMap<(String, i32), (i16, Option<String>)> = BTreeMap::new();
    let mut waiting = Vec::new();
    let mut elsewhere: BTreeMap<NodeId, Vec<(String, i32)>> = BTreeMap::new();
    for (topic, index) in wanted {
        let Some(p) = meta
            .topics
            .get(&topic)
            .and_then(|t| t.partitions.iter().find(|p| p.index == index))
        else {
            results.insert(
                (topic, index),
                (ResponseError::UnknownTopicOrPartition.code(), None),
            );
            continue;
        };
        if req.election_type != 0 {
            results.insert(
                (topic, index),
                (
                    ResponseError::InvalidRequest.code(),
                    Some("weir elects preferred leaders only: Raft never makes a replica without the committed log leader".into()),
                ),
            );
            continue;
        }
        let elect = ctx.node.elect_preferred(p);
        tracing::debug!(topic = %topic, partition = index, forwarded, ?elect, "preferred leader election");
        let outcome = match elect {
            Elect::NotNeeded => (ResponseError::ElectionNotNeeded.code(), None),
            Elect::PreferredNotInSync(n) => (
                ResponseError::PreferredLeaderNotAvailable.code(),
                Some(format!("the preferred replica {n} is not in sync")),
            ),
            Elect::Started(n) => {
                waiting.push(((topic.clone(), index), p.group, n));
                (0, None)
            }
            Elect::LedElsewhere(Some(l)) if !forwarded => {
                elsewhere.entry(l).or_default().push((topic.clone(), index));
                continue;
            }
            Elect::LedElsewhere(_) => (
                ResponseError::NotLeaderOrFollower.code(),
                Some("no leader known here for this partition".into()),
            ),
        };
        results.insert((topic, index), outcome);
    }
    for (key, group, preferred) in waiting {
        if !ctx.node.wait_leader_is(group, preferred, timeout).await {
            results.insert(
                key,
                (
                    ResponseError::RequestTimedOut.code(),
                    Some(format!("replica {preferred} did not take over in time")),
                ),
            );
        }
    }
    for (leader, partitions) in elsewhere {
        forward(ctx, &req, leader, partitions, &mut results).await;
    }
    let mut by_topic: BTreeMap<String, Vec<elect_leaders_response::PartitionResult>> =
        BTreeMap::new();
    for ((topic, index), (code, msg)) in results {
        by_topic.entry(topic).or_default().push(
            elect_leaders_response::PartitionResult::default()
                .with_partition_id(index)
                .with_error_code(code)
                .with_error_message(msg.map(|m| str_bytes(&m))),
        );
    }
    ElectLeadersResponse::default().with_replica_election_results(
        by_topic
            .into_iter()
            .map(|(t, ps)| {
                elect_leaders_response::ReplicaElectionResult::default()
                    .with_topic(topic_name(&t))
                    .with_partition_result(ps)
            })
            .collect(),
    )
}

/// Asks `leader` to elect the preferred replicas of `partitions`, recording
/// its answers (or why it could not be asked) in `results`.
async fn forward(
    ctx: &Context,
    req: &ElectLeadersRequest,
    leader: NodeId,
    partitions: Vec<(String, i32)>,
    results: &mut BTreeMap<(String, i32), (i16, Option<String>)>,
) {
    let addr = ctx
        .node
        .metadata()
        .brokers
        .get(&leader)
        .map(|b| b.kafka_addr.clone());
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in &partitions {
        by_topic.entry(t).or_default().push(*p);
    }
    let sub = ElectLeadersRequest::default()
        .with_election_type(req.election_type)
        .with_timeout_ms(req.timeout_ms)
        .with_topic_partitions(Some(
            by_topic
                .into_iter()
                .map(|(t, ps)| {
                    elect_leaders_request::TopicPartitions::default()
                        .with_topic(topic_name(t))
                        .with_partitions(ps)
                })
                .collect(),
        ));
    let answer = match &addr {
        Some(a) => crate::client::Client::forwarding(a)
            .elect_leaders_at(a, sub)
            .await
            .map_err(|e| e.to_string()),
        None => Err(format!("broker {leader} is not registered")),
    };
    match answer {
        Ok(r) => {
            for t in r.replica_election_results {
                for p in t.partition_result {
                    results.insert(
                        (t.topic.0.to_string(), p.partition_id),
                        (p.error_code, p.error_message.map(|m| m.to_string())),
                    );
                }
            }
        }
        Err(why) => {
            for key in partitions {
                results.insert(
                    key,
                    (
                        ResponseError::NotLeaderOrFollower.code(),
                        Some(format!("asking the leader, broker {leader}: {why}")),
                    ),
                );
            }
        }
    }
}
