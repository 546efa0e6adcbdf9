//! The churn soak: the cluster suite's churn scenario (leader transfers, isolations,
//! message loss, restarts under continuous acks=all produce) on 3 in-process nodes
//! with the segment engine, for a given time, then the full end-of-run checks.
//!
//! ```text
//! cargo run --release -p weir-engine-segment --example soak -- [MINUTES] [SEED]
//! ```
//!
//! Prints one report line; exits non-zero when a check fails (lost or moved
//! acknowledged batches, duplicates, diverging replicas).

#![allow(missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use weir_conformance::cluster::{Budget, ClusterHarness, block_on, churn};
use weir_conformance::net::MemNet;
use weir_core::{Engine, NodeId};
use weir_engine_segment::{Config, SegmentEngine};

struct Segment;

impl ClusterHarness for Segment {
    type Guard = tempfile::TempDir;

    fn create(&self, _id: NodeId) -> anyhow::Result<(Self::Guard, Arc<dyn Engine>)> {
        let dir = tempfile::tempdir()?;
        let e = SegmentEngine::open(dir.path(), Config::default())?;
        Ok((dir, Arc::new(e)))
    }

    fn restart(
        &self,
        guard: &Self::Guard,
        engine: Arc<dyn Engine>,
    ) -> anyhow::Result<Arc<dyn Engine>> {
        drop(engine);
        Ok(Arc::new(SegmentEngine::open(
            guard.path(),
            Config::default(),
        )?))
    }
}

static PANICS: AtomicUsize = AtomicUsize::new(0);

fn main() -> anyhow::Result<()> {
    // A panic inside a tokio task would otherwise only end that task: count them.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        default_hook(info);
    }));
    let mut args = std::env::args().skip(1);
    let minutes: f64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(10.0);
    let seed: u64 = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(0x5EED);
    let budget = Budget::Time(Duration::from_secs_f64(minutes * 60.0));
    let report = block_on(churn(
        Arc::new(Segment),
        Arc::new(MemNet::default()),
        3,
        seed,
        budget,
    ));
    let panics = PANICS.load(Ordering::SeqCst);
    let report = report?;
    println!("{report}");
    println!(
        "panics {panics}, lost {}, divergent {}",
        report.lost, report.divergent
    );
    anyhow::ensure!(panics == 0, "{panics} panics during the run");
    Ok(())
}
