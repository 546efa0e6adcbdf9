//! weir-engine-kv: an [`Engine`] over any ordered key-value store.
//!
//! Embedded databases (RocksDB, redb, …) already offer atomic batches, ordered keys
//! and crash recovery; what differs between them is only how a batch is written and
//! how a range is read. [`KvEngine`] implements the whole engine contract once, over
//! the small [`KvStore`] trait, so that such an engine is a thin adapter and every KV
//! engine lays out its data, caches its bounds and rejects bad input the same way.
//!
//! # Layout
//!
//! Four tables (RocksDB column families, redb tables), keys big-endian so that byte
//! order is numeric order:
//!
//! | table | key | value |
//! |---|---|---|
//! | [`Table::RaftLog`] | group, index (16 bytes) | CRC-32C, term, `Entry` protobuf |
//! | [`Table::RaftMeta`] | group (8 bytes) | CRC-32C, compaction point, hard state, conf state |
//! | [`Table::Batches`] | group, base offset (16 bytes) | the stamped RecordBatch |
//! | [`Table::LogMeta`] | group (8 bytes) | CRC-32C, start offset, next offset, applied index |
//!
//! Every call that changes the engine is one atomic [`KvStore::write`]: a batch and the
//! log state that counts it, or a suffix overwrite and its new entries, land together
//! or not at all. Writes need not be durable; [`KvStore::sync`] makes every earlier
//! write durable, and is what [`RaftLogStore::raft_sync`] and
//! [`PartitionStore::log_flush`] call. The store's own recovery (RocksDB's WAL, redb's
//! commit slots) then gives the crash contract of [`weir_core::engine`]: a prefix of the
//! writes, including every write before the last sync.
//!
//! Bounds (first and last index, compaction point, hard and conf state, log state)
//! are cached in memory, loaded at open by one scan of the two meta tables and one
//! seek per group; reads of entries and batches go to the store.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use parking_lot::RwLock;
use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, SnapshotMetadata};

use weir_core::batch;
use weir_core::engine::{
    Appended, Capabilities, Engine, LogBounds, LogState, PartitionStore, RaftLogStore, RaftState,
    check_append, check_log_append, check_read_range,
};
use weir_core::error::{Error, Result};
use weir_core::ids::{GroupId, Offset};

/// The tables a [`KvEngine`] keeps; see the [module docs](self) for their layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Table {
    /// Raft entries by (group, index).
    RaftLog,
    /// Per-group Raft metadata: compaction point, hard state, conf state.
    RaftMeta,
    /// Partition-log batches by (group, base offset).
    Batches,
    /// Per-group partition-log state.
    LogMeta,
}

impl Table {
    /// Every table, for stores that create them up front.
    pub const ALL: [Table; 4] = [
        Table::RaftLog,
        Table::RaftMeta,
        Table::Batches,
        Table::LogMeta,
    ];

    /// A stable name for the table (column-family or table name on disk).
    pub const fn name(self) -> &'static str {
        match self {
            Table::RaftLog => "raft_log",
            Table::RaftMeta => "raft_meta",
            Table::Batches => "partition_log",
            Table::LogMeta => "partition_meta",
        }
    }
}

/// One change in an atomic [`KvStore::write`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvOp {
    /// Sets `key` to `value`.
    Put(Table, Vec<u8>, Vec<u8>),
    /// Removes `key` if present.
    Delete(Table, Vec<u8>),
    /// Removes every key in `from .. to`.
    DeleteRange(Table, Vec<u8>, Vec<u8>),
}

/// The visitor [`KvStore::scan`] calls with each key and value; `Ok(false)` stops.
pub type Visit<'a> = dyn FnMut(&[u8], &[u8]) -> Result<bool> + 'a;

