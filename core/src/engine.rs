//! The storage-engine contract (DESIGN.md §4).
//!
//! An engine is one value that stores, for every Raft group hosted on a node, two
//! things:
//!
//! * the **Raft log** ([`RaftLogStore`]): entries, hard state, conf state and the
//!   compaction point. It is the write-ahead log: a write becomes durable only when
//!   [`RaftLogStore::raft_sync`] returns.
//! * the **partition log** ([`PartitionStore`]): the state machine of a partition
//!   group, committed RecordBatches by offset. It need not be durable on every apply;
//!   [`PartitionStore::log_flush`] makes it so, and after a crash it is replayed from
//!   the Raft log starting after its durable [`LogState::applied_index`].
//!
//! It also keeps one **state checkpoint** per group ([`StateStore`]): an opaque
//! blob, replaced whole and durably, from which a state machine that derives its
//! state from the log (a group coordinator) restarts.
//!
//! All methods take `&self`: an engine is shared by the node's group tasks and its
//! writer, and synchronises internally. Calls for *different* groups may run
//! concurrently; weir never issues concurrent writes for the *same* group.
//!
//! # Errors and poisoning
//!
//! A read error leaves the engine unchanged. A write error (any `raft_*` or `log_*`
//! mutation, or a sync) may leave the in-memory view ahead of disk; the engine then
//! **poisons** itself: every later write and sync returns [`Error::Poisoned`], and the
//! node must exit. A failed fsync is never retried (DESIGN.md §3 rule 6): after
//! restart the engine recovers only what was durable.
//!
//! # Crash recovery
//!
//! Opening an engine after a crash yields, for each group, a state that could have
//! been reached by performing a prefix of the writes issued before the crash, and that
//! includes every write issued before the last successful sync (`raft_sync` for the
//! Raft log, `log_flush` for that partition). Data that fails its checksum is never
//! returned: it is reported as [`Error::Corrupt`], at open or at read time.
//!
//! A [`RaftLogStore::raft_append`] of several entries counts as one write per entry:
//! a crash may keep a prefix of its entries. One exception: a
//! [`PartitionStore::log_delete_prefix`] may become durable on its
//! own, before appends issued earlier were flushed (so that storage is released
//! promptly). After a crash a partition's `start_offset` may therefore be ahead of the
//! prefix's, up to an offset that was asked for, and never past `next_offset`.
//!
//! # Unified logs
//!
//! An engine that declares [`Capabilities::unified_log`] writes each produced
//! batch once (docs/write-path.md). [`RaftLogStore::raft_append`] of an entry
//! whose payload holds a stamped batch ([`crate::entry::stamped_batch`]) stores
//! the batch in the group's partition log, after its high watermark, at the
//! offsets the leader stamped (an engine may stamp the offset after its own last
//! batch instead: the two agree whenever the log is whole), and the entry's Raft
//! record refers to it. From then on:
//!
//! * [`RaftLogStore::raft_entries`] returns the entry as appended;
//! * the batch is not served by [`PartitionStore::log_read`] (nor counted in
//!   `next_offset`) until [`PartitionStore::log_append`] is called for its
//!   Raft index, which stores nothing more: it moves the high watermark past the
//!   batch and answers with its offsets;
//! * an append that overwrites the entry (a conflicting suffix) removes the batch
//!   from the partition log too; so does a crash before the batch was synced;
//! * [`RaftLogStore::raft_compact`] forgets the entry but keeps the batch, which
//!   is partition data; [`PartitionStore::log_delete_prefix`] keeps batches that
//!   entries still in the Raft log refer to until they are compacted.
//!
//! [`RaftLogStore::raft_sync`] makes the stored batches durable with the entries.
//! Batches of other entries (a [`crate::entry::TAG_PRODUCE`] payload, or any
//! batch appended while one of those is not yet applied) take the copying path
//! of every engine: stored by `log_append`.
//!
//! [`Error::Poisoned`]: crate::Error::Poisoned
//! [`Error::Corrupt`]: crate::Error::Corrupt

use bytes::Bytes;
use raft::eraftpb::{ConfState, Entry, HardState, SnapshotMetadata};

use crate::error::{Error, Result};
use crate::ids::{GroupId, Offset};

