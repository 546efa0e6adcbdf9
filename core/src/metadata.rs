//! The cluster's metadata: group 0's state machine (DESIGN.md §3).
//!
//! Brokers and their Kafka addresses, topics with their configs, each partition's
//! Raft group and replicas, and the last known leader of every partition. Every node
//! holds a replica; commands are proposed to group 0 and applied in log order, so
//! every node sees the same sequence of states.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use raft::eraftpb::SnapshotMetadata;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::ids::{GroupId, NodeId};
use crate::raft::driver::{Applied, StateMachine};

mod apply;
mod snapshot;

pub(crate) use snapshot::MetaLogPolicy;
use snapshot::snapshot_source;

/// A broker as registered in metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Broker {
    /// The node id.
    pub id: NodeId,
    /// The `host:port` Kafka clients should connect to.
    pub kafka_addr: String,
}

/// One partition of a topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionMeta {
    /// The partition index.
    pub index: i32,
    /// The partition's Raft group.
    pub group: GroupId,
    /// The nodes holding a replica (the group's voters).
    pub replicas: Vec<NodeId>,
    /// The last leader that announced itself, and its term (the leader epoch).
    pub leader: Option<(NodeId, u64)>,
}

/// What a topic's partition groups run (DESIGN §10, group kinds).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TopicKind {
    /// A Kafka topic: each partition group keeps a partition log.
    #[default]
    Data,
    /// `__consumer_offsets`: each partition group is a group coordinator, keeping
    /// committed offsets and consumer groups (see [`crate::groups`]).
    GroupCoordinator,
}

/// A topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topic {
    /// The topic's name.
    pub name: String,
    /// The topic's id (KIP-516), a UUID's 16 bytes: every replica derives the
    /// same one when it applies the creation (see [`topic_id`]), and a topic
    /// created again under the same name gets another.
    #[serde(default)]
    pub id: [u8; 16],
    /// Its partitions, by index.
    pub partitions: Vec<PartitionMeta>,
    /// Topic-level configuration (Kafka names, e.g. `retention.ms`).
    pub configs: BTreeMap<String, String>,
    /// What its partition groups run.
    #[serde(default)]
    pub kind: TopicKind,
}

impl Topic {
    /// Whether the cluster made it for itself (hidden from clients unless named).
    pub fn is_internal(&self) -> bool {
        self.kind != TopicKind::Data
    }
}

/// The whole metadata state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// Registered brokers by id.
    pub brokers: BTreeMap<NodeId, Broker>,
    /// Topics by name.
    pub topics: BTreeMap<String, Topic>,
    /// Topic names by id (Fetch v13+ names topics by id on every request).
    #[serde(default)]
    pub topic_ids: BTreeMap<[u8; 16], String>,
    /// The next partition group id to hand out.
    pub next_group: u64,
    /// The first producer id no node has been given yet.
    #[serde(default)]
    pub next_producer_id: i64,
    /// The last block of producer ids each node was given: `[start, end)`.
    #[serde(default)]
    pub producer_id_blocks: BTreeMap<NodeId, (i64, i64)>,
    /// The group-0 index this state reflects.
    pub applied: u64,
    /// Where each node's peers reach it (its peer transport's address), as it
    /// registered: the address book transports follow (DESIGN.md §10).
    #[serde(default)]
    pub peers: BTreeMap<NodeId, String>,
    /// Partitions being moved (AlterPartitionReassignments): each group's
    /// target replicas, the first preferred. The group's leader changes its
    /// Raft configuration towards them, then finishes the move
    /// ([`MetaCommand::FinishReassignment`]).
    #[serde(default)]
    pub reassignments: BTreeMap<GroupId, Vec<NodeId>>,
    /// The rack of each broker that has one (its `rack` setting): reported
    /// in Metadata and DescribeCluster, and new topics spread their replicas
    /// over racks ([`Metadata::assign_range`]).
    #[serde(default)]
    pub racks: BTreeMap<NodeId, String>,
    /// The in-sync replicas of each partition whose leader reported fewer
    /// than all its replicas ([`MetaCommand::IsrChanged`]): what nodes other
    /// than the leader tell clients. A partition absent here has every
    /// replica in sync.
    #[serde(default)]
    pub isr: BTreeMap<GroupId, Vec<NodeId>>,
}

