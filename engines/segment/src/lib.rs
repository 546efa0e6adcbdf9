//! weir-engine-segment: weir's default storage engine.
//!
//! * The **Raft log** of every group lives in one write-ahead log of append-only files
//!   (`wal/`), so that one `fdatasync` commits the writes of all groups.
//! * Each **partition log** is a directory of segments (`partitions/<group>/`): a
//!   preallocated, memory-mapped log file of Kafka RecordBatches served as stored,
//!   with a sparse offset index and a time index.
//!
//! The on-disk format and the crash-recovery argument are in `docs/format.md`.
//!
//! ```no_run
//! use weir_engine_segment::{Config, SegmentEngine};
//! let engine = SegmentEngine::open("/var/lib/weir", Config::default())?;
//! # Ok::<(), weir_core::Error>(())
//! ```
//!
//! # Layout
//!
//! * `format` — header pages and checkpoint slots shared by all files.
//! * `wal` — the Raft log.
//! * `segment` — one mapped segment and its indexes (the only `unsafe` code).
//! * `partition` — a partition's segments, rolling and retention.
//! * `durability` — poisoning after a failed write or sync, and fault injection.
//! * `sync_pool` — the threads that sync partition logs with the WAL.

mod cleaning;
mod config;
mod durability;
mod error;
mod format;
mod partition;
mod segment;
mod staging;
mod state;
mod sync_pool;
mod unified;
mod usage;
mod wal;

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;

use std::collections::HashMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use weir_core::engine::check_append;
use weir_core::eraftpb::{ConfState, Entry, HardState, SnapshotMetadata};
use weir_core::retention::{LogShape, Retention};
use weir_core::{
    Appended, Capabilities, Engine, Error, GroupId, LogState, Offset, PartitionStore, RaftLogStore,
    RaftState, Result,
};

pub use crate::config::Config;
use crate::config::lost;
use crate::durability::Durability;
use crate::error::SegError;
use crate::partition::{Partition, Shape};
use crate::state::StateFiles;
use crate::wal::Wal;

/// The configuration name of this engine.
pub const NAME: &str = "segment";

/// Registers this engine as [`NAME`]: it opens in the data directory with the
/// `[engine_segment]` section of weir's config as its [`Config`].
pub fn register(registry: &mut weir_core::Registry) {
    registry.add_engine(NAME, |dir, config| {
        let c = weir_core::registry::parse_config::<Config>(&format!("engine_{NAME}"), config)?;
        Ok(std::sync::Arc::new(SegmentEngine::open(dir, c)?))
    });
}

/// The segment engine; see the [crate docs](crate).
#[derive(Debug)]
pub struct SegmentEngine {
    dir: PathBuf,
    shape: Shape,
    wal: Mutex<Wal>,
    partitions: RwLock<HashMap<GroupId, Arc<Mutex<Partition>>>>,
    /// Logs staged from snapshots (`StagingStore`, in `staging`).
    staged: Mutex<HashMap<GroupId, Partition>>,
    /// Segments being cleaned (`CompactionStore`, in `cleaning`).
    cleaning: Mutex<HashMap<GroupId, cleaning::Cleaning>>,
    /// Topic configs that shape each group's segments (`log_configure`).
    topic_shapes: Mutex<HashMap<GroupId, LogShape>>,
    /// Groups whose partition log got batches since the last `raft_sync`.
    unsynced: Mutex<Vec<GroupId>>,
    /// Threads that sync partition logs during `raft_sync`.
    sync_pool: sync_pool::SyncPool,
    durability: Arc<Durability>,
    states: StateFiles,
    _lock: File,
}

fn partition_dir(root: &Path, g: GroupId) -> PathBuf {
    root.join("partitions").join(format!("{:020}", g.0))
}

/// Marks a partition directory that is being deleted (see `log_remove`).
const REMOVED_MARK: &str = ".removed.";

/// Where a partition still being read is moved when it is removed: a name no other
/// removal of the same group uses.
fn trash_dir(root: &Path, g: GroupId) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    root.join("partitions")
        .join(format!("{:020}{REMOVED_MARK}{n}", g.0))
}

