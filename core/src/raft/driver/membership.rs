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
//!
//! Each change carries, as its context, the configuration it was proposed
//! against. A static cluster's first configuration is set at bootstrap, not
//! by log entries, so a node that joins and is sent the log from its start
//! (rather than a snapshot) begins with an empty configuration: applying
//! changes to it alone would give it a configuration of the joined nodes only
//! (two joined nodes would then elect each other). Such a node first takes the
//! context's configuration, then applies the change.

use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeSingle, ConfChangeType, ConfChangeV2};

use super::*;

impl<S: StateMachine> Driver<S> {
    pub(super) fn propose_conf_change(&mut self, mut change: ConfChangeV2, reply: Reply) {
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
        // The configuration this change is made against (raft-rs allows one
        // change pending at a time, so it is the applied one).
        match self
            .p
            .node
            .raft
            .prs()
            .conf()
            .to_conf_state()
            .write_to_bytes()
        {
            Ok(prior) => change.context = prior.into(),
            Err(e) => {
                let _ = reply.send(Err(Error::Invalid(format!(
                    "{}: encoding the configuration: {e}",
                    self.p.group
                ))));
                return;
            }
        }
        match self.p.node.propose_conf_change(vec![], change) {
            Ok(()) => self.track_last_proposal(Some(reply), None),
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
                    .take_prior_configuration(&cc)
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

    /// On a replica with no configuration yet (a node that joined and was
    /// sent the log rather than a snapshot), takes the configuration the
    /// change `cc` was proposed against, one member at a time.
    fn take_prior_configuration(&mut self, cc: &ConfChangeV2) -> &mut Self {
        if !self.p.node.raft.prs().conf().voters().ids().is_empty() || cc.context.is_empty() {
            return self;
        }
        let Ok(prior) = raft::eraftpb::ConfState::parse_from_bytes(&cc.context) else {
            tracing::error!(group = %self.p.group, "a membership change's context does not decode");
            return self;
        };
        let members = prior
            .voters
            .iter()
            .map(|&v| (v, ConfChangeType::AddNode))
            .chain(
                prior
                    .learners
                    .iter()
                    .map(|&l| (l, ConfChangeType::AddLearnerNode)),
            );
        for (id, ty) in members {
            let mut single = ConfChangeSingle::default();
            single.set_change_type(ty);
            single.node_id = id;
            let mut one = ConfChangeV2::default();
            one.mut_changes().push(single);
            if let Err(e) = self.p.node.apply_conf_change(&one) {
                tracing::error!(group = %self.p.group, node = id, error = %e, "taking the prior configuration");
            }
        }
        tracing::info!(
            group = %self.p.group, voters = ?prior.voters, learners = ?prior.learners,
            "took the configuration the cluster had before this node joined"
        );
        self
    }
}
