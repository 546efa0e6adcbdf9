//! Consumer-group APIs, answered with COORDINATOR_NOT_AVAILABLE: weir has no group
//! coordinator yet. Clients that `assign()` partitions work regardless; clients
//! that `subscribe()` get a clear, retriable error instead of a closed connection.

use kafka_protocol::messages::*;

use crate::kafka::code::COORDINATOR_NOT_AVAILABLE as NO_COORDINATOR;

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
