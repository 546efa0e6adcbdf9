//! weir's storage engine over [redb](https://www.redb.org), a pure-Rust embedded
//! database: no C++ to build, one file on disk.
//!
//! The engine is [`weir_engine_kv::KvEngine`] over [`RedbStore`]: four tables keyed by
//! (group, index) and (group, offset), as laid out in [`weir_engine_kv`].
//!
//! # Durability and crash safety
//!
//! Every write (a Raft append, a hard-state change, a batch applied to a partition
//! log) is one redb write transaction committed with [`Durability::None`]: it is
//! visible to reads at once and costs no `fsync`, but lives only in this process
//! until a later durable commit. `raft_sync` and `log_flush` commit an empty
//! transaction with [`Durability::Immediate`], which writes every earlier
//! non-durable commit with checksums, flips redb's commit slot and `fsync`s — one
//! sync for all groups (group commit).
//!
//! After a crash redb opens at the last durable commit (the newest commit slot whose
//! checksum holds), so the engine recovers exactly the state of its last sync:
//! a prefix of the writes that includes every synced one. Non-durable commits are
//! lost with the process, which the engine contract allows. Stored values carry
//! their own CRC-32C besides redb's page checksums.
//!
//! redb holds an exclusive lock on the file: a second process opening the same
//! directory gets a clear error.

use std::path::{Path, PathBuf};

use redb::{Database, Durability, ReadableDatabase as _, TableDefinition};
use serde::{Deserialize, Serialize};
use weir_core::{Capabilities, Error, Result};
use weir_engine_kv::{KvEngine, KvOp, KvStore, Table, Visit};

/// The configuration name of this engine.
pub const NAME: &str = "redb";

/// Registers this engine as [`NAME`]: it opens in the data directory with the
/// `[engine_redb]` section of weir's config as its [`Config`].
pub fn register(registry: &mut weir_core::Registry) {
    registry.add_engine(NAME, |dir, config| {
        let c = weir_core::registry::parse_config::<Config>(&format!("engine_{NAME}"), config)?;
        Ok(std::sync::Arc::new(open(dir, &c)?))
    });
}

/// The database file inside the data directory.
pub const FILE_NAME: &str = "weir.redb";

/// The redb engine.
pub type RedbEngine = KvEngine<RedbStore>;

/// Tuning of the redb engine (`[engine_redb]` in weir's config).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Bytes of redb's page cache. Default 256 MiB.
    pub cache_bytes: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            cache_bytes: 256 << 20,
        }
    }
}

/// Opens (creating if needed) the redb engine in `dir`.
///
/// # Errors
/// [`Error::Config`] when another process holds the database or the configuration is
/// out of range; [`Error::Io`] or [`Error::Corrupt`] when the file cannot be opened.
pub fn open(dir: &Path, config: &Config) -> Result<RedbEngine> {
    KvEngine::open(RedbStore::open(dir, config)?, Capabilities::database())
}

/// A redb database holding the [`Table`]s of a [`KvEngine`].
pub struct RedbStore {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .finish()
    }
}

type Def = TableDefinition<'static, &'static [u8], &'static [u8]>;

const fn def(table: Table) -> Def {
    TableDefinition::new(table.name())
}

fn db_err(path: &Path, what: &str, e: impl Into<redb::Error>) -> Error {
    let e: redb::Error = e.into();
    let context = format!("{what} {}", path.display());
    match e {
        redb::Error::Io(io) => Error::io(context, io),
        redb::Error::Corrupted(m) => Error::Corrupt(format!("{context}: {m}")),
        redb::Error::DatabaseAlreadyOpen => Error::Config(format!(
            "{}: the database is in use by another process",
            path.display()
        )),
        other => Error::io(context, std::io::Error::other(other.to_string())),
    }
}

/// Creates the database with every table under a temporary name, then renames it
/// into place and syncs the directory: a crash while creating leaves either no
/// database or a complete one, never a file redb cannot open. (The SIGKILL
/// conformance case found that a process killed inside `Database::create` leaves a
/// file without redb's header.)
fn create_atomically(dir: &Path, path: &Path, cache: usize) -> Result<()> {
    let tmp = dir.join(format!("{FILE_NAME}.tmp"));
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format!("removing {}", tmp.display()), e)),
    }
    {
        let db = Database::builder()
            .set_cache_size(cache)
            .create(&tmp)
            .map_err(|e| db_err(&tmp, "creating", e))?;
        let tx = db
            .begin_write()
            .map_err(|e| db_err(&tmp, "starting a transaction on", e))?;
        for t in Table::ALL {
            tx.open_table(def(t))
                .map_err(|e| db_err(&tmp, "creating a table in", e))?;
        }
        // Durability::Immediate (the default): the file is synced when this returns.
        tx.commit().map_err(|e| db_err(&tmp, "committing to", e))?;
    }
    std::fs::rename(&tmp, path)
        .map_err(|e| Error::io(format!("renaming {} into place", tmp.display()), e))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("syncing {}", dir.display()), e))
}

