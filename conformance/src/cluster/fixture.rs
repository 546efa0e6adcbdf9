//! The in-process cluster the cases drive, and the checks they share.

use super::*;

/// An in-process cluster over a network ([`NetHarness`]).
pub struct Cluster<H: ClusterHarness, N: NetHarness> {
    pub(super) h: Arc<H>,
    net: Arc<N>,
    /// Faults applied to every node's sends.
    pub net_faults: Faults,
    pub(super) ids: Vec<NodeId>,
    /// The metadata group's voters at the first start; other ids join later.
    pub(super) voters: Vec<NodeId>,
    nodes: BTreeMap<NodeId, Node>,
    stops: BTreeMap<NodeId, Box<dyn FnOnce() + Send>>,
    engines: BTreeMap<NodeId, Arc<dyn Engine>>,
    pub(super) guards: BTreeMap<NodeId, H::Guard>,
}

pub(super) fn config(id: NodeId, ids: &[NodeId]) -> NodeConfig {
    let mut c = NodeConfig::new(id, ids.to_vec(), format!("127.0.0.1:{}", 9000 + id));
    c.tick = TICK;
    c.flush_interval = Duration::from_millis(50);
    // Compact often, so that every case also runs over compacted Raft logs.
    c.compact_bytes = 1024;
    c.compact_interval = Duration::from_millis(100);
    // The cases produce records stamped near time 0, which Kafka's default
    // retention (7 days) would delete at its first check: retention cases set
    // their own.
    c.retention = None;
    // Checkpoint and compact the metadata log often, so that every case also
    // runs over a compacted one (and restarts load its checkpoint).
    c.metadata_checkpoint_entries = 20;
    c.metadata_keep_entries = 10;
    // Partition logs past 256 KiB stop waiting for a replica that is behind
    // (engines that install snapshots send it one).
    c.raft_log_max_bytes = 256 << 10;
    c
}

impl<H: ClusterHarness, N: NetHarness> Cluster<H, N> {
    /// Starts `n` nodes (ids 1..=n) and waits for a metadata leader and every broker
    /// to be registered.
    ///
    /// # Errors
    /// When a node cannot start or the cluster does not settle in time.
    pub async fn start(h: Arc<H>, net: Arc<N>, n: u64, seed: u64) -> anyhow::Result<Self> {
        Cluster::start_with_spares(h, net, n, 0, seed).await
    }

    /// Like [`Cluster::start`], with `spares` more ids (n+1..) that the
    /// network knows and that join later ([`Cluster::join`]).
    ///
    /// # Errors
    /// As [`Cluster::start`].
    pub async fn start_with_spares(
        h: Arc<H>,
        net: Arc<N>,
        n: u64,
        spares: u64,
        seed: u64,
    ) -> anyhow::Result<Self> {
        let voters: Vec<NodeId> = (1..=n).collect();
        let ids: Vec<NodeId> = (1..=n + spares).collect();
        let mut c = Cluster {
            h,
            net,
            net_faults: Faults::new(seed),
            ids: ids.clone(),
            voters: voters.clone(),
            nodes: BTreeMap::new(),
            stops: BTreeMap::new(),
            engines: BTreeMap::new(),
            guards: BTreeMap::new(),
        };
        for &id in &voters {
            let (guard, engine) = c.h.create(id)?;
            c.guards.insert(id, guard);
            c.launch(id, engine)?;
        }
        c.wait_for(WAIT, "every broker registered", |c| {
            c.nodes
                .values()
                .all(|n| n.metadata().brokers.len() == voters.len())
        })
        .await?;
        Ok(c)
    }

    pub(super) fn launch(&mut self, id: NodeId, engine: Arc<dyn Engine>) -> anyhow::Result<()> {
        let ep = self.net.endpoint(id, &self.ids)?;
        let transport = Arc::new(FaultyTransport::new(
            id,
            ep.transport,
            self.net_faults.clone(),
        ));
        // A node that was not a first voter starts empty and waits to be added.
        let voters: &[NodeId] = if self.voters.contains(&id) {
            &self.voters
        } else {
            &[]
        };
        let node = Node::start(config(id, voters), engine.clone(), transport)?;
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

    /// A running node other than `leader` (a follower of a group it leads,
    /// when every node holds a replica).
    ///
    /// # Errors
    /// When no other node runs.
    pub fn follower_of(&self, leader: NodeId) -> anyhow::Result<NodeId> {
        self.running()
            .into_iter()
            .find(|&id| id != leader)
            .context("no follower")
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
        // Start from the node that leads the partition now, if one says so (a
        // tick is lost on every redirect).
        let leading = self.group(topic, partition).ok().and_then(|g| {
            self.nodes.values().find_map(|n| {
                n.group_status(g)
                    .is_some_and(|s| s.role == Role::Leader)
                    .then(|| n.id())
            })
        });
        let mut target = match leading {
            Some(id) => id,
            None => *self.nodes.keys().next().context("no node running")?,
        };
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

    pub(super) fn next_node(&self, after: NodeId) -> NodeId {
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
pub(super) fn value_of(batch: &[u8]) -> anyhow::Result<u64> {
    pub(super) fn varint(b: &[u8], at: &mut usize) -> anyhow::Result<i64> {
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
pub(super) fn check_acknowledged(log: &[Vec<u8>], acked: &HashMap<u64, i64>) -> anyhow::Result<()> {
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