/// What an engine offers beyond the required contract. The conformance suite runs
/// the cases of every capability an engine declares, and reports the others as not
/// applicable (never as passed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// The engine keeps its data in files under one directory, so crashes can be
    /// simulated by cutting, tearing and corrupting those files.
    pub file_crash_simulation: bool,
    /// The engine can be closed and reopened (for the memory engine: restarted from
    /// what it holds as durable), and synced data survives that.
    pub reopen: bool,
    /// The engine keeps its data in a directory that outlives the process, so that a
    /// child process can write, be killed with SIGKILL, and another process reopen the
    /// directory.
    pub process_kill: bool,
    /// Files the engine holds open for each partition it hosts, at least (0 when
    /// partitions share the engine's files). The node refuses partitions that would
    /// need more open files than half of its open-file limit.
    pub files_per_partition: usize,
    /// The engine stores a data partition's Raft log and partition log as one
    /// structure (docs/write-path.md): see "Unified logs" in the [module
    /// docs](self).
    pub unified_log: bool,
    /// The engine stages a partition log received in a snapshot and installs it
    /// atomically ([`crate::staging::StagingStore`]).
    pub snapshot_install: bool,
    /// The engine rewrites units of a partition log for the cleaner of
    /// compacted topics ([`crate::compaction::CompactionStore`]).
    pub key_compaction: bool,
}

impl Capabilities {
    /// A persistent engine whose files can be cut to simulate crashes.
    pub const fn files() -> Self {
        Capabilities {
            file_crash_simulation: true,
            reopen: true,
            process_kill: true,
            files_per_partition: 0,
            unified_log: false,
            snapshot_install: false,
            key_compaction: false,
        }
    }

    /// A persistent engine over a database whose files are not append-only logs
    /// (cutting them is not a crash it could see), but that survives a killed process.
    pub const fn database() -> Self {
        Capabilities {
            file_crash_simulation: false,
            reopen: true,
            process_kill: true,
            files_per_partition: 0,
            unified_log: false,
            snapshot_install: false,
            key_compaction: false,
        }
    }

    /// An engine that keeps everything in memory but models durability, so that a
    /// restart keeps exactly what was synced.
    pub const fn in_memory() -> Self {
        Capabilities {
            file_crash_simulation: false,
            reopen: true,
            process_kill: false,
            files_per_partition: 0,
            unified_log: false,
            snapshot_install: false,
            key_compaction: false,
        }
    }

    /// The same capabilities, storing each stamped batch once (see "Unified logs"
    /// in the [module docs](self)).
    pub const fn with_unified_log(mut self) -> Self {
        self.unified_log = true;
        self
    }

    /// The same capabilities, staging and installing partition logs from
    /// snapshots ([`crate::staging::StagingStore`]).
    pub const fn with_snapshot_install(mut self) -> Self {
        self.snapshot_install = true;
        self
    }

    /// The same capabilities, rewriting partition-log units for the cleaner of
    /// compacted topics.
    pub const fn with_key_compaction(mut self) -> Self {
        self.key_compaction = true;
        self
    }

    /// The same capabilities, holding `n` files open per partition.
    pub const fn with_files_per_partition(mut self, n: usize) -> Self {
        self.files_per_partition = n;
        self
    }
}

/// Hard state and conf state of one group, as `raft::Storage::initial_state` wants them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RaftState {
    /// Term, vote and commit index.
    pub hard_state: HardState,
    /// Voters and learners.
    pub conf_state: ConfState,
}

/// The Raft log of every group on the node.
///
/// # Invariants (for one group)
///
/// * The log holds the contiguous indexes `first_index ..= last_index` (empty when
///   `last_index == first_index - 1`). A group never written has `first_index = 1`,
///   `last_index = 0`, `term(0) = 0` and default hard and conf state.
/// * Entry terms never decrease with the index.
/// * After [`raft_compact`](Self::raft_compact)`(i)` (or a snapshot at `i`),
///   `first_index = i + 1` and `term(i)` still answers: the compaction point keeps its
///   term, as Raft needs it to match the next entry.
/// * Writes are visible to reads at once, durable only after [`raft_sync`](Self::raft_sync).
pub trait RaftLogStore: Send + Sync {
    /// Groups with any stored Raft state, in ascending order.
    ///
    /// # Errors
    /// [`Error::Io`] on a read failure.
    fn raft_groups(&self) -> Result<Vec<GroupId>>;

    /// Hard state and conf state of `group` (defaults for an unknown group).
    ///
    /// # Errors
    /// [`Error::Io`] on a read failure.
    fn raft_state(&self, group: GroupId) -> Result<RaftState>;

