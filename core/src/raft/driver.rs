//! One Raft group's driver: a task that owns its `RawNode` outright.
//!
//! Everything that touches the node — proposals, incoming messages, ticks,
//! unreachable reports, persistence acknowledgements — arrives as a message in
//! the task's mailbox (DESIGN.md §3 rule 1). A Ready is handled with raft-rs's
//! async-ready protocol (rule 2):
//!
//! 1. `messages()` (leader only) are sent at once;
//! 2. committed entries (never beyond what is persisted locally) are applied;
//! 3. entries and hard state are written to the engine, visible at once;
//! 4. `advance_append_async`, and the write goes to the node's writer;
//! 5. when it is durable the writer sends `persisted_messages()` and posts
//!    `Persisted(number)`, and the task calls `on_persist_ready`.
//!
//! `advance`/`advance_append` are never called. Proposals are only made on the
//! leader and are tracked by the (index, term) read right after `propose()`; they
//! resolve when that index is applied (rule 4).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use raft::eraftpb::{EntryType, Message, MessageType};
use raft::{RawNode, StateRole};
use tokio::sync::{mpsc, oneshot, watch};

use crate::engine::{Appended, Engine, LogState};
use crate::error::{Error, LeaderHint, Result};
use crate::ids::{GroupId, NodeId};
use crate::node::space::{Space, Stalled};
use crate::pipeline::budget::ProposalBytes;
use crate::raft::fatal::Fatal;
use crate::raft::storage::EngineStorage;
use crate::raft::writer::{WriteReq, Writer};
use crate::transport::{GroupMessage, SharedTransport};

mod catchup;
mod membership;
mod propose;
mod ready;
mod status;

use ready::Unfinished;

/// What applying a committed entry yielded: a proposal's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Applied {
    /// A produce request's batch, stored at these offsets.
    Batch(Appended),
    /// Any other command (metadata, compaction), or an entry without data.
    Command,
}

/// Where a proposal's answer goes.
pub(crate) type Reply = oneshot::Sender<Result<Applied>>;

/// Messages to a group's task.
pub(crate) enum GroupMsg {
    /// Propose on the leader; elsewhere answer `NotLeader` with a hint. `bytes`
    /// (a produce's share of the node's budget) is held until the proposal is
    /// decided.
    Propose {
        data: Vec<u8>,
        reply: Option<Reply>,
        bytes: Option<ProposalBytes>,
    },
    /// Propose wherever this replica is, without a reply: followers forward it to
    /// the leader, and the proposer learns the outcome by watching applied state.
    ProposeUnanswered { data: Vec<u8> },
    /// A message from a peer, counted in [`GroupHandle::inbox`] by [`peer_bytes`].
    Step(Message),
    /// A peer could not be reached.
    Unreachable(NodeId),
    /// Readies up to this number are durable.
    Persisted(u64),
    /// Propose a membership change on the leader (one voter or learner at a
    /// time; see `driver/membership.rs`); elsewhere answer `NotLeader`.
    ProposeConfChange {
        change: raft::eraftpb::ConfChangeV2,
        reply: Reply,
    },
    /// Hand leadership to this peer.
    TransferLeader(NodeId),
    /// Start an election now.
    Campaign,
    /// Stop the task.
    Stop(oneshot::Sender<()>),
}

/// A replica's role.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Role {
    /// Follows a leader (or has none yet).
    #[default]
    Follower,
    /// Running a pre-vote or an election.
    Candidate,
    /// The leader.
    Leader,
}

