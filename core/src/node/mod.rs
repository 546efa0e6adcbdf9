//! A weir node: hosts group 0 (metadata) and a Raft group for every partition replica
//! assigned to it. The produce, fetch and admin pipelines it offers live in
//! [`crate::pipeline`].
//!
//! The node starts and stops partition groups as it applies metadata (`hosting`), and
//! keeps its own entries in metadata current (`register`). Incoming Raft messages are
//! routed to groups by id; each group's task owns its `RawNode`.

mod config;
mod hosting;
mod membership;
mod producer_ids;
pub mod recover;
mod register;
pub(crate) mod space;

pub use config::NodeConfig;
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
use crate::metadata::{MetaLogPolicy, Metadata, MetadataMachine, PartitionMeta};
use crate::pipeline::budget::ProduceBudget;
use crate::raft::driver::{GroupHandle, GroupMsg, GroupStatus, Role};
use crate::raft::fatal::Fatal;
use crate::raft::fatal::Supervised;
use crate::raft::writer::Writer;
use crate::transport::{GroupMessage, Inbound, SharedTransport};

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
    /// Partition snapshots being served and downloaded.
    snapshots: Arc<crate::snapshot::Snapshots>,
    /// The cleaner of compacted topics.
    cleaner: Arc<crate::pipeline::clean::Cleaner>,
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
    fn deliver(&self, from: NodeId, msgs: Vec<GroupMessage>) {
        if let Some(inner) = self.0.upgrade() {
            let groups = inner.groups.read();
            let max = inner.cfg.max_queued_peer_bytes_per_group;
            for m in msgs {
                if m.group.0 & crate::snapshot::CHANNEL_BIT != 0 {
                    inner.snapshots.deliver(from, m);
                } else if let Some(h) = groups.get(&m.group)
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
        let policy = MetaLogPolicy {
            checkpoint_every: cfg.metadata_checkpoint_entries,
            keep: cfg.metadata_keep_entries,
        };
        let (machine, meta, meta_applied) = MetadataMachine::open(engine.clone(), policy)?;
        let cfg_budget = cfg.max_pending_produce_bytes;
        let snapshots = crate::snapshot::Snapshots::new(
            cfg.id,
            engine.clone(),
            transport.clone(),
            cfg.snapshot_bytes_per_sec,
        )
        .throttle_moves(cfg.reassignment_bytes_per_sec, meta.clone());
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
            snapshots: Arc::new(snapshots),
            cleaner: Arc::default(),
        });
        let voters = inner.cfg.voters.clone();
        inner.start_group(GroupId::METADATA, &voters, meta_applied, machine, None)?;
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
        let retention = fatal.spawn_supervised(
            "enforcing retention".into(),
            crate::pipeline::trim::run_retention(WeakNode(Arc::downgrade(&node.inner))),
        );
        let cleaner = fatal.spawn_supervised(
            "cleaning compacted topics".into(),
            crate::pipeline::clean::run_cleaner(WeakNode(Arc::downgrade(&node.inner))),
        );
        let balancer = fatal.spawn_supervised(
            "balancing leaders".into(),
            crate::pipeline::leaders::run_leader_balancer(WeakNode(Arc::downgrade(&node.inner))),
        );
        let membership = fatal.spawn_supervised(
            "promoting caught-up learners".into(),
            membership::run_membership(WeakNode(Arc::downgrade(&node.inner))),
        );
        let reassigner = fatal.spawn_supervised(
            "moving partition replicas".into(),
            crate::pipeline::reassign::run_reassigner(WeakNode(Arc::downgrade(&node.inner))),
        );
        node.inner.tasks.lock().extend([
            reconcile, register, timers, retention, cleaner, balancer, membership, reassigner,
        ]);
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
        // A cleaning pass runs on the blocking pool, out of reach of an abort.
        self.inner.cleaner.stop().await;
        // An aborted task may be mid-poll on another worker (reconcile could be
        // starting a group): wait until each has really ended before draining groups.
        let tasks: Vec<Supervised> = self.inner.tasks.lock().drain(..).collect();
        for t in tasks {
            t.abort();
            t.await;
        }
        self.inner.snapshots.stop().await;
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
    pub fn config(&self) -> &NodeConfig {
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

    /// Bytes free for the engine's data (`None`: the engine keeps no files).
    pub fn free_bytes(&self) -> Option<u64> {
        self.inner.engine.free_bytes()
    }

    /// What the engine holds on disk ([`Engine::usage`]), for metrics.
    pub fn storage_usage(&self) -> crate::engine::StorageUsage {
        self.inner.engine.usage()
    }

    /// The engine's name (`segment`, `redb`, …).
    pub fn engine_name(&self) -> &'static str {
        self.inner.engine.name()
    }

    /// The cleaner's state, and the snapshot service it asks about installs.
    pub(crate) fn cleaner(
        &self,
    ) -> (
        Arc<crate::pipeline::clean::Cleaner>,
        Arc<crate::snapshot::Snapshots>,
    ) {
        (self.inner.cleaner.clone(), self.inner.snapshots.clone())
    }

    /// Sends a message to a hosted group's task (dropped when it is not hosted here).
    pub(crate) fn send_to_group(&self, group: GroupId, msg: GroupMsg) {
        if let Some(h) = self.inner.groups.read().get(&group) {
            let _ = h.handle.tx.send(msg);
        }
    }
}
