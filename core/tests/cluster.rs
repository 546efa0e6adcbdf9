//! The cluster suite over the in-memory engine. A restart keeps only what the
//! engine had synced, like a power loss.

use std::sync::Arc;

use parking_lot::Mutex;
use weir_conformance::cluster::ClusterHarness;
use weir_core::memory::MemoryEngine;
use weir_core::{Engine, NodeId};

struct Memory;

impl ClusterHarness for Memory {
    type Guard = Mutex<Arc<MemoryEngine>>;

    fn create(&self, _id: NodeId) -> anyhow::Result<(Self::Guard, Arc<dyn Engine>)> {
        let e = Arc::new(MemoryEngine::new());
        Ok((Mutex::new(e.clone()), e))
    }

    fn restart(
        &self,
        guard: &Self::Guard,
        _engine: Arc<dyn Engine>,
    ) -> anyhow::Result<Arc<dyn Engine>> {
        let mut g = guard.lock();
        let next = Arc::new(g.restart());
        *g = next.clone();
        Ok(next)
    }
}

weir_conformance::cluster_suite!(Memory);
