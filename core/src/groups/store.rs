//! What a group-coordinator partition replicates: committed offsets and each
//! classic group's last settled generation, a deterministic function of the
//! applied log (identical on every replica), and the commands that change it.
//!
//! The live protocol state (who has joined a rebalance in progress, heartbeat
//! deadlines) is the coordinator's alone and is not replicated; a new
//! coordinator starts from the last generation stored here, as Kafka's does
//! from `__consumer_offsets`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::groups::consumer::ConsumerGroup;

/// A committed offset, as OffsetCommit stored it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedOffset {
    /// The next offset to consume.
    pub offset: i64,
    /// The leader epoch of the record before it (-1: unknown).
    pub leader_epoch: i32,
    /// The client's metadata string.
    pub metadata: String,
    /// When it was committed (the coordinator's clock, as proposed).
    pub commit_ms: i64,
}

/// A member of a classic group's settled generation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMember {
    /// The member id the coordinator gave it.
    pub member_id: String,
    /// Its `group.instance.id` (static membership).
    pub instance_id: Option<String>,
    /// Its client id.
    pub client_id: String,
    /// Its address, as the coordinator saw it.
    pub client_host: String,
    /// Its session timeout.
    pub session_timeout_ms: i32,
    /// Its rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// Its subscription: the metadata of the chosen protocol.
    pub subscription: Vec<u8>,
    /// The assignment its leader gave it.
    pub assignment: Vec<u8>,
}

/// A classic group's last settled generation (stored when SyncGroup completes
/// and when the group empties).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredGeneration {
    /// The protocol type (`consumer`, `connect`, …).
    pub protocol_type: String,
    /// The generation id.
    pub generation: i32,
    /// The chosen protocol (assignor), if the generation has members.
    pub protocol: Option<String>,
    /// The leader's member id.
    pub leader: Option<String>,
    /// The members with their assignments; empty for an empty group.
    pub members: Vec<StoredMember>,
}

/// One group's replicated state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredGroup {
    /// Committed offsets by topic and partition.
    pub offsets: BTreeMap<String, BTreeMap<i32, CommittedOffset>>,
    /// The classic protocol's settled generation, if the group ever had one.
    pub generation: Option<StoredGeneration>,
    /// When the group last changed (a commit, a generation), for expiry.
    pub changed_ms: i64,
}

impl StoredGroup {
    /// Whether the group has members in its settled generation.
    pub fn has_members(&self) -> bool {
        self.generation
            .as_ref()
            .is_some_and(|g| !g.members.is_empty())
    }
}

/// A change to a coordinator partition's state, as proposed to its Raft group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupCommand {
    /// Stores committed offsets of a group.
    Commit {
        /// The group.
        group: String,
        /// `(topic, partition, offset)` triples.
        offsets: Vec<(String, i32, CommittedOffset)>,
    },
    /// Stores a classic group's settled generation.
    Generation {
        /// The group.
        group: String,
        /// The generation.
        generation: StoredGeneration,
        /// The coordinator's clock.
        now_ms: i64,
    },
    /// Deletes some of a group's committed offsets (OffsetDelete).
    DeleteOffsets {
        /// The group.
        group: String,
        /// `(topic, partition)` pairs.
        partitions: Vec<(String, i32)>,
    },
    /// Deletes groups and their offsets (DeleteGroups).
    DeleteGroups {
        /// The groups.
        groups: Vec<String>,
    },
    /// Drops groups without members whose last change is older than
    /// `before_ms` (offsets retention), by the proposer's clock: every replica
    /// drops the same ones.
    Expire {
        /// The cut-off.
        before_ms: i64,
    },
    /// Stores a consumer-protocol group's state (kept when newer than the
    /// stored version).
    Consumer {
        /// The group.
        group: String,
        /// Its whole state.
        state: ConsumerGroup,
        /// The coordinator's clock.
        now_ms: i64,
    },
}

/// Every group of one coordinator partition.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupStore {
    /// Groups by id.
    pub groups: BTreeMap<String, StoredGroup>,
    /// Consumer-protocol (KIP-848) groups by id; each also has an entry in
    /// `groups` (its offsets and last change).
    pub consumer: BTreeMap<String, ConsumerGroup>,
}

/// The store as written before consumer-protocol groups existed (a checkpoint
/// of that shape is still read).
#[derive(Deserialize)]
struct GroupStoreV1 {
    groups: BTreeMap<String, StoredGroup>,
}

impl GroupStore {
    /// Applies a command (every replica in log order).
    pub fn apply(&mut self, cmd: GroupCommand) {
        match cmd {
            GroupCommand::Commit { group, offsets } => {
                let g = self.groups.entry(group).or_default();
                for (topic, partition, o) in offsets {
                    g.changed_ms = g.changed_ms.max(o.commit_ms);
                    g.offsets.entry(topic).or_default().insert(partition, o);
                }
            }
            GroupCommand::Generation {
                group,
                generation,
                now_ms,
            } => {
                let g = self.groups.entry(group).or_default();
                g.generation = Some(generation);
                g.changed_ms = g.changed_ms.max(now_ms);
            }
            GroupCommand::DeleteOffsets { group, partitions } => {
                if let Some(g) = self.groups.get_mut(&group) {
                    for (topic, partition) in partitions {
                        if let Some(t) = g.offsets.get_mut(&topic) {
                            t.remove(&partition);
                            if t.is_empty() {
                                g.offsets.remove(&topic);
                            }
                        }
                    }
                }
            }
            GroupCommand::DeleteGroups { groups } => {
                for g in groups {
                    self.groups.remove(&g);
                    self.consumer.remove(&g);
                }
            }
            GroupCommand::Expire { before_ms } => {
                let consumer = &self.consumer;
                self.groups.retain(|id, g| {
                    g.has_members()
                        || consumer.get(id).is_some_and(|c| !c.members.is_empty())
                        || g.changed_ms >= before_ms
                });
                let groups = &self.groups;
                self.consumer.retain(|id, _| groups.contains_key(id));
            }
            GroupCommand::Consumer {
                group,
                state,
                now_ms,
            } => {
                let g = self.groups.entry(group.clone()).or_default();
                g.changed_ms = g.changed_ms.max(now_ms);
                let newer = self
                    .consumer
                    .get(&group)
                    .is_none_or(|c| c.version < state.version);
                if newer {
                    self.consumer.insert(group, state);
                }
            }
        }
    }

