//! A weir node: hosts group 0 (metadata) and a Raft group for every partition replica
//! assigned to it, and offers the produce, fetch and admin pipelines (DESIGN.md §6).
//!
//! The node starts and stops partition groups as it applies metadata. Incoming Raft
//! messages are routed to groups by id; each group's task owns its `RawNode`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use raft::eraftpb::ConfState;
use raft::{RawNode, ReadOnlyOption};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::batch;
use crate::engine::{Appended, Engine};
use crate::error::{Error, LeaderHint, Result};
use crate::ids::{GroupId, NodeId, Offset};
use crate::metadata::{MetaCommand, Metadata, MetadataMachine, PartitionMeta};
use crate::partition::{Compaction, FlushPolicy, PartitionMachine, encode_produce};
use crate::raft::driver::{
    self, DriverParts, GroupHandle, GroupMsg, GroupStatus, Outcome, Role, StateMachine,
};
use crate::raft::fatal::Fatal;
use crate::raft::logger::logger;
use crate::raft::storage::EngineStorage;
use crate::raft::writer::Writer;
use crate::transport::{GroupMessage, Inbound, SharedTransport};

/// How a node runs.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// This node's id (from 1).
    pub id: NodeId,
    /// Every voter of the metadata group (a static cluster), this node included.
    pub voters: Vec<NodeId>,
    /// The Kafka address clients should use to reach this node.
    pub kafka_addr: String,
    /// The Raft tick.
    pub tick: Duration,
    /// Ticks without a leader before an election (randomised up to twice this).
    pub election_ticks: usize,
    /// Ticks between leader heartbeats.
    pub heartbeat_ticks: usize,
    /// Largest record batch a producer may send.
    pub max_batch_bytes: usize,
    /// Flush a partition log after this many bytes were applied…
    pub flush_bytes: u64,
    /// …or after this long.
    pub flush_interval: Duration,
    /// The leader of a partition proposes compacting the Raft log after this many
    /// bytes were flushed to the partition log since its last compaction…
    pub compact_bytes: u64,
    /// …or after this long. Compaction only reaches what every replica has and what
    /// is durable in the partition log, so a replica that is down holds it back.
    pub compact_interval: Duration,
    /// **For negative-control tests only.** Skips the leadership check of the
    /// produce pipeline and the driver, so that followers propose (raft-rs forwards
    /// the proposal) and track it by their own (index, term) — which is wrong. The
    /// fault tests turn it on to show that their checker notices. Never set it in
    /// production.
    pub unsafe_bypass_leader_check: bool,
}

impl NodeConfig {
    /// A configuration for node `id` of a static cluster of `voters`.
    pub fn new(id: NodeId, voters: Vec<NodeId>, kafka_addr: impl Into<String>) -> Self {
        NodeConfig {
            id,
            voters,
            kafka_addr: kafka_addr.into(),
            tick: Duration::from_millis(100),
            election_ticks: 10,
            heartbeat_ticks: 2,
            max_batch_bytes: 1 << 20,
            flush_bytes: 4 << 20,
            flush_interval: Duration::from_secs(1),
            compact_bytes: 16 << 20,
            compact_interval: Duration::from_secs(2),
            unsafe_bypass_leader_check: false,
        }
    }

    fn validate(&self) -> Result<()> {
        if self.id == 0 {
            return Err(Error::Config("node id must be at least 1".into()));
        }
        if !self.voters.contains(&self.id) {
            return Err(Error::Config(format!(
                "node {} is not among the voters {:?}",
                self.id, self.voters
            )));
        }
        if self.heartbeat_ticks == 0 || self.election_ticks <= self.heartbeat_ticks {
            return Err(Error::Config(
                "election_ticks must exceed heartbeat_ticks, which must be positive".into(),
            ));
        }
        Ok(())
    }
}

/// How many replicas must have a batch before a produce is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acks {
    /// Answer nothing; return once the leader accepted the proposal.
    None,
    /// Wait until the batch is committed and applied (Kafka acks=1 and acks=all).
    All,
}

/// What a fetch returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetched {
    /// Whole record batches (possibly empty, never null).
    pub records: Bytes,
    /// The partition's high watermark.
    pub high_watermark: Offset,
    /// The partition's log start offset.
    pub log_start_offset: Offset,
}

