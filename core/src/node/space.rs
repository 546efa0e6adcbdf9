//! The node's disk space (DESIGN.md §10, issue 15 item 5): a full disk is an
//! error code, never an exit.
//!
//! Two things refuse produce with [`Error::StorageFull`] (Kafka's
//! KAFKA_STORAGE_ERROR, which clients retry): the free-space floor
//! (`min_free_bytes`), checked before a batch is proposed so that the Raft log's
//! own records (hard states, elections, compactions) still have room, and any
//! group waiting out a full disk — a write that hit ENOSPC anyway (followers
//! replicate whatever their leader sends). Such a group keeps its Ready and
//! retries it until space is freed; see the driver.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use crate::engine::Engine;
use crate::error::{Error, Result};

/// How long a reading of the free space is reused while it is far above the
/// floor (a `statvfs` per produce request is cheap, but not free).
const FRESH_MS: u64 = 100;

/// "Far above the floor": more than this many bytes above it. Closer, every
/// check reads the free space afresh, since producers can write hundreds of
/// megabytes in [`FRESH_MS`].
const FAR_ABOVE: u64 = 1 << 30;

/// Free space and stalled groups, shared by the node and its group tasks.
pub(crate) struct Space {
    engine: Arc<dyn Engine>,
    min_free: u64,
    /// Groups whose Ready waits for space.
    stalled: AtomicUsize,
    epoch: Instant,
    /// When the free space was last read (ms since `epoch`, plus one; 0: never).
    read_at: AtomicU64,
    free: AtomicU64,
}

impl Space {
    pub(crate) fn new(engine: Arc<dyn Engine>, min_free: u64) -> Space {
        Space {
            engine,
            min_free,
            stalled: AtomicUsize::new(0),
            epoch: Instant::now(),
            read_at: AtomicU64::new(0),
            free: AtomicU64::new(u64::MAX),
        }
    }

    /// Whether a produce may be proposed now.
    ///
    /// # Errors
    /// [`Error::StorageFull`] while a group waits for space, or while the free
    /// space is below the floor.
    pub(crate) fn check_produce(&self) -> Result<()> {
        let stalled = self.stalled.load(Ordering::Relaxed);
        if stalled > 0 {
            return Err(Error::StorageFull(format!(
                "{stalled} Raft group(s) on this node wait for free space to write; produce resumes once space is freed"
            )));
        }
        if self.min_free == 0 {
            return Ok(());
        }
        let free = self.free_bytes();
        if free < self.min_free {
            return Err(Error::StorageFull(format!(
                "{free} bytes free on the data directory's file system, below min_free_bytes = {}; produce resumes once space is freed",
                self.min_free
            )));
        }
        Ok(())
    }

    /// The engine's free bytes: read afresh near the floor, else at most every
    /// [`FRESH_MS`].
    fn free_bytes(&self) -> u64 {
        let now = self.epoch.elapsed().as_millis() as u64 + 1;
        let at = self.read_at.load(Ordering::Relaxed);
        let last = self.free.load(Ordering::Relaxed);
        if at != 0
            && now.saturating_sub(at) < FRESH_MS
            && last.saturating_sub(self.min_free) > FAR_ABOVE
        {
            return last;
        }
        let free = self.engine.free_bytes().unwrap_or(u64::MAX);
        self.free.store(free, Ordering::Relaxed);
        self.read_at.store(now, Ordering::Relaxed);
        free
    }

    /// Counts a group as waiting for space until the guard is dropped.
    pub(crate) fn stall(self: &Arc<Self>) -> Stalled {
        self.stalled.fetch_add(1, Ordering::Relaxed);
        Stalled(self.clone())
    }
}

/// A group waiting for space; see [`Space::stall`].
pub(crate) struct Stalled(Arc<Space>);

impl Drop for Stalled {
    fn drop(&mut self) {
        self.0.stalled.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryEngine;

    #[test]
    fn a_stalled_group_refuses_produce_until_it_is_dropped() {
        let space = Arc::new(Space::new(Arc::new(MemoryEngine::new()), 0));
        assert!(space.check_produce().is_ok());
        let stalled = space.stall();
        let e = space.check_produce().unwrap_err();
        assert!(matches!(e, Error::StorageFull(_)), "{e}");
        drop(stalled);
        assert!(space.check_produce().is_ok());
    }
}
