//! The partition log over the store: batches by offset, log state, retention.

use super::*;
use weir_core::retention::{LogUnit, Retention, retention_point};

impl<S: KvStore> PartitionStore for KvEngine<S> {
    fn log_groups(&self) -> Result<Vec<GroupId>> {
        let mut v: Vec<_> = self.logs.read().keys().copied().collect();
        v.sort();
        Ok(v)
    }

    fn log_state(&self, group: GroupId) -> Result<LogState> {
        Ok(self.log_state_of(group))
    }

    fn log_append(
        &self,
        group: GroupId,
        raft_index: u64,
        leader_epoch: i32,
        batch_bytes: &[u8],
    ) -> Result<Appended> {
        let header = batch::verify(batch_bytes)?;
        let mut state = self.log_state_of(group);
        check_log_append(group, raft_index, state.applied_index)?;
        let base = state.next_offset;
        let mut owned = batch_bytes.to_vec();
        batch::stamp(&mut owned, base, leader_epoch);
        let ops = vec![KvOp::Put(
            Table::Batches,
            batch_key(self.space(group), base).to_vec(),
            owned,
        )];
        state.next_offset = base + i64::from(header.last_offset_delta) + 1;
        state.applied_index = raft_index;
        self.put_log_state(group, state, ops)?;
        Ok(Appended {
            base_offset: base,
            last_offset: state.next_offset - 1,
        })
    }

    fn log_mark_applied(&self, group: GroupId, raft_index: u64) -> Result<()> {
        let mut state = self.log_state_of(group);
        if raft_index <= state.applied_index {
            return Ok(());
        }
        state.applied_index = raft_index;
        self.put_log_state(group, state, Vec::new())
    }

    fn log_read(&self, group: GroupId, offset: Offset, max_bytes: usize) -> Result<Bytes> {
        let state = self.log_state_of(group);
        check_read_range(offset, &state)?;
        let mut out = Vec::new();
        if offset == state.next_offset {
            return Ok(Bytes::new());
        }
        self.scan_batches(group, offset, state.next_offset, |h, v| {
            if h.last_offset() < offset {
                return true;
            }
            if !out.is_empty() && out.len() + v.len() > max_bytes {
                return false;
            }
            out.extend_from_slice(v);
            true
        })?;
        Ok(Bytes::from(out))
    }

    fn log_offset_for_timestamp(&self, group: GroupId, timestamp: i64) -> Result<Option<Offset>> {
        let state = self.log_state_of(group);
        if state.start_offset >= state.next_offset {
            return Ok(None);
        }
        let mut found = None;
        self.scan_batches(group, state.start_offset, state.next_offset, |h, _| {
            if h.last_offset() >= state.start_offset && h.max_timestamp >= timestamp {
                found = Some(h.base_offset.max(state.start_offset));
                return false;
            }
            true
        })?;
        Ok(found)
    }

    fn log_delete_prefix(&self, group: GroupId, offset: Offset) -> Result<()> {
        let _cleaning = self.stop_cleaning(group);
        let mut state = self.log_state_of(group);
        let start = offset.min(state.next_offset);
        if start <= state.start_offset {
            return Ok(());
        }
        // Whole batches below the one holding `start` go; that one stays.
        let keep_from = if start == state.next_offset {
            start
        } else {
            self.batch_base(group, start)?
        };
        state.start_offset = start;
        let ops = vec![KvOp::DeleteRange(
            Table::Batches,
            batch_key(self.space(group), 0).to_vec(),
            batch_key(self.space(group), keep_from).to_vec(),
        )];
        self.put_log_state(group, state, ops)
    }

    fn log_retention_point(&self, group: GroupId, r: Retention) -> Result<Offset> {
        let state = self.log_state_of(group);
        if r.is_unlimited() || state.start_offset >= state.next_offset {
            return Ok(state.start_offset);
        }
        // Every batch is a unit; only headers are looked at (nothing is served).
        let mut units = Vec::new();
        let from = self.batch_base(group, state.start_offset)?;
        self.store.scan(
            Table::Batches,
            &batch_key(self.space(group), from),
            &batch_key(self.space(group), state.next_offset),
            &mut |_, v| {
                let h = batch::BatchHeader::parse(v)?;
                units.push(LogUnit {
                    next_offset: h.last_offset() + 1,
                    bytes: v.len() as u64,
                    max_timestamp: h.max_timestamp,
                    sealed: true,
                });
                Ok(true)
            },
        )?;
        Ok(retention_point(&state, units, r))
    }

    fn log_configure(&self, group: GroupId, shape: weir_core::retention::LogShape) -> Result<()> {
        if let Some(b) = shape.segment_bytes {
            self.unit_bytes.write().insert(group, b.max(1));
        }
        Ok(())
    }

    fn log_remove(&self, group: GroupId) -> Result<()> {
        let _cleaning = self.stop_cleaning(group);
        let mut ops = Vec::new();
        for space in [0, SPACE_BIT] {
            let g = GroupId(group.0 | space);
            ops.push(KvOp::DeleteRange(
                Table::Batches,
                key(g, 0).to_vec(),
                key(g, u64::MAX).to_vec(),
            ));
        }
        ops.push(KvOp::Delete(Table::LogMeta, group_key(group).to_vec()));
        ops.push(KvOp::Delete(
            Table::LogMeta,
            staged_meta_key(group).to_vec(),
        ));
        self.write(ops)?;
        self.logs.write().remove(&group);
        self.spaces.write().remove(&group);
        self.staged.write().remove(&group);
        Ok(())
    }

    fn log_flush(&self, _group: GroupId) -> Result<()> {
        self.guarded(|s| s.sync())
    }
}
