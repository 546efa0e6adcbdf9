//! The classic group protocol's live state on a coordinator: JoinGroup,
//! SyncGroup, Heartbeat and LeaveGroup as Kafka's `ClassicGroup` defines them
//! (states Empty → PreparingRebalance → CompletingRebalance → Stable, member
//! ids handed out with MEMBER_ID_REQUIRED, static members, session and
//! rebalance timeouts). Pure logic over an injected clock: the coordinator
//! (`groups::live`) feeds it requests and ticks, and persists what it asks.
//!
//! Only settled generations are replicated (see [`StoredGeneration`]); the rest
//! (who has rejoined, heartbeat deadlines, waiting requests) lives here and is
//! rebuilt from the last stored generation by a new coordinator.

use std::collections::BTreeMap;
use std::time::Instant;

use tokio::sync::oneshot;

use crate::error::{GroupError, Result};
use crate::groups::store::StoredGeneration;

pub use types::*;

pub(crate) mod member;
mod queries;
mod types;

use member::{JoinWaiter, Member, clone_error, duration, uuid4};

/// What the coordinator must do after a call: persist a settled generation
/// (then call [`ClassicGroup::persisted`] with its id).
pub(crate) type Persist = Option<StoredGeneration>;

/// One classic group's live state.
#[derive(Debug)]
pub(crate) struct ClassicGroup {
    /// The group id (for logs).
    pub(crate) id: String,
    pub(crate) state: State,
    pub(crate) protocol_type: Option<String>,
    pub(crate) generation: i32,
    pub(crate) protocol: Option<String>,
    pub(crate) leader: Option<String>,
    pub(crate) members: BTreeMap<String, Member>,
    /// Ids given with MEMBER_ID_REQUIRED, until they join (or their session
    /// timeout passes).
    pending: BTreeMap<String, Instant>,
    /// When the join phase ends at the latest.
    rebalance_deadline: Option<Instant>,
    /// The first rebalance of an empty group waits this long for more members.
    initial_until: Option<Instant>,
    /// A generation being persisted (its id), before SyncGroup answers go out.
    persisting: Option<i32>,
    /// A static member took its old member's place without a rebalance: the
    /// settled generation, with the new id, must be stored again.
    replaced: bool,
}

impl ClassicGroup {
    /// An empty group.
    pub(crate) fn new(id: &str) -> ClassicGroup {
        ClassicGroup {
            id: id.to_string(),
            state: State::Empty,
            protocol_type: None,
            generation: 0,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending: BTreeMap::new(),
            rebalance_deadline: None,
            initial_until: None,
            persisting: None,
            replaced: false,
        }
    }

    /// The generation to store after a static member's replacement (once).
    pub(crate) fn take_replaced(&mut self) -> Persist {
        std::mem::take(&mut self.replaced).then(|| self.settled())
    }

    /// The group as its last stored generation left it: Stable with its members
    /// (their sessions start now), or Empty.
    pub(crate) fn restore(id: &str, g: &StoredGeneration, now: Instant) -> ClassicGroup {
        let mut c = ClassicGroup::new(id);
        c.generation = g.generation;
        c.protocol_type = (!g.protocol_type.is_empty()).then(|| g.protocol_type.clone());
        c.protocol = g.protocol.clone();
        c.leader = g.leader.clone();
        for m in &g.members {
            let protocol = g.protocol.clone().unwrap_or_default();
            c.members.insert(
                m.member_id.clone(),
                Member {
                    id: m.member_id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session: duration(m.session_timeout_ms),
                    rebalance: duration(m.rebalance_timeout_ms),
                    protocols: vec![(protocol, m.subscription.clone())],
                    assignment: m.assignment.clone(),
                    join: None,
                    sync: None,
                    deadline: now + duration(m.session_timeout_ms),
                },
            );
        }
        if !c.members.is_empty() {
            c.state = State::Stable;
        }
        c
    }

