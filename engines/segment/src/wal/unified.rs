//! What the engine asks the WAL about entries whose batches the partition logs
//! hold (docs/write-path.md).

use super::*;

impl Wal {
    /// The entries of `group` whose batch a partition log holds, in index order.
    pub(crate) fn placed_refs(&self, group: GroupId) -> Vec<(u64, Placed)> {
        let Some(g) = self.group(group) else {
            return Vec::new();
        };
        g.locs
            .iter()
            .enumerate()
            .filter_map(|(i, l)| l.placed.map(|p| (g.snap_index + 1 + i as u64, p)))
            .collect()
    }

    /// Whether `group`'s entry `index` was written before a sync that a sync mark
    /// found at open vouches for (then its batch was synced too).
    pub(crate) fn known_synced(&self, group: GroupId, index: u64) -> bool {
        self.group(group)
            .and_then(|g| g.locs.get(index.checked_sub(g.snap_index + 1)? as usize))
            .is_some_and(|l| (l.seq, l.pos) < self.synced_to)
    }

    /// The base offset of the first batch an entry still in `group`'s log refers
    /// to: the partition log keeps it and everything after.
    pub(crate) fn first_placed(&self, group: GroupId) -> Option<i64> {
        self.group(group)?
            .locs
            .iter()
            .find_map(|l| l.placed.map(|p| p.base))
    }

    /// The last entry after `above` whose record holds a batch itself (the
    /// copying path), or 0: batches after it are not stored before it is applied.
    ///
    /// # Errors
    /// When a record cannot be read back.
    pub(crate) fn copied_batch_through(&self, group: GroupId, above: u64) -> Result<u64, Error> {
        let Some(g) = self.group(group) else {
            return Ok(0);
        };
        let mut last = 0;
        for (i, loc) in g.locs.iter().enumerate() {
            let index = g.snap_index + 1 + i as u64;
            if index <= above || loc.placed.is_some() {
                continue;
            }
            if weir_core::entry::carries_batch(&self.read_entry(group, index, *loc)?.data) {
                last = index;
            }
        }
        Ok(last)
    }

    /// Ends `group`'s log before `index` (opening found that the batches of
    /// those entries did not survive), lowering the commit index to match. The
    /// record is written now and synced by [`Wal::sync_now`].
    pub(crate) fn forget_from(&mut self, group: GroupId, index: u64) -> Result<(), SegError> {
        self.write_one(
            group,
            KIND_TRUNCATE,
            &[&index.to_le_bytes()],
            Record::Truncate { index },
        )
    }

    /// Syncs everything written so far (at open, before anything else is).
    pub(crate) fn sync_now(&mut self) -> Result<(), SegError> {
        if let Some(job) = self.sync_begin() {
            job.run(&self.durability)?;
            self.sync_end(job)?;
        }
        Ok(())
    }
}