/// Which offset [`Node::list_offset`] looks up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The high watermark.
    Latest,
    /// The first batch with a record at or after this timestamp (ms).
    Timestamp(i64),
}

struct Hosted {
    handle: GroupHandle,
    task: JoinHandle<()>,
}

struct Inner {
    cfg: NodeConfig,
    engine: Arc<dyn Engine>,
    transport: SharedTransport,
    writer: Mutex<Option<Writer>>,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    fatal: Fatal,
    groups: RwLock<HashMap<GroupId, Hosted>>,
    meta: watch::Receiver<Arc<Metadata>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    data: Arc<watch::Sender<u64>>,
}

/// A running node; cheap to clone.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.inner.cfg.id)
            .finish_non_exhaustive()
    }
}

/// Routes what the transport receives into the node, without keeping it alive.
struct NodeInbound(Weak<Inner>);

impl Inbound for NodeInbound {
    fn deliver(&self, _from: NodeId, msgs: Vec<GroupMessage>) {
        if let Some(inner) = self.0.upgrade() {
            let groups = inner.groups.read();
            for m in msgs {
                if let Some(h) = groups.get(&m.group) {
                    let _ = h.handle.tx.send(GroupMsg::Step(m.msg));
                }
            }
        }
    }

    fn unreachable(&self, peer: NodeId) {
        if let Some(inner) = self.0.upgrade() {
            for h in inner.groups.read().values() {
                let _ = h.handle.tx.send(GroupMsg::Unreachable(peer));
            }
        }
    }
}

impl Node {
    /// Starts a node on the current tokio runtime: recovers group 0 from the engine
    /// (or bootstraps it from `cfg.voters`), then starts the partition groups that
    /// metadata assigns to it as metadata is applied.
    ///
    /// Register [`Node::inbound`] with the transport so that messages reach it.
    ///
    /// # Errors
    /// [`Error::Config`] for a bad configuration; engine errors while recovering.
    pub fn start(
        cfg: NodeConfig,
        engine: Arc<dyn Engine>,
        transport: SharedTransport,
    ) -> Result<Node> {
        cfg.validate()?;
        let fatal = Fatal::new();
        let (writer, writer_thread) =
            Writer::spawn(engine.clone(), transport.clone(), fatal.clone())
                .map_err(|e| Error::io("starting the Raft writer thread", e))?;
        let (machine, meta) = MetadataMachine::new();
        let inner = Arc::new(Inner {
            cfg,
            engine,
            transport,
            writer: Mutex::new(Some(writer)),
            writer_thread: Mutex::new(Some(writer_thread)),
            fatal,
            groups: RwLock::new(HashMap::new()),
            meta,
            tasks: Mutex::new(Vec::new()),
            data: Arc::new(watch::channel(0).0),
        });
        let voters = inner.cfg.voters.clone();
        inner.start_group(GroupId::METADATA, &voters, 0, machine)?;
        let node = Node { inner };
        let reconcile = tokio::spawn(reconcile(
            Arc::downgrade(&node.inner),
            node.inner.meta.clone(),
        ));
        let register = tokio::spawn(register(Arc::downgrade(&node.inner)));
        node.inner.tasks.lock().extend([reconcile, register]);
        Ok(node)
    }

    /// What the transport should deliver to.
    pub fn inbound(&self) -> Arc<dyn Inbound> {
        Arc::new(NodeInbound(Arc::downgrade(&self.inner)))
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.inner.cfg.id
    }

    /// The current metadata as this node has applied it.
    pub fn metadata(&self) -> Arc<Metadata> {
        self.inner.meta.borrow().clone()
    }

    /// A watch on metadata changes.
    pub fn watch_metadata(&self) -> watch::Receiver<Arc<Metadata>> {
        self.inner.meta.clone()
    }

    /// A counter bumped whenever any partition hosted here applies new batches: what
    /// long-polling fetches over several partitions wait on.
    pub fn data_signal(&self) -> watch::Receiver<u64> {
        self.inner.data.subscribe()
    }

    /// The status of a group hosted here.
    pub fn group_status(&self, group: GroupId) -> Option<GroupStatus> {
        self.inner
            .groups
            .read()
            .get(&group)
            .map(|h| h.handle.status.borrow().clone())
    }

    /// Groups hosted here, in ascending order.
    pub fn hosted_groups(&self) -> Vec<GroupId> {
        let mut v: Vec<_> = self.inner.groups.read().keys().copied().collect();
        v.sort();
        v
    }

