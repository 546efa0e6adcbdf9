//! Consumer groups: where a group's coordinator is, and what it keeps.
//!
//! Group state lives in the partitions of the internal topic
//! [`OFFSETS_TOPIC`] (`__consumer_offsets`, created by the cluster on first use
//! with [`NodeConfig::group_partitions`](crate::NodeConfig) partitions), each a
//! Raft group of kind [`TopicKind::GroupCoordinator`](crate::metadata::TopicKind).
//! The coordinator of group `g` is the Raft leader of partition
//! [`partition_for`]`(g, N)` — Kafka's own mapping, so a group lands on the same
//! partition number as in Kafka. Committed offsets and each group's settled
//! generation are replicated through that partition's Raft log
//! ([`store`]); a new leader (after a failover or a restart) has them all as soon
//! as it has applied its log, and answers LOAD_IN_PROGRESS until then.
//!
//! Stored data stays bounded: each partition's state is checkpointed through the
//! engine and its Raft log compacted through the checkpoint (so superseded commits
//! are not kept), and groups without members expire after
//! `offsets_retention` without a commit (see [`store::GroupCommand::Expire`]).

pub mod admin;
pub mod classic;
pub mod consumer;
mod live;
pub(crate) mod machine;
pub mod store;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use parking_lot::RwLock;
use tokio::sync::oneshot;

use crate::error::{Error, GroupError, Result};
use crate::groups::machine::SharedReplica;
use crate::groups::store::{CommittedOffset, GroupCommand, encode_command};
use crate::ids::{GroupId, NodeId};
use crate::metadata::{MetaCommand, TopicKind};
use crate::node::Node;
use crate::raft::driver::{GroupMsg, Role};

/// The internal topic whose partitions coordinate consumer groups.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// The coordinator partition of group `group` among `partitions`: Kafka's
/// `abs(group.hashCode()) % partitions`, with Java's `String.hashCode` (over
/// UTF-16 code units, wrapping) and Kafka's `Utils.abs` (which maps
/// `i32::MIN` to 0).
pub fn partition_for(group: &str, partitions: usize) -> i32 {
    let h = group
        .encode_utf16()
        .fold(0i32, |h, u| h.wrapping_mul(31).wrapping_add(i32::from(u)));
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    let n = i32::try_from(partitions.max(1)).unwrap_or(i32::MAX);
    abs % n
}

/// The coordinator replicas hosted on this node, by Raft group.
#[derive(Debug, Default)]
pub(crate) struct Coordinators {
    replicas: RwLock<HashMap<GroupId, SharedReplica>>,
    live: live::Live,
    /// The negative control's unreplicated offsets (see
    /// `NodeConfig::unsafe_group_offsets_in_memory`).
    #[cfg(feature = "negative-controls")]
    in_memory: parking_lot::Mutex<HashMap<(String, String, i32), CommittedOffset>>,
}

pub(crate) use live::run_timers;

impl Coordinators {
    pub(crate) fn add(&self, group: GroupId, replica: SharedReplica) {
        self.replicas.write().insert(group, replica);
    }

    pub(crate) fn remove(&self, group: GroupId) {
        self.replicas.write().remove(&group);
        self.live.drop_partition(group);
    }

    pub(crate) fn live(&self) -> &live::Live {
        &self.live
    }

    fn get(&self, group: GroupId) -> Option<SharedReplica> {
        self.replicas.read().get(&group).cloned()
    }

    fn replicas(&self) -> Vec<(GroupId, SharedReplica)> {
        self.replicas
            .read()
            .iter()
            .map(|(g, r)| (*g, r.clone()))
            .collect()
    }
}

/// An offset to commit for one partition (OffsetCommit's fields).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffsetCommit {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The next offset to consume.
    pub offset: i64,
    /// The leader epoch of the last consumed record (-1: unknown).
    pub leader_epoch: i32,
    /// The client's metadata string.
    pub metadata: String,
}