/// What a group's task publishes about itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupStatus {
    /// This replica's role.
    pub role: Role,
    /// The leader this replica knows of (0 when none).
    pub leader: NodeId,
    /// The current term.
    pub term: u64,
    /// The commit index.
    pub commit: u64,
    /// The applied index.
    pub applied: u64,
    /// On the leader: the index of an entry of its own term (its first, or one
    /// soon after); 0 elsewhere. Until the leader has applied it, entries an
    /// earlier leader committed (and acknowledged) may not be applied here yet:
    /// see [`GroupStatus::caught_up`].
    pub leader_since: u64,
    /// The partition log's state (partition groups only).
    pub log: Option<LogState>,
    /// On the leader: each replica (the leader itself included) and the index
    /// it has matched.
    pub progress: Vec<(NodeId, u64)>,
    /// On the leader: the replicas in sync — recently heard from and caught up
    /// with the leader's log within `replica_lag_max` (the leader included).
    pub in_sync: Vec<NodeId>,
    /// The group's voters and learners (its Raft configuration), sorted.
    pub voters: Vec<NodeId>,
    /// See `voters`.
    pub learners: Vec<NodeId>,
    /// The task stopped (shut down or failed).
    pub stopped: bool,
}

impl GroupStatus {
    /// Whether this replica leads and has applied an entry of its own term, so
    /// everything committed before its term (KIP-207): only then is its partition
    /// log's end the high watermark clients may have seen from an earlier leader.
    pub fn caught_up(&self) -> bool {
        self.role == Role::Leader && self.applied >= self.leader_since
    }

    /// The leader as a hint for redirected clients, if known.
    pub fn leader_hint(&self) -> Option<LeaderHint> {
        (self.leader != 0).then_some(LeaderHint {
            node: self.leader,
            term: self.term,
        })
    }
}

/// What a group applies committed entries to.
pub(crate) trait StateMachine: Send + 'static {
    /// The group's kind as a metrics label: `metadata`, `partition` or
    /// `coordinator`.
    const KIND: &'static str;

    /// Applies a committed entry carrying data.
    ///
    /// `Err(Error::Invalid)` (and an idempotent producer's
    /// `Error::OutOfOrderSequence` / `Error::InvalidProducerEpoch`) rejects the
    /// entry deterministically (every replica does the same) and is returned to
    /// the proposer; any other error is fatal.
    fn apply(&mut self, index: u64, term: u64, data: &[u8]) -> Result<Applied>;

    /// Records a committed entry of `term` without data (elections' empty entries,
    /// conf changes) or refused.
    fn skip(&mut self, index: u64, term: u64) -> Result<()>;

    /// Called once per handled Ready after applying (flush policies).
    fn after_apply(&mut self) -> Result<()> {
        Ok(())
    }

    /// The partition log's state, for the status (partition groups only).
    fn log_state(&self) -> Option<LogState> {
        None
    }

    /// Called when this replica becomes leader in `term`.
    fn on_leader(&mut self, _term: u64) {}

    /// On the leader, before `data` is proposed as entry `at.index`: what to do
    /// with it (data partitions stamp a batch's offsets here, and answer or
    /// refuse an idempotent producer's retry without an entry). `entries`
    /// reads this leader's log from an index on. The default
    /// proposes everything as it is.
    fn before_propose(
        &mut self,
        _data: &mut Vec<u8>,
        _at: crate::stamping::ProposeAt,
        _entries: crate::stamping::EntriesFrom<'_>,
    ) -> crate::stamping::Stamp {
        crate::stamping::Stamp::Propose
    }

    /// Raft dropped the proposal `before_propose` let through for `index`.
    fn proposal_dropped(&mut self, _index: u64) {}

    /// Whether a tick has work for the state machine now: [`StateMachine::on_tick`]
    /// would do something, or (on the leader, whose replicas have all matched
    /// `matched`) [`StateMachine::compaction`] would propose. Without it, the
    /// tick of a group with nothing else to do is handled on the async worker,
    /// not in a blocking section (which hands the worker's queue to another
    /// thread: a thousand idle partitions ticking did that tens of thousands of
    /// times a second). Machines that cannot tell say yes.
    fn tick_work_due(&self, _matched: Option<u64>) -> bool {
        true
    }

    /// Called on every Raft tick (flush policies).
    fn on_tick(&mut self) -> Result<()> {
        Ok(())
    }

    /// Whether this group installs `snap`, sent by `from`, now (checked before
    /// raft-rs sees the message): a group that installs no snapshots, data
    /// that does not decode, or a snapshot whose data is not here yet (a
    /// partition log still downloading) is refused, and the node keeps
    /// running; the leader sends it again.
    fn check_snapshot(&mut self, _from: NodeId, _snap: &raft::eraftpb::Snapshot) -> Result<()> {
        Err(Error::Unsupported(
            "this group does not install snapshots yet".into(),
        ))
    }

    /// What the leader sends a follower that needs compacted entries, for
    /// groups that accept snapshots.
    fn snapshot_source(&self) -> Option<crate::raft::storage::SnapshotSource> {
        None
    }

    /// Replaces the state with a leader's snapshot (`meta`, and `data` from
    /// [`StateMachine::snapshot_source`] on the leader), durably, before the
    /// driver resets the Raft log to it.
    fn restore(&mut self, meta: &raft::eraftpb::SnapshotMetadata, _data: &[u8]) -> Result<()> {
        Err(Error::Unsupported(format!(
            "installing a Raft snapshot (index {})",
            meta.index
        )))
    }

    /// On the leader, after each Ready: a command that compacts every replica's Raft
    /// log, if one is due. `matched` is the lowest index every replica has.
    /// The default never compacts (the metadata group is rebuilt from its whole log).
    fn compaction(&mut self, _matched: u64) -> Option<Vec<u8>> {
        None
    }
}

