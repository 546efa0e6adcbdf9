//! Consumer-group APIs, answered with COORDINATOR_NOT_AVAILABLE: weir has no group
//! coordinator yet. Clients that `assign()` partitions work regardless; clients
//! that `subscribe()` get a clear, retriable error instead of a closed connection.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;

use super::str_bytes;

const NO_COORDINATOR: i16 = ResponseError::CoordinatorNotAvailable.code();

/// The answer to a group request, or `None` for requests that are not group APIs.
pub(crate) fn answer(req: &RequestKind, version: i16) -> Option<ResponseKind> {
    Some(match req {
        RequestKind::JoinGroup(_) => ResponseKind::JoinGroup(
            JoinGroupResponse::default()
                .with_error_code(NO_COORDINATOR)
                .with_generation_id(-1),
        ),
        RequestKind::SyncGroup(_) => {
            ResponseKind::SyncGroup(SyncGroupResponse::default().with_error_code(NO_COORDINATOR))
        }
        RequestKind::Heartbeat(_) => {
            ResponseKind::Heartbeat(HeartbeatResponse::default().with_error_code(NO_COORDINATOR))
        }
        RequestKind::LeaveGroup(_) => {
            ResponseKind::LeaveGroup(LeaveGroupResponse::default().with_error_code(NO_COORDINATOR))
        }
        RequestKind::OffsetCommit(r) => {
            let topics = r
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
                                        .with_error_code(NO_COORDINATOR)
                                })
                                .collect(),
                        )
                })
                .collect();
            ResponseKind::OffsetCommit(OffsetCommitResponse::default().with_topics(topics))
        }
        RequestKind::OffsetFetch(r) => {
            let topics = r
                .topics
                .iter()
                .flatten()
                .map(|t| {
                    offset_fetch_response::OffsetFetchResponseTopic::default()
                        .with_name(t.name.clone())
                        .with_partitions(
                            t.partition_indexes
                                .iter()
                                .map(|&p| {
                                    offset_fetch_response::OffsetFetchResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_committed_offset(-1)
                                        .with_error_code(NO_COORDINATOR)
                                })
                                .collect(),
                        )
                })
                .collect();
            let resp = OffsetFetchResponse::default().with_topics(topics);
            ResponseKind::OffsetFetch(if version >= 2 {
                resp.with_error_code(NO_COORDINATOR)
            } else {
                resp
            })
        }
        _ => return None,
    })
}

/// No coordinator yet: COORDINATOR_NOT_AVAILABLE for every key.
pub fn find_coordinator(req: FindCoordinatorRequest, version: i16) -> FindCoordinatorResponse {
    let msg = Some(str_bytes(
        "consumer groups are not supported by weir yet; assign partitions instead",
    ));
    if version >= 4 {
        let coordinators = req
            .coordinator_keys
            .into_iter()
            .map(|key| {
                find_coordinator_response::Coordinator::default()
                    .with_key(key)
                    .with_node_id(BrokerId(-1))
                    .with_port(-1)
                    .with_error_code(ResponseError::CoordinatorNotAvailable.code())
                    .with_error_message(msg.clone())
            })
            .collect();
        FindCoordinatorResponse::default().with_coordinators(coordinators)
    } else {
        let r = FindCoordinatorResponse::default()
            .with_error_code(ResponseError::CoordinatorNotAvailable.code())
            .with_node_id(BrokerId(-1))
            .with_port(-1);
        if version >= 1 {
            r.with_error_message(msg)
        } else {
            r
        }
    }
}