/// Who commits: a member of the group's current generation, or (generation
/// below 0, empty member id) a client that assigns its partitions itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Committer {
    /// The member id (empty for a simple consumer).
    pub member_id: String,
    /// The generation (-1 for a simple consumer).
    pub generation: i32,
    /// The static instance id, if any.
    pub instance_id: Option<String>,
}

/// An offset commit on its way through its coordinator partition's Raft log.
#[derive(Debug)]
#[must_use = "a commit is acknowledged only once it is applied"]
pub struct PendingCommit {
    proposal: Option<(
        GroupId,
        oneshot::Receiver<Result<crate::raft::driver::Applied>>,
    )>,
}

impl PendingCommit {
    /// Waits until the commit is applied (durable on a quorum).
    ///
    /// # Errors
    /// [`GroupError::NotCoordinator`] when leadership moved first,
    /// [`Error::Timeout`] after `timeout`.
    pub async fn wait(self, timeout: Duration) -> Result<()> {
        match self.proposal {
            None => Ok(()),
            Some((g, rx)) => await_group_command(g, rx, timeout).await,
        }
    }
}

/// Waits for a proposal [`Node::start_group_command`] made to be applied.
pub(crate) async fn await_group_command(
    g: GroupId,
    rx: oneshot::Receiver<Result<crate::raft::driver::Applied>>,
    timeout: Duration,
) -> Result<()> {
    match tokio::time::timeout(timeout, rx).await {
        Err(_) => Err(Error::Timeout(format!("group command to {g}"))),
        Ok(Err(_)) => Err(Error::Shutdown),
        // Leadership moved before it was committed: the client finds the new
        // coordinator.
        Ok(Ok(Err(Error::NotLeader { .. }))) => Err(GroupError::NotCoordinator.into()),
        Ok(Ok(r)) => r.map(|_| ()),
    }
}

/// What OffsetFetch answers for one partition.
pub type Committed = (String, i32, Option<CommittedOffset>);

impl Node {
    /// The node coordinating `group` (FindCoordinator). Creates the internal
    /// topic on first use.
    ///
    /// # Errors
    /// [`GroupError::InvalidGroupId`] for an empty id;
    /// [`GroupError::CoordinatorNotAvailable`] while the topic is created or the
    /// group's partition has no leader yet (retriable).
    pub async fn find_coordinator(&self, group: &str) -> Result<NodeId> {
        if group.is_empty() {
            return Err(GroupError::InvalidGroupId(group.to_string()).into());
        }
        let meta = self.metadata();
        let Some(topic) = meta.coordinator_topic() else {
            self.create_offsets_topic();
            return Err(GroupError::CoordinatorNotAvailable.into());
        };
        let p = &topic.partitions[partition_for(group, topic.partitions.len()) as usize];
        match p.leader {
            Some((node, _)) if meta.brokers.contains_key(&node) => Ok(node),
            _ => Err(GroupError::CoordinatorNotAvailable.into()),
        }
    }

    /// Proposes creating the internal topic (once the metadata leader applies it,
    /// the coordinators start); does not wait.
    fn create_offsets_topic(&self) {
        let cfg = self.config();
        let meta = self.metadata();
        // As many replicas as the static cluster has voters, up to three, once that
        // many brokers are registered.
        let rf = cfg.voters.len().clamp(1, 3);
        let Ok(replicas) = meta.assign(OFFSETS_TOPIC, cfg.group_partitions, rf) else {
            tracing::debug!(rf, "waiting for brokers to create {OFFSETS_TOPIC}");
            return;
        };
        let cmd = MetaCommand::CreateTopic {
            name: OFFSETS_TOPIC.to_string(),
            replicas,
            configs: BTreeMap::new(),
            kind: TopicKind::GroupCoordinator,
        };
        match crate::entry::encode_meta(&cmd) {
            Ok(data) => {
                tracing::info!(
                    partitions = cfg.group_partitions,
                    rf,
                    "creating {OFFSETS_TOPIC}"
                );
                self.send_to_group(GroupId::METADATA, GroupMsg::ProposeUnanswered { data });
            }
            Err(e) => {
                tracing::error!(group = %GroupId::METADATA, error = %e, "cannot propose {OFFSETS_TOPIC}")
            }
        }
    }

