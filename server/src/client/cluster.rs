//! Cluster administration: more partitions for a topic (CreatePartitions),
//! preferred leader elections (ElectLeaders) and the cluster's brokers
//! (DescribeCluster).

use anyhow::{Context as _, bail};
use kafka_protocol::messages::*;

use super::{Client, name};

const CREATE_PARTITIONS_V: i16 = 1;
const ELECT_LEADERS_V: i16 = 1;
const DESCRIBE_CLUSTER_V: i16 = 0;
const ALTER_REASSIGNMENTS_V: i16 = 0;
const LIST_REASSIGNMENTS_V: i16 = 0;

/// A move under way: (topic, partition, replicas, adding, removing).
pub type Reassignment = (String, i32, Vec<i32>, Vec<i32>, Vec<i32>);

/// One partition's answer to an election: (topic, partition, error code, message).
pub type ElectionResult = (String, i32, i16, Option<String>);

impl Client {
    /// Grows `topic` to `total` partitions.
    ///
    /// # Errors
    /// Kafka errors with their message.
    pub async fn create_partitions(&mut self, topic: &str, total: i32) -> anyhow::Result<()> {
        let req = CreatePartitionsRequest::default()
            .with_topics(vec![
                create_partitions_request::CreatePartitionsTopic::default()
                    .with_name(name(topic))
                    .with_count(total)
                    .with_assignments(None),
            ])
            .with_timeout_ms(30_000);
        let ResponseKind::CreatePartitions(r) = self
            .call_any(
                ApiKey::CreatePartitions,
                CREATE_PARTITIONS_V,
                RequestKind::CreatePartitions(req),
            )
            .await?
        else {
            bail!("unexpected response to CreatePartitions");
        };
        let res = r
            .results
            .first()
            .context("empty CreatePartitions response")?;
        if res.error_code != 0 {
            bail!(
                "error {}: {}",
                res.error_code,
                res.error_message.as_ref().map_or("", |m| m.as_str())
            );
        }
        Ok(())
    }

    /// Asks for the preferred replica of each partition of `partitions` (every
    /// partition when `None`) to lead it, through the first bootstrap broker
    /// that answers; each partition's result.
    ///
    /// # Errors
    /// Connection or protocol errors, and a top-level error.
    pub async fn elect_preferred_leaders(
        &mut self,
        partitions: Option<Vec<(String, Vec<i32>)>>,
        timeout_ms: i32,
    ) -> anyhow::Result<Vec<ElectionResult>> {
        let req = ElectLeadersRequest::default()
            .with_election_type(0)
            .with_timeout_ms(timeout_ms)
            .with_topic_partitions(partitions.map(|ps| {
                ps.into_iter()
                    .map(|(t, p)| {
                        elect_leaders_request::TopicPartitions::default()
                            .with_topic(name(&t))
                            .with_partitions(p)
                    })
                    .collect()
            }));
        let ResponseKind::ElectLeaders(r) = self
            .call_any(
                ApiKey::ElectLeaders,
                ELECT_LEADERS_V,
                RequestKind::ElectLeaders(req),
            )
            .await?
        else {
            bail!("unexpected response to ElectLeaders");
        };
        if r.error_code != 0 {
            bail!("ElectLeaders failed with error {}", r.error_code);
        }
        Ok(r.replica_election_results
            .into_iter()
            .flat_map(|t| {
                let topic = t.topic.0.to_string();
                t.partition_result.into_iter().map(move |p| {
                    (
                        topic.clone(),
                        p.partition_id,
                        p.error_code,
                        p.error_message.map(|m| m.to_string()),
                    )
                })
            })
            .collect())
    }