/// What a key-value database must offer to back a [`KvEngine`].
///
/// Keys compare as byte strings. Reads see every completed write, synced or not.
pub trait KvStore: Send + Sync + 'static {
    /// The engine's configuration name (`"rocksdb"`, `"redb"`).
    const NAME: &'static str;

    /// Applies `ops` in order, atomically: after a crash either all of them or none
    /// are present. Need not be durable.
    ///
    /// # Errors
    /// [`Error::Io`] (or another kind) when the store failed; the engine then poisons
    /// itself, so the store need not stay usable.
    fn write(&self, ops: Vec<KvOp>) -> Result<()>;

    /// Makes every write that completed before this call durable.
    ///
    /// # Errors
    /// When the sync failed; the engine poisons itself and never retries.
    fn sync(&self) -> Result<()>;

    /// Calls `f` with the value of `key`, if present, and says whether it was.
    ///
    /// # Errors
    /// On a failed read.
    fn get(&self, table: Table, key: &[u8], f: &mut dyn FnMut(&[u8]) -> Result<()>)
    -> Result<bool>;

    /// Calls `f` for each key in `from .. to` in ascending order, with its value, until
    /// `f` returns `false`.
    ///
    /// # Errors
    /// On a failed read, or what `f` returned.
    fn scan(&self, table: Table, from: &[u8], to: &[u8], f: &mut Visit<'_>) -> Result<()>;

    /// The greatest key in `from .. to`, if any.
    ///
    /// # Errors
    /// On a failed read.
    fn last_key(&self, table: Table, from: &[u8], to: &[u8]) -> Result<Option<Vec<u8>>>;
}

/// The bytes that make up the key of `(group, n)`.
pub fn key(group: GroupId, n: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&group.0.to_be_bytes());
    k[8..].copy_from_slice(&n.to_be_bytes());
    k
}

/// The key of a per-group record.
pub fn group_key(group: GroupId) -> [u8; 8] {
    group.0.to_be_bytes()
}

fn key_n(k: &[u8]) -> Result<u64> {
    k.get(8..16)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| Error::Corrupt(format!("key of {} bytes, want 16", k.len())))
}

fn key_group(k: &[u8]) -> Result<GroupId> {
    k.get(..8)
        .and_then(|b| b.try_into().ok())
        .map(|b| GroupId(u64::from_be_bytes(b)))
        .ok_or_else(|| Error::Corrupt(format!("key of {} bytes, want at least 8", k.len())))
}

/// `crc ‖ body`: values carry their own CRC-32C so that a store's silent corruption
/// is reported as [`Error::Corrupt`], never served.
fn seal(body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + body.len());
    v.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
    v.extend_from_slice(body);
    v
}

fn unseal<'a>(what: &str, v: &'a [u8]) -> Result<&'a [u8]> {
    let (crc, body) = v
        .split_first_chunk::<4>()
        .ok_or_else(|| Error::Corrupt(format!("{what}: value of {} bytes", v.len())))?;
    if u32::from_le_bytes(*crc) != crc32c::crc32c(body) {
        return Err(Error::Corrupt(format!("{what}: checksum mismatch")));
    }
    Ok(body)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

fn encode_entry(e: &Entry) -> Result<Vec<u8>> {
    let mut body = Vec::with_capacity(8 + e.compute_size() as usize);
    body.extend_from_slice(&e.term.to_le_bytes());
    e.write_to_vec(&mut body)
        .map_err(|err| Error::Invalid(format!("entry {}: {err}", e.index)))?;
    Ok(seal(&body))
}

fn entry_term(v: &[u8]) -> Result<u64> {
    let body = unseal("raft entry", v)?;
    if body.len() < 8 {
        return Err(Error::Corrupt("raft entry shorter than its term".into()));
    }
    Ok(u64_at(body, 0))
}

fn decode_entry(v: &[u8]) -> Result<Entry> {
    let body = unseal("raft entry", v)?;
    let proto = body
        .get(8..)
        .ok_or_else(|| Error::Corrupt("raft entry shorter than its term".into()))?;
    Entry::parse_from_bytes(proto).map_err(|e| Error::Corrupt(format!("raft entry: {e}")))
}

/// The cached Raft bounds and state of one group.
#[derive(Clone, Debug, Default)]
struct RaftMeta {
    snap_index: u64,
    snap_term: u64,
    last_index: u64,
    hard_state: HardState,
    conf_state: ConfState,
}

impl RaftMeta {
    fn bounds(&self) -> LogBounds {
        LogBounds {
            snap_index: self.snap_index,
            snap_term: self.snap_term,
            last_index: self.last_index,
        }
    }

    fn encode(&self) -> Result<Vec<u8>> {
        let hs = self
            .hard_state
            .write_to_bytes()
            .map_err(|e| Error::Invalid(format!("hard state: {e}")))?;
        let cs = self
            .conf_state
            .write_to_bytes()
            .map_err(|e| Error::Invalid(format!("conf state: {e}")))?;
        let mut body = Vec::with_capacity(20 + hs.len() + cs.len());
        body.extend_from_slice(&self.snap_index.to_le_bytes());
        body.extend_from_slice(&self.snap_term.to_le_bytes());
        body.extend_from_slice(&(hs.len() as u32).to_le_bytes());
        body.extend_from_slice(&hs);
        body.extend_from_slice(&cs);
        Ok(seal(&body))
    }