    /// The generation to store now.
    fn settled(&self) -> StoredGeneration {
        let protocol = self.protocol.clone().unwrap_or_default();
        StoredGeneration {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            members: self.members.values().map(|m| m.stored(&protocol)).collect(),
        }
    }

    fn by_instance(&self, instance: &str) -> Option<&str> {
        self.members
            .values()
            .find(|m| m.instance_id.as_deref() == Some(instance))
            .map(|m| m.id.as_str())
    }

    /// A member id that names `instance`'s current member, when a request gives
    /// both: another id for the same instance was fenced.
    fn check_instance(&self, member_id: &str, instance: Option<&str>) -> Result<()> {
        if let Some(i) = instance
            && let Some(current) = self.by_instance(i)
            && current != member_id
        {
            return Err(GroupError::FencedInstanceId(i.to_string()).into());
        }
        Ok(())
    }

    fn supports(&self, protocol_type: &str, protocols: &[(String, Vec<u8>)]) -> bool {
        if protocol_type.is_empty() || protocols.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|(p, _)| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(q, _)| q == p))
            })
    }

    /// Handles a JoinGroup: an answer now, or a receiver for the answer when the
    /// join phase completes.
    pub(crate) fn join(
        &mut self,
        req: JoinRequest,
        now: Instant,
        limits: &Limits,
    ) -> Result<oneshot::Receiver<Result<JoinResponse>>> {
        let session = duration(req.session_timeout_ms);
        if session < limits.min_session || session > limits.max_session {
            return Err(GroupError::InvalidSessionTimeout(req.session_timeout_ms).into());
        }
        if !self.supports(&req.protocol_type, &req.protocols) {
            return Err(GroupError::InconsistentProtocol.into());
        }
        let (tx, rx) = oneshot::channel();
        if req.member_id.is_empty() {
            let id = format!("{}-{}", req.client_id, uuid4());
            if let Some(instance) = req.instance_id.clone() {
                // A static member's new instance takes the old one's place.
                if let Some(old) = self.by_instance(&instance).map(str::to_string) {
                    let mut m = self
                        .members
                        .remove(&old)
                        .ok_or(GroupError::UnknownMemberId(old.clone()))?;
                    if let Some(w) = m.join.take() {
                        let _ = w.send(Err(GroupError::FencedInstanceId(instance.clone()).into()));
                    }
                    if let Some(w) = m.sync.take() {
                        let _ = w.send(Err(GroupError::FencedInstanceId(instance.clone()).into()));
                    }
                    m.protocols = req.protocols.clone();
                    m.id = id.clone();
                    m.deadline = now + session;
                    m.session = session;
                    m.rebalance = duration(req.rebalance_timeout_ms);
                    if self.leader.as_deref() == Some(old.as_str()) {
                        self.leader = Some(id.clone());
                    }
                    self.members.insert(id.clone(), m);
                    // As Kafka: only a change of the group's protocol calls for a
                    // rebalance (its subscription may differ, e.g. in the
                    // partitions it owned).
                    let same = self.choose_protocol() == self.protocol;
                    if self.state == State::Stable && same {
                        // No rebalance: the member gets the current generation and
                        // syncs for its assignment. A leader keeps its assignments
                        // (KIP-814: it must not compute new ones).
                        let mut answer = self.answer_for(&id);
                        answer.skip_assignment = !answer.members.is_empty();
                        answer.replaced = Some(old);
                        self.replaced = true;
                        let _ = tx.send(Ok(answer));
                        return Ok(rx);
                    }
                    if let Some(m) = self.members.get_mut(&id) {
                        m.join = Some(tx);
                    }
                    self.prepare_rebalance(now, limits);
                    self.maybe_complete_join(now);
                    return Ok(rx);
                }
            } else if req.require_known_member_id {
                if self.members.len() + self.pending.len() >= limits.max_members {
                    return Err(GroupError::MaxSizeReached(limits.max_members).into());
                }
                self.pending.insert(id.clone(), now + session);
                return Err(GroupError::MemberIdRequired(id).into());
            }
            return self.add_member(id, req, tx, rx, now, limits);
        }
        if self.pending.remove(&req.member_id).is_some() {
            let id = req.member_id.clone();
            return self.add_member(id, req, tx, rx, now, limits);
        }
        self.check_instance(&req.member_id, req.instance_id.as_deref())?;
        let state = self.state;
        let Some(m) = self.members.get_mut(&req.member_id) else {
            return Err(GroupError::UnknownMemberId(req.member_id).into());
        };
        m.deadline = now + session;
        m.session = session;
        m.rebalance = duration(req.rebalance_timeout_ms);
        let changed = m.protocols != req.protocols;
        m.protocols = req.protocols;
        let is_leader = self.leader.as_deref() == Some(req.member_id.as_str());
        match state {
            State::PreparingRebalance => {
                if let Some(old) = m.join.replace(tx) {
                    let _ = old.send(Err(GroupError::RebalanceInProgress.into()));
                }
            }
            State::CompletingRebalance | State::Stable
                if !(changed || (state == State::Stable && is_leader)) =>
            {
                let _ = tx.send(Ok(self.answer_for(&req.member_id)));
                return Ok(rx);
            }
            State::CompletingRebalance | State::Stable => {
                m.join = Some(tx);
                tracing::debug!(group = %self.id, member = %req.member_id, changed, is_leader, ?state, "a member's join starts a rebalance");
                self.prepare_rebalance(now, limits);
            }
            State::Empty => return Err(GroupError::UnknownMemberId(req.member_id).into()),
        }
        self.maybe_complete_join(now);
        Ok(rx)
    }

    fn add_member(
        &mut self,
        id: String,
        req: JoinRequest,
        tx: JoinWaiter,
        rx: oneshot::Receiver<Result<JoinResponse>>,
        now: Instant,
        limits: &Limits,
    ) -> Result<oneshot::Receiver<Result<JoinResponse>>> {
        if self.members.len() >= limits.max_members {
            return Err(GroupError::MaxSizeReached(limits.max_members).into());
        }
        if self.members.is_empty() {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        let session = duration(req.session_timeout_ms);
        self.members.insert(
            id.clone(),
            Member {
                id,
                instance_id: req.instance_id,
                client_id: req.client_id,
                client_host: req.client_host,
                session,
                rebalance: duration(req.rebalance_timeout_ms),
                protocols: req.protocols,
                assignment: Vec::new(),
                join: Some(tx),
                sync: None,
                deadline: now + session,
            },
        );
        self.prepare_rebalance(now, limits);
        self.maybe_complete_join(now);
        Ok(rx)
    }

    /// The current generation as a JoinGroup answer for `member`.
    fn answer_for(&self, member: &str) -> JoinResponse {
        let leader = self.leader.clone().unwrap_or_default();
        let protocol = self.protocol.clone().unwrap_or_default();
        JoinResponse {
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            member_id: member.to_string(),
            members: if leader == member {
                self.members
                    .values()
                    .map(|m| (m.id.clone(), m.instance_id.clone(), m.metadata(&protocol)))
                    .collect()
            } else {
                Vec::new()
            },
            leader,
            skip_assignment: false,
            replaced: None,
        }
    }

    fn prepare_rebalance(&mut self, now: Instant, limits: &Limits) {
        if self.state == State::PreparingRebalance {
            return;
        }
        // Members waiting for assignments learn of the new round.
        for m in self.members.values_mut() {
            if let Some(w) = m.sync.take() {
                let _ = w.send(Err(GroupError::RebalanceInProgress.into()));
            }
        }
        let timeout = self
            .members
            .values()
            .map(|m| m.rebalance)
            .max()
            .unwrap_or(limits.initial_delay);
        if self.state == State::Empty {
            self.initial_until = Some(now + limits.initial_delay.min(timeout));
        }
        self.rebalance_deadline = Some(now + timeout);
        self.state = State::PreparingRebalance;
        self.persisting = None;
        tracing::info!(group = %self.id, generation = self.generation, members = self.members.len(), timeout_ms = timeout.as_millis(), "preparing a rebalance");
    }

    /// Completes the join phase once every member has rejoined (and an empty
    /// group's initial delay passed), or when the rebalance deadline passes.
    fn maybe_complete_join(&mut self, now: Instant) {
        if self.state != State::PreparingRebalance {
            return;
        }
        let all = self.members.values().all(|m| m.join.is_some());
        let delayed = self.initial_until.is_some_and(|t| now < t);
        let expired = self.rebalance_deadline.is_some_and(|t| now >= t);
        if !(expired || (all && !delayed)) {
            return;
        }
        let before = self.members.len();
        self.members.retain(|_, m| m.join.is_some());
        tracing::info!(
            group = %self.id, generation = self.generation + 1, members = self.members.len(),
            dropped = before - self.members.len(), "join phase complete"
        );
        self.initial_until = None;
        self.rebalance_deadline = None;
        self.generation += 1;
        if self.members.is_empty() {
            self.state = State::Empty;
            self.protocol = None;
            self.leader = None;
            return;
        }
        self.protocol = self.choose_protocol();
        if !self
            .leader
            .as_ref()
            .is_some_and(|l| self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        self.state = State::CompletingRebalance;
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let answer = self.answer_for(&id);
            if let Some(m) = self.members.get_mut(&id) {
                m.deadline = now + m.session;
                if let Some(w) = m.join.take() {
                    let _ = w.send(Ok(answer));
                }
            }
        }
    }

    /// The protocol every member supports that most members prefer (each votes
    /// for the first of its own list that all support).
    fn choose_protocol(&self) -> Option<String> {
        let all = |p: &str| {
            self.members
                .values()
                .all(|m| m.protocols.iter().any(|(q, _)| q == p))
        };
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some((p, _)) = m.protocols.iter().find(|(p, _)| all(p)) {
                *votes.entry(p.as_str()).or_default() += 1;
            }
        }
        votes
            .into_iter()
            .max_by_key(|(_, n)| *n)
            .map(|(p, _)| p.to_string())
    }

    /// Handles a SyncGroup: the answer now, or a receiver for it; and a
    /// generation to persist when the leader's assignments arrived.
    pub(crate) fn sync(
        &mut self,
        req: SyncRequest,
        now: Instant,
    ) -> Result<(oneshot::Receiver<Result<SyncResponse>>, Persist)> {
        self.check_instance(&req.member_id, req.instance_id.as_deref())?;
        if !self.members.contains_key(&req.member_id) {
            return Err(GroupError::UnknownMemberId(req.member_id).into());
        }
        if req.generation != self.generation {
            return Err(GroupError::IllegalGeneration(req.generation).into());
        }
        if req
            .protocol_type
            .as_ref()
            .is_some_and(|t| Some(t) != self.protocol_type.as_ref())
            || req
                .protocol
                .as_ref()
                .is_some_and(|p| Some(p) != self.protocol.as_ref())
        {
            return Err(GroupError::InconsistentProtocol.into());
        }
        let (tx, rx) = oneshot::channel();
        match self.state {
            State::Empty => return Err(GroupError::UnknownMemberId(req.member_id).into()),
            State::PreparingRebalance => return Err(GroupError::RebalanceInProgress.into()),
            State::Stable => {
                let m = &self.members[&req.member_id];
                let _ = tx.send(Ok(self.sync_answer(m)));
                return Ok((rx, None));
            }
            State::CompletingRebalance => {}
        }
        let is_leader = self.leader.as_deref() == Some(req.member_id.as_str());
        if let Some(m) = self.members.get_mut(&req.member_id) {
            m.deadline = now + m.session;
            if let Some(old) = m.sync.replace(tx) {
                let _ = old.send(Err(GroupError::RebalanceInProgress.into()));
            }
        }
        if !is_leader || self.persisting.is_some() {
            return Ok((rx, None));
        }
        let assignments: BTreeMap<String, Vec<u8>> = req.assignments.into_iter().collect();
        for m in self.members.values_mut() {
            m.assignment = assignments.get(&m.id).cloned().unwrap_or_default();
        }
        self.persisting = Some(self.generation);
        Ok((rx, Some(self.settled())))
    }

    fn sync_answer(&self, m: &Member) -> SyncResponse {
        SyncResponse {
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            assignment: m.assignment.clone(),
        }
    }

    /// Generation `generation` is durable: members waiting in SyncGroup get their
    /// assignments, and the group is Stable. (Nothing happens if another round
    /// began meanwhile.)
    pub(crate) fn persisted(&mut self, generation: i32, outcome: Result<()>) {
        if self.persisting != Some(generation) || self.generation != generation {
            return;
        }
        self.persisting = None;
        match outcome {
            Ok(()) => {
                self.state = State::Stable;
                let answers: Vec<(String, SyncResponse)> = self
                    .members
                    .values()
                    .map(|m| (m.id.clone(), self.sync_answer(m)))
                    .collect();
                for (id, a) in answers {
                    if let Some(w) = self.members.get_mut(&id).and_then(|m| m.sync.take()) {
                        let _ = w.send(Ok(a));
                    }
                }
            }
            Err(e) => {
                for m in self.members.values_mut() {
                    if let Some(w) = m.sync.take() {
                        let _ = w.send(Err(clone_error(&e)));
                    }
                }
            }
        }
    }

    /// Handles one member of a LeaveGroup; returns a generation to persist when
    /// the group became empty.
    pub(crate) fn leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        now: Instant,
        limits: &Limits,
    ) -> Result<Persist> {
        let id = match instance_id {
            Some(i) => {
                let current = self
                    .by_instance(i)
                    .ok_or_else(|| GroupError::UnknownMemberId(member_id.to_string()))?
                    .to_string();
                if !member_id.is_empty() && member_id != current {
                    return Err(GroupError::FencedInstanceId(i.to_string()).into());
                }
                current
            }
            None => member_id.to_string(),
        };
        if self.pending.remove(&id).is_some() {
            return Ok(None);
        }
        let mut m = self
            .members
            .remove(&id)
            .ok_or_else(|| GroupError::UnknownMemberId(id.clone()))?;
        if let Some(w) = m.join.take() {
            let _ = w.send(Err(GroupError::UnknownMemberId(id.clone()).into()));
        }
        if let Some(w) = m.sync.take() {
            let _ = w.send(Err(GroupError::UnknownMemberId(id.clone()).into()));
        }
        Ok(self.member_gone(now, limits))
    }

    /// After a member left or expired: rebalance, or settle as empty.
    fn member_gone(&mut self, now: Instant, limits: &Limits) -> Persist {
        if self.members.is_empty() && self.state != State::PreparingRebalance {
            self.state = State::Empty;
            self.generation += 1;
            self.protocol = None;
            self.leader = None;
            self.persisting = None;
            return Some(self.settled());
        }
        match self.state {
            State::Stable | State::CompletingRebalance => self.prepare_rebalance(now, limits),
            State::PreparingRebalance => {}
            State::Empty => {}
        }
        self.maybe_complete_join(now);
        (self.state == State::Empty).then(|| self.settled())
    }

    /// Expires sessions, pending member ids and join phases; returns a
    /// generation to persist when the group became empty.
    pub(crate) fn tick(&mut self, now: Instant, limits: &Limits) -> Persist {
        self.pending.retain(|_, deadline| *deadline > now);
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| m.deadline <= now && m.join.is_none() && m.sync.is_none())
            .map(|m| m.id.clone())
            .collect();
        let mut persist = None;
        for id in expired {
            tracing::info!(member = %id, "group member's session expired");
            self.members.remove(&id);
            persist = self.member_gone(now, limits).or(persist);
        }
        let before = self.state;
        self.maybe_complete_join(now);
        if before == State::PreparingRebalance && self.state == State::Empty {
            persist = Some(self.settled());
        }
        persist
    }
}

#[cfg(test)]
mod tests;