    /// The local replica of `group`'s coordinator partition, when this node leads
    /// it and has applied every entry of earlier terms.
    ///
    /// # Errors
    /// [`GroupError::CoordinatorNotAvailable`] without the internal topic,
    /// [`GroupError::NotCoordinator`] where this node does not lead the partition,
    /// [`GroupError::LoadInProgress`] while it applies its log.
    pub(crate) fn coordinator_replica(&self, group: &str) -> Result<(GroupId, SharedReplica)> {
        let meta = self.metadata();
        let topic = meta
            .coordinator_topic()
            .ok_or(GroupError::CoordinatorNotAvailable)?;
        let g = topic.partitions[partition_for(group, topic.partitions.len()) as usize].group;
        let replica = self
            .inner_coordinators()
            .get(g)
            .ok_or(GroupError::NotCoordinator)?;
        let status = self.group_status(g).ok_or(GroupError::NotCoordinator)?;
        if status.role != Role::Leader {
            return Err(GroupError::NotCoordinator.into());
        }
        if replica.lock().applied_term != status.term {
            return Err(GroupError::LoadInProgress.into());
        }
        Ok((g, replica))
    }

    /// Proposes a coordinator command to `g` and waits until it is applied.
    pub(crate) async fn propose_group_command(
        &self,
        g: GroupId,
        cmd: &GroupCommand,
        timeout: Duration,
    ) -> Result<()> {
        let rx = self.start_group_command(g, cmd)?;
        await_group_command(g, rx, timeout).await
    }

    /// Proposes a coordinator command to `g` without waiting: the proposal is in
    /// the group's queue, in order, when this returns.
    pub(crate) fn start_group_command(
        &self,
        g: GroupId,
        cmd: &GroupCommand,
    ) -> Result<oneshot::Receiver<Result<crate::raft::driver::Applied>>> {
        let data = encode_command(cmd)?;
        let (tx, rx) = oneshot::channel();
        self.send_to_group(
            g,
            GroupMsg::Propose {
                data,
                reply: Some(tx),
                bytes: None,
            },
        );
        Ok(rx)
    }

    /// Commits offsets for `group` (OffsetCommit): durable on every replica of
    /// its coordinator partition's quorum when it returns.
    ///
    /// # Errors
    /// Those of [`Node::start_commit`], and of replicating the commit.
    pub async fn commit_offsets(
        &self,
        group: &str,
        who: &Committer,
        offsets: Vec<OffsetCommit>,
        timeout: Duration,
    ) -> Result<()> {
        self.start_commit(group, who, offsets)?.wait(timeout).await
    }

