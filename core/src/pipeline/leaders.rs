//! Where leadership goes (issue 22): handed to peers before a graceful stop,
//! and back to each partition's preferred replica (its first, as in Kafka)
//! once that replica is in sync.
//!
//! Both use raft-rs's leadership transfer: the leader brings the chosen
//! replica's log up to its own, then tells it to campaign at once. Proposals
//! meanwhile are refused with NOT_LEADER, which clients retry; nothing
//! acknowledged is at risk, since the new leader has every entry.

use std::time::Duration;

use tokio::time::Instant;

use crate::ids::{GroupId, NodeId};
use crate::node::Node;
use crate::raft::driver::{GroupStatus, Role};

/// How often a transfer that has not happened yet is asked for again (raft-rs
/// gives one up after an election timeout).
const RETRY: Duration = Duration::from_millis(500);

impl Node {
    /// The groups this node leads, with their status.
    fn led_groups(&self) -> Vec<(GroupId, GroupStatus)> {
        self.hosted_groups()
            .into_iter()
            .filter_map(|g| self.group_status(g).map(|s| (g, s)))
            .filter(|(_, s)| s.role == Role::Leader && !s.stopped)
            .collect()
    }

    /// Hands the leadership of every group this node leads to an in-sync peer
    /// (the one with the most of the log), asking again until none is led
    /// here or `timeout` has passed, before a graceful stop. Returns how many
    /// groups are still led here (those with no peer in sync to take them, or
    /// whose peers did not within the time).
    pub async fn hand_over_leadership(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        let began = Instant::now();
        let mut first = None;
        loop {
            let led = self.led_groups();
            first.get_or_insert(led.len());
            let mut movable = 0;
            for (group, st) in &led {
                if let Some(to) = best_peer(self.id(), st) {
                    movable += 1;
                    self.transfer_leader(*group, to);
                }
            }
            if movable == 0 || Instant::now() >= deadline {
                tracing::info!(
                    led_before = first.unwrap_or(0),
                    still_led = led.len(),
                    took_ms = began.elapsed().as_millis() as u64,
                    "handed over leadership"
                );
                return led.len();
            }
            tokio::time::sleep(RETRY.min(deadline - Instant::now())).await;
        }
    }

    /// Hands leadership back to preferred replicas: for each partition this
    /// node leads whose first replica is another node in sync, asks for a
    /// transfer to it — when more than `leader_imbalance_percentage` percent of
    /// the partitions led here prefer another node, or always with `force`
    /// (ElectLeaders, `weir cluster balance`). Returns the transfers asked for.
    pub fn balance_leaders(&self, force: bool) -> usize {
        let me = self.id();
        let meta = self.metadata();
        let led = self.led_groups();
        let led_partitions: Vec<(GroupId, &[NodeId], &GroupStatus)> = meta
            .topics
            .values()
            .flat_map(|t| t.partitions.iter())
            .filter_map(|p| {
                led.iter()
                    .find(|(g, _)| *g == p.group)
                    .map(|(_, s)| (p.group, p.replicas.as_slice(), s))
            })
            .collect();
        let elsewhere: Vec<(GroupId, NodeId, &GroupStatus)> = led_partitions
            .iter()
            .filter_map(|(g, replicas, s)| {
                replicas
                    .first()
                    .filter(|&&preferred| preferred != me)
                    .map(|&preferred| (*g, preferred, *s))
            })
            .collect();
        let threshold = u64::from(self.config().leader_imbalance_percentage);
        let imbalanced = elsewhere.len() as u64 * 100 > threshold * led_partitions.len() as u64;
        if elsewhere.is_empty() || !(force || imbalanced) {
            return 0;
        }
        let mut asked = 0;
        for (group, preferred, st) in elsewhere {
            if st.in_sync.contains(&preferred) {
                tracing::debug!(%group, to = preferred, "handing leadership back to the preferred replica");
                self.transfer_leader(group, preferred);
                asked += 1;
            }
        }
        if asked > 0 {
            tracing::info!(
                transfers = asked,
                led = led_partitions.len(),
                "moving leaderships back to their preferred replicas"
            );
        }
        asked
    }
}

/// The in-sync peer of a group led by `me` that has the most of its log.
fn best_peer(me: NodeId, st: &GroupStatus) -> Option<NodeId> {
    st.progress
        .iter()
        .filter(|(id, _)| *id != me && st.in_sync.contains(id))
        .max_by_key(|(id, matched)| (*matched, std::cmp::Reverse(*id)))
        .map(|(id, _)| *id)
}

/// Balances leaders every `leader_imbalance_check_interval` while
/// `auto_leader_rebalance` is on, until the node stops.
pub(crate) async fn run_leader_balancer(node: crate::node::WeakNode) {
    loop {
        let Some(n) = node.upgrade() else {
            return;
        };
        let cfg = n.config();
        let every = cfg.leader_imbalance_check_interval;
        if cfg.auto_leader_rebalance {
            n.balance_leaders(false);
        }
        drop(n);
        tokio::time::sleep(every).await;
    }
}

/// What asking for a partition's preferred replica to lead did
/// ([`Node::elect_preferred`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Elect {
    /// The preferred replica leads already.
    NotNeeded,
    /// This node leads and asked for a transfer to the preferred replica.
    Started(NodeId),
    /// This node leads, but the preferred replica is not in sync.
    PreferredNotInSync(NodeId),
    /// Another node leads (the one named, if known): ask it.
    LedElsewhere(Option<NodeId>),
}

impl Node {
    /// Asks for partition `p`'s preferred replica (its first) to lead it
    /// (ElectLeaders with PREFERRED): a transfer if this node leads it and
    /// the preferred replica is in sync.
    pub fn elect_preferred(&self, p: &crate::metadata::PartitionMeta) -> Elect {
        let Some(&preferred) = p.replicas.first() else {
            return Elect::NotNeeded;
        };
        // A replica here knows the leader first hand (none during an
        // election); elsewhere metadata's record of it is the best guess.
        let leader = match self.group_status(p.group) {
            Some(st) if st.role == Role::Leader => {
                if st.leader == preferred {
                    return Elect::NotNeeded;
                }
                if st.in_sync.contains(&preferred) {
                    self.transfer_leader(p.group, preferred);
                    return Elect::Started(preferred);
                }
                return Elect::PreferredNotInSync(preferred);
            }
            Some(st) => (st.leader != 0).then_some(st.leader),
            None => p.leader.map(|(n, _)| n),
        };
        match leader {
            Some(l) if l == preferred => Elect::NotNeeded,
            l => Elect::LedElsewhere(l.filter(|&l| l != self.id())),
        }
    }

    /// Waits until this node sees `node` lead `group`, up to `timeout`;
    /// whether it did. While this node still leads, it asks for the transfer
    /// again every half second: raft-rs gives a transfer up after an election
    /// timeout (the target was behind, or a message was lost).
    pub async fn wait_leader_is(&self, group: GroupId, node: NodeId, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut asked = Instant::now();
        loop {
            match self.group_status(group) {
                Some(s) if s.leader == node => return true,
                Some(s)
                    if s.role == Role::Leader && asked.elapsed() >= Duration::from_millis(500) =>
                {
                    self.transfer_leader(group, node);
                    asked = Instant::now();
                }
                _ => {}
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