/// Everything a driver needs besides its state machine.
pub(crate) struct DriverParts {
    pub(crate) group: GroupId,
    pub(crate) node: RawNode<EngineStorage>,
    pub(crate) engine: Arc<dyn Engine>,
    pub(crate) writer: Writer,
    pub(crate) transport: SharedTransport,
    pub(crate) fatal: Fatal,
    /// The node's free-space state: a group waiting for space counts there.
    pub(crate) space: Arc<Space>,
    pub(crate) tick: Duration,
    /// Negative-control switch: propose even when not the leader. Never in production.
    pub(crate) unsafe_bypass_leader_check: bool,
    /// How long a replica may go without having caught up and stay in sync.
    pub(crate) replica_lag_max: Duration,
}

/// A group's mailbox and published status.
#[derive(Clone)]
pub(crate) struct GroupHandle {
    pub(crate) tx: mpsc::UnboundedSender<GroupMsg>,
    pub(crate) status: watch::Receiver<GroupStatus>,
    /// Bytes of peer messages in the mailbox (see [`GroupHandle::step`]).
    pub(crate) inbox: Arc<AtomicUsize>,
}

impl GroupHandle {
    /// Queues a peer's message unless `max_bytes` of peer messages are queued
    /// already; then it is dropped (Raft tolerates lost messages: the leader
    /// resends what is not acknowledged) and `false` is returned. Proposals and the
    /// writer's persistence notices are never dropped; only what peers send is
    /// bounded here, so that a group that falls behind (a slow disk) cannot make
    /// its mailbox grow without bound.
    pub(crate) fn step(&self, msg: Message, max_bytes: usize) -> bool {
        let bytes = peer_bytes(&msg);
        if self.inbox.load(Ordering::Relaxed) + bytes > max_bytes {
            return false;
        }
        self.inbox.fetch_add(bytes, Ordering::Relaxed);
        if self.tx.send(GroupMsg::Step(msg)).is_err() {
            self.inbox.fetch_sub(bytes, Ordering::Relaxed);
        }
        true
    }

    /// Bytes of peer messages waiting in the mailbox.
    pub(crate) fn inbox_bytes(&self) -> usize {
        self.inbox.load(Ordering::Relaxed)
    }
}

