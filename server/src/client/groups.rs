//! Consumer-group administration for `weir groups`: find a group's coordinator,
//! list, describe, read and reset committed offsets, delete.

use std::time::Duration;

use anyhow::bail;

use super::*;

const FIND_V: i16 = 3;
const LIST_GROUPS_V: i16 = 4;
const DESCRIBE_GROUPS_V: i16 = 5;
const OFFSET_FETCH_V: i16 = 7;
const OFFSET_COMMIT_V: i16 = 8;
const DELETE_GROUPS_V: i16 = 2;

/// A group as ListGroups shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupListing {
    /// The group id.
    pub group: String,
    /// Its state.
    pub state: String,
    /// Its protocol type.
    pub protocol_type: String,
}

/// A group member as DescribeGroups shows it, with its assignment decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupMember {
    /// Member id.
    pub member_id: String,
    /// Client id.
    pub client_id: String,
    /// Client address.
    pub host: String,
    /// Assigned (topic, partition)s (empty if the assignment is not a consumer's).
    pub assignment: Vec<(String, i32)>,
}

/// A group as DescribeGroups shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupDescription {
    /// Its state.
    pub state: String,
    /// The chosen assignor.
    pub protocol: String,
    /// Its members.
    pub members: Vec<GroupMember>,
}

/// Decodes a consumer's assignment (Kafka's ConsumerProtocolAssignment: version,
/// then topics with their partitions); `None` when it is not one.
pub fn decode_assignment(b: &[u8]) -> Option<Vec<(String, i32)>> {
    let mut at = 2usize;
    let int = |at: &mut usize| -> Option<i32> {
        let v = i32::from_be_bytes(b.get(*at..*at + 4)?.try_into().ok()?);
        *at += 4;
        Some(v)
    };
    let mut out = Vec::new();
    for _ in 0..int(&mut at)?.max(0) {
        let len = usize::try_from(i16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?)).ok()?;
        at += 2;
        let topic = String::from_utf8(b.get(at..at + len)?.to_vec()).ok()?;
        at += len;
        for _ in 0..int(&mut at)?.max(0) {
            out.push((topic.clone(), int(&mut at)?));
        }
    }
    Some(out)
}