    /// The error that stopped the node, if one did (a failed fsync, say).
    pub fn fatal_error(&self) -> Option<String> {
        self.inner.fatal.get()
    }

    /// Waits until the node hits a fatal error and returns it.
    pub async fn wait_fatal(&self) -> String {
        self.inner.fatal.wait().await
    }

    /// Asks the leader of `group` (if it is this node) to hand over to `to`.
    pub fn transfer_leader(&self, group: GroupId, to: NodeId) {
        if let Some(h) = self.inner.groups.read().get(&group) {
            let _ = h.handle.tx.send(GroupMsg::TransferLeader(to));
        }
    }

    /// Starts an election for `group` on this node.
    pub fn campaign(&self, group: GroupId) {
        if let Some(h) = self.inner.groups.read().get(&group) {
            let _ = h.handle.tx.send(GroupMsg::Campaign);
        }
    }

    /// Stops every group and the writer, and waits until nothing holds the engine.
    pub async fn shutdown(self) {
        // An aborted task may be mid-poll on another worker (reconcile could be
        // starting a group): wait until each has really ended before draining groups.
        let tasks: Vec<JoinHandle<()>> = self.inner.tasks.lock().drain(..).collect();
        for t in tasks {
            t.abort();
            let _ = t.await;
        }
        let hosted: Vec<Hosted> = self.inner.groups.write().drain().map(|(_, h)| h).collect();
        for h in hosted {
            let (tx, _rx) = oneshot::channel();
            let _ = h.handle.tx.send(GroupMsg::Stop(tx));
            let _ = h.task.await;
        }
        self.inner.writer.lock().take();
        let thread = self.inner.writer_thread.lock().take();
        if let Some(t) = thread {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }

    // ------------------------------------------------------------ pipelines

    fn locate(&self, topic: &str, partition: i32) -> Result<(PartitionMeta, GroupHandle)> {
        let meta = self.metadata();
        let p = meta
            .partition(topic, partition)
            .ok_or_else(|| Error::NotFound(format!("topic {topic} partition {partition}")))?
            .clone();
        let handle = self
            .inner
            .groups
            .read()
            .get(&p.group)
            .map(|h| h.handle.clone());
        match handle {
            Some(h) => Ok((p, h)),
            None => Err(Error::NotLeader {
                group: p.group,
                hint: p.leader.map(|(node, term)| LeaderHint { node, term }),
            }),
        }
    }

    fn leader_check(&self, p: &PartitionMeta, h: &GroupHandle) -> Result<GroupStatus> {
        let st = h.status.borrow().clone();
        if st.role != Role::Leader {
            let hint = st
                .leader_hint()
                .or(p.leader.map(|(node, term)| LeaderHint { node, term }));
            return Err(Error::NotLeader {
                group: p.group,
                hint,
            });
        }
        Ok(st)
    }

    /// Produces one RecordBatch to a partition: validates it, checks that this node
    /// leads the partition, proposes it and (for [`Acks::All`]) waits until it is
    /// applied, returning its offsets.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown partition; [`Error::Invalid`] or
    /// [`Error::Corrupt`] for a bad batch; [`Error::NotLeader`] (with a hint) when this
    /// node does not lead it; [`Error::Timeout`] when it was not applied in time (it may
    /// still be, later).
    pub async fn produce(
        &self,
        topic: &str,
        partition: i32,
        batch_bytes: &[u8],
        acks: Acks,
        timeout: Duration,
    ) -> Result<Option<Appended>> {
        if batch_bytes.len() > self.inner.cfg.max_batch_bytes {
            return Err(Error::Invalid(format!(
                "record batch of {} bytes exceeds the limit of {}",
                batch_bytes.len(),
                self.inner.cfg.max_batch_bytes
            )));
        }
        batch::verify_produced(batch_bytes)?;
        let (p, h) = self.locate(topic, partition)?;
        if !self.inner.cfg.unsafe_bypass_leader_check {
            self.leader_check(&p, &h)?;
        }
        let data = encode_produce(batch_bytes);
        if acks == Acks::None {
            let _ = h.tx.send(GroupMsg::Propose { data, reply: None });
            return Ok(None);
        }
        let (tx, rx) = oneshot::channel();
        h.tx.send(GroupMsg::Propose {
            data,
            reply: Some(tx),
        })
        .map_err(|_| Error::Shutdown)?;
        match tokio::time::timeout(timeout, rx).await {
            Err(_) => Err(Error::Timeout(format!(
                "produce to {topic}-{partition} not applied within {timeout:?}"
            ))),
            Ok(Err(_)) => Err(Error::Shutdown),
            Ok(Ok(Ok(Outcome::Produced(a)))) => Ok(Some(a)),
            Ok(Ok(Ok(Outcome::Applied))) => Err(Error::Invalid(
                "produce entry was not applied as a batch".into(),
            )),
            Ok(Ok(Err(e))) => Err(e),
        }
    }

    /// Reads whole batches from `offset`, up to the high watermark, waiting up to
    /// `max_wait` for at least `min_bytes`. Served by the partition leader only.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::NotLeader`], and [`Error::OutOfRange`] when
    /// `offset` is outside the log.
    pub async fn fetch(
        &self,
        topic: &str,
        partition: i32,
        offset: Offset,
        max_bytes: usize,
        max_wait: Duration,
        min_bytes: usize,
    ) -> Result<Fetched> {
        let (p, h) = self.locate(topic, partition)?;
        self.leader_check(&p, &h)?;
        let deadline = tokio::time::Instant::now() + max_wait;
        let mut status = h.status.clone();
        loop {
            status.borrow_and_update();
            let state = self.inner.engine.log_state(p.group)?;
            let records = self.inner.engine.log_read(p.group, offset, max_bytes)?;
            if records.len() >= min_bytes.max(1) || tokio::time::Instant::now() >= deadline {
                return Ok(Fetched {
                    records,
                    high_watermark: state.next_offset,
                    log_start_offset: state.start_offset,
                });
            }
            if tokio::time::timeout_at(deadline, status.changed())
                .await
                .is_err()
            {
                continue;
            }
        }
    }

    /// Looks up an offset of a partition this node leads.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::NotLeader`].
    pub fn list_offset(
        &self,
        topic: &str,
        partition: i32,
        spec: OffsetSpec,
    ) -> Result<Option<Offset>> {
        let (p, h) = self.locate(topic, partition)?;
        self.leader_check(&p, &h)?;
        let state = self.inner.engine.log_state(p.group)?;
        Ok(match spec {
            OffsetSpec::Earliest => Some(state.start_offset),
            OffsetSpec::Latest => Some(state.next_offset),
            OffsetSpec::Timestamp(ts) => self.inner.engine.log_offset_for_timestamp(p.group, ts)?,
        })
    }

    /// Creates a topic through group 0 and waits until this node has applied it.
    /// Works on any node: followers forward the proposal to the metadata leader.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a bad name or counts, [`Error::AlreadyExists`],
    /// [`Error::Timeout`] when no metadata leader committed it in time.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication: usize,
        configs: BTreeMap<String, String>,
        timeout: Duration,
    ) -> Result<()> {
        validate_topic_name(name)?;
        let meta = self.metadata();
        if meta.topics.contains_key(name) {
            return Err(Error::AlreadyExists(format!("topic {name}")));
        }
        let replicas = meta.assign(name, partitions, replication)?;
        let cmd = MetaCommand::CreateTopic {
            name: name.to_string(),
            replicas,
            configs,
        };
        self.propose_meta(cmd, timeout, |m| m.topics.contains_key(name))
            .await
    }

