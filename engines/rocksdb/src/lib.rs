//! weir's storage engine over [RocksDB](https://rocksdb.org).
//!
//! The engine is [`weir_engine_kv::KvEngine`] over [`RocksStore`]: one column family
//! per [`Table`] — Raft log, Raft state, partition logs, partition state — keyed by
//! (group, index) and (group, offset) as laid out in [`weir_engine_kv`].
//!
//! # Durability and crash safety
//!
//! Every engine write is one `WriteBatch` (a Raft append that overwrites a suffix is a
//! range delete plus the new entries; a batch applied to a partition log is the batch
//! plus the log state that counts it), written to RocksDB's WAL without `fsync`.
//! `raft_sync` and `log_flush` call `FlushWAL(sync = true)`: one `fdatasync` of the
//! WAL for every group (group commit), so a Ready that must sync costs one sync
//! however many groups wrote. RocksDB recovers from its WAL after a crash with
//! `WALRecoveryMode::PointInTime`: it replays the WAL up to the first bad record, so
//! the recovered state is a prefix of the write batches, and every batch written
//! before the last sync is in it.
//!
//! # Tuning
//!
//! * **No compression** (`DBCompressionType::None`): Kafka producers compress their
//!   batches already; compressing again costs CPU for nothing.
//! * **Block cache**: an LRU cache of [`Config::block_cache_bytes`] (default 64 MiB)
//!   shared by the column families; reads of recent data mostly hit the memtable.
//! * **Memtables**: [`Config::write_buffer_bytes`] per column family (default 64 MiB),
//!   so a burst of produce is absorbed before a flush.
//! * **Range deletes** for compaction, retention and overwrites: one tombstone instead
//!   of a delete per key.
//! * Column families are created on first open (`create_missing_column_families`).
//!
//! # Building
//!
//! `rocksdb` 0.20 (RocksDB 7.9's C API) compiles RocksDB from source, which takes
//! many minutes. Set `ROCKSDB_LIB_DIR` to link a system RocksDB instead — Debian 12's
//! `librocksdb-dev` (7.8) is what weir's CI uses: `ROCKSDB_LIB_DIR=/usr/lib/x86_64-linux-gnu`.

use std::path::{Path, PathBuf};

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DB, DBCompressionType, Options, ReadOptions,
    WriteBatch, WriteOptions,
};
use serde::{Deserialize, Serialize};
use weir_core::{Capabilities, Error, Result};
use weir_engine_kv::{KvEngine, KvOp, KvStore, Table, Visit};

/// The configuration name of this engine.
pub const NAME: &str = "rocksdb";

/// Registers this engine as [`NAME`]: it opens in the data directory with the
/// `[engine_rocksdb]` section of weir's config as its [`Config`].
pub fn register(registry: &mut weir_core::Registry) {
    registry.add_engine(NAME, |dir, config| {
        let c = weir_core::registry::parse_config::<Config>(&format!("engine_{NAME}"), config)?;
        Ok(std::sync::Arc::new(open(dir, &c)?))
    });
}

/// The RocksDB engine.
pub type RocksEngine = KvEngine<RocksStore>;

/// Tuning of the RocksDB engine (`[engine_rocksdb]` in weir's config).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Bytes of the LRU block cache shared by all column families. Default 64 MiB.
    pub block_cache_bytes: u64,
    /// Bytes of one column family's memtable before it is flushed. Default 64 MiB.
    pub write_buffer_bytes: u64,
    /// RocksDB background threads for flushes and compactions. Default 2.
    pub background_jobs: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            block_cache_bytes: 64 << 20,
            write_buffer_bytes: 64 << 20,
            background_jobs: 2,
        }
    }
}

impl Config {
    fn validate(&self) -> Result<()> {
        if self.write_buffer_bytes < 1 << 20 {
            return Err(Error::Config(format!(
                "[engine_rocksdb] write_buffer_bytes = {} must be at least 1 MiB",
                self.write_buffer_bytes
            )));
        }
        if self.background_jobs == 0 || self.background_jobs > 64 {
            return Err(Error::Config(format!(
                "[engine_rocksdb] background_jobs = {} must be between 1 and 64",
                self.background_jobs
            )));
        }
        Ok(())
    }
}

/// Opens (creating if needed) the RocksDB engine in `dir`.
///
/// # Errors
/// [`Error::Config`] for a bad configuration or a directory another process holds;
/// [`Error::Io`] or [`Error::Corrupt`] when RocksDB cannot open it.
pub fn open(dir: &Path, config: &Config) -> Result<RocksEngine> {
    KvEngine::open(RocksStore::open(dir, config)?, Capabilities::database())
}

/// A RocksDB database with one column family per [`Table`].
pub struct RocksStore {
    db: DB,
    path: PathBuf,
}

impl std::fmt::Debug for RocksStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksStore")
            .field("path", &self.path)
            .finish()
    }
}

