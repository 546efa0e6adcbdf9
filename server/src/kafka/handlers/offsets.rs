//! ListOffsets: the log start, the high watermark, or an offset by timestamp;
//! OffsetForLeaderEpoch: where a leader epoch ends.

use kafka_protocol::messages::*;
use weir_core::OffsetSpec;

use crate::kafka::Context;
use crate::kafka::errors::error_code;

/// Offsets by spec: earliest (-2), latest (-1) or the first at or after a timestamp.
pub fn handle(req: ListOffsetsRequest, version: i16, ctx: &Context) -> ListOffsetsResponse {
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let parts = t
                .partitions
                .iter()
                .map(|p| {
                    let spec = match p.timestamp {
                        -2 => OffsetSpec::Earliest,
                        ts if ts < 0 => OffsetSpec::Latest,
                        ts => OffsetSpec::Timestamp(ts),
                    };
                    let r = list_offsets_response::ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_timestamp(-1);
                    let looked_up = match spec {
                        OffsetSpec::Timestamp(ts) => ctx
                            .node
                            .offset_for_timestamp(&name, p.partition_index, ts)
                            .map(|found| found.map_or((None, -1), |(o, t)| (Some(o), t))),
                        spec => ctx
                            .node
                            .list_offset(&name, p.partition_index, spec)
                            .map(|o| (o, -1)),
                    };
                    match looked_up {
                        Ok((offset, timestamp)) => {
                            let epoch = ctx
                                .node
                                .metadata()
                                .partition(&name, p.partition_index)
                                .and_then(|m| ctx.node.group_status(m.group))
                                .map_or(-1, |s| s.term as i32);
                            let r = r
                                .with_offset(offset.unwrap_or(-1))
                                .with_timestamp(timestamp);
                            if version >= 4 {
                                r.with_leader_epoch(epoch)
                            } else {
                                r
                            }
                        }
                        Err(e) => r.with_error_code(error_code(&e)).with_offset(-1),
                    }
                })
                .collect();
            list_offsets_response::ListOffsetsTopicResponse::default()
                .with_name(t.name.clone())
                .with_partitions(parts)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

/// Where each asked-for leader epoch ends (KIP-101, KIP-320), so that a client
/// that saw a leader change can tell whether the log it read was truncated.
pub fn epochs(req: OffsetForLeaderEpochRequest, ctx: &Context) -> OffsetForLeaderEpochResponse {
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let name = t.topic.0.to_string();
            let parts = t
                .partitions
                .iter()
                .map(|p| {
                    let r = offset_for_leader_epoch_response::EpochEndOffset::default()
                        .with_partition(p.partition);
                    match ctx.node.end_offset_for_epoch(
                        &name,
                        p.partition,
                        p.current_leader_epoch,
                        p.leader_epoch,
                    ) {
                        Ok(end) => r
                            .with_leader_epoch(end.epoch)
                            .with_end_offset(end.end_offset),
                        Err(e) => r
                            .with_error_code(error_code(&e))
                            .with_leader_epoch(-1)
                            .with_end_offset(-1),
                    }
                })
                .collect();
            offset_for_leader_epoch_response::OffsetForLeaderTopicResult::default()
                .with_topic(t.topic.clone())
                .with_partitions(parts)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