    /// Deletes a topic through group 0 and waits until this node has applied it.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::Timeout`].
    pub async fn delete_topic(&self, name: &str, timeout: Duration) -> Result<()> {
        if !self.metadata().topics.contains_key(name) {
            return Err(Error::NotFound(format!("topic {name}")));
        }
        let cmd = MetaCommand::DeleteTopic {
            name: name.to_string(),
        };
        self.propose_meta(cmd, timeout, |m| !m.topics.contains_key(name))
            .await
    }

    /// Proposes a metadata command (again every few ticks, as proposals can be lost
    /// during elections) until `done` holds for the applied metadata.
    async fn propose_meta(
        &self,
        cmd: MetaCommand,
        timeout: Duration,
        done: impl Fn(&Metadata) -> bool,
    ) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut meta = self.inner.meta.clone();
        let data = cmd.encode();
        let retry = self.inner.cfg.tick * self.inner.cfg.election_ticks as u32;
        loop {
            if done(&meta.borrow_and_update()) {
                return Ok(());
            }
            if let Some(h) = self.inner.groups.read().get(&GroupId::METADATA) {
                let _ = h.handle.tx.send(GroupMsg::Forward { data: data.clone() });
            }
            let until = (tokio::time::Instant::now() + retry).min(deadline);
            while tokio::time::timeout_at(until, meta.changed())
                .await
                .is_ok_and(|r| r.is_ok())
            {
                if done(&meta.borrow_and_update()) {
                    return Ok(());
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Timeout(format!(
                    "metadata change not applied within {timeout:?}"
                )));
            }
        }
    }

    /// Waits until `group` has a leader known to this node and returns it.
    ///
    /// # Errors
    /// [`Error::Timeout`].
    pub async fn wait_leader(&self, group: GroupId, timeout: Duration) -> Result<NodeId> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.group_status(group)
                && st.leader != 0
            {
                return Ok(st.leader);
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout(format!(
                    "no leader for {group} within {timeout:?}"
                )));
            }
            tokio::time::sleep(self.inner.cfg.tick).await;
        }
    }
}