fn db_err(path: &Path, what: &str, e: rocksdb::Error) -> Error {
    let msg = e.into_string();
    let context = format!("{what} {}", path.display());
    if msg.contains("Corruption") {
        Error::Corrupt(format!("{context}: {msg}"))
    } else if msg.contains("lock") && msg.contains("LOCK") {
        Error::Config(format!(
            "{}: the database is in use by another process ({msg})",
            path.display()
        ))
    } else {
        Error::io(context, std::io::Error::other(msg))
    }
}

impl RocksStore {
    /// Opens (creating if needed) a RocksDB database in `dir`.
    ///
    /// # Errors
    /// As [`open`].
    pub fn open(dir: &Path, config: &Config) -> Result<RocksStore> {
        config.validate()?;
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let cache =
            Cache::new_lru_cache(usize::try_from(config.block_cache_bytes).unwrap_or(usize::MAX))
                .map_err(|e| db_err(dir, "making the block cache for", e))?;
        let mut table_opts = BlockBasedOptions::default();
        table_opts.set_block_cache(&cache);
        let cf_opts = || {
            let mut o = Options::default();
            o.set_compression_type(DBCompressionType::None);
            o.set_write_buffer_size(
                usize::try_from(config.write_buffer_bytes).unwrap_or(usize::MAX),
            );
            o.set_block_based_table_factory(&table_opts);
            o
        };
        let mut opts = cf_opts();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_background_jobs(config.background_jobs as i32);
        opts.set_wal_recovery_mode(rocksdb::DBRecoveryMode::PointInTime);
        opts.set_keep_log_file_num(4);
        let cfs = Table::ALL
            .iter()
            .map(|t| ColumnFamilyDescriptor::new(t.name(), cf_opts()));
        let db = DB::open_cf_descriptors(&opts, dir, cfs).map_err(|e| db_err(dir, "opening", e))?;
        Ok(RocksStore {
            db,
            path: dir.to_path_buf(),
        })
    }

    fn cf(&self, table: Table) -> Result<&rocksdb::ColumnFamily> {
        self.db.cf_handle(table.name()).ok_or_else(|| {
            Error::Corrupt(format!(
                "{}: column family {} is missing",
                self.path.display(),
                table.name()
            ))
        })
    }

    fn err(&self, what: &str, e: rocksdb::Error) -> Error {
        db_err(&self.path, what, e)
    }

    /// A raw iterator over `from .. to` of `table`.
    fn iter(&self, table: Table, from: &[u8], to: &[u8]) -> Result<rocksdb::DBRawIterator<'_>> {
        let mut ro = ReadOptions::default();
        ro.set_iterate_lower_bound(from.to_vec());
        ro.set_iterate_upper_bound(to.to_vec());
        Ok(self.db.raw_iterator_cf_opt(self.cf(table)?, ro))
    }
}

impl KvStore for RocksStore {
    fn free_bytes(&self) -> Option<u64> {
        // statvfs takes any path on the file system, the database file too.
        weir_core::engine::free_bytes(&self.path).ok()
    }

    fn disk_bytes(&self) -> Option<u64> {
        weir_core::engine::disk_bytes(&self.path)
    }

    const NAME: &'static str = NAME;

    fn write(&self, ops: Vec<KvOp>) -> Result<()> {
        let mut batch = WriteBatch::default();
        for op in &ops {
            match op {
                KvOp::Put(t, k, v) => batch.put_cf(self.cf(*t)?, k, v),
                KvOp::Delete(t, k) => batch.delete_cf(self.cf(*t)?, k),
                KvOp::DeleteRange(t, from, to) => batch.delete_range_cf(self.cf(*t)?, from, to),
            }
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(false);
        self.db
            .write_opt(batch, &wo)
            .map_err(|e| self.err("writing to", e))
    }

    fn sync(&self) -> Result<()> {
        self.db
            .flush_wal(true)
            .map_err(|e| self.err("syncing the WAL of", e))
    }

    fn get(
        &self,
        table: Table,
        key: &[u8],
        f: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<bool> {
        match self
            .db
            .get_pinned_cf(self.cf(table)?, key)
            .map_err(|e| self.err("reading", e))?
        {
            Some(v) => {
                f(&v)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn scan(&self, table: Table, from: &[u8], to: &[u8], f: &mut Visit<'_>) -> Result<()> {
        let mut it = self.iter(table, from, to)?;
        it.seek(from);
        while it.valid() {
            let (Some(k), Some(v)) = (it.key(), it.value()) else {
                break;
            };
            if !f(k, v)? {
                return Ok(());
            }
            it.next();
        }
        it.status().map_err(|e| self.err("reading", e))
    }

    fn last_key(&self, table: Table, from: &[u8], to: &[u8]) -> Result<Option<Vec<u8>>> {
        let mut it = self.iter(table, from, to)?;
        it.seek_to_last();
        let found = it.valid().then(|| it.key().map(<[u8]>::to_vec)).flatten();
        it.status().map_err(|e| self.err("reading", e))?;
        Ok(found)
    }
}
