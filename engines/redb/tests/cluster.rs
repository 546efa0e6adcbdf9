//! The cluster suite over the redb engine; a restart reopens the data directory.

use std::sync::Arc;

use weir_conformance::cluster::ClusterHarness;
use weir_core::{Engine, NodeId};

struct Redb;

fn open(dir: &std::path::Path) -> weir_core::Result<Arc<dyn Engine>> {
    Ok(Arc::new(weir_engine_redb::open(
        dir,
        &weir_engine_redb::Config {
            cache_bytes: 16 << 20,
        },
    )?))
}

impl ClusterHarness for Redb {
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

weir_conformance::cluster_suite!(Redb);
