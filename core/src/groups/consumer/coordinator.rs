//! The consumer protocol on a coordinator: each group's state for the current
//! leadership term (restored from the replica's store on first use), heartbeat
//! deadlines, and the proposals that replicate every change before the member
//! that caused it is answered.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::{
    Assignment, Assignor, ConsumerGroup, Env, HeartbeatRequest, HeartbeatResponse, MemberState,
    TopicId,
};
use crate::error::{GroupError, Result};
use crate::groups::admin::{DescribedGroup, DescribedMember};
use crate::groups::live::Live;
use crate::groups::machine::SharedReplica;
use crate::groups::store::GroupCommand;
use crate::groups::{Committer, await_group_command};
use crate::ids::GroupId;
use crate::metadata::{Metadata, TopicKind};
use crate::node::Node;
use crate::raft::driver::GroupMsg;

/// How long a heartbeat that changed the group may wait for it to be replicated.
const PERSIST_TIMEOUT: Duration = Duration::from_secs(10);

type ProposalReply = tokio::sync::oneshot::Receiver<Result<crate::raft::driver::Applied>>;

/// The heartbeat interval of a member on its way to a new assignment.
const BUSY_INTERVAL: Duration = Duration::from_millis(50);

/// One consumer group's live state on its coordinator.
#[derive(Debug)]
pub(crate) struct ConsumerLive {
    /// The group, ahead of the store by the proposals in flight.
    pub(crate) group: ConsumerGroup,
    /// When each member's session ends.
    sessions: HashMap<String, Instant>,
    /// Since when each member in `UnrevokedPartitions` has been revoking.
    revoking_since: HashMap<String, Instant>,
}

impl ConsumerLive {
    fn restore(group: ConsumerGroup, now: Instant, session: Duration) -> ConsumerLive {
        let sessions = group
            .members
            .keys()
            .map(|m| (m.clone(), now + session))
            .collect();
        ConsumerLive {
            group,
            sessions,
            revoking_since: HashMap::new(),
        }
    }

    /// Keeps the deadlines in step with the group after a heartbeat of `id`.
    /// (A static member that left keeps its partitions for one session.)
    fn touch(&mut self, id: &str, now: Instant, session: Duration) {
        self.sessions.insert(id.to_string(), now + session);
        let members = &self.group.members;
        self.sessions.retain(|m, _| members.contains_key(m));
        self.revoking_since.retain(|m, _| {
            members
                .get(m)
                .is_some_and(|m| m.state == MemberState::UnrevokedPartitions)
        });
        for (m, c) in members {
            if c.state == MemberState::UnrevokedPartitions {
                self.revoking_since.entry(m.clone()).or_insert(now);
            }
        }
    }
}

/// The consumer group `group`, as ListGroups and DescribeGroups show it
/// (assignments in the classic ConsumerProtocolAssignment encoding).
fn describe(group: &ConsumerGroup, names: &dyn Fn(&TopicId) -> Option<String>) -> DescribedGroup {
    DescribedGroup {
        state: group.state_name(),
        group_type: "consumer",
        protocol_type: "consumer".to_string(),
        protocol: group.assignor.clone(),
        members: group
            .members
            .values()
            .map(|m| DescribedMember {
                member_id: m.member_id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                metadata: encode_subscription(&m.subscribed),
                assignment: encode_assignment(&m.assigned, names),
            })
            .collect(),
    }
}

/// Kafka's ConsumerProtocolSubscription v0: the topic names, then empty user
/// data.
fn encode_subscription(topics: &std::collections::BTreeSet<String>) -> Vec<u8> {
    let mut b = vec![0, 0];
    b.extend_from_slice(&i32::try_from(topics.len()).unwrap_or(0).to_be_bytes());
    for t in topics {
        b.extend_from_slice(&i16::try_from(t.len()).unwrap_or(0).to_be_bytes());
        b.extend_from_slice(t.as_bytes());
    }
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b
}

/// Kafka's ConsumerProtocolAssignment v0: topics with their partitions, then
/// empty user data.
fn encode_assignment(a: &Assignment, names: &dyn Fn(&TopicId) -> Option<String>) -> Vec<u8> {
    let topics: Vec<(String, &std::collections::BTreeSet<i32>)> = a
        .iter()
        .filter_map(|(t, ps)| Some((names(t)?, ps)))
        .collect();
    let mut b = vec![0, 0];
    b.extend_from_slice(&i32::try_from(topics.len()).unwrap_or(0).to_be_bytes());
    for (name, ps) in topics {
        b.extend_from_slice(&i16::try_from(name.len()).unwrap_or(0).to_be_bytes());
        b.extend_from_slice(name.as_bytes());
        b.extend_from_slice(&i32::try_from(ps.len()).unwrap_or(0).to_be_bytes());
        for p in ps {
            b.extend_from_slice(&p.to_be_bytes());
        }
    }
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b
}

