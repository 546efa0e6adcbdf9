//! Named crash points for process tests (cargo feature `crash-points`): a
//! process started with `WEIR_CRASH_AT=NAME` aborts — as `kill -9` would stop
//! it — when it reaches the point `NAME`, so that a test can stop a node at an
//! exact step of a multi-step change (a snapshot install) and check what a
//! restart makes of it. Without the feature every point does nothing.
//!
//! Points: `install-marked`, `install-renamed` (the segment engine's swap of a
//! staged log, docs/snapshots.md), `install-before-raft-reset` (a partition
//! log installed, the Raft log not yet reset to the snapshot).

/// Aborts the process if it was started with `WEIR_CRASH_AT=name` (feature
/// `crash-points` only).
#[inline]
pub fn crash_point(name: &str) {
    #[cfg(feature = "crash-points")]
    if std::env::var("WEIR_CRASH_AT").is_ok_and(|v| v == name) {
        eprintln!("weir: crash point {name} reached (WEIR_CRASH_AT): aborting");
        std::process::abort();
    }
    #[cfg(not(feature = "crash-points"))]
    let _ = name;
}
