//! Moving a partition's replicas (AlterPartitionReassignments, `weir topics
//! reassign`; issue 22 item 2).
//!
//! Metadata records the target ([`MetaCommand::Reassign`]); the nodes of the
//! target start a replica of the group (with no configuration: they learn it
//! from the leader). The group's leader then moves its Raft configuration one
//! step at a time, each step a single-node change (see
//! `raft/driver/membership.rs`):
//!
//! 1. each target node not yet a member is added as a learner;
//! 2. a learner that has caught up (it has everything committed) becomes a
//!    voter;
//! 3. once every target node votes, the voters outside the target are
//!    removed, the leader last (it first hands leadership to a target voter);
//! 4. when the voters are exactly the target, the leader finishes the move in
//!    metadata ([`MetaCommand::FinishReassignment`]): the target becomes the
//!    partition's replicas, and the nodes that left remove their replica.
//!
//! Every step is idempotent and decided from the configuration the leader
//! has applied, so a leader that dies mid-move leaves the next one to go on
//! from wherever the configuration is. Cancelling sets the target back to the
//! replicas the move started from: the same steps move the group back.
//! Producers and consumers keep working throughout: the group always has a
//! majority of a configuration that holds every committed entry.

use std::time::Duration;

use raft::eraftpb::ConfChangeType;

use crate::error::{Error, Result};
use crate::ids::{GroupId, NodeId};
use crate::metadata::MetaCommand;
use crate::node::{Node, WeakNode};
use crate::raft::driver::{GroupStatus, Role};

/// How long one step may wait for its change to be applied.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// What a reassignment's leader does next.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    AddLearner(NodeId),
    Promote(NodeId),
    Remove(NodeId),
    HandOver(NodeId),
    Finish,
    /// Waiting (a learner catching up, or no target voter in sync to hand
    /// leadership to).
    Wait,
}

/// The next step towards `target` from the configuration in `st` (on the
/// group's leader `me`).
fn next_step(me: NodeId, st: &GroupStatus, target: &[NodeId]) -> Step {
    let member = |n: &NodeId| st.voters.contains(n) || st.learners.contains(n);
    if let Some(&n) = target.iter().find(|n| !member(n)) {
        return Step::AddLearner(n);
    }
    let caught_up = |n: &NodeId| {
        st.progress
            .iter()
            .any(|(id, matched)| id == n && *matched >= st.commit)
    };
    if let Some(&n) = st.learners.iter().find(|n| target.contains(n)) {
        return if caught_up(&n) {
            Step::Promote(n)
        } else {
            Step::Wait
        };
    }
    // Learners outside the target (a cancelled move) go first.
    if let Some(&n) = st.learners.iter().find(|n| !target.contains(n)) {
        return Step::Remove(n);
    }
    if let Some(&n) = st.voters.iter().find(|n| !target.contains(n) && **n != me) {
        return Step::Remove(n);
    }
    if !target.contains(&me) {
        return match target
            .iter()
            .find(|n| st.in_sync.contains(n) && caught_up(n))
        {
            Some(&n) => Step::HandOver(n),
            None => Step::Wait,
        };
    }
    Step::Finish
}

impl Node {
    /// Starts moving partition `group` to `target` replicas (the first
    /// preferred), replacing a move under way; `target` equal to the
    /// partition's replicas cancels one. Returns once metadata records it; the
    /// move itself goes on in the background.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown group, [`Error::Invalid`] for an
    /// empty target, one naming a node twice or a node that is not a
    /// registered broker, [`Error::Timeout`].
    pub async fn reassign(
        &self,
        group: GroupId,
        target: Vec<NodeId>,
        timeout: Duration,
    ) -> Result<()> {
        let meta = self.metadata();
        let p = meta
            .topics
            .values()
            .flat_map(|t| t.partitions.iter())
            .find(|p| p.group == group)
            .ok_or_else(|| Error::NotFound(format!("partition group {group}")))?;
        if target.is_empty() {
            return Err(Error::Invalid(format!(
                "{group}: a reassignment needs at least one replica"
            )));
        }
        for (i, n) in target.iter().enumerate() {
            if target[..i].contains(n) {
                return Err(Error::Invalid(format!("{group}: replica {n} named twice")));
            }
            if !meta.brokers.contains_key(n) {
                return Err(Error::Invalid(format!(
                    "{group}: replica {n} is not a registered broker"
                )));
            }
        }
        if p.replicas == target && !meta.reassignments.contains_key(&group) {
            return Ok(());
        }
        let want = target.clone();
        self.propose_meta(MetaCommand::Reassign { group, target }, timeout, |m| {
            m.reassignments.get(&group) == Some(&want)
        })
        .await
    }

    /// Moves every replica off node `id` (to decommission it, whether it is up
    /// or down for good): each partition that has one, and is not already
    /// moving off it, starts moving to its replicas with `id` replaced by the
    /// broker holding the fewest replicas. Returns how many partitions still
    /// have a replica on `id` (0: it can be removed).
    ///
    /// # Errors
    /// [`Error::Invalid`] when no other broker can take one of its replicas;
    /// those of [`Node::reassign`].
    pub async fn drain_node(&self, id: NodeId, timeout: Duration) -> Result<usize> {
        let meta = self.metadata();
        let mut load: std::collections::BTreeMap<NodeId, usize> =
            meta.brokers.keys().map(|b| (*b, 0)).collect();
        for p in meta.topics.values().flat_map(|t| t.partitions.iter()) {
            for r in meta.reassignments.get(&p.group).unwrap_or(&p.replicas) {
                *load.entry(*r).or_default() += 1;
            }
        }
        let mut held = 0;
        for (t, p) in meta.hosted_by(id) {
            held += 1;
            let base = meta.reassignments.get(&p.group).unwrap_or(&p.replicas);
            if !base.contains(&id) {
                continue;
            }
            let Some(&to) = load
                .iter()
                .filter(|(b, _)| **b != id && !base.contains(b))
                .min_by_key(|(b, n)| (**n, **b))
                .map(|(b, _)| b)
            else {
                return Err(Error::Invalid(format!(
                    "no other broker can take node {id}'s replica of {}-{}",
                    t.name, p.index
                )));
            };
            let target: Vec<NodeId> = base.iter().map(|&r| if r == id { to } else { r }).collect();
            self.reassign(p.group, target, timeout).await?;
            *load.entry(to).or_default() += 1;
        }
        Ok(held)
    }

