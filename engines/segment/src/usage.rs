//! What the segment engine reports for metrics ([`weir_core::Engine::usage`]).

use std::sync::Arc;

use parking_lot::Mutex;
use weir_core::GroupId;

use crate::SegmentEngine;
use crate::partition::Partition;

impl SegmentEngine {
    /// What the engine holds on disk ([`weir_core::Engine::usage`]): its WAL,
    /// and each partition's segments (their data, not their preallocated room).
    pub(crate) fn storage_usage(&self) -> weir_core::StorageUsage {
        let (files, wal_bytes) = self.wal.lock().usage();
        // Each partition is locked after the map's lock is released, as elsewhere.
        let mut partitions: Vec<(GroupId, Arc<Mutex<Partition>>)> = self
            .partitions
            .read()
            .iter()
            .map(|(g, p)| (*g, p.clone()))
            .collect();
        partitions.sort_unstable_by_key(|(g, _)| *g);
        let partition_bytes: Vec<(GroupId, u64)> = partitions
            .iter()
            .map(|(g, p)| (*g, p.lock().bytes()))
            .collect();
        let total = wal_bytes + partition_bytes.iter().map(|(_, b)| b).sum::<u64>();
        weir_core::StorageUsage {
            wal_files: Some(files),
            wal_bytes: Some(wal_bytes),
            partition_bytes,
            total_bytes: Some(total),
        }
    }
}
