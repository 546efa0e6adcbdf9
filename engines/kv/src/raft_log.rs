//! The Raft log over the store: entries, hard and conf state, compaction.

use super::*;

impl<S: KvStore> RaftLogStore for KvEngine<S> {
    fn raft_groups(&self) -> Result<Vec<GroupId>> {
        let mut v: Vec<_> = self.raft.read().keys().copied().collect();
        v.sort();
        Ok(v)
    }

    fn raft_state(&self, group: GroupId) -> Result<RaftState> {
        let m = self.raft_meta(group);
        Ok(RaftState {
            hard_state: m.hard_state,
            conf_state: m.conf_state,
        })
    }

    fn raft_first_index(&self, group: GroupId) -> Result<u64> {
        Ok(self.raft_meta(group).snap_index + 1)
    }

    fn raft_last_index(&self, group: GroupId) -> Result<u64> {
        Ok(self.raft_meta(group).last_index)
    }

    fn raft_term(&self, group: GroupId, index: u64) -> Result<u64> {
        let bounds = self.raft_meta(group).bounds();
        if index <= bounds.snap_index || index > bounds.last_index {
            return bounds.term(index, |_| 0);
        }
        self.stored_term(group, index)
    }

    fn raft_entries(
        &self,
        group: GroupId,
        low: u64,
        high: u64,
        max_bytes: Option<u64>,
    ) -> Result<Vec<Entry>> {
        let m = self.raft_meta(group);
        if low <= m.snap_index {
            return Err(Error::Compacted(m.snap_index));
        }
        if high > m.last_index + 1 {
            return Err(Error::Unavailable(high - 1));
        }
        let mut out: Vec<Entry> = Vec::new();
        let mut size = 0u64;
        self.store.scan(
            Table::RaftLog,
            &key(group, low),
            &key(group, high),
            &mut |_, v| {
                size += (v.len() - v.len().min(12)) as u64;
                if !out.is_empty() && max_bytes.is_some_and(|m| size > m) {
                    return Ok(false);
                }
                out.push(decode_entry(v)?);
                Ok(true)
            },
        )?;
        for (i, e) in out.iter().enumerate() {
            if e.index != low + i as u64 {
                return Err(Error::Corrupt(format!(
                    "{group}: raft entry {} is missing",
                    low + i as u64
                )));
            }
        }
        if out.is_empty() && low < high {
            return Err(Error::Corrupt(format!(
                "{group}: raft entry {low} is missing"
            )));
        }
        Ok(out)
    }

    fn raft_append(&self, group: GroupId, entries: &[Entry]) -> Result<()> {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return Ok(());
        };
        let mut meta = self.raft_meta(group);
        check_append(group, entries, meta.snap_index + 1, meta.last_index)?;
        self.check_poisoned()?;
        let mut ops = Vec::with_capacity(entries.len() + 2);
        if first.index <= meta.last_index {
            ops.push(KvOp::DeleteRange(
                Table::RaftLog,
                key(group, first.index).to_vec(),
                key(group, meta.last_index + 1).to_vec(),
            ));
        }
        for e in entries {
            ops.push(KvOp::Put(
                Table::RaftLog,
                key(group, e.index).to_vec(),
                encode_entry(e)?,
            ));
        }
        let known = self.raft.read().contains_key(&group);
        meta.last_index = last.index;
        if known {
            self.write(ops)?;
            if let Some(m) = self.raft.write().get_mut(&group) {
                m.last_index = last.index;
            }
            Ok(())
        } else {
            // The meta record also marks the group as existing.
            self.put_raft_meta(group, meta, ops)
        }
    }

    fn raft_set_hard_state(&self, group: GroupId, hard_state: &HardState) -> Result<()> {
        let mut meta = self.raft_meta(group);
        meta.hard_state = hard_state.clone();
        self.put_raft_meta(group, meta, Vec::new())
    }

    fn raft_set_conf_state(&self, group: GroupId, conf_state: &ConfState) -> Result<()> {
        let mut meta = self.raft_meta(group);
        meta.conf_state = conf_state.clone();
        self.put_raft_meta(group, meta, Vec::new())
    }

    fn raft_compact(&self, group: GroupId, index: u64) -> Result<()> {
        let mut meta = self.raft_meta(group);
        if index > meta.last_index {
            return Err(Error::Unavailable(index));
        }
        if index <= meta.snap_index {
            return Ok(());
        }
        meta.snap_term = self.stored_term(group, index)?;
        meta.snap_index = index;
        let ops = vec![KvOp::DeleteRange(
            Table::RaftLog,
            key(group, 0).to_vec(),
            key(group, index + 1).to_vec(),
        )];
        self.put_raft_meta(group, meta, ops)
    }

    fn raft_apply_snapshot(&self, group: GroupId, snap: &SnapshotMetadata) -> Result<()> {
        let mut meta = self.raft_meta(group);
        let ops = vec![KvOp::DeleteRange(
            Table::RaftLog,
            key(group, 0).to_vec(),
            key(group, u64::MAX).to_vec(),
        )];
        meta.snap_index = snap.index;
        meta.snap_term = snap.term;
        meta.last_index = snap.index;
        meta.conf_state = snap.get_conf_state().clone();
        self.put_raft_meta(group, meta, ops)
    }

    fn raft_remove_group(&self, group: GroupId) -> Result<()> {
        self.write(vec![
            KvOp::DeleteRange(
                Table::RaftLog,
                key(group, 0).to_vec(),
                key(group, u64::MAX).to_vec(),
            ),
            KvOp::Delete(Table::RaftMeta, group_key(group).to_vec()),
        ])?;
        self.raft.write().remove(&group);
        Ok(())
    }

    fn raft_sync(&self) -> Result<()> {
        self.guarded(|s| s.sync())
    }
}
