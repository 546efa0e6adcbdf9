//! The in-memory reference engine.
//!
//! It keeps two copies of every group: the *live* state that reads see, and the
//! *durable* state that a crash would leave behind. Writes go to the live state and
//! are queued; [`RaftLogStore::raft_sync`] and [`PartitionStore::log_flush`] replay the
//! queue onto the durable state. [`MemoryEngine::restart`] builds a new engine from the
//! durable state alone — a crash that loses every unsynced write — which is how tests
//! restart nodes that use this engine.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, SnapshotMetadata};

use crate::batch;
use crate::compaction::CleanUnit;
use crate::engine::{
    Appended, Capabilities, Engine, LogBounds, LogState, PartitionStore, RaftLogStore, RaftState,
    StateStore, check_append, check_log_append, check_read_range,
};
use crate::error::{Error, Result};
use crate::ids::{GroupId, Offset};

mod units;

/// The configuration name of this engine.
pub const NAME: &str = "memory";

/// Registers the memory engine as [`NAME`]. It has no configuration and keeps no
/// files: the data directory is ignored.
pub fn register(registry: &mut crate::registry::Registry) {
    registry.add_engine(NAME, |_dir, config| {
        crate::registry::parse_config::<NoConfig>(&format!("engine_{NAME}"), config)?;
        Ok(std::sync::Arc::new(MemoryEngine::new()))
    });
}

/// The memory engine takes no settings.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NoConfig {}

/// An engine that keeps everything in memory; see the [module docs](self).
#[derive(Debug, Default)]
pub struct MemoryEngine {
    state: Mutex<State>,
    /// Syncs succeed without making anything durable (negative controls only).
    sync_lies: bool,
}

#[derive(Debug, Default)]
struct State {
    raft: HashMap<GroupId, RaftGroup>,
    durable_raft: HashMap<GroupId, RaftGroup>,
    raft_pending: Vec<RaftOp>,
    logs: HashMap<GroupId, PartitionLog>,
    durable_logs: HashMap<GroupId, PartitionLog>,
    log_pending: HashMap<GroupId, Vec<LogOp>>,
    /// State checkpoints: durable when put (unless syncs lie).
    states: HashMap<GroupId, Bytes>,
    durable_states: HashMap<GroupId, Bytes>,
    /// Staged logs ([`StagingStore`]): never durable, so a crash drops them.
    staged: HashMap<GroupId, PartitionLog>,
    /// Units being replaced ([`CompactionStore`]), dropped when the log changes
    /// under them.
    cleaning: HashMap<GroupId, Replacement>,
    /// Bytes per cleanable unit, by group (`segment.bytes`, [`PartitionStore::log_configure`]).
    unit_bytes: HashMap<GroupId, u64>,
}

/// A unit being replaced: the unit, where its last added batch ended, the
/// batches added.
#[derive(Debug)]
struct Replacement {
    unit: CleanUnit,
    after: Offset,
    batches: Vec<(Offset, Bytes)>,
}

#[derive(Clone, Debug, Default)]
struct RaftGroup {
    hard_state: HardState,
    conf_state: ConfState,
    snap_index: u64,
    snap_term: u64,
    entries: VecDeque<Entry>,
}

#[derive(Clone, Debug)]
enum RaftOp {
    Append(GroupId, Arc<[Entry]>),
    HardState(GroupId, HardState),
    ConfState(GroupId, ConfState),
    Compact(GroupId, u64),
    Snapshot(GroupId, SnapshotMetadata),
    Remove(GroupId),
}

#[derive(Clone, Debug, Default)]
struct PartitionLog {
    state: LogState,
    /// Stamped batches by base offset.
    batches: BTreeMap<Offset, Bytes>,
}

#[derive(Clone, Debug)]
enum LogOp {
    Append(u64, Bytes),
    MarkApplied(u64),
    DeletePrefix(Offset),
    /// A cleaned unit: the batches in `[base, next)` become these.
    Replace(Offset, Offset, Arc<[(Offset, Bytes)]>),
    Remove,
}

impl RaftGroup {
    fn first_index(&self) -> u64 {
        self.snap_index + 1
    }
    fn last_index(&self) -> u64 {
        self.snap_index + self.entries.len() as u64
    }
}

