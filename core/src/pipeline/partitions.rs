//! More partitions for an existing topic (CreatePartitions, `weir topics
//! add-partitions`), through the metadata group like topic creation: the new
//! partitions' groups start on their replicas when metadata says so.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::ids::NodeId;
use crate::metadata::MetaCommand;
use crate::node::Node;
use crate::pipeline::topics::check_replica_sets;

impl Node {
    /// Grows topic `name` to `total` partitions. The new ones get `assignment`
    /// (one replica set per new partition, the first replica preferred) or,
    /// without it, continue the topic's rotation over the brokers with its
    /// replication factor. With `validate_only`, only checks. Waits until
    /// this node has applied the change.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown topic, [`Error::InvalidTopic`] for an
    /// internal one, [`Error::Invalid`] when `total` does not exceed the
    /// current count or the assignment is wrong (count, replication factor,
    /// unknown or repeated brokers), [`Error::LimitExceeded`] past the
    /// partition limits, [`Error::Timeout`].
    pub async fn create_partitions(
        &self,
        name: &str,
        total: i32,
        assignment: Option<Vec<Vec<NodeId>>>,
        validate_only: bool,
        timeout: Duration,
    ) -> Result<()> {
        let meta = self.metadata();
        let topic = meta
            .topics
            .get(name)
            .ok_or_else(|| Error::NotFound(format!("topic {name}")))?;
        if topic.is_internal() {
            return Err(Error::InvalidTopic(format!(
                "{name} is internal: the cluster sizes it"
            )));
        }
        let from = topic.partitions.len();
        let added = usize::try_from(total).unwrap_or(0).saturating_sub(from);
        if added == 0 {
            return Err(Error::Invalid(format!(
                "topic {name} has {from} partitions; it can only grow (asked for {total})"
            )));
        }
        self.check_partition_budget(name, total, added)?;
        let rf = topic.partitions.first().map_or(1, |p| p.replicas.len());
        let replicas = match assignment {
            Some(a) => {
                if a.len() != added {
                    return Err(Error::Invalid(format!(
                        "topic {name}: {added} new partitions, but {} replica sets given",
                        a.len()
                    )));
                }
                a
            }
            None => meta.assign_range(name, from..from + added, rf)?,
        };
        check_replica_sets(&meta, name, &replicas, rf, from)?;
        if validate_only {
            return Ok(());
        }
        let total = from + added;
        let cmd = MetaCommand::AddPartitions {
            name: name.to_string(),
            from: from as i32,
            replicas,
        };
        self.propose_meta(cmd, timeout, |m| {
            m.topics
                .get(name)
                .is_some_and(|t| t.partitions.len() >= total)
        })
        .await
    }
}
