//! The metadata group's checkpoints, local compaction and snapshots
//! (docs/snapshots.md, step 1): its state is small and a function of the
//! applied log, so its serde encoding is both its checkpoint and its snapshot.

use std::sync::Arc;

use raft::eraftpb::{ConfState, SnapshotMetadata};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{Metadata, MetadataMachine};
use crate::checkpoint;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::ids::GroupId;

const G: GroupId = GroupId::METADATA;

/// How often (in applied entries) and how much of its log the metadata group
/// keeps: see [`crate::NodeConfig::metadata_checkpoint_entries`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct MetaLogPolicy {
    /// Checkpoint after this many entries were applied since the last one.
    pub(crate) checkpoint_every: u64,
    /// Entries kept below a checkpoint for followers a little behind.
    pub(crate) keep: u64,
}

/// A checkpoint's payload: the state and what a reset of the Raft log to it needs.
#[derive(Serialize, Deserialize)]
struct Saved {
    term: u64,
    voters: Vec<u64>,
    learners: Vec<u64>,
    metadata: Metadata,
}

/// The format of checkpoints and snapshots: a version byte, then postcard.
/// Format 2 added [`Metadata::peers`] and [`Metadata::reassignments`],
/// format 3 [`Metadata::racks`] and [`Metadata::isr`]; formats 1 and 2 are
/// still read.
const FORMAT: u8 = 3;

/// What format 1 saved: [`Saved`] before [`Metadata::peers`].
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct SavedV1 {
    term: u64,
    voters: Vec<u64>,
    learners: Vec<u64>,
    metadata: MetadataV1,
}

/// [`Metadata`] as format 1 saved it.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct MetadataV1 {
    brokers: std::collections::BTreeMap<crate::ids::NodeId, super::Broker>,
    topics: std::collections::BTreeMap<String, super::Topic>,
    topic_ids: std::collections::BTreeMap<[u8; 16], String>,
    next_group: u64,
    next_producer_id: i64,
    producer_id_blocks: std::collections::BTreeMap<crate::ids::NodeId, (i64, i64)>,
    applied: u64,
}

/// What format 2 saved: [`Saved`] before [`Metadata::racks`].
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct SavedV2 {
    term: u64,
    voters: Vec<u64>,
    learners: Vec<u64>,
    metadata: MetadataV2,
}

/// [`Metadata`] as format 2 saved it.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct MetadataV2 {
    brokers: std::collections::BTreeMap<crate::ids::NodeId, super::Broker>,
    topics: std::collections::BTreeMap<String, super::Topic>,
    topic_ids: std::collections::BTreeMap<[u8; 16], String>,
    next_group: u64,
    next_producer_id: i64,
    producer_id_blocks: std::collections::BTreeMap<crate::ids::NodeId, (i64, i64)>,
    applied: u64,
    peers: std::collections::BTreeMap<crate::ids::NodeId, String>,
    reassignments: std::collections::BTreeMap<GroupId, Vec<crate::ids::NodeId>>,
}

impl From<SavedV1> for Saved {
    fn from(v: SavedV1) -> Saved {
        Saved {
            term: v.term,
            voters: v.voters,
            learners: v.learners,
            metadata: v.metadata.into(),
        }
    }
}

impl From<SavedV2> for Saved {
    fn from(v: SavedV2) -> Saved {
        Saved {
            term: v.term,
            voters: v.voters,
            learners: v.learners,
            metadata: v.metadata.into(),
        }
    }
}

impl From<MetadataV1> for Metadata {
    fn from(m: MetadataV1) -> Metadata {
        MetadataV2 {
            brokers: m.brokers,
            topics: m.topics,
            topic_ids: m.topic_ids,
            next_group: m.next_group,
            next_producer_id: m.next_producer_id,
            producer_id_blocks: m.producer_id_blocks,
            applied: m.applied,
            peers: Default::default(),
            reassignments: Default::default(),
        }
        .into()
    }
}

impl From<MetadataV2> for Metadata {
    fn from(m: MetadataV2) -> Metadata {
        Metadata {
            brokers: m.brokers,
            topics: m.topics,
            topic_ids: m.topic_ids,
            next_group: m.next_group,
            next_producer_id: m.next_producer_id,
            producer_id_blocks: m.producer_id_blocks,
            applied: m.applied,
            peers: m.peers,
            reassignments: m.reassignments,
            racks: Default::default(),
            isr: Default::default(),
        }
    }
}