fn apply_raft(map: &mut HashMap<GroupId, RaftGroup>, op: &RaftOp) {
    match op {
        RaftOp::Append(g, entries) => {
            let grp = map.entry(*g).or_default();
            if let Some(first) = entries.first() {
                let keep = (first.index - grp.first_index()) as usize;
                grp.entries.truncate(keep);
                grp.entries.extend(entries.iter().cloned());
            }
        }
        RaftOp::HardState(g, hs) => map.entry(*g).or_default().hard_state = hs.clone(),
        RaftOp::ConfState(g, cs) => map.entry(*g).or_default().conf_state = cs.clone(),
        RaftOp::Compact(g, index) => {
            let grp = map.entry(*g).or_default();
            if *index > grp.snap_index && *index <= grp.last_index() {
                let drop = (index - grp.snap_index) as usize;
                grp.snap_term = grp.entries[drop - 1].term;
                grp.entries.drain(..drop);
                grp.snap_index = *index;
            }
        }
        RaftOp::Snapshot(g, meta) => {
            let grp = map.entry(*g).or_default();
            grp.entries.clear();
            grp.snap_index = meta.index;
            grp.snap_term = meta.term;
            grp.conf_state = meta.get_conf_state().clone();
        }
        RaftOp::Remove(g) => {
            map.remove(g);
        }
    }
}

fn apply_log(map: &mut HashMap<GroupId, PartitionLog>, g: GroupId, op: &LogOp) {
    if let LogOp::Remove = op {
        map.remove(&g);
        return;
    }
    let log = map.entry(g).or_default();
    match op {
        LogOp::Append(index, bytes) => {
            // The bytes were stamped and verified when they were first appended.
            if let Ok(h) = batch::BatchHeader::parse(bytes) {
                log.batches.insert(h.base_offset, bytes.clone());
                log.state.next_offset = h.last_offset() + 1;
                log.state.applied_index = *index;
            }
        }
        LogOp::MarkApplied(index) => {
            log.state.applied_index = log.state.applied_index.max(*index);
        }
        LogOp::DeletePrefix(offset) => {
            let start = (*offset).min(log.state.next_offset);
            if start > log.state.start_offset {
                log.state.start_offset = start;
                while let Some((&base, bytes)) = log.batches.first_key_value() {
                    let last = batch::BatchHeader::parse(bytes)
                        .map(|h| h.last_offset())
                        .unwrap_or(base);
                    if last >= start {
                        break;
                    }
                    log.batches.remove(&base);
                }
            }
        }
        LogOp::Replace(base, next, batches) => {
            let old: Vec<Offset> = log.batches.range(*base..*next).map(|(b, _)| *b).collect();
            for b in old {
                log.batches.remove(&b);
            }
            for (b, bytes) in batches.iter() {
                log.batches.insert(*b, bytes.clone());
            }
        }
        LogOp::Remove => {}
    }
}

impl MemoryEngine {
    /// An empty engine.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty engine whose `raft_sync` and `log_flush` succeed without making
    /// anything durable — a disk that ignores fsync. [`MemoryEngine::restart`] then
    /// keeps nothing. **For negative controls only**: it shows that tests of
    /// durability can fail.
    pub fn unsafe_without_sync() -> Self {
        tracing::warn!("memory engine without sync: restarts lose everything (test only)");
        MemoryEngine {
            sync_lies: true,
            ..Self::default()
        }
    }

    /// A new engine holding only what this one made durable, as after a crash and
    /// restart. This engine is left as it is.
    pub fn restart(&self) -> MemoryEngine {
        let st = self.state.lock();
        MemoryEngine {
            state: Mutex::new(State {
                raft: st.durable_raft.clone(),
                durable_raft: st.durable_raft.clone(),
                logs: st.durable_logs.clone(),
                durable_logs: st.durable_logs.clone(),
                states: st.durable_states.clone(),
                durable_states: st.durable_states.clone(),
                ..State::default()
            }),
            sync_lies: self.sync_lies,
        }
    }
}

impl State {
    fn group(&self, g: GroupId) -> Option<&RaftGroup> {
        self.raft.get(&g)
    }

    fn raft_write(&mut self, op: RaftOp) {
        apply_raft(&mut self.raft, &op);
        self.raft_pending.push(op);
    }

    fn log_write(&mut self, g: GroupId, op: LogOp) {
        if matches!(op, LogOp::DeletePrefix(_) | LogOp::Remove) {
            // The unit being cleaned may not be what it was.
            self.cleaning.remove(&g);
        }
        apply_log(&mut self.logs, g, &op);
        self.log_pending.entry(g).or_default().push(op);
    }
}

