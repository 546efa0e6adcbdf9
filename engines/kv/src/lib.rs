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
//! | [`Table::States`] | group (8 bytes) | CRC-32C, the state checkpoint |
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

mod cleaning;
mod codec;
mod partition_log;
mod raft_log;
mod staging;
mod states;

use codec::*;
pub use codec::{group_key, key};
use staging::staged_meta_key;

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
    /// Per-group state checkpoints.
    States,
}

impl Table {
    /// Every table, for stores that create them up front.
    pub const ALL: [Table; 5] = [
        Table::RaftLog,
        Table::RaftMeta,
        Table::Batches,
        Table::LogMeta,
        Table::States,
    ];

    /// A stable name for the table (column-family or table name on disk).
    pub const fn name(self) -> &'static str {
        match self {
            Table::RaftLog => "raft_log",
            Table::RaftMeta => "raft_meta",
            Table::Batches => "partition_log",
            Table::LogMeta => "partition_meta",
            Table::States => "states",
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

    /// Bytes free on the file system holding the database (see
    /// [`Engine::free_bytes`]); `None` when it cannot tell.
    fn free_bytes(&self) -> Option<u64> {
        None
    }

    /// Bytes of the store's files (for metrics); `None` when it cannot tell.
    fn disk_bytes(&self) -> Option<u64> {
        None
    }
}

/// A storage engine over a [`KvStore`]; see the [module docs](self).
pub struct KvEngine<S: KvStore> {
    store: S,
    capabilities: Capabilities,
    raft: RwLock<HashMap<GroupId, RaftMeta>>,
    logs: RwLock<HashMap<GroupId, LogState>>,
    /// Groups whose partition log is in the second key space ([`SPACE_BIT`]).
    spaces: RwLock<HashMap<GroupId, u64>>,
    /// Staged logs: state and key space.
    staged: RwLock<HashMap<GroupId, (LogState, u64)>>,
    /// Units being replaced by the cleaner (`cleaning`).
    cleaning: parking_lot::Mutex<HashMap<GroupId, cleaning::Replacement>>,
    /// Bytes per cleanable unit, by group (`segment.bytes`, `log_configure`).
    unit_bytes: RwLock<HashMap<GroupId, u64>>,
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
        let (mut logs, mut spaces, mut staged) = (HashMap::new(), HashMap::new(), HashMap::new());
        store.scan(Table::LogMeta, &[], &[0xff; 9], &mut |k, v| {
            let g = key_group(k)?;
            let (state, space) = decode_log_state(v)?;
            if g.0 & STAGED_BIT != 0 {
                staged.insert(GroupId(g.0 & !STAGED_BIT), (state, space));
            } else {
                logs.insert(g, state);
                if space != 0 {
                    spaces.insert(g, space);
                }
            }
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
            spaces: RwLock::new(spaces),
            staged: RwLock::new(staged),
            cleaning: parking_lot::Mutex::new(HashMap::new()),
            unit_bytes: RwLock::new(HashMap::new()),
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

    /// The key space bits of `group`'s partition log (0 or [`SPACE_BIT`]).
    fn space_bits(&self, group: GroupId) -> u64 {
        self.spaces.read().get(&group).copied().unwrap_or(0)
    }

    /// The group its batches are keyed under.
    fn space(&self, group: GroupId) -> GroupId {
        GroupId(group.0 | self.space_bits(group))
    }

    fn log_state_of(&self, group: GroupId) -> LogState {
        self.logs.read().get(&group).copied().unwrap_or_default()
    }

    fn put_log_state(&self, group: GroupId, state: LogState, mut ops: Vec<KvOp>) -> Result<()> {
        ops.push(KvOp::Put(
            Table::LogMeta,
            group_key(group).to_vec(),
            encode_log_state(&state, self.space_bits(group)),
        ));
        self.write(ops)?;
        self.logs.write().insert(group, state);
        Ok(())
    }

    /// Base offset of the stored batch holding `offset` (or the first one after it).
    fn batch_base(&self, group: GroupId, offset: Offset) -> Result<Offset> {
        let found = self.store.last_key(
            Table::Batches,
            &batch_key(self.space(group), 0),
            &batch_key(self.space(group), offset.saturating_add(1)),
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
            &batch_key(self.space(group), from),
            &batch_key(self.space(group), end),
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

impl<S: KvStore> Engine for KvEngine<S> {
    fn name(&self) -> &'static str {
        S::NAME
    }

    fn capabilities(&self) -> Capabilities {
        // Every store stages and installs logs, and cleans units, the same
        // way (`staging`, `cleaning`).
        self.capabilities
            .with_snapshot_install()
            .with_key_compaction()
    }

    fn free_bytes(&self) -> Option<u64> {
        self.store.free_bytes()
    }

    fn usage(&self) -> weir_core::StorageUsage {
        weir_core::StorageUsage {
            total_bytes: self.store.disk_bytes(),
            ..weir_core::StorageUsage::default()
        }
    }
}