/// The id of a topic named `name` whose first partition is Raft group
/// `first_group`: group ids are never handed out twice, so neither is an id. A
/// version-4-shaped UUID (random-looking bits, the version and variant set),
/// never nil.
pub fn topic_id(name: &str, first_group: GroupId) -> [u8; 16] {
    // splitmix64, over the group id and an FNV-1a hash of the name.
    fn mix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    let fnv = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let hi = mix(first_group.0);
    let lo = mix(fnv ^ hi);
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&hi.to_be_bytes());
    id[8..].copy_from_slice(&lo.to_be_bytes());
    id[6] = (id[6] & 0x0f) | 0x40;
    id[8] = (id[8] & 0x3f) | 0x80;
    id
}

impl Metadata {
    /// The topic with id `id`, if it exists.
    pub fn topic_by_id(&self, id: [u8; 16]) -> Option<&Topic> {
        self.topics.get(self.topic_ids.get(&id)?)
    }

    /// The partition behind `topic`/`partition`, if it exists.
    pub fn partition(&self, topic: &str, partition: i32) -> Option<&PartitionMeta> {
        let t = self.topics.get(topic)?;
        usize::try_from(partition)
            .ok()
            .and_then(|i| t.partitions.get(i))
    }

    /// The group-coordinator topic (`__consumer_offsets`), once created.
    pub fn coordinator_topic(&self) -> Option<&Topic> {
        self.topics
            .values()
            .find(|t| t.kind == TopicKind::GroupCoordinator)
    }

    /// Every partition that has a replica on `node`, or is being moved to it
    /// (a reassignment's target).
    pub fn hosted_by(&self, node: NodeId) -> impl Iterator<Item = (&Topic, &PartitionMeta)> {
        self.topics
            .values()
            .flat_map(|t| t.partitions.iter().map(move |p| (t, p)))
            .filter(move |(_, p)| {
                p.replicas.contains(&node)
                    || self
                        .reassignments
                        .get(&p.group)
                        .is_some_and(|target| target.contains(&node))
            })
    }

    /// Whether a reassignment of `group` is adding a replica on `node` (one
    /// the partition does not have yet): what `reassignment_bytes_per_sec`
    /// throttles.
    pub fn moving_to(&self, group: GroupId, node: NodeId) -> bool {
        self.reassignments
            .get(&group)
            .is_some_and(|target| target.contains(&node))
            && self
                .topics
                .values()
                .flat_map(|t| t.partitions.iter())
                .find(|p| p.group == group)
                .is_some_and(|p| !p.replicas.contains(&node))
    }

    /// A partition's replicas as clients are told them: its replicas, and
    /// during a reassignment also the ones being added (Kafka's union).
    pub fn replicas_shown(&self, p: &PartitionMeta) -> Vec<NodeId> {
        let mut all = p.replicas.clone();
        if let Some(target) = self.reassignments.get(&p.group) {
            all.extend(target.iter().filter(|n| !p.replicas.contains(n)));
        }
        all
    }

    /// A partition's in-sync replicas as its leader last recorded them
    /// ([`MetaCommand::IsrChanged`]), in the order of [`Metadata::replicas_shown`]
    /// and only among those; all of them when nothing is recorded (a new
    /// partition, or a leader that found them all in sync: applying such a report
    /// keeps nothing).
    pub fn recorded_isr(&self, p: &PartitionMeta) -> Vec<NodeId> {
        let shown = self.replicas_shown(p);
        match self.isr.get(&p.group) {
            Some(isr) => shown.into_iter().filter(|r| isr.contains(r)).collect(),
            None => shown,
        }
    }

    /// Picks replicas for a new topic: round robin over the registered brokers.
    ///
    /// # Errors
    /// [`Error::Invalid`] when fewer brokers are registered than replicas are asked for.
    pub fn assign(
        &self,
        name: &str,
        partitions: i32,
        replication: usize,
    ) -> Result<Vec<Vec<NodeId>>> {
        if partitions < 1 {
            return Err(Error::Invalid(format!(
                "topic {name} needs at least one partition, not {partitions}"
            )));
        }
        self.assign_range(name, 0..partitions as usize, replication)
    }

