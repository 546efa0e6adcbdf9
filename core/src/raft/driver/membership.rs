//! Membership changes (issue 22; DESIGN.md §10): proposed on the leader one
//! voter or learner at a time (a `ConfChangeV2` with a single change, which
//! raft-rs applies as a simple change: the old and new majorities overlap, so
//! no joint configuration is needed), and applied by every replica when
//! committed, in log order.
//!
//! Applying one is idempotent (adding a voter that is one, removing a node
//! that is gone change nothing), which matters at a restart: the committed
//! entries after the last checkpoint are applied again to a configuration
//! that may already include them.

use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeV2};

use super::*;

impl<S: StateMachine> Driver<S> {
    pub(super) fn propose_conf_change(&mut self, change: ConfChangeV2, reply: Reply) {
        if self.p.node.raft.state != StateRole::Leader {
            let _ = reply.send(Err(Error::NotLeader {
                group: self.p.group,
                hint: self.hint(),
            }));
            return;
        }
        if change.changes.len() != 1 {
            let _ = reply.send(Err(Error::Invalid(format!(
                "{}: one membership change at a time ({} given)",
                self.p.group,
                change.changes.len()
            ))));
            return;
        }
        match self.p.node.propose_conf_change(vec![], change) {
            Ok(()) => {
                let index = self.p.node.raft.raft_log.last_index();
                let term = self.p.node.raft.term;
                let p = Pending {
                    term,
                    reply: Some(reply),
                    _bytes: None,
                    retries: Vec::new(),
                };
                if let Some(old) = self.pending.insert(index, p) {
                    old.fail(|| Error::NotLeader {
                        group: self.p.group,
                        hint: None,
                    });
                }
            }
            Err(e) => {
                let _ = reply.send(Err(Error::NotLeader {
                    group: self.p.group,
                    hint: self.hint(),
                }));
                tracing::debug!(group = %self.p.group, error = %e, "membership change dropped");
            }
        }
    }

    /// Applies a committed membership change and records the new
    /// configuration in the engine. One that raft-rs refuses is refused by
    /// every replica alike (the configuration stays), and logged.
    pub(super) fn apply_conf_change(&mut self, e: &raft::eraftpb::Entry) -> Result<()> {
        let applied = if e.entry_type == EntryType::EntryConfChangeV2 {
            match ConfChangeV2::parse_from_bytes(&e.data) {
                Ok(cc) => self
                    .p
                    .node
                    .apply_conf_change(&cc)
                    .map_err(|err| err.to_string()),
                Err(err) => Err(format!("does not decode: {err}")),
            }
        } else {
            match ConfChange::parse_from_bytes(&e.data) {
                Ok(cc) => self
                    .p
                    .node
                    .apply_conf_change(&cc)
                    .map_err(|err| err.to_string()),
                Err(err) => Err(format!("does not decode: {err}")),
            }
        };
        match applied {
            Ok(cs) => {
                self.p.engine.raft_set_conf_state(self.p.group, &cs)?;
                tracing::info!(
                    group = %self.p.group, index = e.index,
                    voters = ?cs.voters, learners = ?cs.learners,
                    "membership changed"
                );
            }
            Err(why) => tracing::error!(
                group = %self.p.group, index = e.index, term = e.term, error = %why,
                "refused a committed Raft membership change; the configuration is unchanged"
            ),
        }
        Ok(())
    }
}
