//! Poisoning and sync fault injection, shared by the WAL and the partition logs.
//!
//! After any failed write or sync the engine is poisoned: it refuses every later
//! write and sync with [`Error::Poisoned`], because the state on disk is no longer
//! known (DESIGN.md §3 rule 6). A failed fsync is never retried.

use std::fs::File;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use weir_core::Error;

use crate::error::SegError;

/// Shared by every part of one engine.
#[derive(Debug, Default)]
pub(crate) struct Durability {
    poisoned: OnceLock<String>,
    fail_next_sync: AtomicBool,
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

    /// Makes the next sync fail as if fsync had returned EIO (fault tests).
    pub(crate) fn inject_sync_failure(&self) {
        self.fail_next_sync.store(true, Ordering::SeqCst);
    }

    fn injected(&self, what: &str) -> Result<(), SegError> {
        if self.fail_next_sync.swap(false, Ordering::SeqCst) {
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