impl RaftLogStore for MemoryEngine {
    fn raft_groups(&self) -> Result<Vec<GroupId>> {
        let mut v: Vec<_> = self.state.lock().raft.keys().copied().collect();
        v.sort();
        Ok(v)
    }

    fn raft_state(&self, group: GroupId) -> Result<RaftState> {
        let st = self.state.lock();
        Ok(st
            .group(group)
            .map(|g| RaftState {
                hard_state: g.hard_state.clone(),
                conf_state: g.conf_state.clone(),
            })
            .unwrap_or_default())
    }

    fn raft_first_index(&self, group: GroupId) -> Result<u64> {
        Ok(self
            .state
            .lock()
            .group(group)
            .map_or(1, |g| g.first_index()))
    }

    fn raft_last_index(&self, group: GroupId) -> Result<u64> {
        Ok(self.state.lock().group(group).map_or(0, |g| g.last_index()))
    }

    fn raft_term(&self, group: GroupId, index: u64) -> Result<u64> {
        let st = self.state.lock();
        match st.group(group) {
            None => LogBounds::EMPTY.term(index, |_| 0),
            Some(g) => LogBounds {
                snap_index: g.snap_index,
                snap_term: g.snap_term,
                last_index: g.last_index(),
            }
            .term(index, |i| g.entries[(i - g.first_index()) as usize].term),
        }
    }

    fn raft_entries(
        &self,
        group: GroupId,
        low: u64,
        high: u64,
        max_bytes: Option<u64>,
    ) -> Result<Vec<Entry>> {
        let st = self.state.lock();
        let empty = RaftGroup::default();
        let g = st.group(group).unwrap_or(&empty);
        if low < g.first_index() {
            return Err(Error::Compacted(g.snap_index));
        }
        if high > g.last_index() + 1 {
            return Err(Error::Unavailable(high - 1));
        }
        let mut out = Vec::new();
        let mut size = 0u64;
        for i in low..high {
            let e = &g.entries[(i - g.first_index()) as usize];
            size += u64::from(e.compute_size());
            if !out.is_empty() && max_bytes.is_some_and(|m| size > m) {
                break;
            }
            out.push(e.clone());
        }
        Ok(out)
    }

    fn raft_append(&self, group: GroupId, entries: &[Entry]) -> Result<()> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let mut st = self.state.lock();
        let (fi, li) = st
            .group(group)
            .map_or((1, 0), |g| (g.first_index(), g.last_index()));
        check_append(group, entries, fi, li)?;
        let _ = first;
        st.raft_write(RaftOp::Append(group, entries.into()));
        Ok(())
    }

    fn raft_set_hard_state(&self, group: GroupId, hard_state: &HardState) -> Result<()> {
        self.state
            .lock()
            .raft_write(RaftOp::HardState(group, hard_state.clone()));
        Ok(())
    }

    fn raft_set_conf_state(&self, group: GroupId, conf_state: &ConfState) -> Result<()> {
        self.state
            .lock()
            .raft_write(RaftOp::ConfState(group, conf_state.clone()));
        Ok(())
    }

    fn raft_compact(&self, group: GroupId, index: u64) -> Result<()> {
        let mut st = self.state.lock();
        let last = st.group(group).map_or(0, |g| g.last_index());
        if index > last {
            return Err(Error::Unavailable(index));
        }
        st.raft_write(RaftOp::Compact(group, index));
        Ok(())
    }

    fn raft_apply_snapshot(&self, group: GroupId, meta: &SnapshotMetadata) -> Result<()> {
        self.state
            .lock()
            .raft_write(RaftOp::Snapshot(group, meta.clone()));
        Ok(())
    }

    fn raft_remove_group(&self, group: GroupId) -> Result<()> {
        self.state.lock().raft_write(RaftOp::Remove(group));
        Ok(())
    }

    fn raft_sync(&self) -> Result<()> {
        let mut st = self.state.lock();
        let pending = std::mem::take(&mut st.raft_pending);
        if self.sync_lies {
            return Ok(());
        }
        for op in &pending {
            apply_raft(&mut st.durable_raft, op);
        }
        Ok(())
    }
}

impl PartitionStore for MemoryEngine {
    fn log_groups(&self) -> Result<Vec<GroupId>> {
        let mut v: Vec<_> = self.state.lock().logs.keys().copied().collect();
        v.sort();
        Ok(v)
    }