impl RedbStore {
    /// Opens (creating if needed) `dir/weir.redb` and its tables.
    ///
    /// # Errors
    /// As [`open`].
    pub fn open(dir: &Path, config: &Config) -> Result<RedbStore> {
        if config.cache_bytes < 1 << 20 {
            return Err(Error::Config(format!(
                "[engine_redb] cache_bytes = {} must be at least 1 MiB",
                config.cache_bytes
            )));
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let path = dir.join(FILE_NAME);
        let cache = usize::try_from(config.cache_bytes).unwrap_or(usize::MAX);
        if !path.exists() {
            create_atomically(dir, &path, cache)?;
        }
        let db = Database::builder()
            .set_cache_size(cache)
            .open(&path)
            .map_err(|e| db_err(&path, "opening", e))?;
        // A database from an earlier weir may lack a table added since.
        let tx = db
            .begin_write()
            .map_err(|e| db_err(&path, "starting a transaction on", e))?;
        for t in Table::ALL {
            tx.open_table(def(t))
                .map_err(|e| db_err(&path, "creating a table in", e))?;
        }
        tx.commit().map_err(|e| db_err(&path, "committing to", e))?;
        Ok(RedbStore { db, path })
    }

    fn err(&self, what: &str, e: impl Into<redb::Error>) -> Error {
        db_err(&self.path, what, e)
    }

    fn read<T>(
        &self,
        table: Table,
        f: impl FnOnce(redb::ReadOnlyTable<&[u8], &[u8]>) -> Result<T>,
    ) -> Result<T> {
        let tx = self.db.begin_read().map_err(|e| self.err("reading", e))?;
        let t = tx
            .open_table(def(table))
            .map_err(|e| self.err("opening a table in", e))?;
        f(t)
    }
}

impl KvStore for RedbStore {
    fn free_bytes(&self) -> Option<u64> {
        // statvfs takes any path on the file system, the database file too.
        weir_core::engine::free_bytes(&self.path).ok()
    }

    fn disk_bytes(&self) -> Option<u64> {
        weir_core::engine::disk_bytes(&self.path)
    }

    const NAME: &'static str = NAME;

    fn write(&self, ops: Vec<KvOp>) -> Result<()> {
        let mut tx = self
            .db
            .begin_write()
            .map_err(|e| self.err("starting a transaction on", e))?;
        tx.set_durability(Durability::None)
            .map_err(|e| self.err("setting durability on", e))?;
        for op in &ops {
            let table = match op {
                KvOp::Put(t, ..) | KvOp::Delete(t, _) | KvOp::DeleteRange(t, ..) => *t,
            };
            let mut t = tx
                .open_table(def(table))
                .map_err(|e| self.err("opening a table in", e))?;
            match op {
                KvOp::Put(_, k, v) => {
                    t.insert(k.as_slice(), v.as_slice())
                        .map_err(|e| self.err("writing to", e))?;
                }
                KvOp::Delete(_, k) => {
                    t.remove(k.as_slice())
                        .map_err(|e| self.err("deleting from", e))?;
                }
                KvOp::DeleteRange(_, from, to) => {
                    t.retain_in(from.as_slice()..to.as_slice(), |_, _| false)
                        .map_err(|e| self.err("deleting a range from", e))?;
                }
            }
        }
        tx.commit().map_err(|e| self.err("committing to", e))
    }

    fn sync(&self) -> Result<()> {
        let mut tx = self
            .db
            .begin_write()
            .map_err(|e| self.err("starting a transaction on", e))?;
        tx.set_durability(Durability::Immediate)
            .map_err(|e| self.err("setting durability on", e))?;
        tx.commit().map_err(|e| self.err("syncing", e))
    }

    fn get(
        &self,
        table: Table,
        key: &[u8],
        f: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<bool> {
        self.read(table, |t| {
            match t.get(key).map_err(|e| self.err("reading", e))? {
                Some(v) => {
                    f(v.value())?;
                    Ok(true)
                }
                None => Ok(false),
            }
        })
    }

    fn scan(&self, table: Table, from: &[u8], to: &[u8], f: &mut Visit<'_>) -> Result<()> {
        self.read(table, |t| {
            for item in t.range(from..to).map_err(|e| self.err("reading", e))? {
                let (k, v) = item.map_err(|e| self.err("reading", e))?;
                if !f(k.value(), v.value())? {
                    break;
                }
            }
            Ok(())
        })
    }

    fn last_key(&self, table: Table, from: &[u8], to: &[u8]) -> Result<Option<Vec<u8>>> {
        self.read(table, |t| {
            let mut range = t.range(from..to).map_err(|e| self.err("reading", e))?;
            match range.next_back() {
                Some(item) => {
                    let (k, _) = item.map_err(|e| self.err("reading", e))?;
                    Ok(Some(k.value().to_vec()))
                }
                None => Ok(None),
            }
        })
    }
}