    /// The cluster's id, controller and brokers (id, host, port, rack).
    ///
    /// # Errors
    /// Connection or protocol errors.
    pub async fn describe_cluster(
        &mut self,
    ) -> anyhow::Result<(String, i32, Vec<(i32, String, i32, Option<String>)>)> {
        let ResponseKind::DescribeCluster(r) = self
            .call_any(
                ApiKey::DescribeCluster,
                DESCRIBE_CLUSTER_V,
                RequestKind::DescribeCluster(DescribeClusterRequest::default()),
            )
            .await?
        else {
            bail!("unexpected response to DescribeCluster");
        };
        if r.error_code != 0 {
            bail!("DescribeCluster failed with error {}", r.error_code);
        }
        let brokers = r
            .brokers
            .into_iter()
            .map(|b| {
                let rack = b.rack.map(|r| r.to_string());
                (b.broker_id.0, b.host.to_string(), b.port, rack)
            })
            .collect();
        Ok((r.cluster_id.to_string(), r.controller_id.0, brokers))
    }

    /// Sends `req` as is to the broker at `addr` (a broker forwarding an
    /// election to a partition's leader).
    ///
    /// # Errors
    /// Connection or protocol errors.
    pub async fn elect_leaders_at(
        &mut self,
        addr: &str,
        req: ElectLeadersRequest,
    ) -> anyhow::Result<ElectLeadersResponse> {
        let ResponseKind::ElectLeaders(r) = self
            .call(
                addr,
                ApiKey::ElectLeaders,
                ELECT_LEADERS_V,
                RequestKind::ElectLeaders(req),
            )
            .await?
        else {
            bail!("unexpected response to ElectLeaders");
        };
        Ok(r)
    }

    /// Starts moving `topic`'s partition to `replicas` (the first preferred),
    /// or cancels its move (`None`).
    ///
    /// # Errors
    /// Kafka errors with their message.
    pub async fn reassign(
        &mut self,
        topic: &str,
        partition: i32,
        replicas: Option<Vec<i32>>,
    ) -> anyhow::Result<()> {
        let req = AlterPartitionReassignmentsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![
                alter_partition_reassignments_request::ReassignableTopic::default()
                    .with_name(name(topic))
                    .with_partitions(vec![
                        alter_partition_reassignments_request::ReassignablePartition::default()
                            .with_partition_index(partition)
                            .with_replicas(replicas.map(|r| r.into_iter().map(BrokerId).collect())),
                    ]),
            ]);
        let ResponseKind::AlterPartitionReassignments(r) = self
            .call_any(
                ApiKey::AlterPartitionReassignments,
                ALTER_REASSIGNMENTS_V,
                RequestKind::AlterPartitionReassignments(req),
            )
            .await?
        else {
            bail!("unexpected response to AlterPartitionReassignments");
        };
        if r.error_code != 0 {
            bail!(
                "AlterPartitionReassignments failed with error {}",
                r.error_code
            );
        }
        let res = r
            .responses
            .first()
            .and_then(|t| t.partitions.first())
            .context("empty AlterPartitionReassignments response")?;
        if res.error_code != 0 {
            bail!(
                "error {}: {}",
                res.error_code,
                res.error_message.as_ref().map_or("", |m| m.as_str())
            );
        }
        Ok(())
    }

    /// Every move under way.
    ///
    /// # Errors
    /// Connection, protocol and Kafka errors.
    pub async fn reassignments(&mut self) -> anyhow::Result<Vec<Reassignment>> {
        let ResponseKind::ListPartitionReassignments(r) = self
            .call_any(
                ApiKey::ListPartitionReassignments,
                LIST_REASSIGNMENTS_V,
                RequestKind::ListPartitionReassignments(
                    ListPartitionReassignmentsRequest::default()
                        .with_timeout_ms(30_000)
                        .with_topics(None),
                ),
            )
            .await?
        else {
            bail!("unexpected response to ListPartitionReassignments");
        };
        if r.error_code != 0 {
            bail!(
                "ListPartitionReassignments failed with error {}",
                r.error_code
            );
        }
        let ids = |v: Vec<BrokerId>| v.into_iter().map(|b| b.0).collect::<Vec<i32>>();
        Ok(r.topics
            .into_iter()
            .flat_map(|t| {
                let topic = t.name.0.to_string();
                t.partitions.into_iter().map(move |p| {
                    (
                        topic.clone(),
                        p.partition_index,
                        ids(p.replicas),
                        ids(p.adding_replicas),
                        ids(p.removing_replicas),
                    )
                })
            })
            .collect())
    }
}
