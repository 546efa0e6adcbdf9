//! The consumer group protocol (KIP-848): members heartbeat with
//! ConsumerGroupHeartbeat, the coordinator computes every member's target
//! assignment with a server-side assignor ([`assign`]) and moves each member
//! towards it incrementally — a partition is given to its new owner only once
//! its old owner has acknowledged revoking it, and members that keep their
//! partitions keep consuming throughout.
//!
//! Epochs as KIP-848 defines them: the *group epoch* is bumped by every change
//! of membership, subscriptions or subscribed topics' partitions; the target
//! assignment is computed for it (the *assignment epoch*); a member's *epoch*
//! reaches the assignment epoch once it holds nothing it must give up.
//!
//! [`ConsumerGroup`] is the whole replicated state (pure logic, no clock):
//! every change is proposed as a new version of it through the coordinator
//! partition's Raft log before the member that caused it is answered, so a new
//! coordinator continues exactly where the old one stopped. Only heartbeat
//! deadlines are the coordinator's own (see `groups::live`).

pub mod assign;
mod coordinator;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

pub use assign::{ASSIGNORS, Assignment, Assignor, TopicId};
pub(crate) use coordinator::ConsumerLive;

use crate::error::{GroupError, Result};

/// Where a member is on its way to its target assignment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberState {
    /// It holds its target (at the assignment epoch).
    #[default]
    Stable,
    /// It must give up partitions before it moves on.
    UnrevokedPartitions,
    /// It waits for partitions other members still hold.
    UnreleasedPartitions,
}

/// A member of a consumer group, as replicated.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerMember {
    /// Its id (the client's, or given by the coordinator in v0).
    pub member_id: String,
    /// `group.instance.id` (static membership).
    pub instance_id: Option<String>,
    /// `client.rack`.
    pub rack_id: Option<String>,
    /// Its client id.
    pub client_id: String,
    /// Its address, as the coordinator saw it.
    pub client_host: String,
    /// How long it may take to revoke partitions.
    pub rebalance_timeout_ms: i32,
    /// The topics it subscribes to.
    pub subscribed: BTreeSet<String>,
    /// The server-side assignor it asked for, if any.
    pub assignor: Option<String>,
    /// Its epoch.
    pub epoch: i32,
    /// Its epoch before the last bump (a request with it is still accepted,
    /// when the answer that bumped it was lost).
    pub previous_epoch: i32,
    /// Where it is in reconciliation.
    pub state: MemberState,
    /// What it may consume now.
    pub assigned: Assignment,
    /// What it was told to give up and has not yet acknowledged.
    pub revoking: Assignment,
    /// A static member that left for now (epoch -2): it keeps its partitions
    /// until its session times out or its instance rejoins.
    pub left: bool,
}

/// A consumer group's replicated state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerGroup {
    /// Bumped by every change; a replica keeps the newest version it applied.
    pub version: u64,
    /// The group epoch.
    pub epoch: i32,
    /// The epoch the target assignment was computed for.
    pub assignment_epoch: i32,
    /// The assignor that computed it.
    pub assignor: String,
    /// The subscribed topics as of the group epoch: name → (id, partitions).
    pub topics: BTreeMap<String, (TopicId, i32)>,
    /// Members by id.
    pub members: BTreeMap<String, ConsumerMember>,
    /// Each member's target assignment.
    pub target: BTreeMap<String, Assignment>,
}

/// A ConsumerGroupHeartbeat's fields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeartbeatRequest {
    /// The group.
    pub group: String,
    /// The member id.
    pub member_id: String,
    /// 0 to join, -1 to leave, -2 for a static member's temporary leave, else
    /// its current epoch.
    pub member_epoch: i32,
    /// `group.instance.id`, if static.
    pub instance_id: Option<String>,
    /// `client.rack`.
    pub rack_id: Option<String>,
    /// How long it may take to revoke (-1: unchanged).
    pub rebalance_timeout_ms: i32,
    /// Its subscription (`None`: unchanged).
    pub subscribed: Option<Vec<String>>,
    /// A regex subscription (v1; not supported).
    pub regex: Option<String>,
    /// The server-side assignor it asks for (`None`: unchanged or default).
    pub assignor: Option<String>,
    /// The partitions it owns (`None`: unchanged).
    pub owned: Option<Vec<(TopicId, Vec<i32>)>>,
    /// Its client id.
    pub client_id: String,
    /// Its address.
    pub client_host: String,
}

