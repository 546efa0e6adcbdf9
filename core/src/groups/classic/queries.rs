//! What a classic group answers without changing its membership: Heartbeat,
//! DescribeGroups, and the member check of an offset commit.

use std::time::Instant;

use super::{ClassicGroup, State};
use crate::error::{GroupError, Result};

impl ClassicGroup {
    /// Handles a Heartbeat.
    pub(crate) fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: Instant,
    ) -> Result<()> {
        self.check_instance(member_id, instance_id)?;
        if self.state == State::Empty {
            return Err(GroupError::UnknownMemberId(member_id.to_string()).into());
        }
        let state = self.state;
        let current = self.generation;
        let m = self
            .members
            .get_mut(member_id)
            .ok_or_else(|| GroupError::UnknownMemberId(member_id.to_string()))?;
        if generation != current {
            return Err(GroupError::IllegalGeneration(generation).into());
        }
        m.deadline = now + m.session;
        if state == State::PreparingRebalance {
            return Err(GroupError::RebalanceInProgress.into());
        }
        Ok(())
    }

    /// The group as DescribeGroups shows it.
    pub(crate) fn describe(&self) -> crate::groups::admin::DescribedGroup {
        let protocol = self.protocol.clone().unwrap_or_default();
        crate::groups::admin::DescribedGroup {
            state: self.state.name(),
            group_type: "classic",
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol: protocol.clone(),
            members: self
                .members
                .values()
                .map(|m| crate::groups::admin::DescribedMember {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: m.metadata(&protocol),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    /// Checks that `member_id` (of `instance_id`) is a member of `generation`
    /// (for an offset commit).
    pub(crate) fn check_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<()> {
        self.check_instance(member_id, instance_id)?;
        if !self.members.contains_key(member_id) {
            return Err(GroupError::UnknownMemberId(member_id.to_string()).into());
        }
        if generation != self.generation {
            return Err(GroupError::IllegalGeneration(generation).into());
        }
        Ok(())
    }
}
