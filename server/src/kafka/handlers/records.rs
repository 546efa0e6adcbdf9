//! DeleteRecords: moves partitions' log start offsets (what `kafka-delete-records`
//! and `AdminClient.delete_records` send). Each partition is trimmed by its leader
//! through Raft; partitions are handled concurrently.

use std::time::Duration;

use futures_util::future::join_all;
use kafka_protocol::messages::*;

use crate::kafka::Context;
use crate::kafka::errors::error_code;

use delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};

/// Answers DeleteRecords: per partition the new low watermark, or the error
/// (OFFSET_OUT_OF_RANGE past the high watermark, NOT_LEADER_OR_FOLLOWER,
/// UNKNOWN_TOPIC_OR_PARTITION, REQUEST_TIMED_OUT).
pub async fn delete(req: DeleteRecordsRequest, ctx: &Context) -> DeleteRecordsResponse {
    let timeout = Duration::from_millis(req.timeout_ms.clamp(1, 60_000) as u64);
    let topics = req.topics.into_iter().map(|t| async move {
        let name = t.name;
        let partitions = t.partitions.into_iter().map(|p| {
            let name = name.0.as_str();
            async move {
                let r = ctx
                    .node
                    .delete_records(name, p.partition_index, p.offset, timeout)
                    .await;
                let res =
                    DeleteRecordsPartitionResult::default().with_partition_index(p.partition_index);
                match r {
                    Ok(low) => res.with_low_watermark(low),
                    Err(e) => {
                        tracing::debug!(topic = %name, partition = p.partition_index, error = %e, "DeleteRecords refused");
                        res.with_low_watermark(-1).with_error_code(error_code(&e))
                    }
                }
            }
        });
        let partitions = join_all(partitions).await;
        DeleteRecordsTopicResult::default()
            .with_name(name.clone())
            .with_partitions(partitions)
    });
    DeleteRecordsResponse::default().with_topics(join_all(topics).await)
}
