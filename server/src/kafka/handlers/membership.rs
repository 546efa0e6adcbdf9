//! The classic group protocol's membership APIs: JoinGroup (v0–v9), SyncGroup
//! (v0–v5), Heartbeat (v0–v4), LeaveGroup (v0–v5, several members from v3),
//! converted to and from the core's coordinator
//! ([`weir_core::groups::classic`]).

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::*;
use weir_core::GroupError;
use weir_core::groups::classic::{JoinRequest, SyncRequest};

use super::{Context, str_bytes};
use crate::kafka::connection::Session;
use crate::kafka::errors::error_code;

/// How long a SyncGroup waits for the leader's assignments.
const SYNC_WAIT: Duration = Duration::from_secs(300);

fn opt(s: &Option<kafka_protocol::protocol::StrBytes>) -> Option<String> {
    s.as_ref().map(|v| v.to_string())
}

/// JoinGroup: answered when the group's join phase completes.
pub async fn join(
    req: JoinGroupRequest,
    version: i16,
    ctx: &Context,
    client_id: String,
    peer: String,
) -> JoinGroupResponse {
    let join = JoinRequest {
        group: req.group_id.to_string(),
        member_id: req.member_id.to_string(),
        instance_id: opt(&req.group_instance_id),
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.to_vec()))
            .collect(),
        session_timeout_ms: req.session_timeout_ms,
        rebalance_timeout_ms: if version >= 1 {
            req.rebalance_timeout_ms
        } else {
            req.session_timeout_ms
        },
        client_id,
        client_host: peer,
        require_known_member_id: version >= 4,
    };
    match ctx.node.join_group(join).await {
        Ok(mut r) => {
            if r.skip_assignment && version < 9 {
                // Before v9 a leader cannot be told to skip computing
                // assignments: as Kafka does, name the member it replaced as the
                // leader, so that it syncs as a follower and keeps its own.
                r.members.clear();
                r.skip_assignment = false;
                if let Some(old) = r.replaced.take() {
                    r.leader = old;
                }
            }
            join_answer(r)
        }
        Err(e) => {
            let member = match &e {
                weir_core::Error::Group(GroupError::MemberIdRequired(id)) => id.clone(),
                _ => String::new(),
            };
            JoinGroupResponse::default()
                .with_error_code(error_code(&e))
                .with_generation_id(-1)
                .with_protocol_name(Some(str_bytes("")))
                .with_member_id(str_bytes(&member))
        }
    }
}

fn join_answer(r: weir_core::groups::classic::JoinResponse) -> JoinGroupResponse {
    JoinGroupResponse::default()
        .with_skip_assignment(r.skip_assignment)
        .with_generation_id(r.generation)
        .with_protocol_type(r.protocol_type.map(|p| str_bytes(&p)))
        .with_protocol_name(Some(str_bytes(&r.protocol.unwrap_or_default())))
        .with_leader(str_bytes(&r.leader))
        .with_member_id(str_bytes(&r.member_id))
        .with_members(
            r.members
                .into_iter()
                .map(|(id, instance, metadata)| {
                    join_group_response::JoinGroupResponseMember::default()
                        .with_member_id(str_bytes(&id))
                        .with_group_instance_id(instance.map(|i| str_bytes(&i)))
                        .with_metadata(Bytes::from(metadata))
                })
                .collect(),
        )
}

/// SyncGroup: the member's assignment.
pub async fn sync(req: SyncGroupRequest, ctx: &Context) -> SyncGroupResponse {
    let sync = SyncRequest {
        group: req.group_id.to_string(),
        member_id: req.member_id.to_string(),
        instance_id: opt(&req.group_instance_id),
        generation: req.generation_id,
        protocol_type: opt(&req.protocol_type),
        protocol: opt(&req.protocol_name),
        assignments: req
            .assignments
            .iter()
            .map(|a| (a.member_id.to_string(), a.assignment.to_vec()))
            .collect(),
    };
    match ctx.node.sync_group(sync, SYNC_WAIT).await {
        Ok(r) => SyncGroupResponse::default()
            .with_protocol_type(r.protocol_type.map(|p| str_bytes(&p)))
            .with_protocol_name(r.protocol.map(|p| str_bytes(&p)))
            .with_assignment(Bytes::from(r.assignment)),
        Err(e) => SyncGroupResponse::default().with_error_code(error_code(&e)),
    }
}

/// Heartbeat.
pub fn heartbeat(req: HeartbeatRequest, ctx: &Context) -> HeartbeatResponse {
    let code = match ctx.node.heartbeat(
        &req.group_id,
        &req.member_id,
        opt(&req.group_instance_id).as_deref(),
        req.generation_id,
    ) {
        Ok(()) => 0,
        Err(e) => error_code(&e),
    };
    HeartbeatResponse::default().with_error_code(code)
}

/// LeaveGroup: one member before v3, several after.
pub async fn leave(req: LeaveGroupRequest, version: i16, ctx: &Context) -> LeaveGroupResponse {
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        req.members
            .iter()
            .map(|m| (m.member_id.to_string(), opt(&m.group_instance_id)))
            .collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    match ctx.node.leave_group(&req.group_id, &members).await {
        Err(e) => LeaveGroupResponse::default().with_error_code(error_code(&e)),
        Ok(results) if version < 3 => LeaveGroupResponse::default().with_error_code(
            results
                .first()
                .and_then(|r| r.as_ref().err())
                .map_or(0, error_code),
        ),
        Ok(results) => LeaveGroupResponse::default().with_members(
            members
                .iter()
                .zip(results)
                .map(|((m, i), r)| {
                    leave_group_response::MemberResponse::default()
                        .with_member_id(str_bytes(m))
                        .with_group_instance_id(i.as_deref().map(str_bytes))
                        .with_error_code(r.err().map_or(0, |e| error_code(&e)))
                })
                .collect(),
        ),
    }
}

/// The client id and address a JoinGroup records for its member.
pub fn client_of(session: &Session) -> (String, String) {
    (
        session.client_id.clone().unwrap_or_default(),
        format!("/{}", session.peer.ip()),
    )
}
