//! Adding and removing nodes (issue 22; DESIGN.md §10): a node joins as a
//! learner of the metadata group, is promoted to voter once it has caught up,
//! and leaves by a removal; its peer address goes into metadata first, so
//! that every node's transport can reach it (the address book follows
//! metadata). Membership lives in the metadata group's Raft configuration,
//! which survives restarts and travels in its snapshots.

use std::time::Duration;

use raft::eraftpb::{ConfChangeSingle, ConfChangeType, ConfChangeV2};
use tokio::sync::oneshot;

use super::{Node, WeakNode};
use crate::error::{Error, Result};
use crate::ids::{GroupId, NodeId};
use crate::metadata::MetaCommand;
use crate::raft::driver::{GroupMsg, Role};

impl Node {
    /// Adds node `id`, which peers reach at `peer_addr`, to the cluster: its
    /// address is recorded in metadata, then it becomes a learner of the
    /// metadata group; it is promoted to voter once caught up (by the
    /// metadata leader's membership loop). Adding a member again only updates
    /// its address. Must be called on the metadata group's leader.
    ///
    /// # Errors
    /// [`Error::NotLeader`] elsewhere, [`Error::Invalid`] for id 0 or an empty
    /// address, [`Error::Timeout`].
    pub async fn add_node(&self, id: NodeId, peer_addr: &str, timeout: Duration) -> Result<()> {
        if id == 0 || peer_addr.trim().is_empty() {
            return Err(Error::Invalid(format!(
                "a node needs an id of 1 or more and a peer address (got {id}, {peer_addr:?})"
            )));
        }
        self.metadata_leader_here()?;
        let addr = peer_addr.to_string();
        let cmd = MetaCommand::RegisterPeer {
            id,
            peer_addr: addr.clone(),
        };
        self.propose_meta(cmd, timeout, |m| m.peers.get(&id) == Some(&addr))
            .await?;
        let st = self
            .group_status(GroupId::METADATA)
            .ok_or(Error::Shutdown)?;
        if st.voters.contains(&id) || st.learners.contains(&id) {
            return Ok(());
        }
        self.change_members(
            GroupId::METADATA,
            ConfChangeType::AddLearnerNode,
            id,
            timeout,
        )
        .await?;
        tracing::info!(node = id, peer = %addr, "node added as a learner of the metadata group");
        Ok(())
    }

