//! The cluster suite: in-process clusters of 1, 3 and 5 nodes over
//! the in-memory network, for any engine.
//!
//! An engine opts in with a [`ClusterHarness`] (usually [`DirEngines`] over its
//! `open`) and [`run`]; every case is a trial named `cluster_*`, so
//! `cargo test cluster` selects them all.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use rand::{Rng, SeedableRng, rngs::StdRng};
use weir_core::batch::{self, BatchHeader};
use weir_core::{Acks, Appended, Engine, Error, GroupId, Node, NodeConfig, NodeId, Role};

use crate::engine::produced_batch;
use crate::net::{Faults, FaultyTransport, MemNet, NetHarness};
use crate::{CaseResult, Outcome, ensure, ensure_eq};

mod cases;
mod compaction;
mod faults;
mod fixture;
mod membership;
mod reassign;
mod recovery;
mod retention;
mod snapshots;

pub use cases::*;
pub use compaction::*;
pub use faults::*;
pub use fixture::*;
pub use membership::*;
pub use reassign::*;
pub use recovery::*;
pub use retention::*;
pub use snapshots::*;

/// How the cluster suite makes and restarts each node's engine.
pub trait ClusterHarness: Send + Sync + 'static {
    /// Keeps a node's storage alive.
    type Guard: Send + Sync;

    /// A fresh engine for node `id`.
    ///
    /// # Errors
    /// When the engine cannot be created.
    fn create(&self, id: NodeId) -> anyhow::Result<(Self::Guard, Arc<dyn Engine>)>;

    /// The engine of a restarted node. `engine` is the stopped node's engine; the
    /// cluster holds no other reference to it. A restart must keep exactly what was
    /// synced (it may be a simulated power loss).
    ///
    /// # Errors
    /// When reopening fails.
    fn restart(
        &self,
        guard: &Self::Guard,
        engine: Arc<dyn Engine>,
    ) -> anyhow::Result<Arc<dyn Engine>>;
}

/// The memory engine for cluster tests: a restart keeps only what was synced, like
/// a power loss.
#[derive(Default)]
pub struct MemoryEngines;

impl ClusterHarness for MemoryEngines {
    type Guard = parking_lot::Mutex<Arc<weir_core::memory::MemoryEngine>>;

    fn create(&self, _id: NodeId) -> anyhow::Result<(Self::Guard, Arc<dyn Engine>)> {
        Ok(create_memory(weir_core::memory::MemoryEngine::new()))
    }

    fn restart(
        &self,
        guard: &Self::Guard,
        _engine: Arc<dyn Engine>,
    ) -> anyhow::Result<Arc<dyn Engine>> {
        Ok(restart_memory(guard))
    }
}

/// A memory engine and the guard that keeps it for [`restart_memory`].
pub(super) fn create_memory(
    e: weir_core::memory::MemoryEngine,
) -> (
    parking_lot::Mutex<Arc<weir_core::memory::MemoryEngine>>,
    Arc<dyn Engine>,
) {
    let e = Arc::new(e);
    (parking_lot::Mutex::new(e.clone()), e)
}

/// A power loss for a memory engine: its successor holds what it made durable.
pub(super) fn restart_memory(
    guard: &parking_lot::Mutex<Arc<weir_core::memory::MemoryEngine>>,
) -> Arc<dyn Engine> {
    let mut g = guard.lock();
    let next = Arc::new(g.restart());
    *g = next.clone();
    next
}

/// Engines that keep their data in a directory: each node gets a temporary
/// directory, and a restart closes the engine and opens the same directory again.
/// The function opens an engine over a directory (creating it, or opening what a
/// previous engine left): the same one an engine hands the engine suite's
/// [`DirHarness`](crate::engine::DirHarness).
pub struct DirEngines<E>(pub fn(&std::path::Path) -> weir_core::Result<E>);

impl<E: Engine> ClusterHarness for DirEngines<E> {
    type Guard = tempfile::TempDir;

    fn create(&self, _id: NodeId) -> anyhow::Result<(Self::Guard, Arc<dyn Engine>)> {
        let dir = tempfile::tempdir()?;
        let e: Arc<dyn Engine> = Arc::new((self.0)(dir.path())?);
        Ok((dir, e))
    }

