//! The peer-transport contract (DESIGN.md §5).
//!
//! A transport moves batches of Raft messages, each tagged with its group, between
//! nodes. One connection per peer serves every group.
//!
//! # Contract
//!
//! * [`Transport::send`] never blocks and is best effort: messages may be dropped
//!   (Raft retransmits), but messages to one peer that are delivered are delivered in
//!   the order they were sent.
//! * Incoming batches are handed to the node's [`Inbound::deliver`]; a peer that
//!   cannot be reached is reported through [`Inbound::unreachable`] so that Raft
//!   stops pipelining to it.
//! * Connections are re-established after a peer restarts; frames have a size limit
//!   and a malformed frame closes the connection with an error, never a panic.

use std::sync::Arc;

use raft::eraftpb::Message;

use crate::ids::{GroupId, NodeId};

/// One Raft message and the group it belongs to.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupMessage {
    /// The Raft group.
    pub group: GroupId,
    /// The message; `msg.to` is the receiving replica, which is the receiving node.
    pub msg: Message,
}

/// Where a transport delivers what it receives. Implemented by the node.
pub trait Inbound: Send + Sync + 'static {
    /// Messages that arrived from `from`, in the order they were sent.
    fn deliver(&self, from: NodeId, msgs: Vec<GroupMessage>);

    /// `peer` could not be reached (a send failed or the connection dropped).
    fn unreachable(&self, peer: NodeId);
}

/// Sends Raft messages to peers.
pub trait Transport: Send + Sync + 'static {
    /// Queues `msgs` for `to`. Never blocks; may drop messages when the peer is
    /// unreachable or its queue is full (reporting it to the node's [`Inbound`]).
    fn send(&self, to: NodeId, msgs: Vec<GroupMessage>);
}

/// A transport shared by a node's tasks.
pub type SharedTransport = Arc<dyn Transport>;

/// A transport over a real network, as the server and the suites drive it: both
/// weir transports (gRPC and TCP) implement it, so harnesses are written once.
pub trait PeerTransport: Transport {
    /// Where received messages go from now on. Messages arriving earlier are dropped
    /// (Raft retransmits them).
    fn register(&self, inbound: Arc<dyn Inbound>);

    /// The address peers connect to.
    fn local_addr(&self) -> std::net::SocketAddr;

    /// Stops every task of the transport and closes its listener and connections.
    /// Sends after this are dropped.
    fn shutdown(&self);

    /// Batches waiting in the queue of `peer` (bounded by the transport's config).
    fn queued(&self, peer: NodeId) -> usize;

    /// Learns the address of a peer that joined after the transport started
    /// (the address book follows metadata, DESIGN.md §10). A peer already
    /// known keeps the address it has; this node's own id is ignored.
    fn add_peer(&self, peer: NodeId, addr: &str);
}

/// Who a node is to its peers, and where they are: what every network transport
/// needs to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// This node.
    pub node: NodeId,
    /// Nodes of other clusters are refused.
    pub cluster_id: String,
    /// Peer id → "host:port" it listens on.
    pub peers: std::collections::BTreeMap<NodeId, String>,
}

/// The plumbing every network transport shares: its identity, where received
/// messages go, a bounded queue per peer (so that `send` never blocks and a dead
/// peer cannot grow memory), and a stop signal for its tasks.
pub struct Peers {
    id: Identity,
    inbound: std::sync::OnceLock<Arc<dyn Inbound>>,
    queues: parking_lot::RwLock<
        std::collections::BTreeMap<NodeId, tokio::sync::mpsc::Sender<Vec<GroupMessage>>>,
    >,
    /// The bound of each peer's queue.
    bound: usize,
    stop: tokio::sync::watch::Sender<bool>,
}

/// A peer's queue, for its sender task: (peer, address, receiving end).
pub type PeerQueue = (
    NodeId,
    String,
    tokio::sync::mpsc::Receiver<Vec<GroupMessage>>,
);

impl std::fmt::Debug for Peers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peers")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Peers {
    /// Queues of `bound` batches for every peer of `id`; the receiving ends go to the
    /// transport's sender tasks.
    pub fn new(id: Identity, bound: usize) -> (Peers, Vec<PeerQueue>) {
        let mut queues = std::collections::BTreeMap::new();
        let mut receivers = Vec::new();
        for (&peer, addr) in &id.peers {
            let (tx, rx) = tokio::sync::mpsc::channel(bound.max(1));
            queues.insert(peer, tx);
            receivers.push((peer, addr.clone(), rx));
        }
        let stop = tokio::sync::watch::channel(false).0;
        (
            Peers {
                id,
                inbound: std::sync::OnceLock::new(),
                queues: parking_lot::RwLock::new(queues),
                bound: bound.max(1),
                stop,
            },
            receivers,
        )
    }

    /// A queue for a peer learnt after the start ([`PeerTransport::add_peer`]),
    /// whose receiving end goes to a new sender task; `None` when the peer
    /// has one already, or is this node.
    pub fn add_peer(&self, peer: NodeId, addr: &str) -> Option<PeerQueue> {
        if peer == self.id.node {
            return None;
        }
        let mut queues = self.queues.write();
        if queues.contains_key(&peer) {
            return None;
        }
        let (tx, rx) = tokio::sync::mpsc::channel(self.bound);
        queues.insert(peer, tx);
        tracing::info!(peer, addr, "learnt a peer's address");
        Some((peer, addr.to_string(), rx))
    }

    /// Who this node is.
    pub fn id(&self) -> &Identity {
        &self.id
    }

    /// Sets where received messages go (once; later calls are ignored).
    pub fn register(&self, inbound: Arc<dyn Inbound>) {
        let _ = self.inbound.set(inbound);
    }

    /// Where received messages go, once registered.
    pub fn inbound(&self) -> Option<&Arc<dyn Inbound>> {
        self.inbound.get()
    }

    /// Reports `peer` unreachable to the node.
    pub fn unreachable(&self, peer: NodeId) {
        if let Some(i) = self.inbound.get() {
            i.unreachable(peer);
        }
    }

    /// Queues `msgs` for `to` without blocking; a full queue drops them and reports
    /// the peer unreachable.
    pub fn send(&self, to: NodeId, msgs: Vec<GroupMessage>) {
        let sent = match self.queues.read().get(&to) {
            Some(q) => q.try_send(msgs).is_ok(),
            None => {
                tracing::debug!(to, "no address known for the peer; dropping Raft messages");
                false
            }
        };
        if !sent {
            self.unreachable(to);
        }
    }

    /// Batches waiting in the queue of `peer`.
    pub fn queued(&self, peer: NodeId) -> usize {
        self.queues
            .read()
            .get(&peer)
            .map_or(0, |q| q.max_capacity() - q.capacity())
    }

    /// Tells every task of the transport to stop.
    pub fn shutdown(&self) {
        self.stop.send_replace(true);
    }

    /// Resolves once [`Peers::shutdown`] was called.
    pub async fn stopped(&self) {
        let _ = self.stop.subscribe().wait_for(|s| *s).await;
    }

    /// Runs `f` until it finishes or the transport stops.
    pub async fn until_stopped(&self, f: impl std::future::Future<Output = ()>) {
        tokio::select! {
            () = f => {}
            () = self.stopped() => {}
        }
    }
}