    /// The first index still stored (`compaction point + 1`).
    ///
    /// # Errors
    /// [`Error::Io`] on a read failure.
    fn raft_first_index(&self, group: GroupId) -> Result<u64>;

    /// The last index stored, `first_index - 1` when the log is empty.
    ///
    /// # Errors
    /// [`Error::Io`] on a read failure.
    fn raft_last_index(&self, group: GroupId) -> Result<u64>;

    /// The term of the entry at `index`, for `first_index - 1 <= index <= last_index`.
    ///
    /// # Errors
    /// [`Error::Compacted`] below the compaction point,
    /// [`Error::Unavailable`] above `last_index`.
    fn raft_term(&self, group: GroupId, index: u64) -> Result<u64>;

    /// Entries `low .. high`, stopping early once their total encoded size would pass
    /// `max_bytes` — but always at least one entry when `low < high`.
    ///
    /// # Errors
    /// [`Error::Compacted`] when `low < first_index`,
    /// [`Error::Unavailable`] when `high > last_index + 1`,
    /// [`Error::Corrupt`] when a stored entry fails its checksum.
    fn raft_entries(
        &self,
        group: GroupId,
        low: u64,
        high: u64,
        max_bytes: Option<u64>,
    ) -> Result<Vec<Entry>>;

    /// Appends consecutive entries. If the first entry's index is at or below
    /// `last_index`, the stored suffix from that index on is discarded first (Raft
    /// overwriting a conflicting suffix).
    ///
    /// # Errors
    /// [`Error::Invalid`] when the entries are not consecutive,
    /// start after `last_index + 1` (a hole) or at or below the compaction point;
    /// nothing is written then. I/O failure poisons the engine.
    fn raft_append(&self, group: GroupId, entries: &[Entry]) -> Result<()>;

    /// Replaces the hard state.
    ///
    /// # Errors
    /// I/O failure poisons the engine.
    fn raft_set_hard_state(&self, group: GroupId, hard_state: &HardState) -> Result<()>;

    /// Replaces the conf state.
    ///
    /// # Errors
    /// I/O failure poisons the engine.
    fn raft_set_conf_state(&self, group: GroupId, conf_state: &ConfState) -> Result<()>;

    /// Discards entries up to and including `index`, keeping `term(index)`.
    /// Compacting at or below the current compaction point does nothing.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when `index > last_index`.
    /// I/O failure poisons the engine.
    fn raft_compact(&self, group: GroupId, index: u64) -> Result<()>;

    /// Installs a snapshot's metadata: discards the whole log, sets the compaction
    /// point to `(meta.index, meta.term)` and the conf state to `meta.conf_state`.
    ///
    /// # Errors
    /// I/O failure poisons the engine.
    fn raft_apply_snapshot(&self, group: GroupId, meta: &SnapshotMetadata) -> Result<()>;

    /// Forgets everything about `group`'s Raft log (the replica was removed).
    ///
    /// # Errors
    /// I/O failure poisons the engine.
    fn raft_remove_group(&self, group: GroupId) -> Result<()>;

    /// Makes every Raft-log write issued before this call durable. Called by the
    /// node's writer once per drained batch of writes (group commit).
    ///
    /// # Errors
    /// A failed sync poisons the engine; it is never retried.
    fn raft_sync(&self) -> Result<()>;
}

/// Where a partition log stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogState {
    /// First offset that may be read (raised by retention).
    pub start_offset: Offset,
    /// Offset the next appended batch will get (the high watermark of applied data).
    pub next_offset: Offset,
    /// Raft index of the last committed entry this log reflects.
    pub applied_index: u64,
}

/// Where [`PartitionStore::log_append`] put a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    /// Offset of the batch's first record.
    pub base_offset: Offset,
    /// Offset of the batch's last record.
    pub last_offset: Offset,
}

/// The partition logs (state machines) of every partition group on the node.
///
/// # Invariants (for one group)
///
/// * Batches are stored back to back by offset: a batch's base offset is the previous
///   batch's last offset + 1, and `next_offset` is the last batch's last offset + 1.
/// * `start_offset <= next_offset`; offsets below `start_offset` are never served.
/// * `applied_index` only grows.
/// * Stored batches are the bytes given to [`log_append`](Self::log_append) with only
///   the base offset and leader epoch stamped; every batch served passes its CRC.
pub trait PartitionStore: Send + Sync {
    /// Groups that have a partition log, in ascending order.
    ///
    /// # Errors
    /// [`Error::Io`] on a read failure.
    fn log_groups(&self) -> Result<Vec<GroupId>>;