    /// Serializes the store for a checkpoint.
    ///
    /// # Errors
    /// [`Error::Invalid`] if it cannot be encoded (plain data: a bug).
    pub fn encode(&self) -> Result<Vec<u8>> {
        postcard::to_allocvec(self)
            .map_err(|e| Error::Invalid(format!("cannot encode group state: {e}")))
    }

    /// Reads a store [`GroupStore::encode`] wrote.
    ///
    /// # Errors
    /// [`Error::Corrupt`] when the bytes are not a store.
    pub fn decode(bytes: &[u8]) -> Result<GroupStore> {
        postcard::from_bytes(bytes)
            .or_else(|e| {
                postcard::from_bytes::<GroupStoreV1>(bytes)
                    .map(|v1| GroupStore {
                        groups: v1.groups,
                        consumer: BTreeMap::new(),
                    })
                    .map_err(|_| e)
            })
            .map_err(|e| Error::Corrupt(format!("undecodable group state: {e}")))
    }
}

/// The entry tag of a coordinator command.
pub const TAG_GROUP: u8 = 4;

/// Encodes a command as a coordinator-group entry payload.
///
/// # Errors
/// [`Error::Invalid`] if it cannot be encoded (a bug; never proposed empty).
pub fn encode_command(cmd: &GroupCommand) -> Result<Vec<u8>> {
    let mut v = vec![TAG_GROUP];
    postcard::to_io(cmd, &mut v)
        .map_err(|e| Error::Invalid(format!("cannot encode group command: {e}")))?;
    Ok(v)
}

/// Decodes a coordinator-group entry payload's command.
///
/// # Errors
/// [`Error::Invalid`] for a payload that is not one (every replica alike).
pub fn decode_command(data: &[u8]) -> Result<GroupCommand> {
    match data.split_first() {
        Some((&TAG_GROUP, rest)) => postcard::from_bytes(rest)
            .map_err(|e| Error::Invalid(format!("undecodable group command: {e}"))),
        _ => Err(Error::Invalid("not a group command".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offset(offset: i64, commit_ms: i64) -> CommittedOffset {
        CommittedOffset {
            offset,
            leader_epoch: -1,
            metadata: String::new(),
            commit_ms,
        }
    }

    #[test]
    fn commands_apply_and_round_trip() -> Result<()> {
        let mut s = GroupStore::default();
        let cmds = vec![
            GroupCommand::Commit {
                group: "g".into(),
                offsets: vec![
                    ("t".into(), 0, offset(5, 10)),
                    ("t".into(), 1, offset(7, 10)),
                ],
            },
            GroupCommand::Commit {
                group: "old".into(),
                offsets: vec![("t".into(), 0, offset(1, 1))],
            },
            GroupCommand::Commit {
                group: "g".into(),
                offsets: vec![("t".into(), 0, offset(6, 20))],
            },
            GroupCommand::DeleteOffsets {
                group: "g".into(),
                partitions: vec![("t".into(), 1)],
            },
            GroupCommand::Expire { before_ms: 5 },
        ];
        for c in cmds {
            assert_eq!(decode_command(&encode_command(&c)?)?, c);
            s.apply(c);
        }
        assert_eq!(s.groups.len(), 1, "the old empty group expired");
        let g = &s.groups["g"];
        assert_eq!(g.offsets["t"].len(), 1);
        assert_eq!(g.offsets["t"][&0].offset, 6);
        assert_eq!(g.changed_ms, 20);
        assert_eq!(GroupStore::decode(&s.encode()?)?, s);
        assert!(decode_command(&[1, 2, 3]).is_err());
        Ok(())
    }

    #[test]
    fn consumer_groups_keep_their_newest_version_and_old_checkpoints_still_load() -> Result<()> {
        let mut s = GroupStore::default();
        let state = |version| ConsumerGroup {
            version,
            epoch: i32::try_from(version).unwrap_or(0),
            ..ConsumerGroup::default()
        };
        for (v, now_ms) in [(2, 10), (1, 20)] {
            s.apply(GroupCommand::Consumer {
                group: "c".into(),
                state: state(v),
                now_ms,
            });
        }
        assert_eq!(
            s.consumer["c"].version, 2,
            "an older version never replaces a newer"
        );
        assert_eq!(s.groups["c"].changed_ms, 20);
        assert_eq!(GroupStore::decode(&s.encode()?)?, s);
        // A checkpoint written before consumer-protocol groups existed.
        #[derive(Serialize)]
        struct V1<'a> {
            groups: &'a BTreeMap<String, StoredGroup>,
        }
        let old = postcard::to_allocvec(&V1 { groups: &s.groups }).unwrap_or_default();
        let loaded = GroupStore::decode(&old)?;
        assert_eq!(loaded.groups, s.groups);
        assert!(loaded.consumer.is_empty());
        s.apply(GroupCommand::DeleteGroups {
            groups: vec!["c".into()],
        });
        assert!(s.consumer.is_empty() && s.groups.is_empty());
        Ok(())
    }
}