    fn log_state(&self, group: GroupId) -> Result<LogState> {
        Ok(self
            .state
            .lock()
            .logs
            .get(&group)
            .map(|l| l.state)
            .unwrap_or_default())
    }

    fn log_append(
        &self,
        group: GroupId,
        raft_index: u64,
        leader_epoch: i32,
        batch_bytes: &[u8],
    ) -> Result<Appended> {
        let header = batch::verify(batch_bytes)?;
        let mut st = self.state.lock();
        let state = st.logs.get(&group).map(|l| l.state).unwrap_or_default();
        check_log_append(group, raft_index, state.applied_index)?;
        let mut owned = batch_bytes.to_vec();
        batch::stamp(&mut owned, state.next_offset, leader_epoch);
        st.log_write(group, LogOp::Append(raft_index, Bytes::from(owned)));
        Ok(Appended {
            base_offset: state.next_offset,
            last_offset: state.next_offset + header.last_offset_delta as i64,
        })
    }

    fn log_mark_applied(&self, group: GroupId, raft_index: u64) -> Result<()> {
        self.state
            .lock()
            .log_write(group, LogOp::MarkApplied(raft_index));
        Ok(())
    }

    fn log_read(&self, group: GroupId, offset: Offset, max_bytes: usize) -> Result<Bytes> {
        let st = self.state.lock();
        let empty = PartitionLog::default();
        let log = st.logs.get(&group).unwrap_or(&empty);
        check_read_range(offset, &log.state)?;
        let mut out = Vec::new();
        let from = log
            .batches
            .range(..=offset)
            .next_back()
            .map_or(offset, |(b, _)| *b);
        for bytes in log.batches.range(from..).map(|(_, b)| b) {
            let h = batch::verify(bytes)?;
            if h.last_offset() < offset {
                continue;
            }
            if !out.is_empty() && out.len() + bytes.len() > max_bytes {
                break;
            }
            out.extend_from_slice(bytes);
        }
        Ok(Bytes::from(out))
    }

    fn log_offset_for_timestamp(&self, group: GroupId, timestamp: i64) -> Result<Option<Offset>> {
        let st = self.state.lock();
        let Some(log) = st.logs.get(&group) else {
            return Ok(None);
        };
        for bytes in log.batches.values() {
            let h = batch::verify(bytes)?;
            if h.last_offset() >= log.state.start_offset && h.max_timestamp >= timestamp {
                return Ok(Some(h.base_offset.max(log.state.start_offset)));
            }
        }
        Ok(None)
    }

    fn log_delete_prefix(&self, group: GroupId, offset: Offset) -> Result<()> {
        self.state
            .lock()
            .log_write(group, LogOp::DeletePrefix(offset));
        Ok(())
    }

    fn log_configure(&self, group: GroupId, shape: crate::retention::LogShape) -> Result<()> {
        if let Some(b) = shape.segment_bytes {
            self.state.lock().unit_bytes.insert(group, b.max(1));
        }
        Ok(())
    }

    fn log_remove(&self, group: GroupId) -> Result<()> {
        let mut st = self.state.lock();
        st.staged.remove(&group);
        st.log_write(group, LogOp::Remove);
        Ok(())
    }

    fn log_flush(&self, group: GroupId) -> Result<()> {
        self.state.lock().flush_log(group, self.sync_lies);
        Ok(())
    }
}

impl State {
    fn flush_log(&mut self, group: GroupId, sync_lies: bool) {
        let pending = self.log_pending.remove(&group).unwrap_or_default();
        if sync_lies {
            return;
        }
        for op in &pending {
            apply_log(&mut self.durable_logs, group, op);
        }
    }
}

impl StateStore for MemoryEngine {
    fn state_put(&self, group: GroupId, blob: &[u8]) -> Result<()> {
        let mut st = self.state.lock();
        let blob = Bytes::copy_from_slice(blob);
        if !self.sync_lies {
            st.durable_states.insert(group, blob.clone());
        }
        st.states.insert(group, blob);
        Ok(())
    }

    fn state_get(&self, group: GroupId) -> Result<Option<Bytes>> {
        Ok(self.state.lock().states.get(&group).cloned())
    }

    fn state_remove(&self, group: GroupId) -> Result<()> {
        let mut st = self.state.lock();
        st.states.remove(&group);
        if !self.sync_lies {
            st.durable_states.remove(&group);
        }
        Ok(())
    }
}

impl Engine for MemoryEngine {
    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::in_memory()
            .with_snapshot_install()
            .with_key_compaction()
    }
}
