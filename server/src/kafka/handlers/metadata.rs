//! Metadata: brokers, controller, topics and partitions.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;

use super::{auto_create, host_port, str_bytes, topic_name};
use crate::kafka::Context;

/// Brokers, the controller, and the topics asked for (all but internal ones when
/// none are named;
/// by name, or by id from v10) with each topic's id and each partition's leader,
/// replicas and in-sync replicas. Unknown topics are auto-created when allowed,
/// and answered LEADER_NOT_AVAILABLE meanwhile; unknown ids UNKNOWN_TOPIC_ID.
pub async fn handle(req: MetadataRequest, version: i16, ctx: &Context) -> MetadataResponse {
    let meta = ctx.node.metadata();
    let mut topics = Vec::new();
    let wanted: Vec<String> = match &req.topics {
        // Internal topics (`__consumer_offsets`) only when named, as Kafka's
        // clients expect of a listing.
        None => meta
            .topics
            .values()
            .filter(|t| !t.is_internal())
            .map(|t| t.name.clone())
            .collect(),
        Some(ts) => ts
            .iter()
            .filter_map(|t| match &t.name {
                Some(n) => Some(n.0.to_string()),
                None if !t.topic_id.is_nil() => {
                    let found = meta.topic_by_id(*t.topic_id.as_bytes());
                    if found.is_none() {
                        topics.push(
                            metadata_response::MetadataResponseTopic::default()
                                .with_topic_id(t.topic_id)
                                .with_error_code(ResponseError::UnknownTopicId.code()),
                        );
                    }
                    found.map(|t| t.name.clone())
                }
                None => None,
            })
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
                .with_rack(meta.racks.get(&b.id).map(|r| str_bytes(r)))
        })
        .collect();
    let controller = ctx.node.controller().map_or(-1, |id| id as i32);
    let mut budget = ctx.max_auto_create_per_request;
    for name in wanted {
        let t =
            metadata_response::MetadataResponseTopic::default().with_name(Some(topic_name(&name)));
        let Some(topic) = meta.topics.get(&name) else {
            let valid = weir_core::validate_topic_name(&name).is_ok();
            let code = if !valid {
                ResponseError::InvalidTopicException.code()
            } else if may_create && auto_create(ctx, &name, &mut budget) {
                ResponseError::LeaderNotAvailable.code()
            } else {
                ResponseError::UnknownTopicOrPartition.code()
            };
            topics.push(t.with_error_code(code));
            continue;
        };
        let partitions = topic
            .partitions
            .iter()
            .map(|p| {
                // During a move: the replicas being added too (Kafka's union).
                let shown = meta.replicas_shown(p);
                let replicas: Vec<BrokerId> = shown.iter().map(|&r| BrokerId(r as i32)).collect();
                let leader = ctx.node.partition_leader(p);
                let isr = ctx
                    .node
                    .in_sync_replicas(p)
                    .into_iter()
                    .filter(|id| shown.contains(id))
                    .map(|id| BrokerId(id as i32))
                    .collect();
                let mp = metadata_response::MetadataResponsePartition::default()
                    .with_error_code(if leader.is_some() {
                        0
                    } else {
                        ResponseError::LeaderNotAvailable.code()
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
        let t = if version >= 10 {
            t.with_topic_id(uuid::Uuid::from_bytes(topic.id))
        } else {
            t
        };
        topics.push(
            t.with_partitions(partitions)
                .with_is_internal(topic.is_internal()),
        );
    }
    let mut resp = MetadataResponse::default()
        .with_brokers(brokers)
        .with_topics(topics);
    if version >= 1 {
        resp = resp.with_controller_id(BrokerId(controller));
    }
    if version >= 2 {
        resp = resp.with_cluster_id(Some(str_bytes(&ctx.cluster_id)));
    }
    resp
}