/// A data topic's id and partition count.
fn data_topic(meta: &Metadata, name: &str) -> Option<(TopicId, i32)> {
    let t = meta.topics.get(name)?;
    (t.kind == TopicKind::Data).then(|| (t.id, i32::try_from(t.partitions.len()).unwrap_or(0)))
}

impl Live {
    /// `group` as DescribeGroups shows it, if it is a consumer-protocol group.
    pub(crate) fn describe_consumer(
        &self,
        g: GroupId,
        replica: &SharedReplica,
        group: &str,
        meta: &Metadata,
    ) -> Option<DescribedGroup> {
        let c = self.consumer_group(g, replica, group)?;
        let names = |id: &TopicId| meta.topic_ids.get(id).cloned();
        Some(describe(&c, &names))
    }

    /// The consumer-protocol group `group`: its live state, or the stored one.
    pub(crate) fn consumer_group(
        &self,
        g: GroupId,
        replica: &SharedReplica,
        group: &str,
    ) -> Option<ConsumerGroup> {
        let stored = replica.lock().store.consumer.get(group).cloned();
        self.partition(g, replica, |p| {
            p.consumer.get(group).map(|c| c.group.clone()).or(stored)
        })
    }
}

impl Node {
    fn consumer_session(&self) -> Duration {
        self.config().group_consumer_session_timeout
    }

    /// ConsumerGroupHeartbeat: joins, leaves, or moves a member towards its
    /// target assignment; answers once any change is replicated. Also returns
    /// the heartbeat interval the member must keep.
    ///
    /// # Errors
    /// The [`GroupError`]s KIP-848 defines (unknown member, fenced or stale
    /// epochs, an unreleased instance id, an unknown assignor, a full group),
    /// and those of finding the coordinator.
    pub async fn consumer_heartbeat(
        &self,
        req: HeartbeatRequest,
    ) -> Result<(HeartbeatResponse, Duration)> {
        if req.group.is_empty() {
            return Err(GroupError::InvalidGroupId(req.group).into());
        }
        let (g, replica) = self.coordinator_replica(&req.group)?;
        let (answer, busy, wait) = self.consumer_heartbeat_now(g, &replica, &req)?;
        if let Some(rx) = wait {
            await_group_command(g, rx, PERSIST_TIMEOUT).await?;
        }
        let interval = self.config().group_consumer_heartbeat_interval;
        Ok((
            answer,
            if busy {
                interval.min(BUSY_INTERVAL)
            } else {
                interval
            },
        ))
    }

    /// The part of a heartbeat done under the live lock: the answer, whether
    /// the member is on its way to a new assignment, and the proposal of the
    /// change to wait for.
    #[allow(clippy::type_complexity)]
    fn consumer_heartbeat_now(
        &self,
        g: GroupId,
        replica: &SharedReplica,
        req: &HeartbeatRequest,
    ) -> Result<(HeartbeatResponse, bool, Option<ProposalReply>)> {
        let session = self.consumer_session();
        let now = Instant::now();
        let (stored, classic) = {
            let r = replica.lock();
            let s = r.store.groups.get(&req.group);
            (
                r.store.consumer.get(&req.group).cloned(),
                s.is_some_and(|s| s.has_members()),
            )
        };
        self.with_consumer_env(|env| {
            self.live().partition(g, replica, |p| {
                let classic = classic
                    || p.groups
                        .get(&req.group)
                        .is_some_and(|c| !c.members.is_empty());
                if classic && !p.consumer.contains_key(&req.group) {
                    return Err(GroupError::InconsistentProtocol.into());
                }
                let c = p.consumer.entry(req.group.clone()).or_insert_with(|| {
                    ConsumerLive::restore(stored.unwrap_or_default(), now, session)
                });
                let before = c.group.clone();
                let answer = match c.group.heartbeat(req, env) {
                    Ok(a) => a,
                    Err(e) => {
                        if before == ConsumerGroup::default() {
                            // Nothing was created.
                            p.consumer.remove(&req.group);
                        } else {
                            c.group = before;
                        }
                        return Err(e);
                    }
                };
                c.touch(&req.member_id, now, session);
                let busy = c.group.members.get(&req.member_id).is_some_and(|m| {
                    m.state != MemberState::Stable || m.epoch != c.group.assignment_epoch
                });
                if c.group == before {
                    return Ok((answer, busy, None));
                }
                c.group.version += 1;
                let cmd = GroupCommand::Consumer {
                    group: req.group.clone(),
                    state: c.group.clone(),
                    now_ms: crate::batch::now_ms(),
                };
                // Proposed under the live lock: proposals reach the log in the order
                // the changes were made.
                Ok((answer, busy, Some(self.start_group_command(g, &cmd)?)))
            })
        })
    }

