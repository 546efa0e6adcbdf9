//! DescribeProducers from the client: each partition's leader lists the
//! idempotent producers it holds state for.

use std::collections::BTreeMap;

use anyhow::{bail, ensure};
use kafka_protocol::messages::*;

use super::{Client, name};

/// DescribeProducers' only version.
const DESCRIBE_PRODUCERS_V: i16 = 0;

/// UNKNOWN_TOPIC_OR_PARTITION.
const UNKNOWN_TOPIC: i16 = 3;

/// One idempotent producer of a partition, as its leader describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerInfo {
    /// The producer id.
    pub producer_id: i64,
    /// Its current epoch.
    pub epoch: i32,
    /// The last sequence it wrote (-1: none remembered).
    pub last_sequence: i32,
    /// The largest timestamp of its batches (ms).
    pub last_timestamp: i64,
}

/// A partition's producers, or why its leader could not list them.
pub type PartitionProducers = (i32, Result<Vec<ProducerInfo>, String>);

impl Client {
    /// The idempotent producers of `topic`'s partitions (`only`, or all of
    /// them), each asked of its leader; in partition order.
    ///
    /// # Errors
    /// An unknown topic or partition; connection and protocol errors. A
    /// partition whose leader answers with an error is listed with it.
    pub async fn describe_producers(
        &mut self,
        topic: &str,
        only: Option<i32>,
    ) -> anyhow::Result<Vec<PartitionProducers>> {
        let (brokers, topics) = self.metadata(Some(&[topic])).await?;
        let Some(t) = topics
            .iter()
            .find(|t| t.name == topic && t.error != UNKNOWN_TOPIC)
        else {
            bail!("no topic {topic}");
        };
        ensure!(t.error == 0, "topic {topic}: error {}", t.error);
        let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for &(p, leader, _, _) in &t.partitions {
            if only.is_none_or(|o| o == p) {
                by_leader.entry(leader).or_default().push(p);
            }
        }
        if let Some(o) = only {
            ensure!(!by_leader.is_empty(), "topic {topic} has no partition {o}");
        }
        let mut out = Vec::new();
        for (leader, partitions) in by_leader {
            let Some(addr) = brokers.get(&leader).cloned() else {
                out.extend(
                    partitions
                        .into_iter()
                        .map(|p| (p, Err("no leader".to_string()))),
                );
                continue;
            };
            let req = DescribeProducersRequest::default().with_topics(vec![
                describe_producers_request::TopicRequest::default()
                    .with_name(name(topic))
                    .with_partition_indexes(partitions),
            ]);
            let ResponseKind::DescribeProducers(r) = self
                .call(
                    &addr,
                    ApiKey::DescribeProducers,
                    DESCRIBE_PRODUCERS_V,
                    RequestKind::DescribeProducers(req),
                )
                .await?
            else {
                bail!("unexpected response to DescribeProducers");
            };
            for p in r.topics.into_iter().flat_map(|t| t.partitions) {
                let listed = if p.error_code == 0 {
                    Ok(p.active_producers
                        .iter()
                        .map(|s| ProducerInfo {
                            producer_id: s.producer_id.0,
                            epoch: s.producer_epoch,
                            last_sequence: s.last_sequence,
                            last_timestamp: s.last_timestamp,
                        })
                        .collect())
                } else {
                    let msg = p.error_message.map(|m| m.to_string()).unwrap_or_default();
                    Err(format!("error {} {msg}", p.error_code)
                        .trim_end()
                        .to_string())
                };
                out.push((p.partition_index, listed));
            }
        }
        out.sort_by_key(|(p, _)| *p);
        Ok(out)
    }
}
