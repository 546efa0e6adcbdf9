//! The cluster suite over the RocksDB engine; a restart reopens the data directory.

use std::sync::Arc;

use weir_conformance::cluster::DirEngines;
use weir_core::Engine;

fn open(dir: &std::path::Path) -> weir_core::Result<Arc<dyn Engine>> {
    let config = weir_engine_rocksdb::Config {
        block_cache_bytes: 8 << 20,
        write_buffer_bytes: 4 << 20,
        background_jobs: 1,
    };
    Ok(Arc::new(weir_engine_rocksdb::open(dir, &config)?))
}

weir_conformance::cluster_suite!(DirEngines(open));