impl SegmentEngine {
    /// Opens the engine in `dir` (created if missing), recovering from a crash if
    /// there was one.
    ///
    /// # Errors
    /// [`Error::Config`] for a bad config or a directory another process has open,
    /// [`Error::Corrupt`] when synced data fails its checks, [`Error::Io`] otherwise.
    pub fn open(dir: impl AsRef<Path>, config: Config) -> Result<SegmentEngine> {
        Ok(Self::open_inner(dir.as_ref(), config)?)
    }

    fn open_inner(dir: &Path, config: Config) -> Result<SegmentEngine, SegError> {
        use crate::error::IoContext;
        config.validate()?;
        fs::create_dir_all(dir.join("partitions")).ctx(|| format!("creating {}", dir.display()))?;
        let lock = lock_dir(dir)?;
        let durability = Arc::new(Durability::default());
        let started = std::time::Instant::now();
        let accept_loss = config.accept_data_loss;
        if accept_loss {
            tracing::warn!(dir = %dir.display(), "accept_data_loss is set: damage is dropped, not refused; remove the setting after this start");
        }
        let pdir = dir.join("partitions");
        if !dir.join("wal").exists() {
            // The Raft state is gone (hard state, membership, metadata), so partition
            // logs here belong to nothing that can be recovered. Checked before the
            // WAL is created, so that a refusal changes nothing.
            for entry in fs::read_dir(&pdir).ctx(|| format!("listing {}", pdir.display()))? {
                let entry = entry.ctx(|| format!("listing {}", pdir.display()))?;
                lost(
                    accept_loss,
                    format!(
                        "{} is missing while partition logs exist ({}): the Raft state of this node is gone",
                        dir.join("wal").display(),
                        entry.path().display()
                    ),
                )?;
                fs::remove_dir_all(entry.path())
                    .ctx(|| format!("removing {}", entry.path().display()))?;
            }
        }
        let mut wal = Wal::open(&dir.join("wal"), config.wal_file_bytes, durability.clone())?;
        let wal_ms = started.elapsed().as_millis();
        let shape = Shape {
            segment_bytes: config.segment_bytes,
            index_interval: config.index_interval_bytes,
            roll_after: None,
        };
        // Installs a crash interrupted are finished first: they rename logs.
        for entry in fs::read_dir(&pdir).ctx(|| format!("listing {}", pdir.display()))? {
            let entry = entry.ctx(|| format!("listing {}", pdir.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".install") {
                staging::recover_entry(dir, &name)?;
            }
        }
        let mut partitions = HashMap::new();
        let mut staged = HashMap::new();
        for entry in fs::read_dir(&pdir).ctx(|| format!("listing {}", pdir.display()))? {
            let entry = entry.ctx(|| format!("listing {}", pdir.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some((g, false)) = staging::recover_entry(dir, &name)? {
                match Partition::open(&entry.path(), shape, accept_loss, &durability)? {
                    Some(mut p) => {
                        p.adopt_tail();
                        staged.insert(g, p);
                    }
                    None => fs::remove_dir_all(entry.path())
                        .ctx(|| format!("removing {}", entry.path().display()))?,
                }
                continue;
            }
            if name.contains(REMOVED_MARK) {
                // A removal that a crash interrupted: finish it.
                fs::remove_dir_all(entry.path())
                    .ctx(|| format!("removing {}", entry.path().display()))?;
                continue;
            }
            let Ok(g) = name.parse::<u64>() else {
                tracing::warn!(path = %entry.path().display(), "ignoring unexpected entry in partitions/");
                continue;
            };
            match Partition::open(&entry.path(), shape, accept_loss, &durability)? {
                Some(p) => {
                    partitions.insert(GroupId(g), Arc::new(Mutex::new(p)));
                }
                None => fs::remove_dir_all(entry.path())
                    .ctx(|| format!("removing {}", entry.path().display()))?,
            }
        }
        unified::reconcile(&mut wal, &partitions, &durability, accept_loss)?;
        tracing::info!(
            dir = %dir.display(),
            raft_groups = wal.groups().len(),
            partitions = partitions.len(),
            wal_ms,
            partitions_ms = started.elapsed().as_millis() - wal_ms,
            "segment engine open"
        );
        Ok(SegmentEngine {
            dir: dir.to_path_buf(),
            shape,
            wal: Mutex::new(wal),
            partitions: RwLock::new(partitions),
            staged: Mutex::new(staged),
            cleaning: Mutex::new(HashMap::new()),
            topic_shapes: Mutex::new(HashMap::new()),
            unsynced: Mutex::new(Vec::new()),
            sync_pool: sync_pool::SyncPool::new(durability.clone()),
            durability,
            states: StateFiles::open(dir)?,
            _lock: lock,
        })
    }

    /// Makes the next sync (Raft-log sync or partition flush) fail as if `fsync`
    /// returned an I/O error, for fault tests. The engine is then poisoned.
    pub fn inject_sync_failure(&self) {
        self.durability.inject_sync_failure_after(0);
    }

    /// Lets `skip` syncs succeed, then fails the next one as
    /// [`inject_sync_failure`](Self::inject_sync_failure) does: the engine stops
    /// at that point of whatever it was doing (crash-point tests).
    pub fn inject_sync_failure_after(&self, skip: u64) {
        self.durability.inject_sync_failure_after(skip);
    }

    fn partition(&self, g: GroupId) -> Option<Arc<Mutex<Partition>>> {
        self.partitions.read().get(&g).cloned()
    }

    fn partition_or_create(&self, g: GroupId) -> Result<Arc<Mutex<Partition>>> {
        if let Some(p) = self.partition(g) {
            return Ok(p);
        }
        let mut map = self.partitions.write();
        if let Some(p) = map.get(&g) {
            return Ok(p.clone());
        }
        let shape = self.shape_of(g);
        let p = self.durability.write_result(Partition::create(
            &partition_dir(&self.dir, g),
            shape,
            &self.durability,
        ))?;
        let p = Arc::new(Mutex::new(p));
        map.insert(g, p.clone());
        Ok(p)
    }

    /// The shape of `g`'s log: the engine's, as its topic's configs change it.
    fn shape_of(&self, g: GroupId) -> Shape {
        self.topic_shapes
            .lock()
            .get(&g)
            .map_or(self.shape, |t| self.shape.with(*t))
    }

    fn wal_write(&self, f: impl FnOnce(&mut Wal) -> Result<(), SegError>) -> Result<()> {
        self.durability.check()?;
        let mut wal = self.wal.lock();
        self.durability.write_result(f(&mut wal))
    }
}

impl RaftLogStore for SegmentEngine {
    fn raft_groups(&self) -> Result<Vec<GroupId>> {
        Ok(self.wal.lock().groups())
    }

    fn raft_state(&self, group: GroupId) -> Result<RaftState> {
        Ok(self.wal.lock().state(group))
    }

    fn raft_first_index(&self, group: GroupId) -> Result<u64> {
        Ok(self.wal.lock().first_index(group))
    }

    fn raft_last_index(&self, group: GroupId) -> Result<u64> {
        Ok(self.wal.lock().last_index(group))
    }

    fn raft_term(&self, group: GroupId, index: u64) -> Result<u64> {
        self.wal.lock().term(group, index)
    }

    fn raft_entries(
        &self,
        group: GroupId,
        low: u64,
        high: u64,
        max_bytes: Option<u64>,
    ) -> Result<Vec<Entry>> {
        let wal = self.wal.lock();
        let part = self.partition(group);
        let fetch = |p: crate::partition::Placed| match &part {
            Some(part) => part.lock().read_placed(p),
            None => Err(Error::Corrupt(format!(
                "{group}: a Raft entry's batch is in a partition log that is gone"
            ))),
        };
        wal.entries(group, low, high, max_bytes, &fetch)
    }

    fn raft_append(&self, group: GroupId, entries: &[Entry]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        self.durability.check()?;
        {
            let mut wal = self.wal.lock();
            let last = wal.last_index(group);
            check_append(group, entries, wal.first_index(group), last)?;
            if entries[0].index <= last {
                self.cut_overwritten(&mut wal, group, entries[0].index)?;
            }
        }
        // The batches are copied without the WAL's lock (other groups append
        // meanwhile); their records follow. Nothing else writes this group's
        // log in between: weir never appends to one group concurrently.
        let placed = self.place(group, entries)?;
        self.durability
            .write_result(self.wal.lock().append(group, entries, &placed))
    }

    fn raft_set_hard_state(&self, group: GroupId, hard_state: &HardState) -> Result<()> {
        self.wal_write(|w| w.set_hard_state(group, hard_state))
    }

    fn raft_set_conf_state(&self, group: GroupId, conf_state: &ConfState) -> Result<()> {
        self.wal_write(|w| w.set_conf_state(group, conf_state))
    }

    fn raft_compact(&self, group: GroupId, index: u64) -> Result<()> {
        self.durability.check()?;
        let mut wal = self.wal.lock();
        if index > wal.last_index(group) {
            return Err(Error::Unavailable(index));
        }
        if index < wal.first_index(group) {
            return Ok(());
        }
        let term = wal.term(group, index)?;
        self.durability
            .write_result(wal.compact(group, index, term))?;
        // Segments the start offset left only for the Raft log may go now.
        if let Some(p) = self.partition(group) {
            let keep_from = wal.first_placed(group).unwrap_or(Offset::MAX);
            let mut p = p.lock();
            let bound = p.state().start_offset.min(keep_from);
            self.durability.write_result(p.drop_segments_below(bound))?;
        }
        Ok(())
    }

    fn raft_apply_snapshot(&self, group: GroupId, meta: &SnapshotMetadata) -> Result<()> {
        self.wal_write(|w| w.apply_snapshot(group, meta))
    }

    fn raft_remove_group(&self, group: GroupId) -> Result<()> {
        self.wal_write(|w| w.remove_group(group))
    }

    fn raft_sync(&self) -> Result<()> {
        self.durability.check()?;
        // The fdatasyncs run without the lock, so that groups keep appending.
        let (job, files) = {
            let wal = self.wal.lock();
            (wal.sync_begin(), self.take_unsynced())
        };
        // The WAL on this thread, the partition logs on the pool's, together.
        self.durability
            .write_result(self.sync_pool.sync_with(files, || {
                job.as_ref().map_or(Ok(()), |j| j.run(&self.durability))
            }))?;
        match job {
            Some(job) => self.wal_write(|w| w.sync_end(job)),
            None => Ok(()),
        }
    }
}

impl PartitionStore for SegmentEngine {
    fn log_groups(&self) -> Result<Vec<GroupId>> {
        let mut v: Vec<_> = self.partitions.read().keys().copied().collect();
        v.sort();
        Ok(v)
    }

    fn log_state(&self, group: GroupId) -> Result<LogState> {
        Ok(self
            .partition(group)
            .map(|p| p.lock().state())
            .unwrap_or_default())
    }

    fn log_append(
        &self,
        group: GroupId,
        raft_index: u64,
        leader_epoch: i32,
        batch: &[u8],
    ) -> Result<Appended> {
        let header = weir_core::batch::BatchHeader::parse(batch)?;
        self.durability.check()?;
        let p = self.partition_or_create(group)?;
        let mut p = p.lock();
        weir_core::engine::check_log_append(group, raft_index, p.state().applied_index)?;
        // A batch stored with its Raft entry had its CRC checked when it was
        // placed: applying it moves the high watermark once its CRC field is found
        // to be the stored batch's, without reading the batch again.
        if let Some(a) = p.commit(raft_index, header.crc)? {
            return Ok(a);
        }
        let header = weir_core::batch::verify(batch)?;
        if p.has_pending() {
            return Err(Error::Invalid(format!(
                "{group}: entry {raft_index}'s batch was not stored with it, but a later entry's was"
            )));
        }
        self.durability.write_result(p.append(
            raft_index,
            leader_epoch,
            &header,
            batch,
            &self.durability,
        ))
    }

    fn log_mark_applied(&self, group: GroupId, raft_index: u64) -> Result<()> {
        self.durability.check()?;
        self.partition_or_create(group)?
            .lock()
            .mark_applied(raft_index);
        Ok(())
    }

    fn log_read(&self, group: GroupId, offset: Offset, max_bytes: usize) -> Result<Bytes> {
        match self.partition(group) {
            Some(p) => p.lock().read(offset, max_bytes),
            None => weir_core::engine::check_read_range(offset, &LogState::default())
                .map(|()| Bytes::new()),
        }
    }

    fn log_offset_for_timestamp(&self, group: GroupId, timestamp: i64) -> Result<Option<Offset>> {
        match self.partition(group) {
            Some(p) => p.lock().find_timestamp(timestamp),
            None => Ok(None),
        }
    }

    fn log_delete_prefix(&self, group: GroupId, offset: Offset) -> Result<()> {
        self.durability.check()?;
        let keep_from = self.wal.lock().first_placed(group).unwrap_or(Offset::MAX);
        let p = self.partition_or_create(group)?;
        let mut p = p.lock();
        let d = &self.durability;
        d.write_result(p.delete_prefix(offset, keep_from, d))
    }

    fn log_retention_point(&self, group: GroupId, r: Retention) -> Result<Offset> {
        Ok(match self.partition(group) {
            Some(p) => p.lock().retention_point(r),
            None => 0,
        })
    }

    fn log_configure(&self, group: GroupId, shape: LogShape) -> Result<()> {
        self.topic_shapes.lock().insert(group, shape);
        if let Some(p) = self.partition(group) {
            p.lock().set_shape(self.shape.with(shape));
        }
        Ok(())
    }

    fn log_remove(&self, group: GroupId) -> Result<()> {
        self.durability.check()?;
        self.topic_shapes.lock().remove(&group);
        weir_core::StagingStore::stage_drop(self, group)?;
        let Some(p) = self.partitions.write().remove(&group) else {
            return Ok(());
        };
        match Arc::try_unwrap(p) {
            Ok(p) => self.durability.write_result(p.into_inner().remove()),
            // A reader on another thread holds it (a fetch, an offset lookup): its
            // files go when the last reader is done.
            Err(shared) => {
                let moved = shared
                    .lock()
                    .remove_when_dropped(&trash_dir(&self.dir, group));
                self.durability.write_result(moved)
            }
        }
    }

    fn log_flush(&self, group: GroupId) -> Result<()> {
        self.durability.check()?;
        let Some(p) = self.partition(group) else {
            return Ok(());
        };
        let mut p = p.lock();
        self.durability.write_result(p.flush(&self.durability))
    }
}

/// How long [`lock_dir`] waits for a busy lock.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Takes the data directory's lock (`flock` on `LOCK`).
///
/// A busy lock is retried for up to [`LOCK_WAIT`] before the directory is declared in
/// use: a process that is exiting still holds it for a moment, and so does a child
/// that another thread of this process forked and has not yet exec'd (it shares the
/// open lock file until exec closes it; the conformance suite's SIGKILL case made
/// that visible as a rare failure to reopen an engine).
fn lock_dir(dir: &Path) -> Result<File, SegError> {
    use crate::error::IoContext;
    let path = dir.join("LOCK");
    let lock = File::create(&path).ctx(|| format!("creating {}", path.display()))?;
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match lock.try_lock() {
            Ok(()) => return Ok(lock),
            Err(fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(fs::TryLockError::WouldBlock) => {
                return Err(SegError::Config(format!(
                    "data directory {} is in use by another process",
                    dir.display()
                )));
            }
            Err(fs::TryLockError::Error(e)) => {
                return Err(SegError::Io(format!("locking {}", path.display()), e));
            }
        }
    }
}

impl weir_core::StateStore for SegmentEngine {
    fn state_put(&self, group: GroupId, blob: &[u8]) -> Result<()> {
        self.durability.check()?;
        let d = &self.durability;
        d.write_result(self.states.put(group, blob, d))
    }

    fn state_get(&self, group: GroupId) -> Result<Option<Bytes>> {
        Ok(self.states.get(group)?)
    }

    fn state_remove(&self, group: GroupId) -> Result<()> {
        self.durability.check()?;
        self.durability.write_result(self.states.remove(group))
    }
}

impl Engine for SegmentEngine {
    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        // A segment's log, offset index and time index stay open (mapped); an
        // empty partition has one segment, and each rolled one adds three more.
        Capabilities::files()
            .with_files_per_partition(3)
            .with_unified_log()
            .with_snapshot_install()
            .with_key_compaction()
    }

    fn free_bytes(&self) -> Option<u64> {
        weir_core::engine::free_bytes(&self.dir).ok()
    }

    fn usage(&self) -> weir_core::StorageUsage {
        self.storage_usage()
    }
}
