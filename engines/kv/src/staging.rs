//! Staged logs ([`StagingStore`]): a partition log received in a snapshot is
//! written into the key space its group's live log does not use; an install
//! is one atomic write that points the group's log meta at that space and
//! deletes the old one (see [`SPACE_BIT`]).

use weir_core::StagingStore;
use weir_core::staging::check_staged;

use super::*;

/// The log-meta key of `group`'s staged log.
pub(crate) fn staged_meta_key(group: GroupId) -> [u8; 8] {
    group_key(GroupId(group.0 | STAGED_BIT))
}

impl<S: KvStore> KvEngine<S> {
    /// The key space a staged log of `group` uses: the one its live log does not.
    fn staging_space(&self, group: GroupId) -> u64 {
        self.space_bits(group) ^ SPACE_BIT
    }

    /// Removes every batch in `group`'s key space `space`.
    fn clear_space(group: GroupId, space: u64) -> KvOp {
        let g = GroupId(group.0 | space);
        KvOp::DeleteRange(
            Table::Batches,
            key(g, 0).to_vec(),
            key(g, u64::MAX).to_vec(),
        )
    }

    fn put_staged(&self, group: GroupId, state: LogState, mut ops: Vec<KvOp>) -> Result<()> {
        let space = self.staging_space(group);
        ops.push(KvOp::Put(
            Table::LogMeta,
            staged_meta_key(group).to_vec(),
            encode_log_state(&state, space),
        ));
        self.write(ops)?;
        self.staged.write().insert(group, (state, space));
        Ok(())
    }
}

impl<S: KvStore> StagingStore for KvEngine<S> {
    fn stage_begin(&self, group: GroupId, start: Offset) -> Result<()> {
        let state = LogState {
            start_offset: start,
            next_offset: start,
            applied_index: 0,
        };
        let clear = Self::clear_space(group, self.staging_space(group));
        self.put_staged(group, state, vec![clear])
    }

    fn stage_append(&self, group: GroupId, batches: &[u8]) -> Result<Offset> {
        let Some((mut state, space)) = self.staged.read().get(&group).copied() else {
            return Err(Error::Invalid(format!("{group}: no staged log")));
        };
        let (checked, end) = check_staged(group, state.next_offset, batches)?;
        let g = GroupId(group.0 | space);
        let ops = checked
            .into_iter()
            .map(|(base, bytes)| {
                KvOp::Put(Table::Batches, batch_key(g, base).to_vec(), bytes.to_vec())
            })
            .collect();
        state.next_offset = end;
        self.put_staged(group, state, ops)?;
        Ok(end)
    }

    fn stage_end(&self, group: GroupId) -> Result<Option<(Offset, Offset)>> {
        Ok(self
            .staged
            .read()
            .get(&group)
            .map(|(s, _)| (s.start_offset, s.next_offset)))
    }

    fn stage_install(&self, group: GroupId, applied_index: u64) -> Result<()> {
        let Some((mut state, space)) = self.staged.read().get(&group).copied() else {
            return Err(Error::Invalid(format!("{group}: no staged log")));
        };
        state.applied_index = applied_index;
        let ops = vec![
            Self::clear_space(group, self.space_bits(group)),
            KvOp::Delete(Table::LogMeta, staged_meta_key(group).to_vec()),
            KvOp::Put(
                Table::LogMeta,
                group_key(group).to_vec(),
                encode_log_state(&state, space),
            ),
        ];
        let cleaning = self.stop_cleaning(group);
        // Readers find the log through both maps: they switch with the store.
        let mut logs = self.logs.write();
        let mut spaces = self.spaces.write();
        self.write(ops)?;
        self.guarded(|s| s.sync())?;
        logs.insert(group, state);
        if space == 0 {
            spaces.remove(&group);
        } else {
            spaces.insert(group, space);
        }
        drop((logs, spaces, cleaning));
        self.staged.write().remove(&group);
        Ok(())
    }

    fn stage_drop(&self, group: GroupId) -> Result<()> {
        if !self.staged.read().contains_key(&group) {
            return Ok(());
        }
        self.write(vec![
            Self::clear_space(group, self.staging_space(group)),
            KvOp::Delete(Table::LogMeta, staged_meta_key(group).to_vec()),
        ])?;
        self.staged.write().remove(&group);
        Ok(())
    }
}
