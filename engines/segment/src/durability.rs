//! Poisoning and sync fault injection, shared by the WAL and the partition logs.
//!
//! After any failed write or sync the engine is poisoned: it refuses every later
//! write and sync with [`Error::Poisoned`], because the state on disk is no longer
//! known (DESIGN.md §3 rule 6). A failed fsync is never retried.

use std::fs::File;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use weir_core::Error;

use crate::error::SegError;

/// Shared by every part of one engine.
#[derive(Debug, Default)]
pub(crate) struct Durability {
    poisoned: OnceLock<String>,
    /// 0: no injected failure; n: the n-th sync from now fails.
    fail_sync_in: AtomicU64,
}

impl Durability {
    /// Fails with [`Error::Poisoned`] once the engine is poisoned.
    pub(crate) fn check(&self) -> Result<(), Error> {
        match self.poisoned.get() {
            Some(why) => Err(Error::Poisoned(why.clone())),
            None => Ok(()),
        }
    }

    /// Turns a write-path error into an [`Error`], poisoning the engine on I/O failure.
    pub(crate) fn write_result<T>(&self, r: Result<T, SegError>) -> Result<T, Error> {
        r.map_err(|e| {
            if let SegError::Io(..) = e {
                let msg = e.to_string();
                tracing::error!(error = %msg, "segment engine poisoned: no further writes are accepted");
                let _ = self.poisoned.set(msg);
            }
            e.into()
        })
    }

    /// Makes the sync after the next `skip` ones fail as if fsync had returned
    /// EIO (fault tests).
    pub(crate) fn inject_sync_failure_after(&self, skip: u64) {
        self.fail_sync_in.store(skip + 1, Ordering::SeqCst);
    }

    fn injected(&self, what: &str) -> Result<(), SegError> {
        let due = self
            .fail_sync_in
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok_and(|n| n == 1);
        if due {
            return Err(SegError::Io(
                what.to_string(),
                std::io::Error::other("injected fsync failure"),
            ));
        }
        Ok(())
    }

    /// `fdatasync` of a file, or the injected failure.
    pub(crate) fn sync_file(&self, f: &File, what: impl Fn() -> String) -> Result<(), SegError> {
        self.injected(&what())?;
        f.sync_data().map_err(|e| SegError::Io(what(), e))
    }

    /// `msync` of a mapped range, or the injected failure.
    pub(crate) fn sync_map(
        &self,
        map: &memmap2::MmapMut,
        offset: usize,
        len: usize,
        what: impl Fn() -> String,
    ) -> Result<(), SegError> {
        self.injected(&what())?;
        map.flush_range(offset, len)
            .map_err(|e| SegError::Io(what(), e))
    }
}

/// `fsync` of a directory, so that created, renamed and deleted entries are durable.
pub(crate) fn sync_dir(dir: &std::path::Path) -> Result<(), SegError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| SegError::Io(format!("syncing directory {}", dir.display()), e))
}
