//! Threads that `fdatasync` partition logs during a group commit, kept from one
//! sync to the next. A group commit syncs the WAL on the writer's thread and the
//! partition logs that got batches on these, all at once; starting a thread per
//! sync instead cost 50–80 µs at the median (up to ~0.2 ms at p99) on a 2-core VM,
//! on every low-load produce.

use std::fs::File;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;

use parking_lot::Mutex;

use crate::durability::Durability;
use crate::error::SegError;

/// Most threads one sync uses for partition logs.
pub(crate) const SYNC_THREADS: usize = 8;

/// Some partition logs to sync, and where to say how it went.
struct Job {
    files: Vec<Arc<File>>,
    done: mpsc::Sender<Result<(), SegError>>,
}

/// The pool: up to [`SYNC_THREADS`] threads, started as syncs first need them;
/// they end when the pool is dropped.
pub(crate) struct SyncPool {
    durability: Arc<Durability>,
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    queue: Arc<Mutex<mpsc::Receiver<Job>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl SyncPool {
    /// A pool with no thread yet.
    pub(crate) fn new(durability: Arc<Durability>) -> SyncPool {
        let (tx, rx) = mpsc::channel();
        SyncPool {
            durability,
            jobs: Mutex::new(Some(tx)),
            queue: Arc::new(Mutex::new(rx)),
            threads: Mutex::new(Vec::new()),
        }
    }

    /// Syncs `files` on the pool's threads (at most [`SYNC_THREADS`] at once)
    /// while `alongside` runs on this one; the first error of any of them.
    pub(crate) fn sync_with(
        &self,
        files: Vec<Arc<File>>,
        alongside: impl FnOnce() -> Result<(), SegError>,
    ) -> Result<(), SegError> {
        if files.is_empty() {
            return alongside();
        }
        let per_thread = files.len().div_ceil(SYNC_THREADS);
        let chunks: Vec<Vec<Arc<File>>> = files.chunks(per_thread).map(<[_]>::to_vec).collect();
        self.ensure_threads(chunks.len());
        let (done, results) = mpsc::channel();
        let mut inline = Vec::new();
        {
            let jobs = self.jobs.lock();
            for files in chunks {
                let job = Job {
                    files,
                    done: done.clone(),
                };
                let unsent = match jobs.as_ref() {
                    Some(tx) => tx.send(job).err().map(|mpsc::SendError(job)| job),
                    None => Some(job),
                };
                // No thread left to take it (none could be started): here.
                if let Some(job) = unsent {
                    inline.push(job.files);
                }
            }
        }
        drop(done);
        let mut result = alongside();
        for files in inline {
            result = result.and(sync_files(&files, &self.durability));
        }
        // Every job sends once; a thread that died with its job drops the sender.
        for r in results.iter() {
            result = result.and(r);
        }
        result
    }

    /// Starts threads until there are `n` (at most [`SYNC_THREADS`]).
    fn ensure_threads(&self, n: usize) {
        let mut threads = self.threads.lock();
        while threads.len() < n.min(SYNC_THREADS) {
            let queue = self.queue.clone();
            let durability = self.durability.clone();
            let spawned = std::thread::Builder::new()
                .name("weir-segment-sync".into())
                .spawn(move || worker(&queue, &durability));
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    // The jobs go to the threads there are, or are run inline.
                    tracing::warn!(error = %e, "could not start a partition-log sync thread");
                    break;
                }
            }
        }
    }
}

impl std::fmt::Debug for SyncPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncPool")
            .field("threads", &self.threads.lock().len())
            .finish()
    }
}

impl Drop for SyncPool {
    fn drop(&mut self) {
        self.jobs.lock().take();
        for t in self.threads.lock().drain(..) {
            let _ = t.join();
        }
    }
}

fn worker(queue: &Mutex<mpsc::Receiver<Job>>, durability: &Durability) {
    loop {
        let job = queue.lock().recv();
        let Ok(job) = job else { return };
        let _ = job.done.send(sync_files(&job.files, durability));
    }
}

fn sync_files(files: &[Arc<File>], durability: &Durability) -> Result<(), SegError> {
    files
        .iter()
        .try_for_each(|f| durability.sync_file(f, || "syncing a partition log".to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syncs_every_file_on_the_pool_and_reports_the_first_failure() {
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<Arc<File>> = (0..24)
            .map(|i| Arc::new(File::create(dir.path().join(format!("f{i}"))).unwrap()))
            .collect();
        let durability = Arc::new(Durability::default());
        let pool = SyncPool::new(durability.clone());
        for _ in 0..3 {
            let mut ran = false;
            pool.sync_with(files.clone(), || {
                ran = true;
                Ok(())
            })
            .unwrap();
            assert!(ran);
        }
        // 24 files: eight jobs of three, one per thread.
        assert_eq!(pool.threads.lock().len(), SYNC_THREADS);
        // An injected fsync failure in one of the pool's syncs is reported.
        durability.inject_sync_failure_after(5);
        let r = pool.sync_with(files.clone(), || Ok(()));
        assert!(matches!(r, Err(SegError::Io(..))), "{r:?}");
        // Dropping the pool ends its threads.
        drop(pool);
    }
}
