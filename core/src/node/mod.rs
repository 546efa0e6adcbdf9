//! A weir node: hosts group 0 (metadata) and a Raft group for every partition replica
//! assigned to it. The produce, fetch and admin pipelines it offers live in
//! [`crate::pipeline`].
//!
//! The node starts and stops partition groups as it applies metadata (`hosting`), and
//! keeps its own entries in metadata current (`register`). Incoming Raft messages are
//! routed to groups by id; each group's task owns its `RawNode`.

mod hosting;
mod producer_ids;
pub mod recover;
mod register;
pub(crate) mod space;

pub use producer_ids::ActiveProducer;

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use tokio::sync::{Notify, oneshot, watch};

use crate::engine::Engine;
use crate::error::{Error, LeaderHint, Result};
use crate::groups::Coordinators;
use crate::ids::{GroupId, NodeId};
use crate::metadata::{Metadata, MetadataMachine, PartitionMeta};
use crate::pipeline::budget::ProduceBudget;
use crate::raft::driver::{GroupHandle, GroupMsg, GroupStatus, Role};
use crate::raft::fatal::Fatal;
use crate::raft::fatal::Supervised;
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
    /// Most partitions one topic may have.
    pub max_partitions_per_topic: i32,
    /// Most partitions in the cluster, over all topics (each is a Raft group with
    /// its files and memory on every replica).
    pub max_partitions: usize,
    /// Bytes of produce proposals not yet decided, over every group; producers wait
    /// for room before proposing (see [`Node::reserve_produce`]).
    pub max_pending_produce_bytes: usize,
    /// The most bytes a compressed batch's records may decompress to; more is
    /// refused as a decompression bomb.
    pub max_decompressed_batch_bytes: usize,
    /// Bytes of peer messages one group's mailbox holds; more are dropped (Raft
    /// resends) until the group catches up.
    pub max_queued_peer_bytes_per_group: usize,
    /// Bytes that must stay free on the data directory's file system: produce is
    /// refused with [`Error::StorageFull`] below it, so that the Raft log's own
    /// records can still be written. 0 turns the floor off (a write that finds
    /// the disk full still only waits; it never stops the node).
    pub min_free_bytes: u64,
    /// Partitions of the internal group-coordinator topic (`__consumer_offsets`),
    /// fixed when the cluster first creates it.
    pub group_partitions: i32,
    /// The longest metadata string an offset commit may carry.
    pub offset_metadata_max_bytes: usize,
    /// A group without members whose offsets were not committed for this long is
    /// dropped with them (Kafka's `offsets.retention.minutes`).
    pub offsets_retention: Duration,
    /// The shortest session timeout a group member may ask for.
    pub group_min_session_timeout: Duration,
    /// The longest.
    pub group_max_session_timeout: Duration,
    /// Most members one group may have.
    pub group_max_members: usize,
    /// How long the first rebalance of an empty group waits for more members
    /// (Kafka's `group.initial.rebalance.delay.ms`).
    pub group_initial_rebalance_delay: Duration,
    /// How often a consumer-protocol (KIP-848) member heartbeats while it holds
    /// its target assignment (Kafka's `group.consumer.heartbeat.interval.ms`;
    /// members on their way to a new assignment heartbeat at most every
    /// 50 ms). Members learn of a rebalance on their next heartbeat, so this
    /// bounds how long one takes.
    pub group_consumer_heartbeat_interval: Duration,
    /// A consumer-protocol member that has not heartbeated for this long leaves
    /// the group (Kafka's `group.consumer.session.timeout.ms`).
    pub group_consumer_session_timeout: Duration,
    /// The server-side assignor for members that name none (`uniform` or
    /// `range`).
    pub group_consumer_assignor: String,
    /// An idempotent producer idle this long (by its partition log's own
    /// timestamps) is forgotten by that partition (Kafka's
    /// `producer.id.expiration.ms`).
    pub producer_id_expiration: Duration,
    /// The descriptors the node may open: the process's open-file limit less those
    /// already open when the node starts (inherited ones count against the limit
    /// too). The node keeps its partitions' files within half of it (the other
    /// half is for connections, peers and the Raft log): topics past that are
    /// refused, rather than failing to open files later, which would stop the
    /// node. `None`: not checked.
    pub open_file_limit: Option<u64>,
    /// **For negative-control tests only.** Skips the leadership check of the
    /// produce pipeline and the driver, so that followers propose (raft-rs forwards
    /// the proposal) and track it by their own (index, term) — which is wrong. The
    /// fault tests turn it on to show that their checker notices. Never set it in
    /// production; builds without the `negative-controls` feature do not have it.
    #[cfg(feature = "negative-controls")]
    pub unsafe_bypass_leader_check: bool,
    /// **For negative-control tests only.** The group coordinator keeps
    /// committed offsets in this node's memory instead of replicating them
    /// through its partition's Raft log, so that a coordinator failover loses
    /// them: the failover test turns it on to show that its checker notices.
    #[cfg(feature = "negative-controls")]
    pub unsafe_group_offsets_in_memory: bool,
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
            max_partitions_per_topic: 1000,
            max_partitions: 10_000,
            max_pending_produce_bytes: 256 << 20,
            max_decompressed_batch_bytes: 64 << 20,
            max_queued_peer_bytes_per_group: 64 << 20,
            min_free_bytes: 256 << 20,
            group_partitions: 16,
            offset_metadata_max_bytes: 4096,
            offsets_retention: Duration::from_secs(7 * 24 * 3600),
            group_min_session_timeout: Duration::from_secs(6),
            group_max_session_timeout: Duration::from_secs(30 * 60),
            group_max_members: 1000,
            group_initial_rebalance_delay: Duration::from_secs(3),
            group_consumer_heartbeat_interval: Duration::from_millis(250),
            group_consumer_session_timeout: Duration::from_secs(45),
            group_consumer_assignor: "uniform".to_string(),
            producer_id_expiration: Duration::from_secs(24 * 3600),
            open_file_limit: None,
            #[cfg(feature = "negative-controls")]
            unsafe_bypass_leader_check: false,
            #[cfg(feature = "negative-controls")]
            unsafe_group_offsets_in_memory: false,
        }
    }

    /// Whether the negative-control switch is on (never without the
    /// `negative-controls` feature).
    pub(crate) fn bypass_leader_check(&self) -> bool {
        #[cfg(feature = "negative-controls")]
        return self.unsafe_bypass_leader_check;
        #[cfg(not(feature = "negative-controls"))]
        false
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
        if self.group_partitions < 1 {
            return Err(Error::Config(format!(
                "group_partitions = {} must be at least 1",
                self.group_partitions
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

struct Hosted {
    handle: GroupHandle,
    task: Supervised,
    /// A data partition's idempotent-producer state (DescribeProducers).
    producers: Option<crate::producers::SharedProducers>,
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
    tasks: Mutex<Vec<Supervised>>,
    /// Bumped whenever a partition hosted here applies new batches.
    batches_applied: Arc<watch::Sender<u64>>,
    /// Wakes the registration loop (a replica became leader).
    announce: Arc<Notify>,
    /// Bytes of produce proposals not yet decided.
    produce_budget: ProduceBudget,
    /// The free-space floor and the groups waiting for space.
    space: Arc<space::Space>,
    /// The group-coordinator replicas hosted here.
    coordinators: Coordinators,
    /// The producer ids this node hands out next: `[next, end)` of its block.
    producer_ids: tokio::sync::Mutex<(i64, i64)>,
}

/// A node that does not keep it running (for its own background tasks).
#[derive(Clone)]
pub(crate) struct WeakNode(Weak<Inner>);

impl WeakNode {
    pub(crate) fn upgrade(&self) -> Option<Node> {
        self.0.upgrade().map(|inner| Node { inner })
    }
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
            let max = inner.cfg.max_queued_peer_bytes_per_group;
            for m in msgs {
                if let Some(h) = groups.get(&m.group)
                    && !h.handle.step(m.msg, max)
                {
                    tracing::debug!(
                        node = inner.cfg.id, group = %m.group,
                        "dropped a peer message: the group's inbox is full"
                    );
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
        let cfg_budget = cfg.max_pending_produce_bytes;
        let space = Arc::new(space::Space::new(engine.clone(), cfg.min_free_bytes));
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
            batches_applied: Arc::new(watch::channel(0).0),
            announce: Arc::new(Notify::new()),
            produce_budget: ProduceBudget::new(cfg_budget),
            space,
            coordinators: Coordinators::default(),
            producer_ids: tokio::sync::Mutex::new((0, 0)),
        });
        let voters = inner.cfg.voters.clone();
        inner.start_group(GroupId::METADATA, &voters, 0, machine, None)?;
        let node = Node { inner };
        let fatal = &node.inner.fatal;
        let reconcile = fatal.spawn_supervised(
            "reconciling hosted partitions".into(),
            hosting::reconcile(Arc::downgrade(&node.inner), node.inner.meta.clone()),
        );
        let register = fatal.spawn_supervised(
            "registering in metadata".into(),
            register::register(Arc::downgrade(&node.inner), node.inner.announce.clone()),
        );
        let timers = fatal.spawn_supervised(
            "timing group coordinators".into(),
            crate::groups::run_timers(WeakNode(Arc::downgrade(&node.inner))),
        );
        node.inner
            .tasks
            .lock()
            .extend([reconcile, register, timers]);
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

    /// Waits until metadata has this node registered with its Kafka address (the
    /// metadata group has a leader and applied the registration). Until then the
    /// node knows no brokers, so a server should not answer clients before it.
    pub async fn registered(&self) {
        let mut meta = self.inner.meta.clone();
        let id = self.inner.cfg.id;
        let addr = self.inner.cfg.kafka_addr.clone();
        let _ = meta
            .wait_for(|m| m.brokers.get(&id).is_some_and(|b| b.kafka_addr == addr))
            .await;
    }

    /// A watch on metadata changes.
    pub fn watch_metadata(&self) -> watch::Receiver<Arc<Metadata>> {
        self.inner.meta.clone()
    }

    /// A counter bumped whenever any partition hosted here applies new batches: what
    /// long-polling fetches wait on.
    pub fn batches_applied(&self) -> watch::Receiver<u64> {
        self.inner.batches_applied.subscribe()
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
        self.send_to_group(group, GroupMsg::TransferLeader(to));
    }

    /// Starts an election for `group` on this node.
    pub fn campaign(&self, group: GroupId) {
        self.send_to_group(group, GroupMsg::Campaign);
    }

    /// Stops every group and the writer, and waits until nothing holds the engine.
    pub async fn shutdown(self) {
        // An aborted task may be mid-poll on another worker (reconcile could be
        // starting a group): wait until each has really ended before draining groups.
        let tasks: Vec<Supervised> = self.inner.tasks.lock().drain(..).collect();
        for t in tasks {
            t.abort();
            t.await;
        }
        let hosted: Vec<Hosted> = self.inner.groups.write().drain().map(|(_, h)| h).collect();
        for h in hosted {
            let (tx, _rx) = oneshot::channel();
            let _ = h.handle.tx.send(GroupMsg::Stop(tx));
            h.task.await;
        }
        self.inner.writer.lock().take();
        let thread = self.inner.writer_thread.lock().take();
        if let Some(t) = thread {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
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

    /// The partition `topic`/`partition` in metadata and, when a replica is hosted
    /// here, its group's handle.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown partition; [`Error::NotLeader`] (with the
    /// leader metadata records) when no replica is hosted here.
    pub(crate) fn locate(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<(PartitionMeta, GroupHandle)> {
        self.locate_in(&self.metadata(), topic, partition)
    }

    /// [`Node::locate`] in a metadata state the caller holds.
    pub(crate) fn locate_in(
        &self,
        meta: &Metadata,
        topic: &str,
        partition: i32,
    ) -> Result<(PartitionMeta, GroupHandle)> {
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

    /// The local replica's status when it leads the partition.
    ///
    /// # Errors
    /// [`Error::NotLeader`] with the best hint known: the local replica's view, else
    /// the leader metadata records.
    pub(crate) fn leader_check(&self, p: &PartitionMeta, h: &GroupHandle) -> Result<GroupStatus> {
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

    /// Bytes of produce proposals made and not yet decided, over every group.
    pub fn pending_produce_bytes(&self) -> usize {
        self.inner.produce_budget.pending()
    }

    /// Bytes of peer messages waiting in `group`'s mailbox (`None` when it is not
    /// hosted here).
    pub fn queued_peer_bytes(&self, group: GroupId) -> Option<usize> {
        self.inner
            .groups
            .read()
            .get(&group)
            .map(|h| h.handle.inbox_bytes())
    }

    /// The most bytes of produce proposals ever pending at once.
    pub fn peak_pending_produce_bytes(&self) -> usize {
        self.inner.produce_budget.peak()
    }

    /// The node's produce budget.
    pub(crate) fn produce_budget(&self) -> &ProduceBudget {
        &self.inner.produce_budget
    }

    /// The largest record batch this node accepts
    /// ([`NodeConfig::max_batch_bytes`]).
    pub fn max_batch_bytes(&self) -> usize {
        self.inner.cfg.max_batch_bytes
    }

    /// The node's free-space floor and stalled groups.
    pub(crate) fn space(&self) -> &space::Space {
        &self.inner.space
    }

    /// How many partitions this node's open-file limit allows (see
    /// [`NodeConfig::open_file_limit`]); `None` when unlimited.
    pub fn partitions_allowed_by_open_files(&self) -> Option<usize> {
        let per = self.inner.engine.capabilities().files_per_partition;
        let limit = self.inner.cfg.open_file_limit?;
        (per > 0).then(|| usize::try_from(limit / 2).unwrap_or(usize::MAX) / per)
    }

    /// The node's configuration.
    pub(crate) fn config(&self) -> &NodeConfig {
        &self.inner.cfg
    }

    /// The group-coordinator replicas hosted here.
    pub(crate) fn inner_coordinators(&self) -> &Coordinators {
        &self.inner.coordinators
    }

    /// The engine.
    pub(crate) fn engine(&self) -> &Arc<dyn Engine> {
        &self.inner.engine
    }

    /// Sends a message to a hosted group's task (dropped when it is not hosted here).
    pub(crate) fn send_to_group(&self, group: GroupId, msg: GroupMsg) {
        if let Some(h) = self.inner.groups.read().get(&group) {
            let _ = h.handle.tx.send(msg);
        }
    }
}
