//! Topics through the metadata group (create, delete), and the cluster as clients are
//! told of it: each partition's leader and in-sync replicas, and the controller.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::entry::encode_meta;
use crate::error::{Error, LeaderHint, Result};
use crate::ids::{GroupId, NodeId};
use crate::metadata::{MetaCommand, Metadata, PartitionMeta, TopicKind};
use crate::node::Node;
use crate::raft::driver::{GroupMsg, Role};

/// Kafka's topic-name rule: 1..=249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
///
/// # Errors
/// [`Error::InvalidTopic`] naming the problem.
pub fn validate_topic_name(name: &str) -> Result<()> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if name.is_empty() || name.len() > 249 || !ok_chars || name == "." || name == ".." {
        return Err(Error::InvalidTopic(format!(
            "topic name {name:?} must be 1-249 characters of [a-zA-Z0-9._-] and not '.' or '..'"
        )));
    }
    Ok(())
}

/// Checks the values of the topic configs weir acts on: `message.timestamp.type`
/// is `CreateTime` or `LogAppendTime`; `message.timestamp.before.max.ms` and
/// `after.max.ms` are milliseconds (a non-negative integer); `retention.ms` and
/// `retention.bytes` are -1 (no limit) or non-negative; `segment.bytes` is
/// 64 KiB to 2 GiB - 1, `segment.ms` positive; `cleanup.policy` is a list of
/// `delete` and `compact`; `delete.retention.ms` and `min.compaction.lag.ms`
/// are non-negative milliseconds, `min.cleanable.dirty.ratio` within 0 and 1.
///
/// # Errors
/// [`Error::Config`] naming the config and the value (Kafka's INVALID_CONFIG).
pub fn validate_topic_configs(configs: &BTreeMap<String, String>) -> Result<()> {
    for (k, v) in configs {
        let ok = match k.as_str() {
            "message.timestamp.type" => v == "CreateTime" || v == "LogAppendTime",
            "message.timestamp.before.max.ms" | "message.timestamp.after.max.ms" => {
                v.trim().parse::<i64>().is_ok_and(|ms| ms >= 0)
            }
            "retention.ms" | "retention.bytes" => v.trim().parse::<i64>().is_ok_and(|n| n >= -1),
            "segment.bytes" => v
                .trim()
                .parse::<u64>()
                .is_ok_and(|n| (64 << 10..=i32::MAX as u64).contains(&n)),
            "segment.ms" => v.trim().parse::<u64>().is_ok_and(|n| n >= 1),
            "cleanup.policy" => v
                .split(',')
                .all(|p| matches!(p.trim(), "delete" | "compact")),
            "delete.retention.ms" | "min.compaction.lag.ms" => {
                v.trim().parse::<i64>().is_ok_and(|ms| ms >= 0)
            }
            "min.cleanable.dirty.ratio" => v
                .trim()
                .parse::<f64>()
                .is_ok_and(|r| (0.0..=1.0).contains(&r)),
            _ => true,
        };
        if !ok {
            return Err(Error::Config(format!(
                "topic config {k} = {v:?} is not valid"
            )));
        }
    }
    Ok(())
}