    /// One step of every move this node leads; returns how many moves
    /// advanced.
    async fn advance_reassignments(&self) -> usize {
        let me = self.id();
        let moves: Vec<(GroupId, Vec<NodeId>)> = self
            .metadata()
            .reassignments
            .iter()
            .map(|(g, t)| (*g, t.clone()))
            .collect();
        let mut advanced = 0;
        for (group, target) in moves {
            let Some(st) = self.group_status(group).filter(|s| s.role == Role::Leader) else {
                continue;
            };
            let step = next_step(me, &st, &target);
            let done = match &step {
                Step::Wait => continue,
                Step::AddLearner(n) => {
                    self.change_members(group, ConfChangeType::AddLearnerNode, *n, STEP_TIMEOUT)
                        .await
                }
                Step::Promote(n) => {
                    self.change_members(group, ConfChangeType::AddNode, *n, STEP_TIMEOUT)
                        .await
                }
                Step::Remove(n) => {
                    self.change_members(group, ConfChangeType::RemoveNode, *n, STEP_TIMEOUT)
                        .await
                }
                Step::HandOver(n) => {
                    // Not counted as progress: the transfer takes an election
                    // round, and the next pass waits for it.
                    self.transfer_leader(group, *n);
                    continue;
                }
                Step::Finish => {
                    let replicas = target.clone();
                    let cmd = MetaCommand::FinishReassignment {
                        group,
                        replicas: target.clone(),
                    };
                    self.propose_meta(cmd, STEP_TIMEOUT, |m| {
                        !m.reassignments.contains_key(&group)
                            || m.reassignments.get(&group) != Some(&replicas)
                    })
                    .await
                }
            };
            match done {
                Ok(()) => {
                    tracing::info!(%group, ?step, ?target, "reassignment step");
                    advanced += 1;
                }
                Err(e) => {
                    tracing::debug!(%group, ?step, error = %e, "reassignment step failed; tried again")
                }
            }
        }
        advanced
    }
}

/// Advances the moves this node leads, every few ticks (after a tick when a
/// step changed a configuration), until the node stops.
pub(crate) async fn run_reassigner(node: WeakNode) {
    loop {
        let Some(n) = node.upgrade() else {
            return;
        };
        let tick = n.config().tick;
        let advanced = n.advance_reassignments().await;
        drop(n);
        tokio::time::sleep(if advanced == 0 { tick * 5 } else { tick }).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(voters: &[NodeId], learners: &[NodeId], matched: &[(NodeId, u64)]) -> GroupStatus {
        GroupStatus {
            role: Role::Leader,
            leader: 1,
            commit: 10,
            voters: voters.to_vec(),
            learners: learners.to_vec(),
            progress: matched.to_vec(),
            in_sync: matched
                .iter()
                .filter(|(_, m)| *m >= 10)
                .map(|(n, _)| *n)
                .collect(),
            ..GroupStatus::default()
        }
    }

    #[test]
    fn a_move_adds_promotes_then_removes_the_leader_last() {
        let target = [2, 3, 4];
        let st = status(&[1, 2, 3], &[], &[(1, 10), (2, 10), (3, 10)]);
        assert_eq!(next_step(1, &st, &target), Step::AddLearner(4));
        let st = status(&[1, 2, 3], &[4], &[(1, 10), (2, 10), (3, 10), (4, 3)]);
        assert_eq!(
            next_step(1, &st, &target),
            Step::Wait,
            "the learner catches up"
        );
        let st = status(&[1, 2, 3], &[4], &[(1, 10), (2, 10), (3, 10), (4, 10)]);
        assert_eq!(next_step(1, &st, &target), Step::Promote(4));
        let st = status(&[1, 2, 3, 4], &[], &[(1, 10), (2, 10), (3, 10), (4, 10)]);
        assert_eq!(
            next_step(1, &st, &target),
            Step::HandOver(2),
            "the leader leaves last"
        );
        assert_eq!(next_step(2, &st, &target), Step::Remove(1));
        let st = status(&[2, 3, 4], &[], &[(2, 10), (3, 10), (4, 10)]);
        assert_eq!(next_step(2, &st, &target), Step::Finish);
    }

    #[test]
    fn a_cancelled_move_goes_back() {
        // Moving [1, 2, 3] to [2, 3, 4], cancelled after 4 was added as a learner.
        let st = status(&[1, 2, 3], &[4], &[(1, 10), (2, 10), (3, 10), (4, 2)]);
        assert_eq!(next_step(1, &st, &[1, 2, 3]), Step::Remove(4));
        let st = status(&[1, 2, 3], &[], &[(1, 10), (2, 10), (3, 10)]);
        assert_eq!(next_step(1, &st, &[1, 2, 3]), Step::Finish);
    }
}
