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
fn create_memory(
    e: weir_core::memory::MemoryEngine,
) -> (
    parking_lot::Mutex<Arc<weir_core::memory::MemoryEngine>>,
    Arc<dyn Engine>,
) {
    let e = Arc::new(e);
    (parking_lot::Mutex::new(e.clone()), e)
}

/// A power loss for a memory engine: its successor holds what it made durable.
fn restart_memory(
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
        vec![$({
            let (h, n) = ($h.clone(), $n.clone());
            crate::suite::trial(stringify!($case), Ok(()), move || {
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
    cluster_trials!(h, n;
        cluster_single_node_produce_and_fetch,
        cluster_three_nodes_replicate_identically,
        cluster_produce_to_follower_names_the_leader,
        cluster_isolated_leader_fails_over,
        cluster_restarted_follower_catches_up,
        cluster_full_restart_keeps_acknowledged_batches,
        cluster_raft_logs_are_compacted,
        cluster_five_nodes_many_partitions,
        cluster_topic_delete_and_recreate,
        cluster_randomized_churn,
    )
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
const ELECTION: Duration = Duration::from_millis(10 * 20);
const WAIT: Duration = Duration::from_secs(20);

/// An in-process cluster over a network ([`NetHarness`]).
pub struct Cluster<H: ClusterHarness, N: NetHarness> {
    h: Arc<H>,
    net: Arc<N>,
    /// Faults applied to every node's sends.
    pub net_faults: Faults,
    ids: Vec<NodeId>,
    nodes: BTreeMap<NodeId, Node>,
    stops: BTreeMap<NodeId, Box<dyn FnOnce() + Send>>,
    engines: BTreeMap<NodeId, Arc<dyn Engine>>,
    guards: BTreeMap<NodeId, H::Guard>,
}

fn config(id: NodeId, ids: &[NodeId]) -> NodeConfig {
    let mut c = NodeConfig::new(id, ids.to_vec(), format!("127.0.0.1:{}", 9000 + id));
    c.tick = TICK;
    c.flush_interval = Duration::from_millis(50);
    // Compact often, so that every case also runs over compacted Raft logs.
    c.compact_bytes = 1024;
    c.compact_interval = Duration::from_millis(100);
    c
}

impl<H: ClusterHarness, N: NetHarness> Cluster<H, N> {
    /// Starts `n` nodes (ids 1..=n) and waits for a metadata leader and every broker
    /// to be registered.
    ///
    /// # Errors
    /// When a node cannot start or the cluster does not settle in time.
    pub async fn start(h: Arc<H>, net: Arc<N>, n: u64, seed: u64) -> anyhow::Result<Self> {
        let ids: Vec<NodeId> = (1..=n).collect();
        let mut c = Cluster {
            h,
            net,
            net_faults: Faults::new(seed),
            ids: ids.clone(),
            nodes: BTreeMap::new(),
            stops: BTreeMap::new(),
            engines: BTreeMap::new(),
            guards: BTreeMap::new(),
        };
        for &id in &ids {
            let (guard, engine) = c.h.create(id)?;
            c.guards.insert(id, guard);
            c.launch(id, engine)?;
        }
        c.wait_for(WAIT, "every broker registered", |c| {
            c.nodes
                .values()
                .all(|n| n.metadata().brokers.len() == ids.len())
        })
        .await?;
        Ok(c)
    }

    fn launch(&mut self, id: NodeId, engine: Arc<dyn Engine>) -> anyhow::Result<()> {
        let ep = self.net.endpoint(id, &self.ids)?;
        let transport = Arc::new(FaultyTransport::new(
            id,
            ep.transport,
            self.net_faults.clone(),
        ));
        let node = Node::start(config(id, &self.ids), engine.clone(), transport)?;
        (ep.register)(node.inbound());
        self.stops.insert(id, ep.stop);
        self.nodes.insert(id, node);
        self.engines.insert(id, engine);
        Ok(())
    }

    /// A running node.
    ///
    /// # Panics
    /// When `id` is not running.
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[&id]
    }

    /// A node's engine (also of a stopped node).
    pub fn engine(&self, id: NodeId) -> &Arc<dyn Engine> {
        &self.engines[&id]
    }

    /// Ids of running nodes.
    pub fn running(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    /// Stops a node (like a crash: the engine keeps only what was synced once restarted).
    pub async fn stop(&mut self, id: NodeId) {
        if let Some(n) = self.nodes.remove(&id) {
            if let Some(stop) = self.stops.remove(&id) {
                stop();
            }
            n.shutdown().await;
        }
    }

    /// Restarts a stopped node on its (reopened) engine.
    ///
    /// # Errors
    /// When the engine cannot be reopened or the node cannot start.
    pub async fn restart(&mut self, id: NodeId) -> anyhow::Result<()> {
        self.stop(id).await;
        let old = self.engines.remove(&id).context("no engine")?;
        let engine = self.h.restart(&self.guards[&id], old)?;
        self.launch(id, engine)
    }

    /// Stops every node.
    pub async fn shutdown(mut self) {
        for id in self.running() {
            self.stop(id).await;
        }
    }

    /// Polls `cond` every tick until it holds.
    ///
    /// # Errors
    /// When it does not hold within `timeout`, or a node hit a fatal error.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        what: &str,
        cond: impl Fn(&Self) -> bool,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            for n in self.nodes.values() {
                if let Some(e) = n.fatal_error() {
                    bail!("node {} failed: {e}", n.id());
                }
            }
            if cond(self) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("timed out after {timeout:?} waiting for {what}");
            }
            tokio::time::sleep(TICK).await;
        }
    }

    /// Creates a topic through node `via`.
    ///
    /// # Errors
    /// When it is not created in time.
    pub async fn create_topic(
        &self,
        via: NodeId,
        name: &str,
        partitions: i32,
        rf: usize,
    ) -> anyhow::Result<()> {
        self.node(via)
            .create_topic(name, partitions, rf, BTreeMap::new(), WAIT)
            .await?;
        Ok(())
    }

    /// The partition's group.
    ///
    /// # Errors
    /// When no running node knows the partition.
    pub fn group(&self, topic: &str, partition: i32) -> anyhow::Result<GroupId> {
        self.nodes
            .values()
            .find_map(|n| n.metadata().partition(topic, partition).map(|p| p.group))
            .context("unknown partition")
    }

    /// The running node that leads `group`, once one leads it with every running
    /// replica agreeing.
    ///
    /// # Errors
    /// When there is no such leader in time.
    pub async fn leader(&self, group: GroupId) -> anyhow::Result<NodeId> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let leaders: Vec<NodeId> = self
                .nodes
                .values()
                .filter(|n| {
                    n.group_status(group)
                        .is_some_and(|s| s.role == Role::Leader)
                })
                .map(Node::id)
                .collect();
            if let [l] = leaders[..] {
                return Ok(l);
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("no single leader for {group} (leaders: {leaders:?})");
            }
            tokio::time::sleep(TICK).await;
        }
    }

    /// Produces `batch` with acks=all, following leader hints and retrying
    /// NOT_LEADER answers until `timeout`.
    ///
    /// # Errors
    /// The last error when it never succeeds.
    pub async fn produce(
        &self,
        topic: &str,
        partition: i32,
        batch: &[u8],
        timeout: Duration,
    ) -> anyhow::Result<Appended> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut target = *self.nodes.keys().next().context("no node running")?;
        loop {
            let node = self
                .nodes
                .get(&target)
                .or_else(|| self.nodes.values().next())
                .context("no node")?;
            let r = node
                .produce(topic, partition, batch, Acks::All, Duration::from_secs(2))
                .await;
            match r {
                Ok(Some(a)) => return Ok(a),
                Ok(None) => bail!("acks=all returned no offsets"),
                Err(e) if tokio::time::Instant::now() >= deadline => return Err(e.into()),
                Err(Error::NotLeader { hint, .. }) => {
                    target = match hint {
                        Some(h) if self.nodes.contains_key(&h.node) && h.node != target => h.node,
                        _ => self.next_node(target),
                    };
                    tokio::time::sleep(TICK).await;
                }
                Err(Error::NotFound(_)) | Err(Error::Timeout(_)) | Err(Error::Shutdown) => {
                    target = self.next_node(target);
                    tokio::time::sleep(TICK).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn next_node(&self, after: NodeId) -> NodeId {
        self.nodes
            .keys()
            .copied()
            .find(|&id| id > after)
            .or_else(|| self.nodes.keys().copied().next())
            .unwrap_or(after)
    }

    /// Waits until every running replica of `group` has applied the same log, and
    /// returns it (every batch, from offset 0).
    ///
    /// # Errors
    /// When replicas do not converge in time, or differ.
    pub async fn converged_log(
        &self,
        group: GroupId,
        replicas: &[NodeId],
    ) -> anyhow::Result<Vec<Vec<u8>>> {
        let running: Vec<NodeId> = replicas
            .iter()
            .copied()
            .filter(|r| self.nodes.contains_key(r))
            .collect();
        self.wait_for(WAIT, "replicas to apply the same log", |c| {
            let states: Vec<_> = running
                .iter()
                .map(|r| c.engines[r].log_state(group).ok())
                .collect();
            states.windows(2).all(|w| w[0] == w[1])
                && running.iter().all(|r| {
                    c.nodes[r]
                        .group_status(group)
                        .is_some_and(|s| s.commit == s.applied && s.commit > 0)
                })
        })
        .await?;
        let mut logs = Vec::new();
        for r in &running {
            logs.push((*r, read_all(self.engines[r].as_ref(), group)?));
        }
        for w in logs.windows(2) {
            ensure!(
                w[0].1 == w[1].1,
                "replicas {} and {} differ",
                w[0].0,
                w[1].0
            );
        }
        Ok(logs.into_iter().next().map(|(_, l)| l).unwrap_or_default())
    }

    /// Replicas of a partition.
    ///
    /// # Errors
    /// When unknown.
    pub fn replicas(&self, topic: &str, partition: i32) -> anyhow::Result<Vec<NodeId>> {
        self.nodes
            .values()
            .find_map(|n| {
                n.metadata()
                    .partition(topic, partition)
                    .map(|p| p.replicas.clone())
            })
            .context("unknown partition")
    }
}

/// Every batch of a partition log from its start.
///
/// # Errors
/// Read errors.
pub fn read_all(e: &dyn Engine, group: GroupId) -> anyhow::Result<Vec<Vec<u8>>> {
    let st = e.log_state(group)?;
    let mut at = st.start_offset;
    let mut out = Vec::new();
    while at < st.next_offset {
        let bytes = e.log_read(group, at, 1 << 20)?;
        ensure!(!bytes.is_empty(), "empty read at {at}");
        for b in batch::iter_batches(&bytes) {
            let (h, one) = b?;
            out.push(one.to_vec());
            at = h.last_offset() + 1;
        }
    }
    Ok(out)
}

/// The value tag [`produced_batch`] wrote as the first record's 8-byte key.
fn value_of(batch: &[u8]) -> anyhow::Result<u64> {
    fn varint(b: &[u8], at: &mut usize) -> anyhow::Result<i64> {
        let (mut v, mut shift) = (0u64, 0);
        loop {
            let byte = *b.get(*at).context("truncated varint")?;
            *at += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(((v >> 1) as i64) ^ -((v & 1) as i64));
            }
            shift += 7;
            ensure!(shift < 64, "varint too long");
        }
    }
    BatchHeader::parse(batch)?;
    let mut at = batch::HEADER_LEN;
    varint(batch, &mut at)?; // record length
    at += 1; // attributes
    varint(batch, &mut at)?; // timestamp delta
    varint(batch, &mut at)?; // offset delta
    ensure_eq!(varint(batch, &mut at)?, 8, "key length of the first record");
    let key = batch.get(at..at + 8).context("batch too short for a key")?;
    Ok(u64::from_be_bytes(key.try_into()?))
}

/// Checks that every acknowledged (value, offset) is in `log` exactly once, at its
/// acknowledged offset.
fn check_acknowledged(log: &[Vec<u8>], acked: &HashMap<u64, i64>) -> anyhow::Result<()> {
    let mut seen: HashMap<u64, Vec<i64>> = HashMap::new();
    for b in log {
        let h = BatchHeader::parse(b)?;
        seen.entry(value_of(b)?).or_default().push(h.base_offset);
    }
    for (v, off) in acked {
        let at = seen
            .get(v)
            .with_context(|| format!("acknowledged value {v} (offset {off}) is missing"))?;
        ensure_eq!(
            at.as_slice(),
            [*off].as_slice(),
            "offsets holding acknowledged value {v}"
        );
    }
    for (v, at) in &seen {
        ensure!(
            at.len() == 1,
            "value {v} stored {} times at {at:?}",
            at.len()
        );
    }
    Ok(())
}

// ------------------------------------------------------------------ cases

/// One node: create a topic, produce, fetch back, list offsets.
pub async fn cluster_single_node_produce_and_fetch<H: ClusterHarness, N: NetHarness>(
    h: Arc<H>,
    net: Arc<N>,
) -> CaseResult {
    let c = Cluster::start(h, net, 1, 1).await?;
    c.create_topic(1, "t", 2, 1).await?;
    let g = c.group("t", 1)?;
    c.leader(g).await?;
    let mut acked = HashMap::new();
    for v in 0..20u64 {
        let a = c
            .produce("t", 1, &produced_batch(3, 1000 + v as i64, v, 50), WAIT)
            .await?;
        ensure_eq!(a.base_offset, 3 * v as i64, "offsets are consecutive");
        acked.insert(v, a.base_offset);
    }
    let n = c.node(1);
    let f = n.fetch("t", 1, 0, 1 << 20, Duration::ZERO, 1).await?;
    ensure_eq!(f.high_watermark, 60, "high watermark");
    ensure_eq!(
        batch::iter_batches(&f.records).count(),
        20,
        "batches fetched"
    );
    let f = n
        .fetch("t", 1, 60, 1 << 20, Duration::from_millis(50), 1)
        .await?;
    ensure!(
        f.records.is_empty(),
        "fetch at the end is empty after max_wait"
    );
    ensure!(
        matches!(
            n.fetch("t", 1, 61, 100, Duration::ZERO, 1).await,
            Err(Error::OutOfRange { .. })
        ),
        "past the end"
    );
    ensure_eq!(
        n.list_offset("t", 1, weir_core::OffsetSpec::Earliest)?,
        Some(0),
        "earliest"
    );
    ensure_eq!(
        n.list_offset("t", 1, weir_core::OffsetSpec::Latest)?,
        Some(60),
        "latest"
    );
    // Batch v holds records stamped 1000+v ..= 1002+v: 1005 is first reached by batch 3.
    ensure_eq!(
        n.list_offset("t", 1, weir_core::OffsetSpec::Timestamp(1005))?,
        Some(9),
        "by timestamp"
    );
    ensure!(
        matches!(
            n.produce("nope", 0, &produced_batch(1, 0, 0, 1), Acks::All, WAIT)
                .await,
            Err(Error::NotFound(_))
        ),
        "unknown topic"
    );
    let mut bad = produced_batch(1, 0, 0, 10);
    let len = bad.len();
    bad[len - 1] ^= 1;
    ensure!(
        n.produce("t", 0, &bad, Acks::All, WAIT).await.is_err(),
        "corrupt batch rejected"
    );
    check_acknowledged(&c.converged_log(g, &[1]).await?, &acked)?;
    // A long poll wakes up when data arrives.
    let waiter = {
        let n = n.clone();
        tokio::spawn(async move {
            n.fetch("t", 0, 0, 1 << 20, Duration::from_secs(10), 1)
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    c.produce("t", 0, &produced_batch(1, 0, 99, 10), WAIT)
        .await?;
    let f = tokio::time::timeout(Duration::from_secs(5), waiter).await???;
    ensure_eq!(
        batch::iter_batches(&f.records).count(),
        1,
        "long poll returned the new batch"
    );
    c.shutdown().await;
    Ok(Outcome::Passed)
}

/// Three nodes: a batch produced to the leader is on every replica at the same offset.
pub async fn cluster_three_nodes_replicate_identically<H: ClusterHarness, N: NetHarness>(
    h: Arc<H>,
    net: Arc<N>,
) -> CaseResult {
    let c = Cluster::start(h, net, 3, 2).await?;
    c.create_topic(2, "r", 1, 3).await?;
    let g = c.group("r", 0)?;
    c.leader(g).await?;
    let mut acked = HashMap::new();
    for v in 0..50u64 {
        let a = c
            .produce("r", 0, &produced_batch(2, 0, v, 100), WAIT)
            .await?;
        acked.insert(v, a.base_offset);
    }
    let log = c.converged_log(g, &[1, 2, 3]).await?;
    ensure_eq!(log.len(), 50, "batches on every replica");
    check_acknowledged(&log, &acked)?;
    c.shutdown().await;
    Ok(Outcome::Passed)
}

/// A follower answers NOT_LEADER naming the actual leader.
pub async fn cluster_produce_to_follower_names_the_leader<H: ClusterHarness, N: NetHarness>(
    h: Arc<H>,
    net: Arc<N>,
) -> CaseResult {
    let c = Cluster::start(h, net, 3, 3).await?;
    c.create_topic(1, "f", 1, 3).await?;
    let g = c.group("f", 0)?;
    let leader = c.leader(g).await?;
    c.wait_for(WAIT, "followers to know the leader", |c| {
        c.running().iter().all(|&id| {
            c.node(id)
                .group_status(g)
                .is_some_and(|s| s.leader == leader)
        })
    })
    .await?;
    for id in c.running() {
        if id == leader {
            continue;
        }
        match c
            .node(id)
            .produce("f", 0, &produced_batch(1, 0, 1, 10), Acks::All, WAIT)
            .await
        {
            Err(Error::NotLeader {
                hint: Some(hint), ..
            }) => ensure_eq!(hint.node, leader, "hint from node {id}"),
            other => {
                bail!("produce to follower {id}: expected NotLeader with a hint, got {other:?}")
            }
        }
        ensure!(
            matches!(
                c.node(id).fetch("f", 0, 0, 100, Duration::ZERO, 1).await,
                Err(Error::NotLeader { .. })
            ),
            "fetch from a follower"
        );
    }
    c.shutdown().await;
    Ok(Outcome::Passed)
}

/// The leader is cut off: a new leader is elected within 10 election timeouts, the
/// old leader's unacknowledged writes never become visible, producers move on.
pub async fn cluster_isolated_leader_fails_over<H: ClusterHarness, N: NetHarness>(
    h: Arc<H>,
    net: Arc<N>,
) -> CaseResult {
    let c = Cluster::start(h, net, 3, 4).await?;
    c.create_topic(1, "i", 1, 3).await?;
    let g = c.group("i", 0)?;
    let old = c.leader(g).await?;
    let mut acked = HashMap::new();
    for v in 0..10u64 {
        acked.insert(
            v,
            c.produce("i", 0, &produced_batch(1, 0, v, 10), WAIT)
                .await?
                .base_offset,
        );
    }
    c.net_faults.isolate(old, &c.running());
    // Writes to the isolated leader cannot commit.
    let stranded = c
        .node(old)
        .produce(
            "i",
            0,
            &produced_batch(1, 0, 1000, 10),
            Acks::All,
            Duration::from_millis(300),
        )
        .await;
    ensure!(
        stranded.is_err(),
        "an isolated leader acknowledged a write: {stranded:?}"
    );
    let others: Vec<NodeId> = c.running().into_iter().filter(|&id| id != old).collect();
    c.wait_for(ELECTION * 10, "a new leader among the others", |c| {
        others.iter().any(|&id| {
            c.node(id)
                .group_status(g)
                .is_some_and(|s| s.role == Role::Leader)
        })
    })
    .await?;
    for v in 10..20u64 {
        let a = produce_on(&c, &others, "i", 0, &produced_batch(1, 0, v, 10)).await?;
        acked.insert(v, a.base_offset);
    }
    c.net_faults.heal();
    let log = c.converged_log(g, &[1, 2, 3]).await?;
    check_acknowledged(&log, &acked)?;
    ensure!(
        log.iter().all(|b| value_of(b).is_ok_and(|v| v != 1000)),
        "the stranded write became visible"
    );
    c.shutdown().await;
    Ok(Outcome::Passed)
}

async fn produce_on<H: ClusterHarness, N: NetHarness>(
    c: &Cluster<H, N>,
    nodes: &[NodeId],
    topic: &str,
    p: i32,
    b: &[u8],
) -> anyhow::Result<Appended> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        for &id in nodes {
            if let Ok(Some(a)) = c
                .node(id)
                .produce(topic, p, b, Acks::All, Duration::from_secs(2))
                .await
            {
                return Ok(a);
            }
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("no node among {nodes:?} accepted the write");
        }
        tokio::time::sleep(TICK).await;
    }
}

/// A follower that was down catches up with what was written meanwhile.
pub async fn cluster_restarted_follower_catches_up<H: ClusterHarness, N: NetHarness>(
    h: Arc<H>,
    net: Arc<N>,
) -> CaseResult {
    let mut c = Cluster::start(h, net, 3, 5).await?;
    c.create_topic(1, "c", 1, 3).await?;
    let g = c.group("c", 0)?;
    let leader = c.leader(g).await?;
    let follower = c
        .running()
        .into_iter()
        .find(|&id| id != leader)
        .context("no follower")?;
    let mut acked = HashMap::new();
    for v in 0..10u64 {
        acked.insert(
            v,
            c.produce("c", 0, &produced_batch(1, 0, v, 10), WAIT)
                .await?
                .base_offset,
        );
    }
    c.stop(follower).await;
    for v in 10..40u64 {
        acked.insert(
            v,
            c.produce("c", 0, &produced_batch(1, 0, v, 200), WAIT)
                .await?
                .base_offset,
        );
    }
    c.restart(follower).await?;
    let log = c.converged_log(g, &[1, 2, 3]).await?;
    ensure_eq!(log.len(), 40, "batches after catch-up");
    check_acknowledged(&log, &acked)?;
    c.shutdown().await;
    Ok(Outcome::Passed)
}

/// Every node stops and restarts: every acknowledged batch is still there, at its
/// acknowledged offset, on every replica; and the cluster keeps working.
pub async fn cluster_full_restart_keeps_acknowledged_batches<H: ClusterHarness, N: NetHarness>(
    h: Arc<H>,
    net: Arc<N>,
) -> CaseResult {
    let mut c = Cluster::start(h, net, 3, 6).await?;
    c.create_topic(1, "p", 2, 3).await?;
    let mut acked: [HashMap<u64, i64>; 2] = [HashMap::new(), HashMap::new()];
    for v in 0..30u64 {
        let p = (v % 2) as i32;
        let a = c
            .produce("p", p, &produced_batch(1, 0, v, 30), WAIT)
            .await?;
        acked[p as usize].insert(v, a.base_offset);
    }
    for id in c.running() {
        c.stop(id).await;
    }
    for id in [1, 2, 3] {
        c.restart(id).await?;
    }
    // Metadata comes back once a new leader of group 0 commits its log again (the
    // commit index is not synced on its own).
    c.wait_for(WAIT, "metadata after the restart", |c| {
        c.group("p", 1).is_ok()
    })
    .await?;
    for p in 0..2 {
        let g = c.group("p", p)?;
        c.leader(g).await?;
        let v = 100 + p as u64;
        let a = c
            .produce("p", p, &produced_batch(1, 0, v, 30), WAIT)
            .await?;
        acked[p as usize].insert(v, a.base_offset);
        check_acknowledged(&c.converged_log(g, &[1, 2, 3]).await?, &acked[p as usize])?;
    }
    c.shutdown().await;
    Ok(Outcome::Passed)
}

/// Raft logs are compacted on every replica once their partition logs are durable,
/// never past what a stopped replica has; a compacted cluster restarts with every
/// acknowledged batch, and the stopped replica catches up from the log that was kept.
pub async fn cluster_raft_logs_are_compacted<H: ClusterHarness, N: NetHarness>(
    h: Arc<H>,
    net: Arc<N>,
) -> CaseResult {
    let mut c = Cluster::start(h, net, 3, 9).await?;
    c.create_topic(1, "k", 1, 3).await?;
    let g = c.group("k", 0)?;
    let leader = c.leader(g).await?;
    let mut acked = HashMap::new();
    for v in 0..40u64 {
        let a = c
            .produce("k", 0, &produced_batch(1, 0, v, 200), WAIT)
            .await?;
        acked.insert(v, a.base_offset);
    }
    // Once the partition is idle, every produce entry goes (flushes and compaction
    // proposals also run on timers): what remains are compaction commands and
    // elections' empty entries.
    c.wait_for(WAIT, "every produce entry compacted away", |c| {
        c.running().iter().all(|&id| {
            let e = c.engine(id);
            let (Ok(first), Ok(last)) = (e.raft_first_index(g), e.raft_last_index(g)) else {
                return false;
            };
            first > 40
                && e.raft_entries(g, first, last + 1, None).is_ok_and(|v| {
                    v.iter()
                        .all(|x| x.data.first() != Some(&weir_core::entry::TAG_PRODUCE))
                })
        })
    })
    .await?;
    for id in c.running() {
        let e = c.engine(id);
        let first = e.raft_first_index(g)?;
        let applied = e.log_state(g)?.applied_index;
        ensure!(
            first - 1 <= applied,
            "node {id}: Raft log compacted through {} beyond the applied index {applied}",
            first - 1
        );
    }
    // A stopped follower holds compaction back at what it has.
    let follower = c
        .running()
        .into_iter()
        .find(|&id| id != leader)
        .context("no follower")?;
    c.stop(follower).await;
    let has = c.engine(follower).raft_last_index(g)?;
    for v in 40..80u64 {
        let a = c
            .produce("k", 0, &produced_batch(1, 0, v, 200), WAIT)
            .await?;
        acked.insert(v, a.base_offset);
    }
    // Give compaction time to run (it must not reach past `has`).
    tokio::time::sleep(Duration::from_millis(400)).await;
    for id in c.running() {
        let first = c.engine(id).raft_first_index(g)?;
        ensure!(
            first <= has + 1,
            "node {id} compacted through {} past the stopped replica's last index {has}",
            first - 1
        );
    }
    c.restart(follower).await?;
    for id in c.running() {
        if id != follower {
            c.restart(id).await?;
        }
    }
    c.wait_for(WAIT, "metadata after the restart", |c| {
        c.group("k", 0).is_ok()
    })
    .await?;
    c.leader(g).await?;
    let a = c
        .produce("k", 0, &produced_batch(1, 0, 100, 200), WAIT)
        .await?;
    acked.insert(100, a.base_offset);
    let log = c.converged_log(g, &[1, 2, 3]).await?;
    ensure_eq!(log.len(), 81, "batches after the restart");
    check_acknowledged(&log, &acked)?;
    c.shutdown().await;
    Ok(Outcome::Passed)
}

/// A power loss under acknowledged writes, judged by the fault tests' history checker:
/// 3 nodes, a topic of 2 partitions with 3 replicas; `values` writes (acks=all) are
/// recorded, then every node stops at once and restarts from what its engine holds
/// as durable, and a drain reads every partition back from its leader.
///
/// A correct engine gives a valid report. An engine whose sync does nothing (see
/// [`NoSyncMemoryEngines`]) loses acknowledged writes here, which is how the
/// checker is shown to catch a node that acknowledges data its disk does not hold.
///
/// # Errors
/// When the cluster cannot be started or produced to before the power loss.
pub async fn power_loss_history<H: ClusterHarness, N: NetHarness>(
    h: Arc<H>,
    net: Arc<N>,
    values: u64,
) -> anyhow::Result<crate::history::Report> {
    use crate::history::{History, Outcome as W, Read, Write};
    let mut c = Cluster::start(h, net, 3, 11).await?;
    c.create_topic(1, "pl", 2, 3).await?;
    let mut history = History {
        drain: 1,
        ..History::default()
    };
    for v in 0..values {
        let p = (v % 2) as i32;
        let outcome = match c.produce("pl", p, &produced_batch(1, 0, v, 30), WAIT).await {
            Ok(a) => W::Ok {
                partition: p,
                offset: a.base_offset,
            },
            Err(_) => W::TimedOut,
        };
        history.writes.push(Write { value: v, outcome });
    }
    for id in c.running() {
        c.stop(id).await;
    }
    for id in [1, 2, 3] {
        c.restart(id).await?;
    }
    // The drain: whatever the cluster serves once it is back. A topic that did not
    // survive drains nothing.
    let known = c
        .wait_for(WAIT, "the topic after the power loss", |c| {
            c.group("pl", 1).is_ok()
        })
        .await
        .is_ok();
    if known {
        for p in 0..2 {
            let g = c.group("pl", p)?;
            c.leader(g).await?;
            let log = c.converged_log(g, &[1, 2, 3]).await?;
            for b in &log {
                let h = BatchHeader::parse(b)?;
                history.reads.push(Read {
                    consumer: history.drain,
                    partition: p,
                    offset: h.base_offset,
                    value: value_of(b)?,
                });
            }
        }
    }
    c.shutdown().await;
    Ok(crate::history::check(&history))
}

/// Memory engines whose sync does nothing, as on a disk with its write cache on and
/// no barriers: a restart (power loss) keeps nothing written since the engine was
/// created. **Negative controls only.**
#[derive(Default)]
pub struct NoSyncMemoryEngines;

impl ClusterHarness for NoSyncMemoryEngines {
    type Guard = parking_lot::Mutex<Arc<weir_core::memory::MemoryEngine>>;

    fn create(&self, _id: NodeId) -> anyhow::Result<(Self::Guard, Arc<dyn Engine>)> {
        Ok(create_memory(
            weir_core::memory::MemoryEngine::unsafe_without_sync(),
        ))
    }

    fn restart(
        &self,
        guard: &Self::Guard,
        _engine: Arc<dyn Engine>,
    ) -> anyhow::Result<Arc<dyn Engine>> {
        Ok(restart_memory(guard))
    }
}

/// Five nodes, a topic of 6 partitions with 3 replicas each: all elect and replicate.
pub async fn cluster_five_nodes_many_partitions<H: ClusterHarness, N: NetHarness>(
    h: Arc<H>,
    net: Arc<N>,
) -> CaseResult {
    let c = Cluster::start(h, net, 5, 7).await?;
    c.create_topic(3, "m", 6, 3).await?;
    for p in 0..6 {
        let g = c.group("m", p)?;
        c.leader(g).await?;
        let mut acked = HashMap::new();
        for v in 0..5u64 {
            acked.insert(
                v,
                c.produce("m", p, &produced_batch(1, 0, v, 20), WAIT)
                    .await?
                    .base_offset,
            );
        }
        let replicas = c.replicas("m", p)?;
        ensure_eq!(replicas.len(), 3, "replicas of partition {p}");
        check_acknowledged(&c.converged_log(g, &replicas).await?, &acked)?;
    }
    c.shutdown().await;
    Ok(Outcome::Passed)
}

/// Deleting a topic stops and removes its replicas; a new topic of the same name
/// starts empty.
pub async fn cluster_topic_delete_and_recreate<H: ClusterHarness, N: NetHarness>(
    h: Arc<H>,
    net: Arc<N>,
) -> CaseResult {
    let c = Cluster::start(h, net, 3, 8).await?;
    c.create_topic(1, "d", 1, 3).await?;
    let g = c.group("d", 0)?;
    c.produce("d", 0, &produced_batch(1, 0, 1, 10), WAIT)
        .await?;
    c.node(2).delete_topic("d", WAIT).await?;
    c.wait_for(WAIT, "replicas removed", |c| {
        c.running()
            .iter()
            .all(|&id| !c.node(id).hosted_groups().contains(&g))
    })
    .await?;
    ensure!(
        matches!(
            c.node(1)
                .create_topic("d", 1, 4, BTreeMap::new(), WAIT)
                .await,
            Err(Error::Invalid(_))
        ),
        "replication factor above the broker count"
    );
    c.create_topic(3, "d", 1, 3).await?;
    let g2 = c.group("d", 0)?;
    ensure!(g2 != g, "a new topic gets a new group");
    let a = c
        .produce("d", 0, &produced_batch(1, 0, 2, 10), WAIT)
        .await?;
    ensure_eq!(a.base_offset, 0, "the new topic starts empty");
    ensure!(
        matches!(
            c.node(1)
                .create_topic("d", 1, 3, BTreeMap::new(), WAIT)
                .await,
            Err(Error::AlreadyExists(_))
        ),
        "exists"
    );
    c.shutdown().await;
    Ok(Outcome::Passed)
}

/// Seeded churn under continuous produce: leader transfers, isolations, message loss
/// and restarts. At the end all replicas hold byte-identical logs and every
/// acknowledged batch is there exactly once, at the offset it was acknowledged with.
pub async fn cluster_randomized_churn<H: ClusterHarness, N: NetHarness>(
    h: Arc<H>,
    net: Arc<N>,
) -> CaseResult {
    let report = churn(h, net, 3, 0xC0FFEE, Budget::Steps(40)).await?;
    eprintln!("{report}");
    Ok(Outcome::Passed)
}

/// How long a churn run goes on.
#[derive(Clone, Copy, Debug)]
pub enum Budget {
    /// A fixed number of fault steps (deterministic choice of faults).
    Steps(usize),
    /// Fault steps until this much time has passed.
    Time(Duration),
}

/// What a churn run saw. A run that returns a report passed every check: no
/// acknowledged batch lost or moved, no value stored twice, replicas identical.
#[derive(Clone, Debug, Default)]
pub struct ChurnReport {
    /// The seed, to reproduce the fault sequence.
    pub seed: u64,
    /// Fault steps taken.
    pub steps: usize,
    /// Batches acknowledged (acks=all) and verified at their offsets at the end.
    pub acknowledged: usize,
    /// Produce attempts that failed or timed out (allowed under faults).
    pub failed_attempts: usize,
    /// Leader transfers requested.
    pub transfers: usize,
    /// Node restarts.
    pub restarts: usize,
    /// Isolations of a node.
    pub isolations: usize,
    /// Elections won, from the final terms of the partition groups.
    pub leader_terms: u64,
    /// Acknowledged batches missing or at another offset (always 0 in a report).
    pub lost: usize,
    /// Replicas whose logs differ (always 0 in a report).
    pub divergent: usize,
}

impl std::fmt::Display for ChurnReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "churn seed {:#x}: {} steps, {} acknowledged, {} failed attempts, {} transfers, {} restarts, {} isolations, {} leader terms, lost {}, divergent {}",
            self.seed,
            self.steps,
            self.acknowledged,
            self.failed_attempts,
            self.transfers,
            self.restarts,
            self.isolations,
            self.leader_terms,
            self.lost,
            self.divergent
        )
    }
}

/// The churn scenario on `n` nodes (also run by the soak command).
///
/// # Errors
/// The first violated check: a lost or moved acknowledged batch, a duplicate,
/// diverging replicas, or a cluster that does not recover after healing.
pub async fn churn<H: ClusterHarness, N: NetHarness>(
    h: Arc<H>,
    net: Arc<N>,
    n: u64,
    seed: u64,
    budget: Budget,
) -> anyhow::Result<ChurnReport> {
    let mut c = Cluster::start(h, net, n, seed).await?;
    c.create_topic(1, "churn", 2, n.min(3) as usize).await?;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut acked: [HashMap<u64, i64>; 2] = [HashMap::new(), HashMap::new()];
    let mut report = ChurnReport {
        seed,
        ..ChurnReport::default()
    };
    let mut next_value = 0u64;
    let started = tokio::time::Instant::now();
    loop {
        match budget {
            Budget::Steps(s) if report.steps >= s => break,
            Budget::Time(d) if started.elapsed() >= d => break,
            _ => {}
        }
        let step = report.steps;
        report.steps += 1;
        let p = rng.gen_range(0..2);
        let g = c.group("churn", p)?;
        match rng.gen_range(0..6) {
            0 => {
                if let Some(l) = c.running().into_iter().find(|&id| {
                    c.node(id)
                        .group_status(g)
                        .is_some_and(|s| s.role == Role::Leader)
                }) {
                    let to = c.ids[rng.gen_range(0..c.ids.len())];
                    c.node(l).transfer_leader(g, to);
                    report.transfers += 1;
                }
            }
            1 => {
                let victim = c.ids[rng.gen_range(0..c.ids.len())];
                c.net_faults.isolate(victim, &c.ids.clone());
                report.isolations += 1;
            }
            2 => c.net_faults.set_loss(rng.gen_range(0.0..0.3)),
            3 => {
                let victim = c.ids[rng.gen_range(0..c.ids.len())];
                c.restart(victim).await?;
                report.restarts += 1;
            }
            _ => {
                c.net_faults.heal();
                c.net_faults.set_loss(0.0);
            }
        }
        // Produce a few unique values; each attempt uses a fresh value, so a value
        // is stored at most once unless weir duplicates it.
        for _ in 0..3 {
            let v = next_value;
            next_value += 1;
            match c
                .produce(
                    "churn",
                    p,
                    &produced_batch(1, step as i64, v, 40),
                    Duration::from_millis(800),
                )
                .await
            {
                Ok(a) => {
                    acked[p as usize].insert(v, a.base_offset);
                }
                Err(_) => report.failed_attempts += 1,
            }
        }
    }
    c.net_faults.heal();
    c.net_faults.set_loss(0.0);
    for p in 0..2 {
        let g = c.group("churn", p)?;
        let leader = c.leader(g).await?;
        let v = next_value;
        next_value += 1;
        acked[p as usize].insert(
            v,
            c.produce("churn", p, &produced_batch(1, 0, v, 40), WAIT)
                .await?
                .base_offset,
        );
        let replicas = c.replicas("churn", p)?;
        let log = c
            .converged_log(g, &replicas)
            .await
            .with_context(|| format!("partition {p}"))?;
        check_acknowledged(&log, &acked[p as usize]).with_context(|| format!("partition {p}"))?;
        report.leader_terms += c.node(leader).group_status(g).map_or(0, |s| s.term);
    }
    report.acknowledged = acked[0].len() + acked[1].len();
    c.shutdown().await;
    Ok(report)
}