/// What a peer's message counts for in a group's inbox: its entries' data and a
/// fixed overhead.
pub(crate) fn peer_bytes(msg: &Message) -> usize {
    64 + msg.entries.iter().map(|e| e.data.len() + 32).sum::<usize>()
}

/// What woke a group's task.
enum Woke {
    /// The Raft tick.
    Tick,
    /// The Raft tick, already given to raft-rs (it left work for a Ready).
    Ticked,
    /// A message in the mailbox.
    Msg(GroupMsg),
}

/// What a turn of the loop left the task to do.
enum Turn {
    /// Wait for the next tick or message.
    Go,
    /// Stop (with the reply to a `Stop`, if that was why).
    Stop(Option<oneshot::Sender<()>>),
    /// A Ready waits for space on a full disk.
    Full,
}

/// A proposal awaiting its decision.
struct Pending {
    term: u64,
    reply: Option<Reply>,
    _bytes: Option<ProposalBytes>,
    /// Retries of the same batch, answered with its offsets when it is applied.
    retries: Vec<(Reply, Appended)>,
}

impl Pending {
    /// Answers everyone waiting with `e`.
    fn fail(self, e: impl Fn() -> Error) {
        if let Some(r) = self.reply {
            let _ = r.send(Err(e()));
        }
        for (r, _) in self.retries {
            let _ = r.send(Err(e()));
        }
    }
}

struct Driver<S: StateMachine> {
    p: DriverParts,
    sm: S,
    rx: mpsc::UnboundedReceiver<GroupMsg>,
    tx: mpsc::UnboundedSender<GroupMsg>,
    /// Proposals made here and not yet decided, by index: their term, where the
    /// answer goes (if anywhere) and their share of the produce budget.
    pending: BTreeMap<u64, Pending>,
    status: watch::Sender<GroupStatus>,
    was_leader: bool,
    /// The leader this replica last knew of (0: none), for the leader-change count.
    known_leader: NodeId,
    counters: crate::stats::GroupCounters,
    /// The leader's recent log growth (which replicas are in sync), for `catch_up_term`.
    catch_up: catchup::CatchUp,
    catch_up_term: u64,
    /// The term this replica last led and the last index it knew when it first
    /// published it ([`GroupStatus::leader_since`]).
    led: (u64, u64),
    /// Shared with [`GroupHandle::inbox`].
    inbox: Arc<AtomicUsize>,
    /// The Ready waiting for space, if the disk is full.
    unfinished: Option<Unfinished>,
    /// Counts this group as waiting for space while the disk is full.
    stalled: Option<Stalled>,
    /// Peers sent a snapshot in the last Ready, reported to raft-rs after it.
    snapshots_sent: Vec<NodeId>,
    /// A snapshot installed here: its index, applied once it is persisted.
    installed_snapshot: Option<u64>,
}

/// Starts a group's task on the current tokio runtime.
pub(crate) fn spawn<S: StateMachine>(
    parts: DriverParts,
    sm: S,
) -> (GroupHandle, crate::raft::fatal::Supervised) {
    let (tx, rx) = mpsc::unbounded_channel();
    let (status, status_rx) = watch::channel(GroupStatus::default());
    let inbox = Arc::new(AtomicUsize::new(0));
    let driver = Driver {
        inbox: inbox.clone(),
        p: parts,
        sm,
        rx,
        tx: tx.clone(),
        pending: BTreeMap::new(),
        status,
        was_leader: false,
        known_leader: 0,
        counters: crate::stats::GroupCounters::new(S::KIND),
        catch_up: catchup::CatchUp::default(),
        catch_up_term: 0,
        led: (0, 0),
        unfinished: None,
        stalled: None,
        snapshots_sent: Vec::new(),
        installed_snapshot: None,
    };
    let what = format!("the Raft driver of {}", driver.p.group);
    let task = driver.p.fatal.clone().spawn_supervised(what, driver.run());
    (
        GroupHandle {
            tx,
            status: status_rx,
            inbox,
        },
        task,
    )
}