/// Kafka's topic-name rule: 1..=249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
///
/// # Errors
/// [`Error::Invalid`] naming the problem.
pub fn validate_topic_name(name: &str) -> Result<()> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if name.is_empty() || name.len() > 249 || !ok_chars || name == "." || name == ".." {
        return Err(Error::Invalid(format!(
            "topic name {name:?} must be 1-249 characters of [a-zA-Z0-9._-] and not '.' or '..'"
        )));
    }
    Ok(())
}

impl Inner {
    fn start_group<S: StateMachine>(
        &self,
        group: GroupId,
        voters: &[NodeId],
        applied: u64,
        sm: S,
    ) -> Result<()> {
        let e = &self.engine;
        let mut state = e.raft_state(group)?;
        if state.conf_state.voters.is_empty() {
            state.conf_state = ConfState {
                voters: voters.to_vec(),
                ..ConfState::default()
            };
            e.raft_set_conf_state(group, &state.conf_state)?;
        }
        if state.hard_state.commit < applied {
            // Applied entries were committed; the hard state's commit may not have been
            // synced when the partition log was flushed.
            if applied > e.raft_last_index(group)? {
                return Err(Error::Corrupt(format!(
                    "{group}: partition log applied index {applied} is past the Raft log's last index"
                )));
            }
            state.hard_state.commit = applied;
            e.raft_set_hard_state(group, &state.hard_state)?;
        }
        // Not synced here: both fixes are derived again from durable state if they are
        // lost, and the group's first Ready that must be durable (a vote, entries) syncs
        // the log, these records included, before anything is sent. (A sync here waited,
        // after a kill -9, for the kernel to write back everything the previous process
        // left dirty: ext4 commits its journal only after that data.)
        let cfg = raft::Config {
            id: self.cfg.id,
            election_tick: self.cfg.election_ticks,
            heartbeat_tick: self.cfg.heartbeat_ticks,
            applied,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            check_quorum: true,
            pre_vote: true,
            read_only_option: ReadOnlyOption::Safe,
            max_uncommitted_size: 256 << 20,
            max_committed_size_per_ready: 16 << 20,
            ..raft::Config::default()
        };
        cfg.validate()
            .map_err(|err| Error::Config(format!("{group}: {err}")))?;
        let storage = EngineStorage::new(e.clone(), group);
        let mut node = RawNode::new(&cfg, storage, &logger(self.cfg.id, group))
            .map_err(|err| Error::Corrupt(format!("{group}: cannot start Raft: {err}")))?;
        if state.conf_state.voters == [self.cfg.id] && state.conf_state.learners.is_empty() {
            // A single replica need not wait out an election timeout.
            let _ = node.campaign();
        }
        let writer = self.writer.lock().clone().ok_or(Error::Shutdown)?;
        let parts = DriverParts {
            group,
            node,
            engine: e.clone(),
            writer,
            transport: self.transport.clone(),
            fatal: self.fatal.clone(),
            tick: self.cfg.tick,
            unsafe_bypass_leader_check: self.cfg.unsafe_bypass_leader_check,
        };
        let (handle, task) = driver::spawn(parts, sm);
        self.groups.write().insert(group, Hosted { handle, task });
        tracing::debug!(node = self.cfg.id, %group, ?voters, applied, "group started");
        Ok(())
    }

