//! The cluster suite over the redb engine; a restart reopens the data directory.

use std::sync::Arc;

use weir_conformance::cluster::DirEngines;
use weir_core::Engine;

fn open(dir: &std::path::Path) -> weir_core::Result<Arc<dyn Engine>> {
    let config = weir_engine_redb::Config {
        cache_bytes: 16 << 20,
    };
    Ok(Arc::new(weir_engine_redb::open(dir, &config)?))
}

weir_conformance::cluster_suite!(DirEngines(open));