impl<S: StateMachine> Driver<S> {
    async fn run(mut self) {
        let mut ticker = tokio::time::interval(self.p.tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let stop_reply = loop {
            if self.unfinished.is_some() {
                match self.wait_for_space().await {
                    Some(stop) => break stop,
                    None => continue,
                }
            }
            let woke = tokio::select! {
                _ = ticker.tick() => Woke::Tick,
                m = self.rx.recv() => match m {
                    Some(m) => Woke::Msg(m),
                    None => break None,
                },
            };
            let woke = match woke {
                Woke::Tick if self.tick_stays_in_memory() => {
                    // raft-rs counts the tick in memory and says whether it left
                    // anything for a Ready (heartbeats to send, say); the last
                    // turn left none.
                    if !self.p.node.tick() {
                        continue;
                    }
                    Woke::Ticked
                }
                w => w,
            };
            // Everything from here to the next wait calls the engine, which may wait
            // for the disk: off the async workers (issue 14 item 4).
            if let Turn::Stop(stop) = crate::raft::blocking(|| self.turn(woke)) {
                break stop;
            }
        };
        self.status.send_modify(|s| s.stopped = true);
        for (_, p) in std::mem::take(&mut self.pending) {
            p.fail(|| Error::Shutdown);
        }
        if let Some(r) = stop_reply {
            let _ = r.send(());
        }
    }

    /// One turn of the loop: handles what woke the task and whatever else is queued,
    /// then one round of Readies.
    fn turn(&mut self, woke: Woke) -> Turn {
        let mut stop = None;
        match woke {
            Woke::Tick => {
                self.p.node.tick();
                match self.sm.on_tick() {
                    Ok(()) => {}
                    // A flush that found the disk full is tried again next tick.
                    Err(e @ Error::StorageFull(_)) => {
                        tracing::debug!(group = %self.p.group, error = %e, "flush deferred");
                    }
                    Err(e) => {
                        self.p.fatal.raise(format!("{}: {e}", self.p.group));
                        return Turn::Stop(None);
                    }
                }
            }
            Woke::Ticked => {}
            Woke::Msg(m) => stop = self.handle(m),
        }
        // Take whatever else is queued, so one Ready covers many proposals.
        for _ in 0..4096 {
            if stop.is_some() {
                break;
            }
            match self.rx.try_recv() {
                Ok(m) => stop = self.handle(m),
                Err(_) => break,
            }
        }
        if stop.is_some() {
            return Turn::Stop(stop);
        }
        // Decided on the state the previous Ready left; its entry goes out in this one.
        self.propose_compaction();
        self.handle_readies()
    }

    /// Handles the Readies (the unfinished one first), then publishes the status.
    fn handle_readies(&mut self) -> Turn {
        match self.on_ready() {
            Ok(()) => {}
            Err(Error::StorageFull(why)) => {
                self.began_waiting_for_space(&why);
                return Turn::Full;
            }
            Err(e) => {
                self.p.fatal.raise(format!("{}: {e}", self.p.group));
                return Turn::Stop(None);
            }
        }
        if self.stalled.take().is_some() {
            tracing::info!(group = %self.p.group, "space was freed: writes resume");
        }
        for to in std::mem::take(&mut self.snapshots_sent) {
            self.p
                .node
                .report_snapshot(to, raft::SnapshotStatus::Finish);
        }
        self.publish();
        self.notice_leadership();
        Turn::Go
    }

    fn hint(&self) -> Option<LeaderHint> {
        let leader = self.p.node.raft.leader_id;
        (leader != 0).then_some(LeaderHint {
            node: leader,
            term: self.p.node.raft.term,
        })
    }

    /// Handles one message; `Some` when the task must stop.
    fn handle(&mut self, msg: GroupMsg) -> Option<oneshot::Sender<()>> {
        match msg {
            GroupMsg::Propose { data, reply, bytes } => self.propose(data, reply, bytes),
            GroupMsg::ProposeUnanswered { data } => {
                let _ = self.p.node.propose(vec![], data);
            }
            GroupMsg::ProposeConfChange { change, reply } => {
                self.propose_conf_change(change, reply)
            }
            GroupMsg::Step(m) => {
                self.inbox.fetch_sub(peer_bytes(&m), Ordering::Relaxed);
                let refused = (m.msg_type == MessageType::MsgSnapshot)
                    .then(|| self.sm.check_snapshot(m.from, m.get_snapshot()).err())
                    .flatten();
                if let Some(why) = refused {
                    // Partition groups install no snapshots yet (their leaders
                    // never send one: their Raft log is compacted only through
                    // what every replica has). A snapshot refused here never
                    // reaches raft-rs: it must never stop this node.
                    let index = m.get_snapshot().get_metadata().index;
                    if matches!(why, Error::Unavailable(_)) {
                        tracing::debug!(group = %self.p.group, from = m.from, index, "a snapshot waits for its data");
                    } else {
                        tracing::warn!(
                            group = %self.p.group, from = m.from, term = m.term, index,
                            error = %why, "refused a Raft snapshot from a peer"
                        );
                    }
                } else if let Err(e) = self.p.node.step(m) {
                    tracing::debug!(group = %self.p.group, error = %e, "dropped a Raft message");
                }
            }
            GroupMsg::Unreachable(peer) => self.p.node.report_unreachable(peer),
            GroupMsg::Persisted(number) => {
                self.p.node.on_persist_ready(number);
                self.apply_installed_snapshot();
            }
            GroupMsg::TransferLeader(to) => self.p.node.transfer_leader(to),
            GroupMsg::Campaign => {
                let _ = self.p.node.campaign();
            }
            GroupMsg::Stop(reply) => return Some(reply),
        }
        None
    }

    /// On the leader, proposes compacting every replica's Raft log when the state
    /// machine says it is due.
    /// Whether the next tick touches only memory: nothing is queued, the state
    /// machine has no tick work due, and raft-rs will not start an election
    /// (which reads the log). A leader's tick (heartbeats, the quorum check)
    /// reads nothing.
    fn tick_stays_in_memory(&self) -> bool {
        let raft = &self.p.node.raft;
        self.rx.is_empty()
            && !self.sm.tick_work_due(self.lowest_matched())
            && (raft.state == StateRole::Leader
                || raft.election_elapsed + 1 < raft.randomized_election_timeout())
    }

    /// On the leader: the lowest index every replica has matched.
    fn lowest_matched(&self) -> Option<u64> {
        let raft = &self.p.node.raft;
        (raft.state == StateRole::Leader).then(|| {
            raft.prs()
                .iter()
                .map(|(_, pr)| pr.matched)
                .min()
                .unwrap_or(0)
        })
    }

    fn propose_compaction(&mut self) {
        let Some(matched) = self.lowest_matched() else {
            return;
        };
        if let Some(data) = self.sm.compaction(matched) {
            // Dropped only while leadership is being handed over; the next leader
            // proposes its own.
            let _ = self.p.node.propose(vec![], data);
        }
    }

    fn send(&mut self, msgs: Vec<Message>) {
        let mut by_peer: HashMap<NodeId, Vec<GroupMessage>> = HashMap::new();
        for msg in msgs {
            if msg.msg_type == MessageType::MsgSnapshot {
                // The state travels in the message: once handed to the transport
                // it is sent. If it is lost, the follower never acknowledges it,
                // and the leader probes again and sends another.
                self.snapshots_sent.push(msg.to);
                self.counters.snapshots_sent.increment(1);
            }
            by_peer.entry(msg.to).or_default().push(GroupMessage {
                group: self.p.group,
                msg,
            });
        }
        for (to, batch) in by_peer {
            self.p.transport.send(to, batch);
        }
    }
}