    fn restart(
        &self,
        guard: &Self::Guard,
        engine: Arc<dyn Engine>,
    ) -> anyhow::Result<Arc<dyn Engine>> {
        ensure!(
            Arc::strong_count(&engine) == 1,
            "the stopped node still holds its engine ({} references)",
            Arc::strong_count(&engine)
        );
        drop(engine);
        Ok(Arc::new((self.0)(guard.path())?))
    }
}

/// One trial per case named, each with a fresh harness and network from the
/// factories, on its own tokio runtime.
macro_rules! cluster_trials {
    ($h:ident, $n:ident; $($case:ident),* $(,)?) => {
        cluster_trials!($h, $n, Ok(()); $($case),*)
    };
    ($h:ident, $n:ident, $applies:expr; $($case:ident),* $(,)?) => {
        vec![$({
            let (h, n) = ($h.clone(), $n.clone());
            crate::suite::trial(stringify!($case), $applies, move || {
                block_on($case(Arc::new(h()), Arc::new(n())))
            })
        }),*]
    };
}

/// Every case of the cluster suite as a trial. Each case gets a fresh harness from
/// `harness` and a fresh network from `net` (a network hands out ports, so cases
/// must not share one).
pub fn trials<H, N>(
    harness: impl Fn() -> H + Send + Sync + 'static,
    net: impl Fn() -> N + Send + Sync + 'static,
) -> Vec<crate::suite::Trial>
where
    H: ClusterHarness,
    N: NetHarness,
{
    let (h, n) = (Arc::new(harness), Arc::new(net));
    let mut trials = cluster_trials!(h, n;
        cluster_single_node_produce_and_fetch,
        cluster_three_nodes_replicate_identically,
        cluster_produce_to_follower_names_the_leader,
        cluster_isolated_leader_fails_over,
        cluster_restarted_follower_catches_up,
        cluster_full_restart_keeps_acknowledged_batches,
        cluster_raft_logs_are_compacted,
        cluster_five_nodes_many_partitions,
        cluster_topic_delete_and_recreate,
        cluster_leader_epochs_end_where_the_next_begins,
        cluster_lost_partition_log_is_refused_until_the_loss_is_accepted,
        cluster_randomized_churn,
        cluster_retention_trims_every_replica_alike,
        cluster_delete_records_moves_the_low_watermark,
        cluster_metadata_snapshot_brings_back_a_lagging_node,
        cluster_metadata_voters_grow_and_shrink_under_load,
    );
    // Partition snapshots, for engines that install them.
    let installs = harness_caps(&*h).map_or(Err("the harness cannot create an engine"), |c| {
        if c.snapshot_install {
            Ok(())
        } else {
            Err("needs snapshot_install")
        }
    });
    trials.extend(cluster_trials!(h, n, installs;
        cluster_lagging_replica_catches_up_by_snapshot,
        cluster_interrupted_snapshot_download_completes,
        // A new replica starts from a snapshot of the partition.
        cluster_partition_replicas_move_under_load,
        cluster_dead_node_is_replaced,
    ));
    // Compacted topics, for engines that clean logs.
    let compacts = harness_caps(&*h).map_or(Err("the harness cannot create an engine"), |c| {
        if c.key_compaction {
            Ok(())
        } else {
            Err("needs key_compaction")
        }
    });
    trials.extend(cluster_trials!(h, n, compacts;
        cluster_compacted_topic_keeps_the_latest_per_key,
    ));
    trials
}

/// The capabilities of the engines `harness` makes.
fn harness_caps<H: ClusterHarness>(
    harness: &dyn Fn() -> H,
) -> anyhow::Result<weir_core::Capabilities> {
    let (_guard, engine) = harness().create(1)?;
    Ok(engine.capabilities())
}

/// Runs the cluster suite as a test binary's `main` (its target has
/// `harness = false`), over the in-memory network.
pub fn run<H: ClusterHarness>(harness: impl Fn() -> H + Send + Sync + 'static) -> ! {
    crate::suite::run(trials(harness, MemNet::default))
}

/// Runs a case on a fresh two-worker tokio runtime.
///
/// # Panics
/// When the runtime cannot be built.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("building a tokio runtime for a cluster case")
        .block_on(f)
}

/// Raft tick used by the suite: elections take 100–200 ms.
pub const TICK: Duration = Duration::from_millis(10);
/// The longest (randomised) election timeout: 20 ticks.
pub(super) const ELECTION: Duration = Duration::from_millis(10 * 20);
pub(super) const WAIT: Duration = Duration::from_secs(20);
