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
const FORMAT: u8 = 1;

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
        let saved: Saved = decode(&c.payload)
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
        let mut state: Metadata = decode(data).map_err(|e| {
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
    decode::<Metadata>(data)
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