    fn start_partition(&self, p: &PartitionMeta) -> Result<()> {
        let applied = self.engine.log_state(p.group)?.applied_index;
        let meta_tx = self
            .groups
            .read()
            .get(&GroupId::METADATA)
            .map(|h| h.handle.tx.clone())
            .ok_or(Error::Shutdown)?;
        let sm = PartitionMachine {
            node: self.cfg.id,
            group: p.group,
            engine: self.engine.clone(),
            metadata: meta_tx,
            flush: FlushPolicy {
                bytes: self.cfg.flush_bytes,
                interval: self.cfg.flush_interval,
                compact_bytes: self.cfg.compact_bytes,
                compact_interval: self.cfg.compact_interval,
            },
            unflushed: 0,
            last_flush: Instant::now(),
            data: self.data.clone(),
            applied_batches: false,
            compaction: Compaction::new(applied, self.engine.raft_first_index(p.group)? - 1),
        };
        self.start_group(p.group, &p.replicas, applied, sm)
    }
}

/// Starts the partition groups metadata assigns to this node and stops (and deletes)
/// those whose topic was deleted.
async fn reconcile(node: Weak<Inner>, mut meta: watch::Receiver<Arc<Metadata>>) {
    loop {
        let m = meta.borrow_and_update().clone();
        let Some(inner) = node.upgrade() else {
            return;
        };
        let wanted: HashMap<GroupId, PartitionMeta> = m
            .hosted_by(inner.cfg.id)
            .map(|(_, p)| (p.group, p.clone()))
            .collect();
        let running: Vec<GroupId> = inner.groups.read().keys().copied().collect();
        for (g, p) in &wanted {
            if !running.contains(g)
                && let Err(e) = inner.start_partition(p)
            {
                inner.fatal.raise(format!("starting {g}: {e}"));
            }
        }
        for g in running {
            if g == GroupId::METADATA || wanted.contains_key(&g) {
                continue;
            }
            let Some(h) = inner.groups.write().remove(&g) else {
                continue;
            };
            let (tx, _rx) = oneshot::channel();
            let _ = h.handle.tx.send(GroupMsg::Stop(tx));
            let _ = h.task.await;
            let removed = inner
                .engine
                .log_remove(g)
                .and_then(|()| inner.engine.raft_remove_group(g));
            if let Err(e) = removed {
                inner.fatal.raise(format!("removing {g}: {e}"));
            }
            tracing::info!(node = inner.cfg.id, group = %g, "partition replica removed");
        }
        drop(inner);
        if meta.changed().await.is_err() {
            return;
        }
    }
}

/// Keeps this node's entries in metadata current: its broker registration (Kafka
/// address), and the leadership of every partition it leads (a new leader announces
/// itself once; this repeats it when that announcement was lost, e.g. while group 0
/// had no leader).
async fn register(node: Weak<Inner>) {
    loop {
        let Some(inner) = node.upgrade() else {
            return;
        };
        let meta = inner.meta.borrow().clone();
        let mut commands = Vec::new();
        let current = meta
            .brokers
            .get(&inner.cfg.id)
            .map(|b| b.kafka_addr.as_str());
        if current != Some(inner.cfg.kafka_addr.as_str()) {
            commands.push(MetaCommand::RegisterBroker {
                id: inner.cfg.id,
                kafka_addr: inner.cfg.kafka_addr.clone(),
            });
        }
        {
            let groups = inner.groups.read();
            for (_, p) in meta.hosted_by(inner.cfg.id) {
                let Some(h) = groups.get(&p.group) else {
                    continue;
                };
                let st = h.handle.status.borrow();
                if st.role == Role::Leader && p.leader != Some((inner.cfg.id, st.term)) {
                    commands.push(MetaCommand::LeaderChanged {
                        group: p.group,
                        node: inner.cfg.id,
                        term: st.term,
                    });
                }
            }
            if let Some(h) = groups.get(&GroupId::METADATA) {
                for cmd in commands {
                    let _ = h.handle.tx.send(GroupMsg::Forward { data: cmd.encode() });
                }
            }
        }
        let pause = inner.cfg.tick * 3;
        drop(inner);
        tokio::time::sleep(pause).await;
    }
}