    /// Start, next offset and applied index (all zero for an unknown group).
    ///
    /// # Errors
    /// [`Error::Io`] on a read failure.
    fn log_state(&self, group: GroupId) -> Result<LogState>;

    /// Appends one verified RecordBatch v2 for the committed Raft entry `raft_index`,
    /// stamping base offset `next_offset` and `leader_epoch`. Creates the log on first
    /// use.
    ///
    /// # Errors
    /// [`Error::Invalid`] when `raft_index <= applied_index`
    /// or the batch fails [`verify`](crate::batch::verify); nothing is stored then.
    /// I/O failure poisons the engine.
    fn log_append(
        &self,
        group: GroupId,
        raft_index: u64,
        leader_epoch: i32,
        batch: &[u8],
    ) -> Result<Appended>;

    /// Records that committed entries up to `raft_index` are applied even though they
    /// carried no batch (elections' empty entries, conf changes). Lower values are ignored.
    ///
    /// # Errors
    /// I/O failure poisons the engine.
    fn log_mark_applied(&self, group: GroupId, raft_index: u64) -> Result<()>;

    /// Reads whole batches starting with the one that holds `offset` (which may begin
    /// before `offset`), adding batches while the total stays within `max_bytes`, but
    /// always returning at least one batch when `offset < next_offset`. Returns empty
    /// bytes when `offset == next_offset`. A read may stop early (at a segment end);
    /// callers read again from the next offset.
    ///
    /// # Errors
    /// [`Error::OutOfRange`] when `offset < start_offset` or
    /// `offset > next_offset`; [`Error::Corrupt`] when a batch
    /// fails its CRC (it is not returned).
    fn log_read(&self, group: GroupId, offset: Offset, max_bytes: usize) -> Result<Bytes>;

    /// Base offset of the first batch at or after `start_offset` whose max timestamp
    /// is `>= timestamp`, or `None` when there is none.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Corrupt`] on a
    /// failed read.
    fn log_offset_for_timestamp(&self, group: GroupId, timestamp: i64) -> Result<Option<Offset>>;

    /// Raises `start_offset` to `offset` (clamped to `next_offset`); lower values are
    /// ignored. Storage of whole batches below it may be released at once or later.
    ///
    /// # Errors
    /// I/O failure poisons the engine.
    fn log_delete_prefix(&self, group: GroupId, offset: Offset) -> Result<()>;

    /// How far retention `r` lets the start offset move: an offset at or above
    /// `start_offset` and at most `next_offset`, the end of a unit of storage the
    /// engine releases whole (a segment, a batch), decided by
    /// [`retention_point`](crate::retention::retention_point) over those units.
    /// The leader asks; every replica then raises its start offset to the answer
    /// with [`log_delete_prefix`](Self::log_delete_prefix).
    ///
    /// The default reads the whole log, every batch a unit
    /// ([`retention_point_by_reading`](crate::retention::retention_point_by_reading));
    /// engines that know their units' sizes and timestamps answer without reading.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Corrupt`] on a failed read.
    fn log_retention_point(
        &self,
        group: GroupId,
        r: crate::retention::Retention,
    ) -> Result<Offset> {
        crate::retention::retention_point_by_reading(self, group, r)
    }

    /// Sets how `group`'s log is cut into units from now on (its topic's
    /// `segment.bytes` and `segment.ms`), before or after the log exists. The
    /// default ignores it (engines without segments). Only the layout changes:
    /// what is stored and served stays the same.
    ///
    /// # Errors
    /// None expected; an engine may refuse a shape it cannot have.
    fn log_configure(&self, _group: GroupId, _shape: crate::retention::LogShape) -> Result<()> {
        Ok(())
    }

    /// Deletes `group`'s partition log entirely.
    ///
    /// # Errors
    /// I/O failure poisons the engine.
    fn log_remove(&self, group: GroupId) -> Result<()>;

    /// Makes `group`'s appended batches, applied index and start offset durable.
    ///
    /// # Errors
    /// A failed sync poisons the engine; it is never retried.
    fn log_flush(&self, group: GroupId) -> Result<()>;
}