impl Client {
    /// The address of `group`'s coordinator (retrying COORDINATOR_NOT_AVAILABLE
    /// for up to 30 s, while a cluster creates its group topic).
    ///
    /// # Errors
    /// Other errors, or no coordinator in time.
    pub async fn coordinator(&mut self, group: &str) -> anyhow::Result<String> {
        if let Some(addr) = self.coordinators.get(group) {
            return Ok(addr.clone());
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let req = FindCoordinatorRequest::default().with_key(s(group));
            let ResponseKind::FindCoordinator(r) = self
                .call_any(
                    ApiKey::FindCoordinator,
                    FIND_V,
                    RequestKind::FindCoordinator(req),
                )
                .await?
            else {
                bail!("unexpected response to FindCoordinator");
            };
            if r.error_code == 0 {
                let addr = format!("{}:{}", r.host.as_str(), r.port);
                self.coordinators.insert(group.to_string(), addr.clone());
                return Ok(addr);
            }
            if r.error_code != 15 || tokio::time::Instant::now() >= deadline {
                bail!("no coordinator for group {group}: error {}", r.error_code);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Every group the cluster's brokers coordinate.
    ///
    /// # Errors
    /// Connection or protocol errors.
    pub async fn list_groups(&mut self) -> anyhow::Result<Vec<GroupListing>> {
        let (brokers, _) = self.metadata(Some(&[])).await?;
        let mut out = Vec::new();
        for addr in brokers.values() {
            let req = RequestKind::ListGroups(ListGroupsRequest::default());
            let ResponseKind::ListGroups(r) = self
                .call(addr, ApiKey::ListGroups, LIST_GROUPS_V, req)
                .await?
            else {
                bail!("unexpected response to ListGroups");
            };
            out.extend(r.groups.into_iter().map(|g| GroupListing {
                group: g.group_id.to_string(),
                state: g.group_state.to_string(),
                protocol_type: g.protocol_type.to_string(),
            }));
        }
        out.sort_by(|a, b| a.group.cmp(&b.group));
        Ok(out)
    }

    /// `group`'s state and members.
    ///
    /// # Errors
    /// Connection or protocol errors, or the group's error code.
    pub async fn describe_group(&mut self, group: &str) -> anyhow::Result<GroupDescription> {
        let addr = self.coordinator(group).await?;
        let req = DescribeGroupsRequest::default().with_groups(vec![GroupId(s(group))]);
        let ResponseKind::DescribeGroups(r) = self
            .call(
                &addr,
                ApiKey::DescribeGroups,
                DESCRIBE_GROUPS_V,
                RequestKind::DescribeGroups(req),
            )
            .await?
        else {
            bail!("unexpected response to DescribeGroups");
        };
        let g = r
            .groups
            .into_iter()
            .next()
            .context("empty DescribeGroups response")?;
        if g.error_code != 0 {
            bail!("describing group {group}: error {}", g.error_code);
        }
        Ok(GroupDescription {
            state: g.group_state.to_string(),
            protocol: g.protocol_data.to_string(),
            members: g
                .members
                .into_iter()
                .map(|m| GroupMember {
                    member_id: m.member_id.to_string(),
                    client_id: m.client_id.to_string(),
                    host: m.client_host.to_string(),
                    assignment: decode_assignment(&m.member_assignment).unwrap_or_default(),
                })
                .collect(),
        })
    }

    /// `group`'s committed offsets, every partition it committed: (topic,
    /// partition, offset).
    ///
    /// # Errors
    /// Connection or protocol errors, or the group's error code.
    pub async fn committed_offsets(
        &mut self,
        group: &str,
    ) -> anyhow::Result<Vec<(String, i32, i64)>> {
        let addr = self.coordinator(group).await?;
        let req = OffsetFetchRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_topics(None);
        let answer = self
            .call(
                &addr,
                ApiKey::OffsetFetch,
                OFFSET_FETCH_V,
                RequestKind::OffsetFetch(req),
            )
            .await;
        let r = match answer {
            Ok(ResponseKind::OffsetFetch(r)) if r.error_code == 0 => r,
            other => {
                // The coordinator may have moved: find it again next time.
                self.coordinators.remove(group);
                match other {
                    Ok(ResponseKind::OffsetFetch(r)) => {
                        bail!("reading group {group}'s offsets: error {}", r.error_code)
                    }
                    Ok(_) => bail!("unexpected response to OffsetFetch"),
                    Err(e) => return Err(e),
                }
            }
        };
        let mut out: Vec<(String, i32, i64)> = r
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(move |p| (t.name.to_string(), p.partition_index, p.committed_offset))
            })
            .collect();
        out.sort();
        Ok(out)
    }

    /// Sets `group`'s committed offsets, as a client that assigns its partitions
    /// (the group must have no members).
    ///
    /// # Errors
    /// Connection or protocol errors, or a partition's error code.
    pub async fn commit_offsets(
        &mut self,
        group: &str,
        offsets: &[(String, i32, i64)],
    ) -> anyhow::Result<()> {
        let addr = self.coordinator(group).await?;
        let answer = self
            .call(
                &addr,
                ApiKey::OffsetCommit,
                OFFSET_COMMIT_V,
                RequestKind::OffsetCommit(commit_request(group, offsets)),
            )
            .await;
        if answer.is_err() {
            self.coordinators.remove(group);
        }
        let ResponseKind::OffsetCommit(r) = answer? else {
            bail!("unexpected response to OffsetCommit");
        };
        if let Err(e) = commit_errors(group, &r) {
            self.coordinators.remove(group);
            return Err(e);
        }
        Ok(())
    }

    /// Commits offset `n` (counting up) of `topic`-0 for `group` again and again
    /// over one connection to its coordinator, keeping up to `in_flight`
    /// commits unanswered (as clients' asynchronous commits do), while `more()`
    /// says so; `done` gets each commit's latency. Returns how many were
    /// acknowledged.
    ///
    /// # Errors
    /// Connection or protocol errors, or a commit's error code (no retries: for
    /// steady-state load).
    pub async fn commit_pipelined(
        &mut self,
        group: &str,
        topic: &str,
        in_flight: usize,
        mut more: impl FnMut() -> bool,
        mut done: impl FnMut(Duration),
    ) -> anyhow::Result<u64> {
        let addr = self.coordinator(group).await?;
        let conn = self.conn(&addr).await?;
        let mut outstanding = std::collections::VecDeque::new();
        let mut acked = 0u64;
        loop {
            while outstanding.len() < in_flight.max(1) && more() {
                let offset = i64::try_from(acked + outstanding.len() as u64).unwrap_or(i64::MAX);
                let req = commit_request(group, &[(topic.to_string(), 0, offset)]);
                let id = conn
                    .send(
                        ApiKey::OffsetCommit,
                        OFFSET_COMMIT_V,
                        RequestKind::OffsetCommit(req),
                    )
                    .await?;
                outstanding.push_back((id, std::time::Instant::now()));
            }
            let Some((id, sent)) = outstanding.pop_front() else {
                return Ok(acked);
            };
            let ResponseKind::OffsetCommit(r) =
                conn.recv(ApiKey::OffsetCommit, OFFSET_COMMIT_V, id).await?
            else {
                bail!("unexpected response to OffsetCommit");
            };
            commit_errors(group, &r)?;
            done(sent.elapsed());
            acked += 1;
        }
    }

    /// Deletes `group` (it must have no members).
    ///
    /// # Errors
    /// Connection or protocol errors, or the group's error code.
    pub async fn delete_group(&mut self, group: &str) -> anyhow::Result<()> {
        let addr = self.coordinator(group).await?;
        let req = DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s(group))]);
        let ResponseKind::DeleteGroups(r) = self
            .call(
                &addr,
                ApiKey::DeleteGroups,
                DELETE_GROUPS_V,
                RequestKind::DeleteGroups(req),
            )
            .await?
        else {
            bail!("unexpected response to DeleteGroups");
        };
        match r.results.first().map(|g| g.error_code) {
            Some(0) => Ok(()),
            Some(68) => bail!("group {group} has members: stop them first"),
            Some(69) => bail!("group {group} does not exist"),
            Some(code) => bail!("deleting group {group}: error {code}"),
            None => bail!("empty DeleteGroups response"),
        }
    }
}

