//! The memory engine's staged logs ([`StagingStore`]) and cleaned units
//! ([`CompactionStore`]).

use super::*;
use crate::compaction::{CompactionStore, check_replacement, units_by_size};
use crate::staging::{StagingStore, check_staged};

impl CompactionStore for MemoryEngine {
    fn log_clean_units(&self, group: GroupId) -> Result<Vec<CleanUnit>> {
        let st = self.state.lock();
        let Some(log) = st.logs.get(&group) else {
            return Ok(Vec::new());
        };
        let mut batches = Vec::with_capacity(log.batches.len());
        for bytes in log.batches.values() {
            let h = batch::BatchHeader::parse(bytes)?;
            batches.push((
                h.base_offset,
                h.last_offset(),
                bytes.len() as u64,
                h.max_timestamp,
            ));
        }
        let unit = st.unit_bytes.get(&group).copied().unwrap_or(UNIT_BYTES);
        Ok(units_by_size(batches, log.state.start_offset, unit))
    }

    fn clean_begin(&self, group: GroupId, unit: &CleanUnit) -> Result<()> {
        let replacement = Replacement {
            unit: *unit,
            after: unit.base,
            batches: Vec::new(),
        };
        self.state.lock().cleaning.insert(group, replacement);
        Ok(())
    }

    fn clean_append(&self, group: GroupId, batches: &[u8]) -> Result<()> {
        let mut st = self.state.lock();
        let r = st
            .cleaning
            .get_mut(&group)
            .ok_or_else(|| Error::Invalid(format!("{group}: no unit is being cleaned")))?;
        let (checked, after) = check_replacement(group, &r.unit, r.after, batches)?;
        r.batches.extend(
            checked
                .into_iter()
                .map(|(b, bytes)| (b, Bytes::copy_from_slice(bytes))),
        );
        r.after = after;
        Ok(())
    }

    fn clean_commit(&self, group: GroupId) -> Result<bool> {
        let mut st = self.state.lock();
        let Some(r) = st.cleaning.remove(&group) else {
            return Ok(false);
        };
        if !st.logs.contains_key(&group) {
            return Ok(false);
        }
        // Durable at once: what was appended before goes first, then the swap.
        st.log_write(
            group,
            LogOp::Replace(r.unit.base, r.unit.next, r.batches.into()),
        );
        st.flush_log(group, self.sync_lies);
        Ok(true)
    }
}

/// Bytes of batches per cleanable unit.
const UNIT_BYTES: u64 = 1 << 20;

impl StagingStore for MemoryEngine {
    fn stage_begin(&self, group: GroupId, start: Offset) -> Result<()> {
        let state = LogState {
            start_offset: start,
            next_offset: start,
            applied_index: 0,
        };
        self.state.lock().staged.insert(
            group,
            PartitionLog {
                state,
                batches: BTreeMap::new(),
            },
        );
        Ok(())
    }

    fn stage_append(&self, group: GroupId, batches: &[u8]) -> Result<Offset> {
        let mut st = self.state.lock();
        let log = st
            .staged
            .get_mut(&group)
            .ok_or_else(|| Error::Invalid(format!("{group}: no staged log")))?;
        let (checked, end) = check_staged(group, log.state.next_offset, batches)?;
        for (base, bytes) in checked {
            log.batches.insert(base, Bytes::copy_from_slice(bytes));
        }
        log.state.next_offset = end;
        Ok(end)
    }

    fn stage_end(&self, group: GroupId) -> Result<Option<(Offset, Offset)>> {
        Ok(self
            .state
            .lock()
            .staged
            .get(&group)
            .map(|l| (l.state.start_offset, l.state.next_offset)))
    }

    fn stage_install(&self, group: GroupId, applied_index: u64) -> Result<()> {
        let mut st = self.state.lock();
        st.cleaning.remove(&group);
        let mut log = st
            .staged
            .remove(&group)
            .ok_or_else(|| Error::Invalid(format!("{group}: no staged log")))?;
        log.state.applied_index = applied_index;
        st.log_pending.remove(&group);
        if !self.sync_lies {
            st.durable_logs.insert(group, log.clone());
        }
        st.logs.insert(group, log);
        Ok(())
    }

    fn stage_drop(&self, group: GroupId) -> Result<()> {
        self.state.lock().staged.remove(&group);
        Ok(())
    }
}
