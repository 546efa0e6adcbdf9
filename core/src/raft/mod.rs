//! Driving TiKV's `raft` crate: one task per group, async-ready persistence through a
//! group-commit writer. See [`driver`] for the rules it keeps.

pub mod driver;
pub(crate) mod fatal;
pub(crate) mod logger;
pub(crate) mod storage;
pub(crate) mod writer;

/// Runs engine calls that may wait for the disk (an fsync, a file roll, a storage
/// engine's write lock) without holding up the other tasks of a multi-threaded
/// runtime: `block_in_place` first hands this worker's queue to another thread, so
/// the Kafka listener and the other groups keep running. The calling task still
/// waits, so one group's engine calls stay in order. On a current-thread runtime
/// (unit tests) the call simply runs.
pub(crate) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}
