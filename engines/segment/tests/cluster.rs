//! The cluster suite over the segment engine; a restart reopens the data directory.

use std::sync::Arc;

use weir_conformance::cluster::ClusterHarness;
use weir_core::{Engine, NodeId};
use weir_engine_segment::{Config, SegmentEngine};

struct Segment;

fn config() -> Config {
    Config {
        segment_bytes: 256 << 10,
        index_interval_bytes: 1024,
        wal_file_bytes: 1 << 20,
    }
}

impl ClusterHarness for Segment {
    type Guard = tempfile::TempDir;

    fn create(&self, _id: NodeId) -> anyhow::Result<(Self::Guard, Arc<dyn Engine>)> {
        let dir = tempfile::tempdir()?;
        let e = SegmentEngine::open(dir.path(), config())?;
        Ok((dir, Arc::new(e)))
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
        Ok(Arc::new(SegmentEngine::open(guard.path(), config())?))
    }
}

weir_conformance::cluster_suite!(Segment);