impl Node {
    /// Creates a topic through group 0 and waits until this node has applied it.
    /// Works on any node: followers forward the proposal to the metadata leader.
    ///
    /// # Errors
    /// Those of [`Node::check_new_topic`] and [`validate_topic_configs`];
    /// [`Error::Timeout`] when no metadata
    /// leader committed it in time.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication: usize,
        configs: BTreeMap<String, String>,
        timeout: Duration,
    ) -> Result<()> {
        let replicas = self.check_new_topic(name, partitions, replication)?;
        validate_topic_configs(&configs)?;
        self.propose_topic(name, replicas, configs, timeout).await
    }

    /// Creates a topic whose partitions' replicas are named (partition `i` on
    /// `replicas[i]`, the first of them preferred), as `kafka-topics
    /// --replica-assignment` asks.
    ///
    /// # Errors
    /// [`Error::Invalid`] for an assignment that names a broker that is not
    /// registered, names one twice, or gives partitions different replica
    /// counts; then as [`Node::create_topic`].
    pub async fn create_topic_assigned(
        &self,
        name: &str,
        replicas: Vec<Vec<NodeId>>,
        configs: BTreeMap<String, String>,
        timeout: Duration,
    ) -> Result<()> {
        self.check_assignment(name, &replicas)?;
        validate_topic_configs(&configs)?;
        self.propose_topic(name, replicas, configs, timeout).await
    }

    /// Checks an assignment for [`Node::create_topic_assigned`] (what
    /// `validate_only` asks).
    ///
    /// # Errors
    /// As [`Node::create_topic_assigned`], without the timeout.
    pub fn check_assignment(&self, name: &str, replicas: &[Vec<NodeId>]) -> Result<()> {
        let rf = replicas.first().map_or(0, Vec::len);
        let partitions = i32::try_from(replicas.len()).unwrap_or(i32::MAX);
        self.check_new_topic(name, partitions, rf.max(1))?;
        check_replica_sets(&self.metadata(), name, replicas, rf, 0)
    }

    /// Everything [`Node::create_topic`] checks before proposing (what
    /// `validate_only` asks); returns the replicas it would assign.
    ///
    /// # Errors
    /// [`Error::InvalidTopic`] for a bad name, [`Error::AlreadyExists`],
    /// [`Error::LimitExceeded`] past `max_partitions_per_topic`, `max_partitions`
    /// or the open-file budget, [`Error::Invalid`] for counts no cluster can
    /// have (no partitions, more replicas than brokers).
    pub fn check_new_topic(
        &self,
        name: &str,
        partitions: i32,
        replication: usize,
    ) -> Result<Vec<Vec<NodeId>>> {
        validate_topic_name(name)?;
        if name == crate::groups::OFFSETS_TOPIC || name == "__transaction_state" {
            return Err(Error::InvalidTopic(format!(
                "{name} is internal: the cluster creates it itself"
            )));
        }
        let meta = self.metadata();
        if meta.topics.contains_key(name) {
            return Err(Error::AlreadyExists(format!("topic {name}")));
        }
        // Before anything is allocated for the partitions.
        self.check_partition_budget(name, partitions, partitions.max(0) as usize)?;
        meta.assign(name, partitions, replication)
    }

    async fn propose_topic(
        &self,
        name: &str,
        replicas: Vec<Vec<NodeId>>,
        configs: BTreeMap<String, String>,
        timeout: Duration,
    ) -> Result<()> {
        let cmd = MetaCommand::CreateTopic {
            name: name.to_string(),
            replicas,
            configs,
            kind: TopicKind::Data,
        };
        self.propose_meta(cmd, timeout, |m| m.topics.contains_key(name))
            .await
    }

    /// Waits until metadata names a leader for every partition of `name`, so that
    /// a client reading Metadata next sees them all.
    ///
    /// # Errors
    /// [`Error::NotFound`] when the topic is gone, [`Error::Timeout`] when some
    /// partition has no leader by then.
    pub async fn wait_topic_leaders(&self, name: &str, timeout: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut meta = self.watch_metadata();
        loop {
            {
                let m = meta.borrow_and_update();
                let t = m
                    .topics
                    .get(name)
                    .ok_or_else(|| Error::NotFound(format!("topic {name}")))?;
                let missing = t.partitions.iter().filter(|p| p.leader.is_none()).count();
                if missing == 0 {
                    return Ok(());
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(Error::Timeout(format!(
                        "topic {name} was created, but {missing} of its {} partitions have no leader yet",
                        t.partitions.len()
                    )));
                }
            }
            let _ = tokio::time::timeout_at(deadline, meta.changed()).await;
        }
    }

    /// Deletes a topic through group 0 and waits until this node has applied it.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::InvalidTopic`] for an internal topic,
    /// [`Error::Timeout`].
    pub async fn delete_topic(&self, name: &str, timeout: Duration) -> Result<()> {
        match self.metadata().topics.get(name) {
            None => return Err(Error::NotFound(format!("topic {name}"))),
            Some(t) if t.is_internal() => {
                return Err(Error::InvalidTopic(format!(
                    "{name} is internal: the cluster keeps it"
                )));
            }
            Some(_) => {}
        }
        let cmd = MetaCommand::DeleteTopic {
            name: name.to_string(),
        };
        self.propose_meta(cmd, timeout, |m| !m.topics.contains_key(name))
            .await
    }

    /// Replaces the configs of topic `name` with `configs` through group 0 and
    /// waits until this node has applied them (AlterConfigs; IncrementalAlterConfigs
    /// computes the whole new set from the current one). With `validate_only`,
    /// only checks.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::InvalidTopic`] for an internal topic, those of
    /// [`validate_topic_configs`], [`Error::Timeout`].
    pub async fn alter_topic_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
        validate_only: bool,
        timeout: Duration,
    ) -> Result<()> {
        match self.metadata().topics.get(name) {
            None => return Err(Error::NotFound(format!("topic {name}"))),
            Some(t) if t.is_internal() => {
                return Err(Error::InvalidTopic(format!(
                    "{name} is internal: the cluster sets its configs"
                )));
            }
            Some(_) => {}
        }
        validate_topic_configs(&configs)?;
        if validate_only {
            return Ok(());
        }
        let cmd = MetaCommand::AlterTopicConfigs {
            name: name.to_string(),
            configs: configs.clone(),
        };
        self.propose_meta(cmd, timeout, |m| {
            m.topics.get(name).is_none_or(|t| t.configs == configs)
        })
        .await
    }

    /// Checks that topic `name` may have `topic_partitions` partitions, of
    /// which `added` are new to the cluster: `max_partitions_per_topic`,
    /// `max_partitions` and the open-file budget.
    ///
    /// # Errors
    /// [`Error::LimitExceeded`] naming the limit.
    pub(crate) fn check_partition_budget(
        &self,
        name: &str,
        topic_partitions: i32,
        added: usize,
    ) -> Result<()> {
        let meta = self.metadata();
        let cfg = self.config();
        if topic_partitions > cfg.max_partitions_per_topic {
            return Err(Error::LimitExceeded(format!(
                "topic {name}: {topic_partitions} partitions exceed max_partitions_per_topic = {}",
                cfg.max_partitions_per_topic
            )));
        }
        let total: usize = meta.topics.values().map(|t| t.partitions.len()).sum();
        if total.saturating_add(added) > cfg.max_partitions {
            return Err(Error::LimitExceeded(format!(
                "topic {name}: {added} more partitions would exceed max_partitions = {} (the cluster has {total})",
                cfg.max_partitions
            )));
        }
        if let Some(allowed) = self.partitions_allowed_by_open_files()
            && total.saturating_add(added) > allowed
        {
            return Err(Error::LimitExceeded(format!(
                "topic {name}: {added} more partitions would need more files open than this node's open-file limit allows ({allowed} partitions of the {} engine in half of the {} descriptors the limit leaves; the cluster has {total}); raise the limit (ulimit -n, LimitNOFILE)",
                self.engine().name(),
                cfg.open_file_limit.unwrap_or_default()
            )));
        }
        Ok(())
    }

    /// Proposes a metadata command (again every few ticks, as proposals can be lost
    /// during elections) until `done` holds for the applied metadata.
    pub(crate) async fn propose_meta(
        &self,
        cmd: MetaCommand,
        timeout: Duration,
        done: impl Fn(&Metadata) -> bool,
    ) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut meta = self.watch_metadata();
        let data = encode_meta(&cmd)?;
        let cfg = self.config();
        let retry = cfg.tick * cfg.election_ticks as u32;
        loop {
            if done(&meta.borrow_and_update()) {
                return Ok(());
            }
            self.send_to_group(
                GroupId::METADATA,
                GroupMsg::ProposeUnanswered { data: data.clone() },
            );
            let until = (tokio::time::Instant::now() + retry).min(deadline);
            while tokio::time::timeout_at(until, meta.changed())
                .await
                .is_ok_and(|r| r.is_ok())
            {
                if done(&meta.borrow_and_update()) {
                    return Ok(());
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Timeout(format!(
                    "metadata change not applied within {timeout:?}"
                )));
            }
        }
    }

    /// The leader of a partition as this node knows it: the local replica's view when
    /// it hosts one, else the last leader recorded in metadata.
    pub fn partition_leader(&self, p: &PartitionMeta) -> Option<LeaderHint> {
        self.group_status(p.group)
            .and_then(|s| s.leader_hint())
            .or(p.leader.map(|(node, term)| LeaderHint { node, term }))
    }

    /// The in-sync replicas of a partition: on its leader, the replicas it
    /// hears from that were caught up with its log within `replica_lag_max`
    /// (Kafka's notion, [`GroupStatus::in_sync`](crate::GroupStatus::in_sync)); elsewhere, as the
    /// leader last reported it to metadata ([`Metadata::isr`](crate::metadata::Metadata::isr)).
    pub fn in_sync_replicas(&self, p: &PartitionMeta) -> Vec<NodeId> {
        match self.group_status(p.group) {
            Some(s) if s.role == Role::Leader => s.in_sync,
            // Elsewhere: as the leader last reported it to metadata.
            _ => self.metadata().recorded_isr(p),
        }
    }

    /// The controller clients are told of: the metadata group's leader, if known.
    pub fn controller(&self) -> Option<NodeId> {
        self.group_status(GroupId::METADATA)
            .map(|s| s.leader)
            .filter(|&l| l != 0)
    }
}

/// Checks replica sets for partitions `first..` of topic `name`: each names
/// `rf` registered brokers, none twice.
///
/// # Errors
/// [`Error::Invalid`] naming the partition and what is wrong.
pub(crate) fn check_replica_sets(
    meta: &Metadata,
    name: &str,
    replicas: &[Vec<NodeId>],
    rf: usize,
    first: usize,
) -> Result<()> {
    for (i, r) in replicas.iter().enumerate() {
        let i = first + i;
        if r.is_empty() || r.len() != rf {
            return Err(Error::Invalid(format!(
                "topic {name}: partition {i} has {} replicas; every partition needs the same number ({rf}), at least one",
                r.len()
            )));
        }
        for (j, n) in r.iter().enumerate() {
            if !meta.brokers.contains_key(n) {
                return Err(Error::Invalid(format!(
                    "topic {name}: partition {i} names broker {n}, which is not registered"
                )));
            }
            if r[..j].contains(n) {
                return Err(Error::Invalid(format!(
                    "topic {name}: partition {i} names broker {n} twice"
                )));
            }
        }
    }
    Ok(())
}
