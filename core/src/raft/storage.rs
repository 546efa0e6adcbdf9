//! `raft::Storage` over an engine's Raft log for one group.

use std::collections::VecDeque;
use std::sync::Arc;

use protobuf::Message as _;
use raft::eraftpb::{Entry, Snapshot};
use raft::{GetEntriesContext, StorageError};

use crate::engine::Engine;
use crate::ids::GroupId;

/// The most entry bytes [`EngineStorage`] keeps in memory per group.
const RECENT_BYTES: usize = 32 << 20;

/// What a group's leader sends in a snapshot: the index its state reflects
/// (applied here, so its term is in the Raft log) and the state, encoded.
pub(crate) type SnapshotSource =
    Arc<dyn Fn() -> crate::error::Result<(u64, Vec<u8>)> + Send + Sync>;

/// One group's view of the engine, as raft-rs reads it. Writes do not go through
/// here: the driver writes to the engine directly, and they are visible at once.
///
/// raft-rs reads entries back right after they were persisted, to apply them and to
/// send them to followers. The driver therefore also hands this storage the entries
/// it wrote ([`EngineStorage::remember`]) and drops them once applied
/// ([`EngineStorage::forget_through`]): reads those cover are answered from memory
/// (the entries share their data buffers), not by the engine, which would copy the
/// bytes and check their checksum again.
pub(crate) struct EngineStorage {
    engine: Arc<dyn Engine>,
    group: GroupId,
    /// Consecutive entries written by this replica and not yet applied.
    recent: VecDeque<Entry>,
    recent_bytes: usize,
    /// Where snapshots come from (groups that send them).
    snapshots: Option<SnapshotSource>,
    /// The last snapshot sent to each follower (its index, term and data),
    /// sent again while the log still holds what follows it: a follower that
    /// downloads a snapshot's data for a while is not sent a newer one each
    /// time the leader probes it (it would chase the leader's log forever
    /// under a steady load).
    sent: parking_lot::Mutex<std::collections::HashMap<u64, SentSnapshot>>,
}

/// A snapshot sent to a follower: its index, term and data.
type SentSnapshot = (u64, u64, Vec<u8>);

impl EngineStorage {
    /// A view of `group` in `engine`, with nothing remembered.
    pub(crate) fn new(engine: Arc<dyn Engine>, group: GroupId) -> Self {
        EngineStorage {
            engine,
            group,
            recent: VecDeque::new(),
            recent_bytes: 0,
            snapshots: None,
            sent: parking_lot::Mutex::default(),
        }
    }

    /// Lets this group's leader send snapshots of what `source` gives.
    pub(crate) fn set_snapshot_source(&mut self, source: SnapshotSource) {
        self.snapshots = Some(source);
    }

    /// Remembers entries just written to the engine (which replaced any entries
    /// from the first one's index on).
    pub(crate) fn remember(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else {
            return;
        };
        match self.recent.front().map(|e| e.index) {
            Some(front)
                if first.index >= front && first.index <= front + self.recent.len() as u64 =>
            {
                for e in self.recent.drain((first.index - front) as usize..) {
                    self.recent_bytes -= e.data.len();
                }
            }
            _ => {
                self.recent.clear();
                self.recent_bytes = 0;
            }
        }
        for e in entries {
            self.recent_bytes += e.data.len();
            self.recent.push_back(e.clone());
        }
        while self.recent_bytes > RECENT_BYTES {
            match self.recent.pop_front() {
                Some(e) => self.recent_bytes -= e.data.len(),
                None => break,
            }
        }
    }

    /// Forgets remembered entries up to `index` (applied: raft-rs reads them no more,
    /// except for a lagging follower, which the engine serves).
    pub(crate) fn forget_through(&mut self, index: u64) {
        while self.recent.front().is_some_and(|e| e.index <= index) {
            if let Some(e) = self.recent.pop_front() {
                self.recent_bytes -= e.data.len();
            }
        }
    }

