//! Group administration: ListGroups (v0–v5), DescribeGroups (v0–v5),
//! DeleteGroups (v0–v2) and OffsetDelete (v0) — what `kafka-consumer-groups`
//! and admin clients call.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::*;

use super::{Context, str_bytes};
use crate::kafka::errors::error_code;

/// How long a deletion may take to be replicated.
const DELETE_TIMEOUT: Duration = Duration::from_secs(10);

/// ListGroups: the groups this broker coordinates, filtered by state (v4+) and
/// type (v5+; every weir group is `classic`).
pub fn list(req: ListGroupsRequest, ctx: &Context) -> ListGroupsResponse {
    let wants = |filter: &[kafka_protocol::protocol::StrBytes], v: &str| {
        filter.is_empty() || filter.iter().any(|f| f.eq_ignore_ascii_case(v))
    };
    let groups = ctx
        .node
        .list_groups()
        .into_iter()
        .filter(|g| wants(&req.states_filter, g.state) && wants(&req.types_filter, g.group_type))
        .map(|g| {
            list_groups_response::ListedGroup::default()
                .with_group_id(GroupId(str_bytes(&g.group)))
                .with_protocol_type(str_bytes(&g.protocol_type))
                .with_group_state(str_bytes(g.state))
                .with_group_type(str_bytes(g.group_type))
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}

/// DescribeGroups: each group's state, protocol and members.
pub fn describe(req: DescribeGroupsRequest, ctx: &Context) -> DescribeGroupsResponse {
    let groups = req
        .groups
        .into_iter()
        .map(|id| {
            let out = describe_groups_response::DescribedGroup::default()
                .with_group_id(id.clone())
                .with_authorized_operations(i32::MIN);
            match ctx.node.describe_group(&id) {
                Err(e) => out
                    .with_error_code(error_code(&e))
                    .with_group_state(str_bytes("Dead")),
                Ok(d) => out
                    .with_group_state(str_bytes(d.state))
                    .with_protocol_type(str_bytes(&d.protocol_type))
                    .with_protocol_data(str_bytes(&d.protocol))
                    .with_members(
                        d.members
                            .into_iter()
                            .map(|m| {
                                describe_groups_response::DescribedGroupMember::default()
                                    .with_member_id(str_bytes(&m.member_id))
                                    .with_group_instance_id(m.instance_id.map(|i| str_bytes(&i)))
                                    .with_client_id(str_bytes(&m.client_id))
                                    .with_client_host(str_bytes(&m.client_host))
                                    .with_member_metadata(Bytes::from(m.metadata))
                                    .with_member_assignment(Bytes::from(m.assignment))
                            })
                            .collect(),
                    ),
            }
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

/// DeleteGroups: groups without members go, with their offsets.
pub async fn delete(req: DeleteGroupsRequest, ctx: &Context) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(req.groups_names.len());
    for id in req.groups_names {
        let code = match ctx.node.delete_group(&id, DELETE_TIMEOUT).await {
            Ok(()) => 0,
            Err(e) => error_code(&e),
        };
        results.push(
            delete_groups_response::DeletableGroupResult::default()
                .with_group_id(id)
                .with_error_code(code),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}

/// OffsetDelete: a group's committed offsets of topics no member subscribes to.
pub async fn delete_offsets(req: OffsetDeleteRequest, ctx: &Context) -> OffsetDeleteResponse {
    let asked: Vec<(String, i32)> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.name.to_string(), p.partition_index))
        })
        .collect();
    let results = ctx
        .node
        .delete_offsets(&req.group_id, &asked, DELETE_TIMEOUT)
        .await;
    let codes: Vec<i16> = match &results {
        Ok(rs) => rs
            .iter()
            .map(|r| r.as_ref().err().map_or(0, error_code))
            .collect(),
        Err(_) => vec![0; asked.len()],
    };
    let mut codes = codes.into_iter();
    let topics = req
        .topics
        .iter()
        .map(|t| {
            offset_delete_response::OffsetDeleteResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            offset_delete_response::OffsetDeleteResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(codes.next().unwrap_or(0))
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetDeleteResponse::default()
        .with_error_code(results.as_ref().err().map_or(0, error_code))
        .with_topics(topics)
}