    /// Replicas for partitions `range` of topic `name`: the brokers in turn
    /// from a place the name picks, so that a topic's partitions (and their
    /// preferred leaders, the first replicas) spread evenly, and partitions
    /// added later continue the same rotation. When brokers have racks, the
    /// turn alternates racks (the first broker of each rack, then the second
    /// of each, …; Kafka's rack-alternated order), so that a partition's
    /// replicas are in as many racks as it can have.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a replication factor of 0 or above the brokers.
    pub fn assign_range(
        &self,
        name: &str,
        range: std::ops::Range<usize>,
        replication: usize,
    ) -> Result<Vec<Vec<NodeId>>> {
        let brokers = self.rack_alternated();
        if replication == 0 || replication > brokers.len() {
            return Err(Error::Invalid(format!(
                "replication factor {replication} for topic {name}, but {} broker(s) are registered",
                brokers.len()
            )));
        }
        let start = name
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
        Ok(range
            .map(|p| {
                (0..replication)
                    .map(|r| brokers[(start + p + r) % brokers.len()])
                    .collect()
            })
            .collect())
    }
}

impl Metadata {
    /// The registered brokers in rack-alternated order (by id when no
    /// broker has a rack; a broker without one counts as a rack of its own
    /// kind, "no rack").
    fn rack_alternated(&self) -> Vec<NodeId> {
        if self.racks.is_empty() {
            return self.brokers.keys().copied().collect();
        }
        let mut by_rack: BTreeMap<Option<&str>, Vec<NodeId>> = BTreeMap::new();
        for id in self.brokers.keys() {
            by_rack
                .entry(self.racks.get(id).map(String::as_str))
                .or_default()
                .push(*id);
        }
        let deepest = by_rack.values().map(Vec::len).max().unwrap_or(0);
        (0..deepest)
            .flat_map(|i| by_rack.values().filter_map(move |ids| ids.get(i).copied()))
            .collect()
    }
}

/// A change to the metadata, as proposed to group 0.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaCommand {
    /// A broker announces (or updates) its Kafka address.
    RegisterBroker {
        /// The node.
        id: NodeId,
        /// Its advertised Kafka address.
        kafka_addr: String,
        /// Its rack, if it has one (absent in entries from before racks).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rack: Option<String>,
    },
    /// Creates a topic with the given replica sets (one per partition). Ignored when
    /// the topic exists.
    CreateTopic {
        /// The name.
        name: String,
        /// Replicas of each partition.
        replicas: Vec<Vec<NodeId>>,
        /// Topic configs.
        configs: BTreeMap<String, String>,
        /// What its partition groups run.
        #[serde(default)]
        kind: TopicKind,
    },
    /// Deletes a topic.
    DeleteTopic {
        /// The name.
        name: String,
    },
    /// Replaces a topic's configs whole (AlterConfigs, IncrementalAlterConfigs).
    /// Ignored when the topic does not exist.
    AlterTopicConfigs {
        /// The topic.
        name: String,
        /// Its new configs.
        configs: BTreeMap<String, String>,
    },
    /// A replica became leader of a partition group.
    LeaderChanged {
        /// The group.
        group: GroupId,
        /// The new leader.
        node: NodeId,
        /// Its term.
        term: u64,
    },
    /// Gives `node` the next [`PRODUCER_ID_BLOCK`] producer ids (InitProducerId):
    /// no two nodes, and no node twice, get the same id.
    AllocateProducerIds {
        /// The node.
        node: NodeId,
    },
    /// Adds partitions to a topic (CreatePartitions): partition `from` onward
    /// gets `replicas`. Ignored unless the topic has exactly `from` partitions,
    /// so that a proposal applied twice, or raced by another, adds nothing.
    AddPartitions {
        /// The topic.
        name: String,
        /// Its partition count when the command was made.
        from: i32,
        /// Replicas of each new partition.
        replicas: Vec<Vec<NodeId>>,
    },
    /// A node announces (or updates) where its peers reach it.
    RegisterPeer {
        /// The node.
        id: NodeId,
        /// Its peer transport's address.
        peer_addr: String,
    },
    /// A node left the cluster: it is no longer a broker or a peer.
    RemoveBroker {
        /// The node.
        id: NodeId,
    },
    /// Starts moving a partition group to `target` replicas (replacing a move
    /// under way; `target` equal to the current replicas cancels one: the
    /// group moves back). Ignored for an unknown group or an empty target.
    Reassign {
        /// The group.
        group: GroupId,
        /// Its replicas once moved, the first preferred.
        target: Vec<NodeId>,
    },
    /// A move is done: the group's Raft voters are `replicas`, which become
    /// its replicas. Ignored unless they are the move's target.
    FinishReassignment {
        /// The group.
        group: GroupId,
        /// The target reached.
        replicas: Vec<NodeId>,
    },
    /// A leader reports which replicas of the partitions it leads are in
    /// sync (Kafka's AlterPartition): `(group, term, in-sync replicas)`. Each
    /// change is ignored unless metadata records `node` as the group's leader
    /// in that term, so that a deposed leader's report cannot overwrite its
    /// successor's.
    IsrChanged {
        /// The leader reporting.
        node: NodeId,
        /// Its reports.
        changes: Vec<(GroupId, u64, Vec<NodeId>)>,
    },
}