    /// `[low, high)` from memory, if every one of them is remembered.
    fn recent_entries(&self, low: u64, high: u64, max_size: Option<u64>) -> Option<Vec<Entry>> {
        let front = self.recent.front()?.index;
        if low < front || high > front + self.recent.len() as u64 || low >= high {
            return None;
        }
        let mut out = Vec::with_capacity((high - low) as usize);
        let mut size = 0u64;
        for e in self
            .recent
            .range((low - front) as usize..(high - front) as usize)
        {
            size += u64::from(e.compute_size());
            if !out.is_empty() && max_size.is_some_and(|m| size > m) {
                break;
            }
            out.push(e.clone());
        }
        Some(out)
    }
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
        let max_size = max_size.into();
        if let Some(v) = self.recent_entries(low, high, max_size) {
            return Ok(v);
        }
        Ok(self.engine.raft_entries(self.group, low, high, max_size)?)
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

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        // Partition groups compact their Raft logs only through what every
        // replica has, so they never need one (docs/snapshots.md, step 2).
        let unavailable = || raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable);
        let Some(source) = &self.snapshots else {
            return Err(unavailable());
        };
        let first = self.engine.raft_first_index(self.group)?;
        let pinned = self
            .sent
            .lock()
            .get(&to)
            .filter(|(index, _, _)| *index >= request_index && *index + 1 >= first)
            .cloned();
        let (index, term, data) = match pinned {
            Some(p) => p,
            None => {
                let (index, data) = source().map_err(|e| {
                    tracing::warn!(group = %self.group, error = %e, "no snapshot for a lagging follower");
                    unavailable()
                })?;
                if index == 0 || index < request_index {
                    return Err(unavailable());
                }
                let term = self.engine.raft_term(self.group, index)?;
                self.sent.lock().insert(to, (index, term, data.clone()));
                (index, term, data)
            }
        };
        let mut snap = Snapshot {
            data: data.into(),
            ..Snapshot::default()
        };
        let meta = snap.mut_metadata();
        meta.index = index;
        meta.term = term;
        meta.set_conf_state(self.engine.raft_state(self.group)?.conf_state);
        tracing::info!(group = %self.group, index, to, bytes = snap.data.len(), "sending a snapshot");
        Ok(snap)
    }
}

#[cfg(test)]
mod tests {
    use raft::Storage as _;

    use super::*;
    use crate::memory::MemoryEngine;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: bytes::Bytes::from(format!("{index}/{term}")),
            ..Entry::default()
        }
    }

    fn write(s: &mut EngineStorage, entries: &[Entry]) {
        s.engine.raft_append(s.group, entries).unwrap();
        s.remember(entries);
    }

    fn read(s: &EngineStorage, low: u64, high: u64, max: Option<u64>) -> Vec<(u64, u64)> {
        s.entries(low, high, max, GetEntriesContext::empty(false))
            .unwrap()
            .iter()
            .map(|e| (e.index, e.term))
            .collect()
    }

    #[test]
    fn remembered_entries_follow_overwrites_and_fall_back_to_the_engine() {
        let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
        let mut s = EngineStorage::new(engine, GroupId(1));
        write(&mut s, &[entry(1, 1), entry(2, 1), entry(3, 1)]);
        assert_eq!(read(&s, 1, 4, None), [(1, 1), (2, 1), (3, 1)]);
        // A conflicting suffix replaces 2 and 3.
        write(&mut s, &[entry(2, 2)]);
        assert_eq!(read(&s, 1, 3, None), [(1, 1), (2, 2)]);
        assert!(
            s.entries(1, 4, None, GetEntriesContext::empty(false))
                .is_err()
        );
        write(&mut s, &[entry(3, 2), entry(4, 2)]);
        // Size limits as raft-rs expects: at least one entry.
        assert_eq!(read(&s, 1, 5, Some(0)), [(1, 1)]);
        s.forget_through(2);
        assert_eq!(s.recent.len(), 2);
        // Forgotten entries come from the engine.
        assert_eq!(read(&s, 1, 5, None), [(1, 1), (2, 2), (3, 2), (4, 2)]);
        // A write that does not follow on starts afresh.
        write(&mut s, &[entry(2, 3)]);
        assert_eq!(s.recent.len(), 1);
        assert_eq!(read(&s, 1, 3, None), [(1, 1), (2, 3)]);
    }
}