/// A simple consumer's OffsetCommit (generation -1) of `offsets`.
pub(super) fn commit_request(group: &str, offsets: &[(String, i32, i64)]) -> OffsetCommitRequest {
    let mut topics: BTreeMap<&str, Vec<(i32, i64)>> = BTreeMap::new();
    for (t, p, o) in offsets {
        topics.entry(t).or_default().push((*p, *o));
    }
    OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(
            topics
                .into_iter()
                .map(|(t, ps)| {
                    offset_commit_request::OffsetCommitRequestTopic::default()
                        .with_name(name(t))
                        .with_partitions(
                            ps.into_iter()
                                .map(|(p, o)| {
                                    offset_commit_request::OffsetCommitRequestPartition::default()
                                        .with_partition_index(p)
                                        .with_committed_offset(o)
                                        .with_committed_leader_epoch(-1)
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
}

/// The first partition error of an OffsetCommit answer.
pub(super) fn commit_errors(group: &str, r: &OffsetCommitResponse) -> anyhow::Result<()> {
    for t in &r.topics {
        for p in &t.partitions {
            if p.error_code != 0 {
                bail!(
                    "committing {}-{} for group {group}: error {}{}",
                    t.name.as_str(),
                    p.partition_index,
                    p.error_code,
                    if p.error_code == 25 {
                        " (the group has members: stop them first)"
                    } else {
                        ""
                    }
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_decode() {
        let mut b = vec![
            0, 0, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 2, 0, 0, 0, 4, 0, 0, 0, 5,
        ];
        b.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(
            decode_assignment(&b),
            Some(vec![("t".to_string(), 4), ("t".to_string(), 5)])
        );
        assert_eq!(decode_assignment(&[0, 0, 0]), None);
    }
}
