//! The group's published status (role, leader, indexes, the replicas in sync)
//! and what changes of leadership set off.

use std::time::Instant;

use raft::StateRole;

use super::*;

impl<S: StateMachine> Driver<S> {
    /// Tells the state machine when this replica has just become leader: after the
    /// status saying so is published, so that whoever it wakes sees it.
    pub(super) fn notice_leadership(&mut self) {
        let leader = self.p.node.raft.state == StateRole::Leader;
        if leader && !self.was_leader {
            self.sm.on_leader(self.p.node.raft.term);
        }
        self.was_leader = leader;
        let known = self.p.node.raft.leader_id;
        if known != 0 && known != self.known_leader {
            self.counters.leader_changes.increment(1);
            self.known_leader = known;
        }
    }

    pub(super) fn publish(&mut self) {
        let raft = &self.p.node.raft;
        let role = match raft.state {
            StateRole::Leader => Role::Leader,
            StateRole::Follower => Role::Follower,
            StateRole::Candidate | StateRole::PreCandidate => Role::Candidate,
        };
        let conf = raft.prs().conf();
        let mut voters: Vec<NodeId> = conf.voters().ids().iter().collect();
        voters.sort_unstable();
        let mut learners: Vec<NodeId> = conf.learners().iter().copied().collect();
        learners.sort_unstable();
        let leader_since = if role == Role::Leader {
            // raft-rs appended the term's first (empty) entry when it became
            // leader: the last index now is it or one after it.
            if self.led.0 != raft.term {
                self.led = (raft.term, raft.raft_log.last_index());
            }
            self.led.1
        } else {
            0
        };
        let (progress, in_sync) = if role == Role::Leader {
            let now = Instant::now();
            let lag_max = self.p.replica_lag_max;
            if self.catch_up_term != raft.term {
                self.catch_up.reset();
                self.catch_up_term = raft.term;
            }
            self.catch_up.note(now, raft.raft_log.last_index(), lag_max);
            let mut v: Vec<(NodeId, u64)> = raft
                .prs()
                .iter()
                .map(|(id, pr)| (*id, pr.matched))
                .collect();
            v.sort_unstable();
            let me = raft.id;
            let in_sync = raft
                .prs()
                .iter()
                .filter(|(id, pr)| {
                    **id == me
                        || (pr.recent_active && self.catch_up.in_sync(now, pr.matched, lag_max))
                })
                .map(|(id, _)| *id)
                .collect::<std::collections::BTreeSet<NodeId>>()
                .into_iter()
                .collect();
            (v, in_sync)
        } else {
            (Vec::new(), Vec::new())
        };
        let next = GroupStatus {
            role,
            leader: raft.leader_id,
            term: raft.term,
            commit: raft.raft_log.committed,
            applied: raft.raft_log.applied,
            leader_since,
            log: self.sm.log_state(),
            progress,
            in_sync,
            voters,
            learners,
            stopped: false,
        };
        self.status.send_if_modified(|s| {
            if *s != next {
                *s = next;
                true
            } else {
                false
            }
        });
    }
}
