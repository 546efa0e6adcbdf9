//! The cluster suite over the segment engine; a restart reopens the data directory.

use std::sync::Arc;

use weir_conformance::cluster::DirEngines;
use weir_core::Engine;
use weir_engine_segment::{Config, SegmentEngine};

fn open(dir: &std::path::Path) -> weir_core::Result<Arc<dyn Engine>> {
    let config = Config {
        segment_bytes: 256 << 10,
        index_interval_bytes: 1024,
        wal_file_bytes: 1 << 20,
    };
    Ok(Arc::new(SegmentEngine::open(dir, config)?))
}

weir_conformance::cluster_suite!(DirEngines(open));
