//! The coordinator's live side: classic groups' protocol state per hosted
//! coordinator partition, fed by JoinGroup, SyncGroup, Heartbeat and LeaveGroup,
//! ticked by a timer task, and persisted (settled generations) through the
//! partition's Raft group.
//!
//! Live state belongs to one leadership term of one partition: when the
//! replica's leadership changes it is dropped (waiting requests get
//! NOT_COORDINATOR) and rebuilt from the stored generations on first use.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::error::{GroupError, Result};
use crate::groups::admin::DescribedGroup;
use crate::groups::classic::{
    ClassicGroup, JoinRequest, JoinResponse, Limits, State, SyncRequest, SyncResponse,
};
use crate::groups::consumer::ConsumerLive;
use crate::groups::machine::SharedReplica;
use crate::groups::store::{GroupCommand, StoredGeneration, encode_command};
use crate::ids::GroupId;
use crate::node::{Node, WeakNode};
use crate::raft::driver::{GroupMsg, Role};

/// How often sessions and join phases are checked.
const TICK: Duration = Duration::from_millis(100);
/// How long a persisted generation may take.
const PERSIST_TIMEOUT: Duration = Duration::from_secs(10);

/// The live groups of one coordinator partition, for one leadership term.
#[derive(Debug, Default)]
pub(crate) struct LivePartition {
    leader_terms: u64,
    /// Classic groups.
    pub(crate) groups: HashMap<String, ClassicGroup>,
    /// Consumer-protocol (KIP-848) groups.
    pub(crate) consumer: HashMap<String, ConsumerLive>,
}

/// Live state of every coordinator partition hosted here.
#[derive(Debug, Default)]
pub(crate) struct Live {
    partitions: Mutex<HashMap<GroupId, LivePartition>>,
}

impl Live {
    /// Runs `f` on partition `g`'s live state for the replica's current
    /// leadership term (what an earlier term left is dropped first).
    pub(crate) fn partition<T>(
        &self,
        g: GroupId,
        replica: &SharedReplica,
        f: impl FnOnce(&mut LivePartition) -> T,
    ) -> T {
        let mut parts = self.partitions.lock();
        let terms = replica.lock().leader_terms;
        let p = parts.entry(g).or_default();
        if p.leader_terms != terms {
            *p = LivePartition {
                leader_terms: terms,
                ..LivePartition::default()
            };
        }
        f(p)
    }

    /// Runs `f` on `group`'s live state in partition `g`, built from what the
    /// replica stored when this term first touches it. Without live or stored
    /// state, `f` gets `None` unless `create`.
    fn with<T>(
        &self,
        g: GroupId,
        replica: &SharedReplica,
        group: &str,
        create: bool,
        f: impl FnOnce(Option<&mut ClassicGroup>) -> T,
    ) -> T {
        let stored = replica
            .lock()
            .store
            .groups
            .get(group)
            .and_then(|s| s.generation.clone());
        self.partition(g, replica, |p| {
            if !p.groups.contains_key(group) {
                let restored = match stored {
                    Some(s) => Some(ClassicGroup::restore(group, &s, Instant::now())),
                    None if create => Some(ClassicGroup::new(group)),
                    None => None,
                };
                if let Some(c) = restored {
                    p.groups.insert(group.to_string(), c);
                }
            }
            f(p.groups.get_mut(group))
        })
    }

    /// `group` as DescribeGroups shows it: its live state, or the stored one;
    /// `Dead` when neither knows it.
    pub(crate) fn describe(
        &self,
        g: GroupId,
        replica: &SharedReplica,
        group: &str,
        meta: &crate::metadata::Metadata,
    ) -> DescribedGroup {
        if let Some(d) = self.describe_consumer(g, replica, group, meta) {
            return d;
        }
        let known = replica.lock().store.groups.contains_key(group);
        self.with(g, replica, group, false, |c| match c {
            Some(c) => c.describe(),
            None => DescribedGroup {
                state: if known { State::Empty.name() } else { "Dead" },
                group_type: "classic",
                protocol_type: String::new(),
                protocol: String::new(),
                members: Vec::new(),
            },
        })
    }

