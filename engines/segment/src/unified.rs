//! The engine's side of a unified log (docs/write-path.md): a data partition's
//! stamped batches are stored once, in its partition log, when their Raft entries
//! are appended; the WAL records the entries and where their batches are.
//!
//! * `raft_append` stores the batches ([`SegmentEngine::place`]) and writes
//!   records that refer to them;
//! * `raft_sync` syncs the partition logs that got batches together with the WAL
//!   (on the threads of [`SyncPool`](crate::sync_pool::SyncPool));
//! * opening keeps the batches the WAL refers to and the entries whose batches
//!   survived ([`reconcile`]).

use std::collections::HashMap;
use std::fs::File;
use std::sync::Arc;

use parking_lot::Mutex;
use weir_core::eraftpb::Entry;
use weir_core::{GroupId, Result};

use crate::SegmentEngine;
use crate::durability::Durability;
use crate::error::SegError;
use crate::partition::{Partition, Placed};
use crate::wal::Wal;

impl SegmentEngine {
    /// Cuts the stored batches of `group`'s entries from `first` on, which an
    /// append is about to overwrite. The WAL's records of those entries go
    /// durably before their batches do: a crash in between must not leave synced
    /// records whose batches are gone (which opening calls data loss).
    pub(crate) fn cut_overwritten(&self, wal: &mut Wal, group: GroupId, first: u64) -> Result<()> {
        let Some(part) = self.partition(group) else {
            return Ok(());
        };
        let d = &self.durability;
        let mut p = part.lock();
        if p.stores_batches_from(first) {
            d.write_result(wal.forget_from(group, first).and_then(|()| wal.sync_now()))?;
            d.write_result(p.truncate_entries(first, d))?;
        }
        Ok(())
    }

    /// Stores the stamped batches of `entries` in `group`'s partition log, and
    /// says for each entry where its batch went. A batch is stored this way
    /// unless an entry whose batch is copied at apply (an unstamped one) is not
    /// applied yet: offsets after it are decided at its apply.
    ///
    /// Runs without the WAL's lock, so that the groups of a group commit copy
    /// their batches in parallel (weir never appends to one group concurrently).
    pub(crate) fn place(&self, group: GroupId, entries: &[Entry]) -> Result<Vec<Option<Placed>>> {
        if !entries.iter().any(|e| holds_batch(&e.data)) {
            return Ok(Vec::new());
        }
        let part = self.partition_or_create(group)?;
        let d = &self.durability;
        let mut p = part.lock();
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            let mut placed = None;
            if let Some(batch) = weir_core::entry::stamped_batch(&e.data)
                && p.copied_through <= p.state().applied_index
                // A batch that fails its checks is kept whole in the record: its
                // apply refuses it, on every replica alike.
                && let Ok(h) = weir_core::batch::verify(batch)
            {
                placed = Some(d.write_result(p.place(e.index, &h, batch, d))?);
            }
            if placed.is_none() && holds_batch(&e.data) {
                p.copied_through = p.copied_through.max(e.index);
            }
            out.push(placed);
        }
        if out.iter().any(Option::is_some) {
            self.unsynced.lock().push(group);
        }
        Ok(out)
    }

    /// The log files of partitions that got batches since the last sync.
    pub(crate) fn take_unsynced(&self) -> Vec<Arc<File>> {
        let groups = std::mem::take(&mut *self.unsynced.lock());
        groups
            .into_iter()
            .filter_map(|g| self.partition(g))
            .filter_map(|p| p.lock().take_unsynced())
            .collect()
    }
}

/// Whether an entry's payload is a produce command with a record batch (stamped
/// or not): only data partitions have them.
fn holds_batch(data: &[u8]) -> bool {
    weir_core::entry::carries_batch(data)
        && data
            .get(1..)
            .is_some_and(|b| weir_core::batch::BatchHeader::parse(b).is_ok())
}

/// At open: for every partition, keeps the batches the WAL's entries after its
/// applied index refer to and cuts the rest; an entry whose batch did not
/// survive ends its group's Raft log (see [`Wal::forget_from`]). Records that
/// refer to a partition log that is gone are data loss: refused unless it is
/// accepted.
pub(crate) fn reconcile(
    wal: &mut Wal,
    partitions: &HashMap<GroupId, Arc<Mutex<Partition>>>,
    d: &Durability,
    accept_loss: bool,
) -> Result<(), SegError> {
    for g in wal.groups() {
        let refs = wal.placed_refs(g);
        if partitions.contains_key(&g) {
            continue;
        }
        if let Some(&(index, _)) = refs.first() {
            // With entries compacted before them, the node sees that the
            // partition log is behind its Raft log and refuses to start,
            // naming `weir recover --accept-loss`; without, nothing would.
            if wal.first_index(g) <= 1 {
                crate::config::lost(
                    accept_loss,
                    format!(
                        "{g}: Raft entries from {index} on refer to batches in a partition log that is missing"
                    ),
                )?;
            }
            wal.forget_from(g, index)?;
        }
    }
    for (&g, part) in partitions {
        let refs = wal.placed_refs(g);
        let mut p = part.lock();
        if let Some(index) = p.reconcile(&refs, d)? {
            if wal.known_synced(g, index) {
                crate::config::lost(
                    accept_loss,
                    format!(
                        "{g}: the batch of Raft entry {index} was synced but is missing from its partition log"
                    ),
                )?;
            }
            tracing::warn!(group = %g, index, "Raft entries from this index on lost their batches in a crash before they were synced; the Raft log ends before them");
            wal.forget_from(g, index)?;
        }
        p.copied_through = wal
            .copied_batch_through(g, p.state().applied_index)
            .map_err(|e| SegError::Corrupt(e.to_string()))?;
        let keep_from = wal.first_placed(g).unwrap_or(i64::MAX);
        let bound = p.state().start_offset.min(keep_from);
        p.drop_segments_below(bound)?;
    }
    wal.sync_now()
}
