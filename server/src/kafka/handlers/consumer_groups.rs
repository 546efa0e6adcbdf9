//! The consumer group protocol (KIP-848): ConsumerGroupHeartbeat (v0–v1) and
//! ConsumerGroupDescribe (v0–v1), over the core's coordinator
//! ([`weir_core::groups::consumer`]).

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use weir_core::groups::consumer::{Assignment, HeartbeatRequest};

use super::{str_bytes, topic_name};
use crate::kafka::Context;
use crate::kafka::errors::error_code;

fn opt(s: &Option<StrBytes>) -> Option<String> {
    s.as_ref().map(|v| v.to_string())
}

fn partitions(a: &Assignment) -> Vec<consumer_group_heartbeat_response::TopicPartitions> {
    a.iter()
        .map(|(t, ps)| {
            consumer_group_heartbeat_response::TopicPartitions::default()
                .with_topic_id(uuid::Uuid::from_bytes(*t))
                .with_partitions(ps.iter().copied().collect())
        })
        .collect()
}

/// ConsumerGroupHeartbeat: joins, leaves, or reconciles a member. In v0 a
/// joining member without an id is given one.
pub async fn heartbeat(
    req: ConsumerGroupHeartbeatRequest,
    ctx: &Context,
    client_id: String,
    peer: String,
) -> ConsumerGroupHeartbeatResponse {
    let mut member_id = req.member_id.to_string();
    if member_id.is_empty() && req.member_epoch == 0 {
        member_id = weir_core::groups::consumer::new_member_id();
    }
    let hb = HeartbeatRequest {
        group: req.group_id.to_string(),
        member_id,
        member_epoch: req.member_epoch,
        instance_id: opt(&req.instance_id),
        rack_id: opt(&req.rack_id),
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        subscribed: req
            .subscribed_topic_names
            .map(|ts| ts.iter().map(|t| t.to_string()).collect()),
        regex: opt(&req.subscribed_topic_regex),
        assignor: opt(&req.server_assignor),
        owned: req.topic_partitions.map(|ts| {
            ts.into_iter()
                .map(|t| (*t.topic_id.as_bytes(), t.partitions))
                .collect()
        }),
        client_id,
        client_host: peer,
    };
    match ctx.node.consumer_heartbeat(hb).await {
        Ok((r, interval)) => ConsumerGroupHeartbeatResponse::default()
            .with_member_id(Some(str_bytes(&r.member_id)))
            .with_member_epoch(r.member_epoch)
            .with_heartbeat_interval_ms(i32::try_from(interval.as_millis()).unwrap_or(i32::MAX))
            .with_assignment(r.assignment.map(|a| {
                consumer_group_heartbeat_response::Assignment::default()
                    .with_topic_partitions(partitions(&a))
            })),
        Err(e) => {
            tracing::debug!(group = %req.group_id.as_str(), error = %e, "consumer group heartbeat refused");
            ConsumerGroupHeartbeatResponse::default()
                .with_error_code(error_code(&e))
                .with_error_message(Some(str_bytes(&e.to_string())))
                .with_member_epoch(-1)
        }
    }
}

/// ConsumerGroupDescribe: each group's epochs, assignor and members with their
/// current and target assignments.
pub fn describe(req: ConsumerGroupDescribeRequest, ctx: &Context) -> ConsumerGroupDescribeResponse {
    let meta = ctx.node.metadata();
    let topics = |a: Option<&Assignment>| {
        let topic_partitions = a
            .into_iter()
            .flatten()
            .map(|(t, ps)| {
                let name = meta.topic_ids.get(t).cloned().unwrap_or_default();
                consumer_group_describe_response::TopicPartitions::default()
                    .with_topic_id(uuid::Uuid::from_bytes(*t))
                    .with_topic_name(topic_name(&name))
                    .with_partitions(ps.iter().copied().collect())
            })
            .collect();
        consumer_group_describe_response::Assignment::default()
            .with_topic_partitions(topic_partitions)
    };
    let groups = req
        .group_ids
        .into_iter()
        .map(|id| {
            let out = consumer_group_describe_response::DescribedGroup::default()
                .with_group_id(id.clone())
                .with_authorized_operations(i32::MIN);
            match ctx.node.consumer_group(&id) {
                Err(e) => out
                    .with_error_code(error_code(&e))
                    .with_error_message(Some(str_bytes(&e.to_string())))
                    .with_group_state(str_bytes("Dead")),
                Ok(None) => out
                    .with_error_code(kafka_protocol::error::ResponseError::GroupIdNotFound.code())
                    .with_error_message(Some(str_bytes(&format!(
                        "{} is not a consumer-protocol group",
                        id.as_str()
                    ))))
                    .with_group_state(str_bytes("Dead")),
                Ok(Some(g)) => out
                    .with_group_state(str_bytes(g.state_name()))
                    .with_group_epoch(g.epoch)
                    .with_assignment_epoch(g.assignment_epoch)
                    .with_assignor_name(str_bytes(&g.assignor))
                    .with_members(
                        g.members
                            .values()
                            .map(|m| {
                                consumer_group_describe_response::Member::default()
                                    .with_member_id(str_bytes(&m.member_id))
                                    .with_instance_id(m.instance_id.as_deref().map(str_bytes))
                                    .with_rack_id(m.rack_id.as_deref().map(str_bytes))
                                    .with_member_epoch(m.epoch)
                                    .with_client_id(str_bytes(&m.client_id))
                                    .with_client_host(str_bytes(&m.client_host))
                                    .with_subscribed_topic_names(
                                        m.subscribed.iter().map(|t| topic_name(t)).collect(),
                                    )
                                    .with_assignment(topics(Some(&m.assigned)))
                                    .with_target_assignment(topics(g.target.get(&m.member_id)))
                                    .with_member_type(1)
                            })
                            .collect(),
                    ),
            }
        })
        .collect();
    ConsumerGroupDescribeResponse::default().with_groups(groups)
}