    /// Forgets `group`'s live state (deleted).
    pub(crate) fn forget(&self, g: GroupId, group: &str) {
        if let Some(p) = self.partitions.lock().get_mut(&g) {
            p.groups.remove(group);
            p.consumer.remove(group);
        }
    }

    /// Drops a partition's live state (leadership lost, replica removed).
    pub(crate) fn drop_partition(&self, g: GroupId) {
        self.partitions.lock().remove(&g);
    }
}

impl Node {
    fn limits(&self) -> Limits {
        let c = self.config();
        Limits {
            min_session: c.group_min_session_timeout,
            max_session: c.group_max_session_timeout,
            max_members: c.group_max_members,
            initial_delay: c.group_initial_rebalance_delay,
        }
    }

    /// JoinGroup: waits until the join phase completes (or answers at once).
    ///
    /// # Errors
    /// The [`GroupError`]s Kafka defines for JoinGroup, and those of finding the
    /// coordinator.
    pub async fn join_group(&self, req: JoinRequest) -> Result<JoinResponse> {
        if req.group.is_empty() {
            return Err(GroupError::InvalidGroupId(req.group).into());
        }
        let (g, replica) = self.coordinator_replica(&req.group)?;
        if self.consumer_group_active(g, &replica, &req.group) {
            return Err(GroupError::InconsistentProtocol.into());
        }
        let wait = Duration::from_millis(
            u64::try_from(req.rebalance_timeout_ms.max(req.session_timeout_ms)).unwrap_or(0),
        ) + self.config().group_initial_rebalance_delay
            + Duration::from_secs(5);
        let limits = self.limits();
        let group = req.group.clone();
        let (rx, replaced) = self.live().with(g, &replica, &group, true, |c| match c {
            Some(c) => c
                .join(req, Instant::now(), &limits)
                .map(|rx| (rx, c.take_replaced())),
            None => Err(GroupError::CoordinatorNotAvailable.into()),
        })?;
        if let Some(settled) = replaced {
            // A static member's new id: stored before it is answered, so that a
            // new coordinator knows it.
            self.persist_generation(g, &group, settled).await?;
        }
        await_answer(rx, wait).await
    }

    /// SyncGroup: the member's assignment once the leader's is persisted.
    ///
    /// # Errors
    /// The [`GroupError`]s Kafka defines for SyncGroup.
    pub async fn sync_group(&self, req: SyncRequest, timeout: Duration) -> Result<SyncResponse> {
        let (g, replica) = self.coordinator_replica(&req.group)?;
        let group = req.group.clone();
        let member = req.member_id.clone();
        let (rx, persist) = self.live().with(g, &replica, &group, false, |c| match c {
            Some(c) => c.sync(req, Instant::now()),
            None => Err(GroupError::UnknownMemberId(member).into()),
        })?;
        if let Some(settled) = persist {
            let generation = settled.generation;
            let outcome = self.persist_generation(g, &group, settled).await;
            self.live().with(g, &replica, &group, false, |c| {
                if let Some(c) = c {
                    c.persisted(generation, outcome);
                }
            });
        }
        await_answer(rx, timeout).await
    }