    /// Decodes a stored record; `last_index` is filled in by the caller.
    fn decode(v: &[u8]) -> Result<RaftMeta> {
        let body = unseal("raft meta", v)?;
        let bad = || Error::Corrupt("raft meta truncated".into());
        let hs_len = body
            .get(16..20)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
            .ok_or_else(bad)? as usize;
        let hs = body.get(20..20 + hs_len).ok_or_else(bad)?;
        let cs = body.get(20 + hs_len..).ok_or_else(bad)?;
        Ok(RaftMeta {
            snap_index: u64_at(body, 0),
            snap_term: u64_at(body, 8),
            last_index: 0,
            hard_state: HardState::parse_from_bytes(hs)
                .map_err(|e| Error::Corrupt(format!("hard state: {e}")))?,
            conf_state: ConfState::parse_from_bytes(cs)
                .map_err(|e| Error::Corrupt(format!("conf state: {e}")))?,
        })
    }
}

fn encode_log_state(s: &LogState) -> Vec<u8> {
    let mut body = [0u8; 24];
    body[..8].copy_from_slice(&s.start_offset.to_le_bytes());
    body[8..16].copy_from_slice(&s.next_offset.to_le_bytes());
    body[16..].copy_from_slice(&s.applied_index.to_le_bytes());
    seal(&body)
}

fn decode_log_state(v: &[u8]) -> Result<LogState> {
    let body = unseal("partition meta", v)?;
    if body.len() != 24 {
        return Err(Error::Corrupt(format!(
            "partition meta of {} bytes",
            body.len()
        )));
    }
    Ok(LogState {
        start_offset: u64_at(body, 0) as i64,
        next_offset: u64_at(body, 8) as i64,
        applied_index: u64_at(body, 16),
    })
}

/// The key of a batch: offsets are never negative in a log.
fn batch_key(group: GroupId, offset: Offset) -> [u8; 16] {
    key(group, offset.max(0) as u64)
}

/// A storage engine over a [`KvStore`]; see the [module docs](self).
pub struct KvEngine<S: KvStore> {
    store: S,
    capabilities: Capabilities,
    raft: RwLock<HashMap<GroupId, RaftMeta>>,
    logs: RwLock<HashMap<GroupId, LogState>>,
    poisoned: AtomicBool,
}

impl<S: KvStore> std::fmt::Debug for KvEngine<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvEngine")
            .field("store", &S::NAME)
            .field("raft_groups", &self.raft.read().len())
            .field("partition_logs", &self.logs.read().len())
            .field("poisoned", &self.poisoned.load(Ordering::Relaxed))
            .finish()
    }
}

impl<S: KvStore> KvEngine<S> {
    /// Wraps an opened store, loading every group's bounds from it.
    ///
    /// # Errors
    /// [`Error::Corrupt`] when a meta record fails its checksum; read errors.
    pub fn open(store: S, capabilities: Capabilities) -> Result<Self> {
        let mut raft = HashMap::new();
        store.scan(Table::RaftMeta, &[], &[0xff; 9], &mut |k, v| {
            raft.insert(key_group(k)?, RaftMeta::decode(v)?);
            Ok(true)
        })?;
        for (g, meta) in raft.iter_mut() {
            let last = store.last_key(Table::RaftLog, &key(*g, 0), &key(*g, u64::MAX))?;
            meta.last_index = match last {
                Some(k) => key_n(&k)?.max(meta.snap_index),
                None => meta.snap_index,
            };
        }
        let mut logs = HashMap::new();
        store.scan(Table::LogMeta, &[], &[0xff; 9], &mut |k, v| {
            logs.insert(key_group(k)?, decode_log_state(v)?);
            Ok(true)
        })?;
        tracing::debug!(
            engine = S::NAME,
            raft_groups = raft.len(),
            partition_logs = logs.len(),
            "opened"
        );
        Ok(KvEngine {
            store,
            capabilities,
            raft: RwLock::new(raft),
            logs: RwLock::new(logs),
            poisoned: AtomicBool::new(false),
        })
    }