/// How many producer ids a node is given at a time.
pub const PRODUCER_ID_BLOCK: i64 = 1000;

/// Group 0's state machine: applies commands and publishes each new state;
/// checkpoints it and compacts its own Raft log (see [`snapshot`]).
pub(crate) struct MetadataMachine {
    state: Metadata,
    publish: watch::Sender<Arc<Metadata>>,
    engine: Arc<dyn Engine>,
    policy: MetaLogPolicy,
    /// Term of the last applied entry.
    term: u64,
    /// Index of the last checkpoint written.
    checkpointed: u64,
}

impl MetadataMachine {
    fn with_state(
        engine: Arc<dyn Engine>,
        policy: MetaLogPolicy,
        state: Metadata,
        term: u64,
        checkpointed: u64,
    ) -> (MetadataMachine, watch::Receiver<Arc<Metadata>>) {
        let (tx, rx) = watch::channel(Arc::new(state.clone()));
        (
            MetadataMachine {
                state,
                publish: tx,
                engine,
                policy,
                term,
                checkpointed,
            },
            rx,
        )
    }

    fn apply_command(&mut self, cmd: MetaCommand) {
        self.state.apply(cmd);
    }
}

impl StateMachine for MetadataMachine {
    const KIND: &'static str = "metadata";

    fn apply(&mut self, index: u64, term: u64, data: &[u8]) -> Result<Applied> {
        let cmd = crate::entry::decode_meta(data)?;
        self.apply_command(cmd);
        self.state.applied = index;
        self.term = term;
        Ok(Applied::Command)
    }

    fn skip(&mut self, index: u64, term: u64) -> Result<()> {
        self.state.applied = index;
        self.term = term;
        Ok(())
    }

    fn check_snapshot(&mut self, _from: NodeId, snap: &raft::eraftpb::Snapshot) -> Result<()> {
        snapshot::check(&snap.data)
    }

    fn snapshot_source(&self) -> Option<crate::raft::storage::SnapshotSource> {
        Some(snapshot_source(self.publish.subscribe()))
    }

    fn restore(&mut self, meta: &SnapshotMetadata, data: &[u8]) -> Result<()> {
        self.install(meta, data)?;
        self.publish_state();
        Ok(())
    }

    fn after_apply(&mut self) -> Result<()> {
        if self.state.applied >= self.checkpointed + self.policy.checkpoint_every {
            self.checkpoint()?;
        }
        self.publish_state();
        Ok(())
    }
}

impl MetadataMachine {
    fn publish_state(&self) {
        let next = Arc::new(self.state.clone());
        self.publish.send_if_modified(|cur| {
            if **cur != *next {
                *cur = next;
                true
            } else {
                false
            }
        });
    }
}

#[cfg(test)]
mod tests;
