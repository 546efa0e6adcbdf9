//! Fetch: one long-poll over every partition asked for (the core's
//! [`weir_core::Node::fetch_partitions`]), answered per topic and partition.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use weir_core::{Error, FetchPartition, Fetched};

use crate::kafka::Context;
use crate::kafka::errors::error_code;

/// Reads every partition asked for, waiting up to `max_wait_ms` for `min_bytes`.
/// From v13 topics are named by id (KIP-516); an id no topic has is answered
/// UNKNOWN_TOPIC_ID.
pub async fn handle(req: FetchRequest, version: i16, ctx: &Context) -> FetchResponse {
    let meta = ctx.node.metadata();
    // Each topic's name, or `None` for an unknown id.
    let names: Vec<Option<String>> = req
        .topics
        .iter()
        .map(|t| {
            if version >= 13 {
                meta.topic_by_id(*t.topic_id.as_bytes())
                    .map(|t| t.name.clone())
            } else {
                Some(t.topic.0.to_string())
            }
        })
        .collect();
    drop(meta);
    let parts: Vec<FetchPartition<'_>> = req
        .topics
        .iter()
        .zip(&names)
        .filter_map(|(t, name)| name.as_deref().map(|n| (t, n)))
        .flat_map(|(t, name)| {
            t.partitions.iter().map(move |p| FetchPartition {
                topic: name,
                partition: p.partition,
                offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes.max(0) as usize,
            })
        })
        .collect();
    let mut results = ctx
        .node
        .fetch_partitions(
            &parts,
            req.max_bytes.max(0) as usize,
            Duration::from_millis(req.max_wait_ms.max(0) as u64),
            req.min_bytes.max(0) as usize,
        )
        .await
        .into_iter();
    let responses = req
        .topics
        .iter()
        .zip(&names)
        .map(|(t, name)| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| match name {
                    Some(_) => {
                        let r = results.next().unwrap_or(Err(Error::Shutdown));
                        partition_data(p.partition, r, version)
                    }
                    None => fetch_response::PartitionData::default()
                        .with_partition_index(p.partition)
                        .with_error_code(ResponseError::UnknownTopicId.code())
                        .with_high_watermark(-1)
                        .with_records(Some(Bytes::new())),
                })
                .collect();
            let r = fetch_response::FetchableTopicResponse::default().with_partitions(partitions);
            if version >= 13 {
                r.with_topic_id(t.topic_id)
            } else {
                r.with_topic(t.topic.clone())
            }
        })
        .collect();
    FetchResponse::default().with_responses(responses)
}

fn partition_data(
    index: i32,
    r: weir_core::Result<Fetched>,
    version: i16,
) -> fetch_response::PartitionData {
    let pd = fetch_response::PartitionData::default().with_partition_index(index);
    match r {
        Ok(f) => {
            let pd = pd
                .with_high_watermark(f.high_watermark)
                .with_last_stable_offset(f.high_watermark);
            let pd = if version >= 5 {
                pd.with_log_start_offset(f.log_start_offset)
            } else {
                pd
            };
            pd.with_records(Some(f.records))
        }
        Err(e) => {
            let mut pd = pd
                .with_error_code(error_code(&e))
                .with_high_watermark(-1)
                .with_records(Some(Bytes::new()));
            if let (Error::NotLeader { hint: Some(h), .. }, true) = (e, version >= 12) {
                pd = pd.with_current_leader(
                    fetch_response::LeaderIdAndEpoch::default()
                        .with_leader_id(BrokerId(h.node as i32))
                        .with_leader_epoch(h.term as i32),
                );
            }
            pd
        }
    }
}