    /// Heartbeat.
    ///
    /// # Errors
    /// The [`GroupError`]s Kafka defines for Heartbeat.
    pub fn heartbeat(
        &self,
        group: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<()> {
        let (g, replica) = self.coordinator_replica(group)?;
        self.live().with(g, &replica, group, false, |c| match c {
            Some(c) => c.heartbeat(member_id, instance_id, generation, Instant::now()),
            None => Err(GroupError::UnknownMemberId(member_id.to_string()).into()),
        })
    }

    /// LeaveGroup for each `(member id, instance id)`; one result per member.
    ///
    /// # Errors
    /// Finding the coordinator fails; per member, the [`GroupError`]s Kafka
    /// defines for LeaveGroup.
    pub async fn leave_group(
        &self,
        group: &str,
        members: &[(String, Option<String>)],
    ) -> Result<Vec<Result<()>>> {
        let (g, replica) = self.coordinator_replica(group)?;
        let limits = self.limits();
        let (results, persist) = self.live().with(g, &replica, group, false, |c| {
            let Some(c) = c else {
                let unknown = |m: &String| Err(GroupError::UnknownMemberId(m.clone()).into());
                return (members.iter().map(|(m, _)| unknown(m)).collect(), None);
            };
            let mut persist = None;
            let results = members
                .iter()
                .map(|(m, i)| {
                    c.leave(m, i.as_deref(), Instant::now(), &limits)
                        .map(|p| persist = p.or(persist.take()))
                })
                .collect();
            (results, persist)
        });
        if let Some(settled) = persist {
            // The group emptied: its offsets stay, its members go.
            let _ = self.persist_generation(g, group, settled).await;
        }
        Ok(results)
    }

    /// The live state a commit is checked against (Kafka's validateOffsetCommit).
    pub(crate) fn check_commit(
        &self,
        g: GroupId,
        replica: &SharedReplica,
        group: &str,
        who: &super::Committer,
    ) -> Result<()> {
        if let Some(r) = self.check_consumer_commit(g, replica, group, who) {
            return r;
        }
        self.live().with(g, replica, group, false, |c| {
            let Some(c) = c else {
                return if who.generation < 0 {
                    Ok(())
                } else {
                    Err(GroupError::IllegalGeneration(who.generation).into())
                };
            };
            if who.generation < 0 && c.state == State::Empty {
                return Ok(());
            }
            if c.state == State::CompletingRebalance {
                return Err(GroupError::RebalanceInProgress.into());
            }
            c.check_member(&who.member_id, who.instance_id.as_deref(), who.generation)
        })
    }

    async fn persist_generation(
        &self,
        g: GroupId,
        group: &str,
        settled: StoredGeneration,
    ) -> Result<()> {
        let cmd = settle(group.to_string(), settled);
        self.propose_group_command(g, &cmd, PERSIST_TIMEOUT).await
    }

    pub(crate) fn live(&self) -> &Live {
        self.inner_coordinators().live()
    }
}

/// The command that stores `group`'s settled generation, stamped with this
/// coordinator's clock.
fn settle(group: String, generation: StoredGeneration) -> GroupCommand {
    GroupCommand::Generation {
        group,
        generation,
        now_ms: crate::batch::now_ms(),
    }
}

async fn await_answer<T>(
    rx: tokio::sync::oneshot::Receiver<Result<T>>,
    wait: Duration,
) -> Result<T> {
    match tokio::time::timeout(wait, rx).await {
        Ok(Ok(r)) => r,
        // The live state was dropped: leadership moved.
        Ok(Err(_)) => Err(GroupError::NotCoordinator.into()),
        Err(_) => Err(GroupError::RebalanceInProgress.into()),
    }
}

/// Ticks every live group of every coordinator partition this node leads:
/// expires sessions and join phases, persists groups that emptied, and drops
/// the live state of partitions it no longer leads.
pub(crate) async fn run_timers(node: WeakNode) {
    loop {
        tokio::time::sleep(TICK).await;
        let Some(node) = node.upgrade() else {
            return;
        };
        let limits = node.limits();
        let now = Instant::now();
        let mut persist = Vec::new();
        node.tick_consumer_groups(now);
        {
            let mut parts = node.live().partitions.lock();
            parts.retain(|g, _| {
                node.group_status(*g)
                    .is_some_and(|s| s.role == Role::Leader)
            });
            for (g, p) in parts.iter_mut() {
                for (id, c) in p.groups.iter_mut() {
                    if let Some(settled) = c.tick(now, &limits) {
                        persist.push((*g, id.clone(), settled));
                    }
                }
            }
        }
        for (g, group, settled) in persist {
            match encode_command(&settle(group, settled)) {
                Ok(data) => node.send_to_group(
                    g,
                    GroupMsg::Propose {
                        data,
                        reply: None,
                        bytes: None,
                    },
                ),
                Err(e) => {
                    tracing::error!(group = %g, error = %e, "cannot persist an emptied group")
                }
            }
        }
    }
}
