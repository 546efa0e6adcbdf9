//! The cluster suite over the rocksdb engine; a restart reopens the data directory.

use std::sync::Arc;

use weir_conformance::cluster::ClusterHarness;
use weir_core::{Engine, NodeId};

struct Rocks;

fn open(dir: &std::path::Path) -> weir_core::Result<Arc<dyn Engine>> {
    Ok(Arc::new(weir_engine_rocksdb::open(
        dir,
        &weir_engine_rocksdb::Config {
            block_cache_bytes: 8 << 20,
            write_buffer_bytes: 4 << 20,
            background_jobs: 1,
        },
    )?))
}

impl ClusterHarness for Rocks {
    type Guard = tempfile::TempDir;

    fn create(&self, _id: NodeId) -> anyhow::Result<(Self::Guard, Arc<dyn Engine>)> {
        let dir = tempfile::tempdir()?;
        let e = open(dir.path())?;
        Ok((dir, e))
    }

    fn restart(
        &self,
        guard: &Self::Guard,
        engine: Arc<dyn Engine>,
    ) -> anyhow::Result<Arc<dyn Engine>> {
        anyhow::ensure!(
            Arc::strong_count(&engine) == 1,
            "the stopped node still holds its engine ({} references)",
            Arc::strong_count(&engine)
        );
        drop(engine);
        Ok(open(guard.path())?)
    }
}

weir_conformance::cluster_suite!(Rocks);
