//! Group administration: ListGroups, DescribeGroups, DeleteGroups and
//! OffsetDelete over the coordinators hosted here.

use std::time::Duration;

use crate::error::{GroupError, Result};
use crate::groups::classic::State;
use crate::groups::store::GroupCommand;
use crate::node::Node;
use crate::raft::driver::Role;

/// A group as ListGroups shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedGroup {
    /// The group id.
    pub group: String,
    /// Its protocol type (empty for a group of committed offsets only).
    pub protocol_type: String,
    /// Kafka's state name (`Empty`, `Stable`, …).
    pub state: &'static str,
    /// `classic` or `consumer` (the KIP-848 protocol), as ListGroups v5 names it.
    pub group_type: &'static str,
}

/// A member as DescribeGroups shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DescribedMember {
    /// Member id.
    pub member_id: String,
    /// Static instance id.
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client address.
    pub client_host: String,
    /// Its subscription (the chosen protocol's metadata).
    pub metadata: Vec<u8>,
    /// Its assignment.
    pub assignment: Vec<u8>,
}

/// A group as DescribeGroups shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DescribedGroup {
    /// Kafka's state name; `Dead` for a group this coordinator does not know.
    pub state: &'static str,
    /// `classic` or `consumer` (the KIP-848 protocol).
    pub group_type: &'static str,
    /// Protocol type.
    pub protocol_type: String,
    /// The chosen protocol (assignor).
    pub protocol: String,
    /// Its members.
    pub members: Vec<DescribedMember>,
}

impl Node {
    /// The groups coordinated by this node (ListGroups asks every broker).
    pub fn list_groups(&self) -> Vec<ListedGroup> {
        let mut out = Vec::new();
        let meta = self.metadata();
        for (g, replica) in self.inner_coordinators().replicas() {
            if self.group_status(g).is_none_or(|s| s.role != Role::Leader) {
                continue;
            }
            let ids: Vec<String> = replica.lock().store.groups.keys().cloned().collect();
            for id in ids {
                let d = self.live().describe(g, &replica, &id, &meta);
                out.push(ListedGroup {
                    group: id,
                    protocol_type: d.protocol_type,
                    state: d.state,
                    group_type: d.group_type,
                });
            }
        }
        out.sort_by(|a, b| a.group.cmp(&b.group));
        out
    }

    /// One group's state and members (DescribeGroups).
    ///
    /// # Errors
    /// Those of finding the group's coordinator here.
    pub fn describe_group(&self, group: &str) -> Result<DescribedGroup> {
        let (g, replica) = self.coordinator_replica(group)?;
        Ok(self.live().describe(g, &replica, group, &self.metadata()))
    }

    /// Deletes a group without members, with its offsets (DeleteGroups).
    ///
    /// # Errors
    /// [`GroupError::GroupIdNotFound`], [`GroupError::NonEmptyGroup`], and those
    /// of finding the coordinator or replicating the deletion.
    pub async fn delete_group(&self, group: &str, timeout: Duration) -> Result<()> {
        let (g, replica) = self.coordinator_replica(group)?;
        let d = self.live().describe(g, &replica, group, &self.metadata());
        if d.state == "Dead" {
            return Err(GroupError::GroupIdNotFound(group.to_string()).into());
        }
        if !d.members.is_empty() || d.state != State::Empty.name() {
            return Err(GroupError::NonEmptyGroup(group.to_string()).into());
        }
        let cmd = GroupCommand::DeleteGroups {
            groups: vec![group.to_string()],
        };
        self.propose_group_command(g, &cmd, timeout).await?;
        self.live().forget(g, group);
        Ok(())
    }

    /// Deletes some of a group's committed offsets (OffsetDelete); one result
    /// per partition.
    ///
    /// # Errors
    /// [`GroupError::GroupIdNotFound`], and those of finding the coordinator or
    /// replicating the deletion; per partition,
    /// [`GroupError::GroupSubscribedToTopic`] while a member of the group
    /// subscribes to its topic.
    pub async fn delete_offsets(
        &self,
        group: &str,
        partitions: &[(String, i32)],
        timeout: Duration,
    ) -> Result<Vec<Result<()>>> {
        let (g, replica) = self.coordinator_replica(group)?;
        let d = self.live().describe(g, &replica, group, &self.metadata());
        if d.state == "Dead" {
            return Err(GroupError::GroupIdNotFound(group.to_string()).into());
        }
        let subscribed = |topic: &str| {
            d.members.iter().any(|m| {
                subscription_topics(&m.metadata).is_none_or(|ts| ts.iter().any(|t| t == topic))
            })
        };
        let mut results = Vec::with_capacity(partitions.len());
        let mut delete = Vec::new();
        for (t, p) in partitions {
            if subscribed(t) {
                results.push(Err(GroupError::GroupSubscribedToTopic.into()));
            } else {
                delete.push((t.clone(), *p));
                results.push(Ok(()));
            }
        }
        if !delete.is_empty() {
            let cmd = GroupCommand::DeleteOffsets {
                group: group.to_string(),
                partitions: delete,
            };
            self.propose_group_command(g, &cmd, timeout).await?;
        }
        Ok(results)
    }
}

/// The topics of a consumer's subscription (Kafka's ConsumerProtocolSubscription:
/// version, then an array of topic names); `None` when it is not one.
fn subscription_topics(b: &[u8]) -> Option<Vec<String>> {
    let mut at = 2usize;
    let n = i32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?);
    at += 4;
    let mut out = Vec::new();
    for _ in 0..n.max(0) {
        let len = usize::try_from(i16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?)).ok()?;
        at += 2;
        out.push(String::from_utf8(b.get(at..at + len)?.to_vec()).ok()?);
        at += len;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_name_their_topics() {
        let mut b = vec![0, 1, 0, 0, 0, 2];
        for t in ["orders", "t"] {
            b.extend_from_slice(&(t.len() as i16).to_be_bytes());
            b.extend_from_slice(t.as_bytes());
        }
        b.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(
            subscription_topics(&b),
            Some(vec!["orders".into(), "t".into()])
        );
        assert_eq!(subscription_topics(&[0, 1, 0]), None);
    }
}