    /// Runs `f` with what the group logic needs from this node now: its
    /// topics, the default assignor, the member bound.
    fn with_consumer_env<T>(&self, f: impl FnOnce(&Env<'_>) -> T) -> T {
        let cfg = self.config();
        let meta = self.metadata();
        let topic = |n: &str| data_topic(&meta, n);
        f(&Env {
            topic: &topic,
            default_assignor: Assignor::named(&cfg.group_consumer_assignor)
                .unwrap_or(Assignor::Uniform),
            max_members: cfg.group_max_members,
        })
    }

    /// The consumer-protocol group `group` (ConsumerGroupDescribe); `None` when
    /// no such group exists.
    ///
    /// # Errors
    /// Those of finding the group's coordinator here.
    pub fn consumer_group(&self, group: &str) -> Result<Option<ConsumerGroup>> {
        let (g, replica) = self.coordinator_replica(group)?;
        Ok(self.live().consumer_group(g, &replica, group))
    }

    /// Whether `group` is a consumer-protocol group with members (a classic
    /// JoinGroup for it is refused).
    pub(crate) fn consumer_group_active(
        &self,
        g: GroupId,
        replica: &SharedReplica,
        group: &str,
    ) -> bool {
        self.live()
            .consumer_group(g, replica, group)
            .is_some_and(|c| !c.members.is_empty())
    }

    /// The offset-commit check for a consumer-protocol group; `None` for a
    /// group that is not one. A member commits with its epoch (or the one
    /// before, whose bump it may not have seen yet); anyone else only while the
    /// group has no members.
    pub(crate) fn check_consumer_commit(
        &self,
        g: GroupId,
        replica: &SharedReplica,
        group: &str,
        who: &Committer,
    ) -> Option<Result<()>> {
        let c = self.live().consumer_group(g, replica, group)?;
        if who.generation < 0 && who.member_id.is_empty() && c.members.is_empty() {
            return Some(Ok(()));
        }
        let Some(m) = c.members.get(&who.member_id) else {
            return Some(Err(
                GroupError::UnknownMemberId(who.member_id.clone()).into()
            ));
        };
        if who.generation != m.epoch && who.generation != m.previous_epoch {
            return Some(Err(GroupError::StaleMemberEpoch(who.generation).into()));
        }
        Some(Ok(()))
    }

    /// Expires consumer-group members whose session ended or who did not revoke
    /// within their rebalance timeout, and replicates the groups that changed.
    pub(crate) fn tick_consumer_groups(&self, now: Instant) {
        self.with_consumer_env(|env| self.tick_consumer_groups_with(now, env));
    }

    fn tick_consumer_groups_with(&self, now: Instant, env: &Env<'_>) {
        let session = self.consumer_session();
        for (g, replica) in self.inner_coordinators().replicas() {
            let led = self
                .group_status(g)
                .is_some_and(|s| s.role == crate::raft::driver::Role::Leader);
            if !led {
                continue;
            }
            self.live().partition(g, &replica, |p| {
                for (id, c) in &mut p.consumer {
                    if !tick(c, now, session, env) {
                        continue;
                    }
                    c.group.version += 1;
                    let cmd = GroupCommand::Consumer {
                        group: id.clone(),
                        state: c.group.clone(),
                        now_ms: crate::batch::now_ms(),
                    };
                    match crate::groups::store::encode_command(&cmd) {
                        Ok(data) => self.send_to_group(
                            g,
                            GroupMsg::Propose {
                                data,
                                reply: None,
                                bytes: None,
                            },
                        ),
                        Err(e) => tracing::error!(group = %g, error = %e, "cannot persist a consumer group"),
                    }
                }
            });
        }
    }
}

/// Removes the members of `c` whose session ended or whose revocation took
/// longer than their rebalance timeout; whether the group changed.
pub(crate) fn tick(c: &mut ConsumerLive, now: Instant, session: Duration, env: &Env<'_>) -> bool {
    let mut gone = Vec::new();
    for (id, m) in &c.group.members {
        let deadline = *c.sessions.entry(id.clone()).or_insert(now + session);
        let revoke_by = c.revoking_since.get(id).map(|since| {
            *since + Duration::from_millis(u64::try_from(m.rebalance_timeout_ms).unwrap_or(0))
        });
        if deadline <= now {
            tracing::info!(member = %id, "consumer group member's session expired");
            gone.push(id.clone());
        } else if revoke_by.is_some_and(|t| t <= now) {
            tracing::info!(member = %id, "consumer group member did not revoke in time; fenced");
            gone.push(id.clone());
        }
    }
    for id in &gone {
        c.group.remove_member(id, env);
        c.sessions.remove(id);
        c.revoking_since.remove(id);
    }
    !gone.is_empty()
}
