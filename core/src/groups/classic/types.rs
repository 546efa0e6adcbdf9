//! The classic protocol's requests and answers, as the coordinator takes and
//! gives them (the Kafka handlers convert from and to the wire).

use std::time::Duration;

/// A JoinGroup request's fields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JoinRequest {
    /// The group.
    pub group: String,
    /// The member id (empty for a new member).
    pub member_id: String,
    /// `group.instance.id` (static membership).
    pub instance_id: Option<String>,
    /// The protocol type (`consumer`).
    pub protocol_type: String,
    /// The protocols (assignors) the member supports, preferred first, with its
    /// subscription metadata for each.
    pub protocols: Vec<(String, Vec<u8>)>,
    /// The session timeout.
    pub session_timeout_ms: i32,
    /// The rebalance timeout (v1+; the session timeout before).
    pub rebalance_timeout_ms: i32,
    /// The client id.
    pub client_id: String,
    /// The client's address.
    pub client_host: String,
    /// v4+: a new member must join again with the id it is given (KIP-394).
    pub require_known_member_id: bool,
}

/// A JoinGroup answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JoinResponse {
    /// The new generation.
    pub generation: i32,
    /// The group's protocol type.
    pub protocol_type: Option<String>,
    /// The chosen protocol.
    pub protocol: Option<String>,
    /// The leader's member id.
    pub leader: String,
    /// This member's id.
    pub member_id: String,
    /// For the leader: every member's id, instance id and subscription.
    pub members: Vec<(String, Option<String>, Vec<u8>)>,
    /// A static leader that rejoined without a rebalance must not compute
    /// assignments (KIP-814; JoinGroup v9). Older versions get no members then.
    pub skip_assignment: bool,
    /// For a static member that took its old instance's place: the member id it
    /// replaced. (Before JoinGroup v9 Kafka names that id as the leader, so that
    /// the member syncs as a follower and keeps its assignment.)
    pub replaced: Option<String>,
}

/// A SyncGroup request's fields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncRequest {
    /// The group.
    pub group: String,
    /// The member id.
    pub member_id: String,
    /// Its instance id.
    pub instance_id: Option<String>,
    /// Its generation.
    pub generation: i32,
    /// v5+: the protocol type the member thinks the group has.
    pub protocol_type: Option<String>,
    /// v5+: the protocol it thinks was chosen.
    pub protocol: Option<String>,
    /// From the leader: each member's assignment.
    pub assignments: Vec<(String, Vec<u8>)>,
}

/// A SyncGroup answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncResponse {
    /// The group's protocol type.
    pub protocol_type: Option<String>,
    /// The chosen protocol.
    pub protocol: Option<String>,
    /// This member's assignment.
    pub assignment: Vec<u8>,
}

/// The coordinator's bounds on members.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Smallest session timeout accepted.
    pub min_session: Duration,
    /// Largest session timeout accepted.
    pub max_session: Duration,
    /// Most members of one group.
    pub max_members: usize,
    /// How long the first rebalance of an empty group waits for more members.
    pub initial_delay: Duration,
}

/// A group's state, as Kafka names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// No members.
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Joined; waiting for the leader's assignments.
    CompletingRebalance,
    /// Members have their assignments.
    Stable,
}

impl State {
    /// Kafka's name for the state (DescribeGroups, ListGroups).
    pub fn name(self) -> &'static str {
        match self {
            State::Empty => "Empty",
            State::PreparingRebalance => "PreparingRebalance",
            State::CompletingRebalance => "CompletingRebalance",
            State::Stable => "Stable",
        }
    }
}
