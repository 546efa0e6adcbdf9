//! `raft::Storage` over an engine's Raft log for one group.

use std::sync::Arc;

use raft::eraftpb::{Entry, Snapshot};
use raft::{GetEntriesContext, StorageError};

use crate::engine::Engine;
use crate::ids::GroupId;

/// One group's view of the engine, as raft-rs reads it. Writes do not go through
/// here: the driver writes to the engine directly, and they are visible at once.
pub(crate) struct EngineStorage {
    pub(crate) engine: Arc<dyn Engine>,
    pub(crate) group: GroupId,
}

impl raft::Storage for EngineStorage {
    fn initial_state(&self) -> raft::Result<raft::RaftState> {
        let s = self.engine.raft_state(self.group)?;
        Ok(raft::RaftState {
            hard_state: s.hard_state,
            conf_state: s.conf_state,
        })
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        Ok(self
            .engine
            .raft_entries(self.group, low, high, max_size.into())?)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        Ok(self.engine.raft_term(self.group, idx)?)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.engine.raft_first_index(self.group)?)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.engine.raft_last_index(self.group)?)
    }

    fn snapshot(&self, _request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        // weir does not compact Raft logs past what every replica has, so snapshots
        // are never needed yet; see the Raft issue's notes.
        Err(raft::Error::Store(
            StorageError::SnapshotTemporarilyUnavailable,
        ))
    }
}
