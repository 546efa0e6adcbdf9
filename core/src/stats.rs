//! What the core counts for operators (README "Metrics and health"), recorded
//! through the [`metrics`] facade: the binary installs a recorder (the
//! Prometheus exporter); without one every handle is a no-op.
//!
//! Handles are taken once, when a group's driver or the Raft writer starts, and
//! updated with atomics, so recording costs no lookup and no lock on the hot
//! path. Labels are few and bounded: a group's kind (`metadata`, `partition`,
//! `coordinator`) and the engine's name.

use std::time::Duration;

use metrics::{Counter, Histogram, counter, histogram};

/// The counters of one Raft group's driver, shared by every group of its kind.
pub(crate) struct GroupCounters {
    /// Times the leader this replica knows of changed to another node.
    pub(crate) leader_changes: Counter,
    /// Proposals raft-rs dropped (a leadership transfer under way, or too much
    /// uncommitted).
    pub(crate) proposals_dropped: Counter,
    /// Snapshots this replica sent as leader, and installed as follower.
    pub(crate) snapshots_sent: Counter,
    /// See `snapshots_sent`.
    pub(crate) snapshots_installed: Counter,
    /// Bytes of Raft entries appended to the engine's log.
    pub(crate) append_bytes: Counter,
}

impl GroupCounters {
    /// The handles for groups of `kind`.
    pub(crate) fn new(kind: &'static str) -> GroupCounters {
        GroupCounters {
            leader_changes: counter!("weir_raft_leader_changes_total", "kind" => kind),
            proposals_dropped: counter!("weir_raft_proposals_dropped_total", "kind" => kind),
            snapshots_sent: counter!("weir_raft_snapshots_sent_total", "kind" => kind),
            snapshots_installed: counter!("weir_raft_snapshots_installed_total", "kind" => kind),
            append_bytes: counter!("weir_storage_append_bytes_total", "kind" => kind),
        }
    }
}

/// The Raft writer's sync (the group commit's fsync) count and latency.
pub(crate) struct SyncMetrics {
    syncs: Counter,
    duration: Histogram,
}

impl SyncMetrics {
    /// The handles for `engine`'s syncs.
    pub(crate) fn new(engine: &'static str) -> SyncMetrics {
        SyncMetrics {
            syncs: counter!("weir_storage_syncs_total", "engine" => engine),
            duration: histogram!("weir_storage_sync_duration_seconds", "engine" => engine),
        }
    }

    /// Records one sync that took `took`.
    pub(crate) fn record(&self, took: Duration) {
        self.syncs.increment(1);
        self.duration.record(took.as_secs_f64());
    }
}

/// Counts a compaction of a group's Raft log (entries up to a checkpointed
/// state forgotten); not on the hot path.
pub(crate) fn raft_log_compacted(kind: &'static str) {
    counter!("weir_raft_log_compactions_total", "kind" => kind).increment(1);
}

/// Counts what a cleaner pass did to one compacted partition.
pub(crate) fn cleaned(units: u64, records: u64, bytes_reclaimed: u64) {
    counter!("weir_cleaner_units_rewritten_total").increment(units);
    counter!("weir_cleaner_records_removed_total").increment(records);
    counter!("weir_cleaner_bytes_reclaimed_total").increment(bytes_reclaimed);
}

/// Makes every counter above exist (at 0) from the start, so that dashboards
/// and alerts see a series before the first event. Call after installing a
/// recorder.
pub fn register(engine: &'static str) {
    for kind in ["metadata", "partition", "coordinator"] {
        let _ = GroupCounters::new(kind);
        counter!("weir_raft_log_compactions_total", "kind" => kind).increment(0);
    }
    let _ = SyncMetrics::new(engine);
    cleaned(0, 0, 0);
}