    /// The underlying store.
    pub fn store(&self) -> &S {
        &self.store
    }

    fn check_poisoned(&self) -> Result<()> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(Error::Poisoned(format!(
                "an earlier {} write or sync failed",
                S::NAME
            )));
        }
        Ok(())
    }

    /// A write or sync through the store; any failure poisons the engine.
    fn guarded(&self, f: impl FnOnce(&S) -> Result<()>) -> Result<()> {
        self.check_poisoned()?;
        f(&self.store).inspect_err(|e| {
            tracing::error!(engine = S::NAME, error = %e, "write failed; engine poisoned");
            self.poisoned.store(true, Ordering::Release);
        })
    }

    fn write(&self, ops: Vec<KvOp>) -> Result<()> {
        self.guarded(|s| s.write(ops))
    }

    fn raft_meta(&self, group: GroupId) -> RaftMeta {
        self.raft.read().get(&group).cloned().unwrap_or_default()
    }

    /// Writes `meta` (plus `ops` first) and caches it.
    fn put_raft_meta(&self, group: GroupId, meta: RaftMeta, mut ops: Vec<KvOp>) -> Result<()> {
        ops.push(KvOp::Put(
            Table::RaftMeta,
            group_key(group).to_vec(),
            meta.encode()?,
        ));
        self.write(ops)?;
        self.raft.write().insert(group, meta);
        Ok(())
    }

    fn stored_term(&self, group: GroupId, index: u64) -> Result<u64> {
        let mut term = None;
        self.store
            .get(Table::RaftLog, &key(group, index), &mut |v| {
                term = Some(entry_term(v)?);
                Ok(())
            })?;
        term.ok_or_else(|| Error::Corrupt(format!("{group}: raft entry {index} is missing")))
    }

    fn log_state_of(&self, group: GroupId) -> LogState {
        self.logs.read().get(&group).copied().unwrap_or_default()
    }

    fn put_log_state(&self, group: GroupId, state: LogState, mut ops: Vec<KvOp>) -> Result<()> {
        ops.push(KvOp::Put(
            Table::LogMeta,
            group_key(group).to_vec(),
            encode_log_state(&state),
        ));
        self.write(ops)?;
        self.logs.write().insert(group, state);
        Ok(())
    }

    /// Base offset of the stored batch holding `offset` (or the first one after it).
    fn batch_base(&self, group: GroupId, offset: Offset) -> Result<Offset> {
        let found = self.store.last_key(
            Table::Batches,
            &batch_key(group, 0),
            &batch_key(group, offset.saturating_add(1)),
        )?;
        Ok(match found {
            Some(k) => key_n(&k)? as Offset,
            None => offset,
        })
    }

    /// Calls `f` with each verified batch from the one holding `offset` up to the end.
    fn scan_batches(
        &self,
        group: GroupId,
        offset: Offset,
        end: Offset,
        mut f: impl FnMut(&batch::BatchHeader, &[u8]) -> bool,
    ) -> Result<()> {
        let from = self.batch_base(group, offset)?;
        self.store.scan(
            Table::Batches,
            &batch_key(group, from),
            &batch_key(group, end),
            &mut |k, v| {
                let h = batch::verify(v)?;
                if h.base_offset != key_n(k)? as Offset {
                    return Err(Error::Corrupt(format!(
                        "{group}: batch stored at offset {} says base offset {}",
                        key_n(k)?,
                        h.base_offset
                    )));
                }
                Ok(f(&h, v))
            },
        )
    }
}

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
            batch_key(group, base).to_vec(),
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
            batch_key(group, 0).to_vec(),
            batch_key(group, keep_from).to_vec(),
        )];
        self.put_log_state(group, state, ops)
    }

    fn log_remove(&self, group: GroupId) -> Result<()> {
        self.write(vec![
            KvOp::DeleteRange(
                Table::Batches,
                key(group, 0).to_vec(),
                key(group, u64::MAX).to_vec(),
            ),
            KvOp::Delete(Table::LogMeta, group_key(group).to_vec()),
        ])?;
        self.logs.write().remove(&group);
        Ok(())
    }

    fn log_flush(&self, _group: GroupId) -> Result<()> {
        self.guarded(|s| s.sync())
    }
}

impl<S: KvStore> Engine for KvEngine<S> {
    fn name(&self) -> &'static str {
        S::NAME
    }

    fn capabilities(&self) -> Capabilities {
        self.capabilities
    }
}