/// Reads a snapshot's metadata of any format.
fn decode_metadata(bytes: &[u8]) -> std::result::Result<Metadata, String> {
    match bytes.first() {
        Some(1) => checkpoint::from_versioned::<MetadataV1>(1, bytes).map(Metadata::from),
        Some(2) => checkpoint::from_versioned::<MetadataV2>(2, bytes).map(Metadata::from),
        _ => decode(bytes),
    }
}

/// Reads a checkpoint of any format.
fn decode_saved(bytes: &[u8]) -> std::result::Result<Saved, String> {
    match bytes.first() {
        Some(1) => checkpoint::from_versioned::<SavedV1>(1, bytes).map(Saved::from),
        Some(2) => checkpoint::from_versioned::<SavedV2>(2, bytes).map(Saved::from),
        _ => decode(bytes),
    }
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    checkpoint::to_versioned(FORMAT, value)
        .map_err(|e| Error::Invalid(format!("{G}: encoding the metadata state: {e}")))
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> std::result::Result<T, String> {
    checkpoint::from_versioned(FORMAT, bytes)
}

fn corrupt(what: String) -> Error {
    Error::Corrupt(format!("{G}: {what}"))
}

impl MetadataMachine {
    /// The metadata machine as its checkpoint left it (the initial state
    /// without one) and the applied index to start Raft at. Finishes a
    /// snapshot install that a crash interrupted: a checkpoint past the Raft
    /// log (or of another term at its index) resets the log to it.
    pub(crate) fn open(
        engine: Arc<dyn Engine>,
        policy: MetaLogPolicy,
    ) -> Result<(MetadataMachine, watch::Receiver<Arc<Metadata>>, u64)> {
        let Some(blob) = engine.state_get(G)? else {
            let (m, rx) = MetadataMachine::with_state(engine, policy, Metadata::default(), 0, 0);
            return Ok((m, rx, 0));
        };
        let c = checkpoint::decode(G, blob)?;
        let saved: Saved = decode_saved(&c.payload)
            .map_err(|e| corrupt(format!("metadata checkpoint does not decode: {e}")))?;
        let log_term = match engine.raft_term(G, c.index) {
            Ok(t) => Some(t),
            Err(Error::Unavailable(_)) => None,
            Err(Error::Compacted(at)) => {
                return Err(corrupt(format!(
                    "the metadata checkpoint is at index {}, but the Raft log was compacted through {at}",
                    c.index
                )));
            }
            Err(e) => return Err(e),
        };
        if log_term != Some(saved.term) {
            tracing::info!(
                index = c.index,
                term = saved.term,
                "finishing an interrupted metadata snapshot install"
            );
            engine.raft_apply_snapshot(G, &snapshot_meta(c.index, saved.term, &saved))?;
            // The hard state written with the snapshot may not have been synced:
            // it must know the snapshot's term and commit it (raising a term
            // is what hearing from a newer leader does; the vote is for none).
            let mut hs = engine.raft_state(G)?.hard_state;
            if hs.term < saved.term {
                hs.term = saved.term;
                hs.vote = 0;
            }
            hs.commit = hs.commit.max(c.index);
            engine.raft_set_hard_state(G, &hs)?;
            engine.raft_sync()?;
        }
        let mut metadata = saved.metadata;
        metadata.applied = c.index;
        let (m, rx) = MetadataMachine::with_state(engine, policy, metadata, saved.term, c.index);
        Ok((m, rx, c.index))
    }

    /// Writes a checkpoint of the applied state (durable when it returns), then
    /// compacts this replica's Raft log through `policy.keep` entries below it.
    pub(super) fn checkpoint(&mut self) -> Result<()> {
        let index = self.state.applied;
        let conf = self.engine.raft_state(G)?.conf_state;
        self.save(index, self.term, &conf)?;
        let to = index.saturating_sub(self.policy.keep);
        if to >= self.engine.raft_first_index(G)? {
            self.engine.raft_compact(G, to)?;
            crate::stats::raft_log_compacted("metadata");
            tracing::debug!(index = to, "metadata Raft log compacted");
        }
        Ok(())
    }

    fn save(&mut self, index: u64, term: u64, conf: &ConfState) -> Result<()> {
        let saved = Saved {
            term,
            voters: conf.voters.clone(),
            learners: conf.learners.clone(),
            metadata: self.state.clone(),
        };
        let payload = encode(&saved)?;
        self.engine
            .state_put(G, &checkpoint::encode(index, &payload))?;
        self.checkpointed = index;
        Ok(())
    }

    /// Replaces the state with a leader's snapshot and checkpoints it (before
    /// the driver resets the Raft log to it: see [`MetadataMachine::open`]).
    pub(super) fn install(&mut self, meta: &SnapshotMetadata, data: &[u8]) -> Result<()> {
        let mut state: Metadata = decode_metadata(data).map_err(|e| {
            Error::Invalid(format!(
                "{G}: a snapshot at index {} does not decode: {e}",
                meta.index
            ))
        })?;
        state.applied = meta.index;
        self.state = state;
        self.term = meta.term;
        self.save(meta.index, meta.term, meta.get_conf_state())?;
        tracing::info!(
            index = meta.index,
            term = meta.term,
            "installed a metadata snapshot"
        );
        Ok(())
    }
}

/// Whether a snapshot's data decodes as metadata.
pub(super) fn check(data: &[u8]) -> Result<()> {
    decode_metadata(data)
        .map(|_| ())
        .map_err(|e| Error::Invalid(format!("{G}: the snapshot does not decode: {e}")))
}

fn snapshot_meta(index: u64, term: u64, saved: &Saved) -> SnapshotMetadata {
    let mut meta = SnapshotMetadata {
        index,
        term,
        ..SnapshotMetadata::default()
    };
    meta.mut_conf_state().voters = saved.voters.clone();
    meta.mut_conf_state().learners = saved.learners.clone();
    meta
}

/// What the metadata group's leader sends a follower that needs compacted
/// entries: its applied state, encoded, and the index it reflects.
pub(crate) fn snapshot_source(
    meta: watch::Receiver<Arc<Metadata>>,
) -> crate::raft::storage::SnapshotSource {
    Arc::new(move || {
        let m = meta.borrow().clone();
        Ok((m.applied, encode(&*m)?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_format_1_checkpoint_and_snapshot_still_load() {
        let brokers = std::collections::BTreeMap::from([(
            1,
            super::super::Broker {
                id: 1,
                kafka_addr: "127.0.0.1:9092".into(),
            },
        )]);
        let v1 = SavedV1 {
            term: 3,
            voters: vec![1, 2, 3],
            learners: vec![],
            metadata: MetadataV1 {
                brokers: brokers.clone(),
                topics: Default::default(),
                topic_ids: Default::default(),
                next_group: 7,
                next_producer_id: 1000,
                producer_id_blocks: Default::default(),
                applied: 42,
            },
        };
        let bytes = checkpoint::to_versioned(1, &v1).expect("encode");
        let saved = decode_saved(&bytes).expect("a format-1 checkpoint decodes");
        assert_eq!(saved.term, 3);
        assert_eq!(saved.voters, vec![1, 2, 3]);
        assert_eq!(saved.metadata.brokers, brokers);
        assert_eq!(saved.metadata.next_group, 7);
        assert!(saved.metadata.peers.is_empty());
        let snap = checkpoint::to_versioned(1, &v1.metadata).expect("encode");
        let m = decode_metadata(&snap).expect("a format-1 snapshot decodes");
        assert_eq!(m.applied, 42);
        // And today's format round-trips, peers and racks included.
        let mut now = m;
        now.peers.insert(2, "127.0.0.1:9193".into());
        now.racks.insert(2, "eu-west-1a".into());
        let bytes = encode(&now).expect("encode");
        assert_eq!(decode_metadata(&bytes).expect("decode"), now);
    }

    #[test]
    fn a_format_2_checkpoint_and_snapshot_still_load() {
        let v2 = SavedV2 {
            term: 4,
            voters: vec![1, 2, 3, 4],
            learners: vec![],
            metadata: MetadataV2 {
                brokers: Default::default(),
                topics: Default::default(),
                topic_ids: Default::default(),
                next_group: 9,
                next_producer_id: 1000,
                producer_id_blocks: Default::default(),
                applied: 50,
                peers: std::collections::BTreeMap::from([(4, "127.0.0.1:9194".to_string())]),
                reassignments: std::collections::BTreeMap::from([(GroupId(3), vec![2, 3, 4])]),
            },
        };
        let bytes = checkpoint::to_versioned(2, &v2).expect("encode");
        let saved = decode_saved(&bytes).expect("a format-2 checkpoint decodes");
        assert_eq!(saved.voters, vec![1, 2, 3, 4]);
        assert_eq!(
            saved.metadata.peers.get(&4).map(String::as_str),
            Some("127.0.0.1:9194")
        );
        assert_eq!(
            saved.metadata.reassignments.get(&GroupId(3)),
            Some(&vec![2, 3, 4])
        );
        assert!(saved.metadata.racks.is_empty());
        let snap = checkpoint::to_versioned(2, &v2.metadata).expect("encode");
        assert_eq!(
            decode_metadata(&snap)
                .expect("a format-2 snapshot decodes")
                .applied,
            50
        );
    }
}