    /// Checks an OffsetCommit and proposes it without waiting: commits started
    /// one after another (a connection's pipelined requests) are applied in that
    /// order. Wait for it with [`PendingCommit::wait`].
    ///
    /// # Errors
    /// [`GroupError::CoordinatorNotAvailable`], [`GroupError::NotCoordinator`] or
    /// [`GroupError::LoadInProgress`] where this node cannot answer for the group;
    /// [`GroupError::OffsetMetadataTooLarge`] past `offset_metadata_max_bytes`;
    /// [`GroupError::UnknownMemberId`] / [`GroupError::IllegalGeneration`] (or
    /// [`GroupError::StaleMemberEpoch`]) for a committer that is not a member of
    /// the current generation.
    pub fn start_commit(
        &self,
        group: &str,
        who: &Committer,
        offsets: Vec<OffsetCommit>,
    ) -> Result<PendingCommit> {
        if group.is_empty() {
            return Err(GroupError::InvalidGroupId(group.to_string()).into());
        }
        let max = self.config().offset_metadata_max_bytes;
        if let Some(o) = offsets.iter().find(|o| o.metadata.len() > max) {
            return Err(GroupError::OffsetMetadataTooLarge(o.metadata.len()).into());
        }
        let (g, replica) = self.coordinator_replica(group)?;
        self.check_commit(g, &replica, group, who)?;
        let now = crate::batch::now_ms();
        #[cfg(feature = "negative-controls")]
        if self.config().unsafe_group_offsets_in_memory {
            let mut m = self.inner_coordinators().in_memory.lock();
            for o in offsets {
                let c = CommittedOffset {
                    offset: o.offset,
                    leader_epoch: o.leader_epoch,
                    metadata: o.metadata,
                    commit_ms: now,
                };
                m.insert((group.to_string(), o.topic, o.partition), c);
            }
            return Ok(PendingCommit { proposal: None });
        }
        let cmd = GroupCommand::Commit {
            group: group.to_string(),
            offsets: offsets
                .into_iter()
                .map(|o| {
                    (
                        o.topic,
                        o.partition,
                        CommittedOffset {
                            offset: o.offset,
                            leader_epoch: o.leader_epoch,
                            metadata: o.metadata,
                            commit_ms: now,
                        },
                    )
                })
                .collect(),
        };
        Ok(PendingCommit {
            proposal: Some((g, self.start_group_command(g, &cmd)?)),
        })
    }

    /// `group`'s committed offsets (OffsetFetch): of `partitions`, or of every
    /// partition it has committed when `None`.
    ///
    /// # Errors
    /// [`GroupError::CoordinatorNotAvailable`], [`GroupError::NotCoordinator`] or
    /// [`GroupError::LoadInProgress`] where this node cannot answer for the group.
    pub fn committed_offsets(
        &self,
        group: &str,
        partitions: Option<&[(String, i32)]>,
    ) -> Result<Vec<Committed>> {
        let (_, replica) = self.coordinator_replica(group)?;
        #[cfg(feature = "negative-controls")]
        if self.config().unsafe_group_offsets_in_memory {
            let m = self.inner_coordinators().in_memory.lock();
            let get = |t: &str, p: i32| m.get(&(group.to_string(), t.to_string(), p)).cloned();
            return Ok(match partitions {
                Some(ps) => ps
                    .iter()
                    .map(|(t, p)| (t.clone(), *p, get(t, *p)))
                    .collect(),
                None => m
                    .iter()
                    .filter(|((g, _, _), _)| g == group)
                    .map(|((_, t, p), o)| (t.clone(), *p, Some(o.clone())))
                    .collect(),
            });
        }
        let r = replica.lock();
        let stored = r.store.groups.get(group);
        let get = |t: &str, p: i32| {
            stored
                .and_then(|s| s.offsets.get(t))
                .and_then(|o| o.get(&p))
                .cloned()
        };
        Ok(match partitions {
            Some(ps) => ps
                .iter()
                .map(|(t, p)| (t.clone(), *p, get(t, *p)))
                .collect(),
            None => stored
                .map(|s| {
                    s.offsets
                        .iter()
                        .flat_map(|(t, ps)| {
                            ps.iter().map(|(p, o)| (t.clone(), *p, Some(o.clone())))
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_map_to_kafkas_partitions() {
        // Java: "my-group".hashCode() = -1906497762; Kafka: abs(...) % 50 = 12.
        assert_eq!(partition_for("my-group", 50), 12);
        assert_eq!(partition_for("", 50), 0);
        // Non-ASCII ids hash over UTF-16 code units, as Java does.
        let h = "ü€😀"
            .encode_utf16()
            .fold(0i32, |h, u| h.wrapping_mul(31).wrapping_add(i32::from(u)));
        assert_eq!(partition_for("ü€😀", 7), h.abs() % 7);
        for g in ["a", "console-consumer-1", "x".repeat(300).as_str()] {
            let p = partition_for(g, 16);
            assert!((0..16).contains(&p));
        }
    }
}
