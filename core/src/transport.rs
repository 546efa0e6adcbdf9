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
