//! Cleaned units ([`CompactionStore`]): a KV log has no segments, so its units
//! are runs of batches of about the topic's `segment.bytes` (at most
//! [`MAX_UNIT_BYTES`], since a replacement is held in memory until its commit,
//! one atomic write that deletes the unit's keys and puts the new batches).

use weir_core::CompactionStore;
use weir_core::compaction::{CleanUnit, check_replacement, units_by_size};

use super::*;

/// Bytes per unit when the topic does not say (`segment.bytes`).
const DEFAULT_UNIT_BYTES: u64 = 16 << 20;
/// The most bytes per unit whatever the topic says.
const MAX_UNIT_BYTES: u64 = 64 << 20;

/// A unit being replaced.
#[derive(Debug)]
pub(crate) struct Replacement {
    unit: CleanUnit,
    /// Where the last batch added ended.
    after: Offset,
    /// The key space the unit's batches were in when it began.
    space: u64,
    batches: Vec<(Offset, Vec<u8>)>,
}

impl<S: KvStore> KvEngine<S> {
    /// Drops `group`'s replacement in progress: its log is changing under it
    /// (start raised, installed, removed). Callers hold the lock until their
    /// change is written, so that no commit slips in between.
    pub(crate) fn stop_cleaning(
        &self,
        group: GroupId,
    ) -> parking_lot::MutexGuard<'_, HashMap<GroupId, Replacement>> {
        let mut c = self.cleaning.lock();
        c.remove(&group);
        c
    }
}

impl<S: KvStore> CompactionStore for KvEngine<S> {
    fn log_clean_units(&self, group: GroupId) -> Result<Vec<CleanUnit>> {
        let state = self.log_state_of(group);
        if state.start_offset >= state.next_offset {
            return Ok(Vec::new());
        }
        let mut batches = Vec::new();
        let from = self.batch_base(group, state.start_offset)?;
        self.store.scan(
            Table::Batches,
            &batch_key(self.space(group), from),
            &batch_key(self.space(group), state.next_offset),
            &mut |_, v| {
                let h = batch::BatchHeader::parse(v)?;
                batches.push((
                    h.base_offset,
                    h.last_offset(),
                    v.len() as u64,
                    h.max_timestamp,
                ));
                Ok(true)
            },
        )?;
        let unit = self
            .unit_bytes
            .read()
            .get(&group)
            .copied()
            .unwrap_or(DEFAULT_UNIT_BYTES)
            .min(MAX_UNIT_BYTES);
        Ok(units_by_size(batches, state.start_offset, unit))
    }

    fn clean_begin(&self, group: GroupId, unit: &CleanUnit) -> Result<()> {
        let r = Replacement {
            unit: *unit,
            after: unit.base,
            space: self.space_bits(group),
            batches: Vec::new(),
        };
        self.cleaning.lock().insert(group, r);
        Ok(())
    }

    fn clean_append(&self, group: GroupId, batches: &[u8]) -> Result<()> {
        let mut c = self.cleaning.lock();
        let r = c
            .get_mut(&group)
            .ok_or_else(|| Error::Invalid(format!("{group}: no unit is being cleaned")))?;
        let (checked, after) = check_replacement(group, &r.unit, r.after, batches)?;
        r.batches
            .extend(checked.into_iter().map(|(b, bytes)| (b, bytes.to_vec())));
        r.after = after;
        Ok(())
    }

    fn clean_commit(&self, group: GroupId) -> Result<bool> {
        let mut c = self.cleaning.lock();
        let Some(r) = c.remove(&group) else {
            return Ok(false);
        };
        let state = self.log_state_of(group);
        if !self.logs.read().contains_key(&group)
            || self.space_bits(group) != r.space
            || state.next_offset < r.unit.next
        {
            return Ok(false);
        }
        let g = self.space(group);
        let mut ops = vec![KvOp::DeleteRange(
            Table::Batches,
            batch_key(g, r.unit.base).to_vec(),
            batch_key(g, r.unit.next).to_vec(),
        )];
        ops.extend(
            r.batches
                .into_iter()
                .map(|(base, bytes)| KvOp::Put(Table::Batches, batch_key(g, base).to_vec(), bytes)),
        );
        self.write(ops)?;
        self.guarded(|s| s.sync())?;
        drop(c);
        Ok(true)
    }
}