/// A ConsumerGroupHeartbeat's answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeartbeatResponse {
    /// The member id.
    pub member_id: String,
    /// Its epoch (-1 or -2 after a leave).
    pub member_epoch: i32,
    /// Its assignment, when it changed or the request asked for all of it.
    pub assignment: Option<Assignment>,
}

/// What the group logic needs from the node.
pub(crate) struct Env<'a> {
    /// A topic's id and partition count, if it exists.
    pub(crate) topic: &'a dyn Fn(&str) -> Option<(TopicId, i32)>,
    /// The assignor for members that name none.
    pub(crate) default_assignor: Assignor,
    /// Most members of one group.
    pub(crate) max_members: usize,
}

/// A new random member id (a v4 UUID), for a v0 client that joins without one.
pub fn new_member_id() -> String {
    crate::groups::classic::member::uuid4()
}

fn invalid(what: impl Into<String>) -> crate::error::Error {
    GroupError::InvalidRequest(what.into()).into()
}

fn pairs(a: &Assignment) -> impl Iterator<Item = (TopicId, i32)> + '_ {
    a.iter()
        .flat_map(|(t, ps)| ps.iter().map(move |p| (*t, *p)))
}

fn owned_set(owned: &[(TopicId, Vec<i32>)]) -> BTreeSet<(TopicId, i32)> {
    owned
        .iter()
        .flat_map(|(t, ps)| ps.iter().map(move |p| (*t, *p)))
        .collect()
}

