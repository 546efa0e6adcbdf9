//! Proposing on the leader (DESIGN.md §3 rule 4): the state machine decides
//! first what becomes an entry (a data partition stamps offsets and answers an
//! idempotent producer's retry without one), then the proposal is tracked by
//! its (index, term) until that index is applied.

use raft::{GetEntriesContext, NO_LIMIT};

use super::*;
use crate::stamping::{ProposeAt, Stamp};

impl<S: StateMachine> Driver<S> {
    pub(super) fn propose(
        &mut self,
        mut data: Vec<u8>,
        reply: Option<Reply>,
        bytes: Option<ProposalBytes>,
    ) {
        if self.p.node.raft.state != StateRole::Leader && !self.p.unsafe_bypass_leader_check {
            if let Some(r) = reply {
                let _ = r.send(Err(Error::NotLeader {
                    group: self.p.group,
                    hint: self.hint(),
                }));
            }
            return;
        }
        let raft = &self.p.node.raft;
        let at = ProposeAt {
            term: raft.term,
            index: raft.raft_log.last_index() + 1,
            applied: raft.raft_log.applied,
        };
        // Only a leader decides what its log holds (a follower proposing under
        // the negative-control switch proposes as it is).
        let decided = if raft.state == StateRole::Leader {
            let log = &raft.raft_log;
            let entries = |from: u64| {
                log.entries(from, NO_LIMIT, GetEntriesContext::empty(false))
                    .unwrap_or_default()
            };
            self.sm.before_propose(&mut data, at, &entries)
        } else {
            Stamp::Propose
        };
        match decided {
            Stamp::Propose => {}
            Stamp::Applied(offsets) => {
                if let Some(r) = reply {
                    let _ = r.send(Ok(Applied::Batch(offsets)));
                }
                return;
            }
            Stamp::Refuse(e) => {
                if let Some(r) = reply {
                    let _ = r.send(Err(e));
                }
                return;
            }
            Stamp::InFlight {
                index,
                term,
                offsets,
            } => {
                let Some(r) = reply else {
                    return;
                };
                let p = self.pending.entry(index).or_insert_with(|| Pending {
                    term,
                    reply: None,
                    _bytes: None,
                    retries: Vec::new(),
                });
                if p.term == term {
                    p.retries.push((r, offsets));
                } else {
                    let _ = r.send(Err(Error::NotLeader {
                        group: self.p.group,
                        hint: self.hint(),
                    }));
                }
                return;
            }
        }
        match self.p.node.propose(vec![], data) {
            Ok(()) => {
                if reply.is_some() || bytes.is_some() {
                    self.track_last_proposal(reply, bytes);
                }
            }
            Err(e) => {
                // Dropped: a leader transfer is under way or too much is uncommitted.
                tracing::debug!(group = %self.p.group, error = %e, "proposal dropped");
                self.sm.proposal_dropped(at.index);
                self.counters.proposals_dropped.increment(1);
                if let Some(r) = reply {
                    let _ = r.send(Err(Error::NotLeader {
                        group: self.p.group,
                        hint: self.hint(),
                    }));
                }
            }
        }
    }
}

impl<S: StateMachine> Driver<S> {
    /// Tracks the entry just proposed (the log's last, in this term) until
    /// its index is applied; a proposal of an earlier term whose entry it
    /// replaced is answered NOT_LEADER.
    pub(super) fn track_last_proposal(
        &mut self,
        reply: Option<Reply>,
        bytes: Option<ProposalBytes>,
    ) {
        let index = self.p.node.raft.raft_log.last_index();
        let p = Pending {
            term: self.p.node.raft.term,
            reply,
            _bytes: bytes,
            retries: Vec::new(),
        };
        if let Some(old) = self.pending.insert(index, p) {
            old.fail(|| Error::NotLeader {
                group: self.p.group,
                hint: None,
            });
        }
    }
}

/// The answer for a retry whose first copy's entry was refused with `e`: the
/// same refusal (a retry of a refused batch would be refused alike), or, for
/// anything else, NOT_LEADER so that the client asks again.
pub(super) fn retry_error(e: &Error, group: GroupId) -> Error {
    match e {
        Error::Invalid(m) => Error::Invalid(m.clone()),
        Error::OutOfOrderSequence(m) => Error::OutOfOrderSequence(m.clone()),
        Error::InvalidProducerEpoch(m) => Error::InvalidProducerEpoch(m.clone()),
        _ => Error::NotLeader { group, hint: None },
    }
}