    /// Removes node `id` from the cluster: from the metadata group's voters
    /// (or learners), then from the brokers and peers. A node that still
    /// holds partition replicas is refused: move them first. The metadata
    /// group's leader hands its leadership over first when it is the one
    /// removed. Must be called on that leader.
    ///
    /// # Errors
    /// [`Error::NotLeader`] elsewhere, [`Error::NotFound`] for a node that is
    /// not a member, [`Error::Invalid`] for one holding replicas or the last
    /// voter, [`Error::Timeout`].
    pub async fn remove_node(&self, id: NodeId, timeout: Duration) -> Result<()> {
        self.metadata_leader_here()?;
        let st = self
            .group_status(GroupId::METADATA)
            .ok_or(Error::Shutdown)?;
        let member = st.voters.contains(&id) || st.learners.contains(&id);
        let meta = self.metadata();
        if !member && !meta.brokers.contains_key(&id) {
            return Err(Error::NotFound(format!("node {id} is not a member")));
        }
        let held: Vec<String> = meta
            .topics
            .values()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .filter(|p| p.replicas.contains(&id))
                    .map(move |p| format!("{}-{}", t.name, p.index))
            })
            .collect();
        if !held.is_empty() {
            return Err(Error::Invalid(format!(
                "node {id} still holds replicas of {} partitions ({}{}); move them to other nodes first",
                held.len(),
                held[..held.len().min(5)].join(", "),
                if held.len() > 5 { ", …" } else { "" }
            )));
        }
        if member {
            if st.voters == [id] {
                return Err(Error::Invalid(format!(
                    "node {id} is the last voter of the metadata group"
                )));
            }
            if id == self.id() {
                // The leader hands over; the caller asks the next leader.
                self.hand_over_leadership(timeout).await;
                return Err(Error::NotLeader {
                    group: GroupId::METADATA,
                    hint: self
                        .group_status(GroupId::METADATA)
                        .and_then(|s| s.leader_hint()),
                });
            }
            self.change_members(GroupId::METADATA, ConfChangeType::RemoveNode, id, timeout)
                .await?;
        }
        self.propose_meta(MetaCommand::RemoveBroker { id }, timeout, |m| {
            !m.brokers.contains_key(&id) && !m.peers.contains_key(&id)
        })
        .await?;
        tracing::info!(node = id, "node removed from the cluster");
        Ok(())
    }

    fn metadata_leader_here(&self) -> Result<()> {
        match self.group_status(GroupId::METADATA) {
            Some(s) if s.role == Role::Leader => Ok(()),
            s => Err(Error::NotLeader {
                group: GroupId::METADATA,
                hint: s.and_then(|s| s.leader_hint()),
            }),
        }
    }

    /// Proposes one change to `group`'s configuration (on its leader) and
    /// waits until this node has applied it as asked (raft-rs turns a change
    /// proposed while another is pending into a no-op, which is retried).
    pub(crate) async fn change_members(
        &self,
        group: GroupId,
        change: ConfChangeType,
        id: NodeId,
        timeout: Duration,
    ) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        let done = |s: &crate::GroupStatus| match change {
            ConfChangeType::AddNode => s.voters.contains(&id),
            ConfChangeType::AddLearnerNode => s.learners.contains(&id) || s.voters.contains(&id),
            ConfChangeType::RemoveNode => !s.voters.contains(&id) && !s.learners.contains(&id),
        };
        loop {
            let st = self.group_status(group).ok_or(Error::Shutdown)?;
            if done(&st) {
                return Ok(());
            }
            if st.role != Role::Leader {
                return Err(Error::NotLeader {
                    group,
                    hint: st.leader_hint(),
                });
            }
            let mut single = ConfChangeSingle::default();
            single.set_change_type(change);
            single.node_id = id;
            let mut cc = ConfChangeV2::default();
            cc.mut_changes().push(single);
            let (tx, rx) = oneshot::channel();
            self.send_to_group(
                group,
                GroupMsg::ProposeConfChange {
                    change: cc,
                    reply: tx,
                },
            );
            match tokio::time::timeout_at(deadline, rx).await {
                Ok(Ok(Ok(_))) => {}
                Ok(Ok(Err(e))) => return Err(e),
                Ok(Err(_)) => return Err(Error::Shutdown),
                Err(_) => {
                    return Err(Error::Timeout(format!(
                        "changing {group}'s membership ({change:?} {id})"
                    )));
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Timeout(format!(
                    "changing {group}'s membership ({change:?} {id})"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// On the metadata group's leader, promotes each learner to voter once it has
/// everything committed (one at a time), until the node stops.
pub(crate) async fn run_membership(node: WeakNode) {
    loop {
        let Some(n) = node.upgrade() else {
            return;
        };
        let pause = n.config().tick * 5;
        if let Some(st) = n.group_status(GroupId::METADATA)
            && st.role == Role::Leader
            && let Some(&learner) = st.learners.iter().find(|l| {
                st.progress
                    .iter()
                    .any(|(id, matched)| id == *l && *matched >= st.commit)
            })
        {
            match n
                .change_members(
                    GroupId::METADATA,
                    ConfChangeType::AddNode,
                    learner,
                    Duration::from_secs(10),
                )
                .await
            {
                Ok(()) => tracing::info!(
                    node = learner,
                    "caught up: promoted to voter of the metadata group"
                ),
                Err(e) => {
                    tracing::debug!(node = learner, error = %e, "promoting a learner failed; tried again")
                }
            }
        }
        drop(n);
        tokio::time::sleep(pause).await;
    }
}