impl ConsumerGroup {
    /// Kafka's state name: `Empty`, `Assigning`, `Reconciling` or `Stable`.
    pub fn state_name(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.assignment_epoch != self.epoch {
            "Assigning"
        } else if self
            .members
            .values()
            .any(|m| m.epoch != self.assignment_epoch || m.state != MemberState::Stable)
        {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    /// The member of static instance `instance`.
    fn by_instance(&self, instance: &str) -> Option<&ConsumerMember> {
        self.members
            .values()
            .find(|m| m.instance_id.as_deref() == Some(instance))
    }

    /// Handles one heartbeat (the caller persists the group if it changed).
    pub(crate) fn heartbeat(
        &mut self,
        req: &HeartbeatRequest,
        env: &Env<'_>,
    ) -> Result<HeartbeatResponse> {
        if req.member_id.is_empty() {
            return Err(invalid("a member id is required"));
        }
        // librdkafka sends an empty regex for "none".
        if req.regex.as_deref().is_some_and(|r| !r.is_empty()) {
            return Err(invalid(
                "regular-expression subscriptions are not supported; subscribe to topic names",
            ));
        }
        if let Some(a) = &req.assignor
            && Assignor::named(a).is_none()
        {
            return Err(GroupError::UnsupportedAssignor(a.clone()).into());
        }
        match req.member_epoch {
            -1 | -2 => return self.leave(req, env),
            0 => self.join(req, env)?,
            e if e > 0 => self.check_epoch(req)?,
            e => return Err(invalid(format!("member epoch {e}"))),
        }
        let id = req.member_id.as_str();
        let before = self.members.get(id).cloned();
        let m = self
            .members
            .get_mut(id)
            .ok_or_else(|| GroupError::UnknownMemberId(id.to_string()))?;
        let mut bump = false;
        if req.rebalance_timeout_ms >= 0 {
            m.rebalance_timeout_ms = req.rebalance_timeout_ms;
        }
        if let Some(s) = &req.subscribed {
            let s: BTreeSet<String> = s.iter().cloned().collect();
            bump |= s != m.subscribed;
            m.subscribed = s;
        }
        if req.assignor.is_some() && req.assignor != m.assignor {
            m.assignor = req.assignor.clone();
            bump = true;
        }
        if req.rack_id.is_some() {
            m.rack_id = req.rack_id.clone();
        }
        if bump {
            self.epoch += 1;
        }
        self.refresh(env);
        self.reconcile(id, req.owned.as_deref().map(owned_set).as_ref());
        let m = &self.members[id];
        let full = req.member_epoch == 0 || (req.owned.is_some() && req.subscribed.is_some());
        Ok(HeartbeatResponse {
            member_id: id.to_string(),
            member_epoch: m.epoch,
            assignment: (full || before.as_ref() != Some(m)).then(|| m.assigned.clone()),
        })
    }

    fn join(&mut self, req: &HeartbeatRequest, env: &Env<'_>) -> Result<()> {
        if req.rebalance_timeout_ms < 0 || req.subscribed.is_none() {
            return Err(invalid(
                "joining needs a rebalance timeout and subscribed topic names",
            ));
        }
        if let Some(i) = &req.instance_id
            && let Some(old) = self.by_instance(i)
            && old.member_id != req.member_id
        {
            if !old.left {
                return Err(GroupError::UnreleasedInstanceId(i.clone()).into());
            }
            // The instance is back: the new member id takes its place, epoch and
            // partitions (no rebalance).
            let old_id = old.member_id.clone();
            let mut m = self
                .members
                .remove(&old_id)
                .ok_or_else(|| GroupError::UnknownMemberId(old_id.clone()))?;
            m.member_id = req.member_id.clone();
            m.left = false;
            m.client_id = req.client_id.clone();
            m.client_host = req.client_host.clone();
            if let Some(t) = self.target.remove(&old_id) {
                self.target.insert(req.member_id.clone(), t);
            }
            self.members.insert(req.member_id.clone(), m);
            return Ok(());
        }
        if self.members.remove(&req.member_id).is_none() && self.members.len() >= env.max_members {
            return Err(GroupError::MaxSizeReached(env.max_members).into());
        }
        self.members.insert(
            req.member_id.clone(),
            ConsumerMember {
                member_id: req.member_id.clone(),
                instance_id: req.instance_id.clone(),
                client_id: req.client_id.clone(),
                client_host: req.client_host.clone(),
                previous_epoch: -1,
                ..ConsumerMember::default()
            },
        );
        self.epoch += 1;
        Ok(())
    }

    /// Kafka's epoch check: a newer epoch than the member's is fenced; an older
    /// one only if it is the previous epoch and the member owns nothing it no
    /// longer has (the answer that bumped it was lost).
    fn check_epoch(&self, req: &HeartbeatRequest) -> Result<()> {
        let m = self
            .members
            .get(&req.member_id)
            .filter(|m| !m.left)
            .ok_or_else(|| GroupError::UnknownMemberId(req.member_id.clone()))?;
        let e = req.member_epoch;
        let lost_answer = e == m.previous_epoch
            && req.owned.as_deref().is_none_or(|o| {
                owned_set(o).is_subset(&pairs(&m.assigned).collect::<BTreeSet<_>>())
            });
        if e > m.epoch || (e < m.epoch && !lost_answer) {
            return Err(GroupError::FencedMemberEpoch(e).into());
        }
        Ok(())
    }

    fn leave(&mut self, req: &HeartbeatRequest, env: &Env<'_>) -> Result<HeartbeatResponse> {
        let id = req.member_id.clone();
        let Some(m) = self.members.get_mut(&id) else {
            return Err(GroupError::UnknownMemberId(id).into());
        };
        if req.member_epoch == -2 && m.instance_id.is_some() {
            m.left = true;
        } else {
            self.remove_member(&id, env);
        }
        Ok(HeartbeatResponse {
            member_id: id,
            member_epoch: req.member_epoch,
            assignment: None,
        })
    }

    /// Removes a member (left, expired or fenced): its partitions go to others
    /// in a new epoch.
    pub(crate) fn remove_member(&mut self, id: &str, env: &Env<'_>) {
        if self.members.remove(id).is_some() {
            self.target.remove(id);
            self.epoch += 1;
            self.refresh(env);
        }
    }

    /// Brings the subscribed topics up to date (a new epoch when they changed)
    /// and the target assignment up to the group epoch.
    pub(crate) fn refresh(&mut self, env: &Env<'_>) {
        let names: BTreeSet<&String> = self.members.values().flat_map(|m| &m.subscribed).collect();
        let topics: BTreeMap<String, (TopicId, i32)> = names
            .into_iter()
            .filter_map(|n| (env.topic)(n).map(|t| (n.clone(), t)))
            .collect();
        if topics != self.topics {
            self.topics = topics;
            self.epoch += 1;
        }
        if self.assignment_epoch == self.epoch {
            return;
        }
        let assignor = self.choose_assignor(env.default_assignor);
        let subscribers: Vec<assign::Subscriber<'_>> = self
            .members
            .values()
            .map(|m| assign::Subscriber {
                id: &m.member_id,
                topics: m
                    .subscribed
                    .iter()
                    .filter_map(|n| self.topics.get(n).map(|t| t.0))
                    .collect(),
                previous: self.target.get(&m.member_id),
            })
            .collect();
        let partitions = self.topics.values().copied().collect();
        let target = assign::assign(assignor, &subscribers, &partitions);
        tracing::info!(
            epoch = self.epoch,
            members = self.members.len(),
            assignor = assignor.name(),
            "consumer group target assignment"
        );
        self.target = target;
        self.assignor = assignor.name().to_string();
        self.assignment_epoch = self.epoch;
    }

    /// The assignor most members asked for (ties: by name), else the default.
    fn choose_assignor(&self, default: Assignor) -> Assignor {
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for a in self.members.values().filter_map(|m| m.assignor.as_deref()) {
            *votes.entry(a).or_default() += 1;
        }
        votes
            .into_iter()
            .rev()
            .max_by_key(|(_, n)| *n)
            .and_then(|(a, _)| Assignor::named(a))
            .unwrap_or(default)
    }

    /// Moves member `id` towards its target: revoke first, then take only what
    /// no other member still holds.
    pub(crate) fn reconcile(&mut self, id: &str, owned: Option<&BTreeSet<(TopicId, i32)>>) {
        let target_epoch = self.assignment_epoch;
        let target = self.target.get(id).cloned().unwrap_or_default();
        let held: BTreeSet<(TopicId, i32)> = self
            .members
            .values()
            .filter(|m| m.member_id != id)
            .flat_map(|m| pairs(&m.assigned).chain(pairs(&m.revoking)))
            .collect();
        let Some(m) = self.members.get_mut(id) else {
            return;
        };
        match m.state {
            MemberState::UnrevokedPartitions => {
                let done = owned.is_some_and(|o| pairs(&m.revoking).all(|p| !o.contains(&p)));
                if !done {
                    return;
                }
                m.revoking.clear();
            }
            MemberState::Stable | MemberState::UnreleasedPartitions if m.epoch == target_epoch => {
                if m.state == MemberState::UnreleasedPartitions {
                    grant(m, &target, &held);
                }
                return;
            }
            _ => {}
        }
        let keep: Assignment = m
            .assigned
            .iter()
            .filter_map(|(t, ps)| {
                let ps: BTreeSet<i32> = ps
                    .iter()
                    .copied()
                    .filter(|p| target.get(t).is_some_and(|x| x.contains(p)))
                    .collect();
                (!ps.is_empty()).then_some((*t, ps))
            })
            .collect();
        let revoke: Assignment = m
            .assigned
            .iter()
            .filter_map(|(t, ps)| {
                let ps: BTreeSet<i32> = ps
                    .iter()
                    .copied()
                    .filter(|p| !target.get(t).is_some_and(|x| x.contains(p)))
                    .collect();
                (!ps.is_empty()).then_some((*t, ps))
            })
            .collect();
        if revoke.is_empty() {
            m.previous_epoch = m.epoch;
            m.epoch = target_epoch;
            grant(m, &target, &held);
        } else {
            m.assigned = keep;
            m.revoking = revoke;
            m.state = MemberState::UnrevokedPartitions;
        }
    }
}

/// Gives `m` every partition of its target that no other member holds.
fn grant(m: &mut ConsumerMember, target: &Assignment, held: &BTreeSet<(TopicId, i32)>) {
    let mut got = Assignment::new();
    let mut all = true;
    for (t, p) in pairs(target) {
        if held.contains(&(t, p)) {
            all = false;
        } else {
            got.entry(t).or_default().insert(p);
        }
    }
    m.assigned = got;
    m.state = if all {
        MemberState::Stable
    } else {
        MemberState::UnreleasedPartitions
    };
}