/// Checkpoints of a state machine's derived state, one per group: what DESIGN §10
/// calls "state next to the log". A group coordinator's offsets and groups (and a
/// data partition's producer state) are a deterministic function of the applied
/// log; a checkpoint of that function tied to an applied index lets a restart load
/// it and replay only the Raft log after that index, and lets the Raft log be
/// compacted through it.
///
/// The blob is opaque to the engine (the core frames it with its index and a
/// checksum, see [`crate::checkpoint`]); the engine keeps the last one whole.
///
/// # Invariants (for one group)
///
/// * [`state_put`](Self::state_put) replaces the checkpoint atomically and durably:
///   when it returns, a crash leaves the new blob; if it fails or a crash
///   interrupts it, the group has the previous blob (or none), never a mix.
/// * [`state_remove`](Self::state_remove) is durable when it returns.
/// * Checkpoints are independent of the group's Raft log and partition log.
pub trait StateStore: Send + Sync {
    /// Replaces `group`'s checkpoint with `blob`; durable when it returns.
    ///
    /// # Errors
    /// [`Error::StorageFull`] when the disk is full (the previous checkpoint
    /// stays, and the engine is not poisoned); a failed sync poisons the engine.
    fn state_put(&self, group: GroupId, blob: &[u8]) -> Result<()>;

    /// `group`'s last checkpoint, if it has one.
    ///
    /// # Errors
    /// [`Error::Io`] on a read failure.
    fn state_get(&self, group: GroupId) -> Result<Option<Bytes>>;

    /// Removes `group`'s checkpoint, if any; durable when it returns.
    ///
    /// # Errors
    /// I/O failure poisons the engine.
    fn state_remove(&self, group: GroupId) -> Result<()>;
}

/// A storage engine: both logs, the state checkpoints, staged logs (when it
/// declares [`Capabilities::snapshot_install`]), rewritten units (when it
/// declares [`Capabilities::key_compaction`]), a name and its capabilities.
pub trait Engine:
    RaftLogStore
    + PartitionStore
    + StateStore
    + crate::staging::StagingStore
    + crate::compaction::CompactionStore
    + 'static
{
    /// The engine's name as chosen in configuration (`"memory"`, `"segment"`, …).
    fn name(&self) -> &'static str;

    /// What the engine offers beyond the required contract.
    fn capabilities(&self) -> Capabilities;

    /// Bytes free for the engine's data on its file system (what an unprivileged
    /// writer may still use), for the node's free-space floor
    /// (`min_free_bytes`); `None` when the engine keeps no files or cannot tell.
    /// Engines that keep files answer [`free_bytes`] of their directory.
    fn free_bytes(&self) -> Option<u64> {
        None
    }

    /// What the engine holds on disk, for metrics (read at each scrape, so it
    /// must be cheap: no reading of logs). The default tells nothing.
    fn usage(&self) -> StorageUsage {
        StorageUsage::default()
    }
}

/// What an engine holds on disk ([`Engine::usage`]); `None` and empty parts are
/// what it cannot tell cheaply.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StorageUsage {
    /// Files of a write-ahead log kept apart from the partition logs.
    pub wal_files: Option<u64>,
    /// Bytes of those files.
    pub wal_bytes: Option<u64>,
    /// Bytes of each partition log.
    pub partition_bytes: Vec<(GroupId, u64)>,
    /// Bytes of everything the engine keeps on disk.
    pub total_bytes: Option<u64>,
}

/// Bytes of the files at `path` (a file, or a directory and everything below
/// it); `None` when it cannot be read. For [`Engine::usage`] of engines whose
/// store is a file or a directory of its own.
pub fn disk_bytes(path: &std::path::Path) -> Option<u64> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.is_dir() {
        return Some(meta.len());
    }
    let mut total = 0u64;
    // Files may go while the directory is read (a store compacting): skip them.
    for entry in std::fs::read_dir(path).ok()?.flatten() {
        total += disk_bytes(&entry.path()).unwrap_or(0);
    }
    Some(total)
}

/// Bytes an unprivileged writer may still use on the file system holding `path`,
/// a directory or a file (`statvfs`: available blocks times the fragment size).
///
/// # Errors
/// When the file system cannot be asked.
pub fn free_bytes(path: &std::path::Path) -> Result<u64> {
    let st = rustix::fs::statvfs(path).map_err(|e| {
        Error::io(
            format!("reading the free space of {}", path.display()),
            e.into(),
        )
    })?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

mod checks;

pub use checks::{LogBounds, check_append, check_log_append, check_read_range};
