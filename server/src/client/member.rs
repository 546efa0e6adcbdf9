//! A consumer-group member over the consumer group protocol (KIP-848), for
//! `weir consume --group` and `weir bench consume --group`: it heartbeats with
//! ConsumerGroupHeartbeat, takes the partitions the coordinator assigns,
//! commits what it read of a partition before it acknowledges giving it up,
//! and starts a new partition at the group's committed offset (or at the
//! beginning or end of the partition when there is none). Works with any broker
//! that has the protocol: weir, Kafka 4.
//!
//! The application drives it: [`GroupMember::heartbeat_if_due`] between
//! fetches, [`GroupMember::advance`] after consuming, [`GroupMember::commit`]
//! now and then, [`GroupMember::leave`] at the end.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::bail;

use super::*;

const HEARTBEAT_V: i16 = 0;
const COMMIT_V: i16 = 9;
const METADATA_IDS_V: i16 = 12;

/// Where a partition without a committed offset starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reset {
    /// Its first offset.
    Earliest,
    /// Its end: only what is produced from now on.
    Latest,
}

/// A member of a consumer group (KIP-848 protocol).
#[derive(Debug)]
pub struct GroupMember {
    group: String,
    topics: Vec<String>,
    reset: Reset,
    member_id: String,
    epoch: i32,
    interval: Duration,
    last_beat: Option<Instant>,
    names: HashMap<[u8; 16], String>,
    /// Owned partitions and the next offset to read.
    owned: BTreeMap<(String, i32), i64>,
    /// What was last committed of each.
    committed: BTreeMap<(String, i32), i64>,
    /// Times the assignment changed.
    rebalances: u64,
    /// The last answer may not have been applied (an error or a cancelled
    /// call): the next heartbeat sends the whole subscription, so that the
    /// coordinator answers with the whole assignment.
    full_next: bool,
}

impl Client {
    /// Joins `group` subscribed to `topics`; the first assignment arrives with
    /// the first heartbeats ([`GroupMember::heartbeat_if_due`]).
    ///
    /// # Errors
    /// Connection or protocol errors, or the coordinator's refusal.
    pub async fn join(
        &mut self,
        group: &str,
        topics: &[&str],
        reset: Reset,
    ) -> anyhow::Result<GroupMember> {
        let mut m = GroupMember {
            group: group.to_string(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            reset,
            member_id: String::new(),
            epoch: 0,
            interval: Duration::from_millis(100),
            last_beat: None,
            names: HashMap::new(),
            owned: BTreeMap::new(),
            committed: BTreeMap::new(),
            rebalances: 0,
            full_next: false,
        };
        m.heartbeat(self).await?;
        Ok(m)
    }

    /// Topic ids (KIP-516) of `topics`, from Metadata v12.
    async fn topic_ids(&mut self, topics: &[String]) -> anyhow::Result<HashMap<[u8; 16], String>> {
        let req = MetadataRequest::default().with_topics(Some(
            topics
                .iter()
                .map(|t| metadata_request::MetadataRequestTopic::default().with_name(Some(name(t))))
                .collect(),
        ));
        let ResponseKind::Metadata(m) = self
            .call_any(ApiKey::Metadata, METADATA_IDS_V, RequestKind::Metadata(req))
            .await?
        else {
            bail!("unexpected response to Metadata");
        };
        Ok(m.topics
            .iter()
            .filter_map(|t| Some((*t.topic_id.as_bytes(), t.name.as_ref()?.to_string())))
            .collect())
    }
}

impl GroupMember {
    /// The partitions this member consumes now, with the next offset of each.
    pub fn assignment(&self) -> &BTreeMap<(String, i32), i64> {
        &self.owned
    }

    /// How many times its assignment changed.
    pub fn rebalances(&self) -> u64 {
        self.rebalances
    }

    /// Records that `topic`-`partition` was read up to `next` (exclusive).
    pub fn advance(&mut self, topic: &str, partition: i32, next: i64) {
        if let Some(at) = self.owned.get_mut(&(topic.to_string(), partition)) {
            *at = next.max(*at);
        }
    }

    /// Heartbeats if the interval the coordinator asked for has passed; true
    /// when the assignment changed.
    ///
    /// # Errors
    /// As [`GroupMember::heartbeat`].
    pub async fn heartbeat_if_due(&mut self, c: &mut Client) -> anyhow::Result<bool> {
        if self.last_beat.is_some_and(|t| t.elapsed() < self.interval) {
            return Ok(false);
        }
        self.heartbeat(c).await
    }

    /// One heartbeat: reports what this member owns and applies the
    /// coordinator's answer (revoked partitions are committed and dropped, new
    /// ones positioned); true when the assignment changed. Rejoins after being
    /// fenced; finds the coordinator again after it moved.
    ///
    /// # Errors
    /// Connection or protocol errors, or an error the coordinator answers that
    /// a member cannot recover from.
    pub async fn heartbeat(&mut self, c: &mut Client) -> anyhow::Result<bool> {
        let owned = self.owned_by_id(c).await?;
        let joining = self.epoch == 0;
        let full = joining || self.full_next;
        let req = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s(&self.group)))
            .with_member_id(s(&self.member_id))
            .with_member_epoch(self.epoch)
            .with_rebalance_timeout_ms(if joining { 60_000 } else { -1 })
            .with_subscribed_topic_names(
                full.then(|| self.topics.iter().map(|t| name(t)).collect()),
            )
            .with_topic_partitions(Some(owned));
        self.last_beat = Some(Instant::now());
        // Cleared once the answer is applied.
        self.full_next = true;
        let addr = c.coordinator(&self.group).await?;
        let answer = c
            .call(
                &addr,
                ApiKey::ConsumerGroupHeartbeat,
                HEARTBEAT_V,
                RequestKind::ConsumerGroupHeartbeat(req),
            )
            .await;
        let r = match answer {
            Ok(ResponseKind::ConsumerGroupHeartbeat(r)) => r,
            Ok(_) => bail!("unexpected response to ConsumerGroupHeartbeat"),
            Err(e) => {
                c.coordinators.remove(&self.group);
                return Err(e);
            }
        };
        match r.error_code {
            0 => {}
            // Loading, not available, not the coordinator: find it again.
            14..=16 => {
                c.coordinators.remove(&self.group);
                self.last_beat = None;
                tokio::time::sleep(Duration::from_millis(100)).await;
                return Ok(false);
            }
            // Unknown member, fenced epoch: everything is lost; join afresh.
            25 | 110 => {
                tracing::warn!(group = %self.group, code = r.error_code, "fenced by the coordinator; rejoining");
                let changed = !self.owned.is_empty();
                self.owned.clear();
                self.member_id.clear();
                self.epoch = 0;
                self.last_beat = None;
                return Ok(changed);
            }
            code => bail!(
                "group {}: heartbeat refused with error {code}: {}",
                self.group,
                r.error_message.as_deref().unwrap_or("")
            ),
        }
        if let Some(id) = &r.member_id {
            self.member_id = id.to_string();
        }
        self.epoch = r.member_epoch;
        self.interval =
            Duration::from_millis(u64::try_from(r.heartbeat_interval_ms).unwrap_or(100));
        let Some(a) = r.assignment else {
            self.full_next = false;
            return Ok(false);
        };
        let mut now: Vec<(String, i32)> = Vec::new();
        for t in &a.topic_partitions {
            let id = *t.topic_id.as_bytes();
            if !self.names.contains_key(&id) {
                self.names = c.topic_ids(&self.topics).await?;
            }
            let Some(topic) = self.names.get(&id) else {
                bail!(
                    "group {}: assigned a topic id no Metadata names",
                    self.group
                );
            };
            now.extend(t.partitions.iter().map(|p| (topic.clone(), *p)));
        }
        let changed = self.reassign(c, now).await?;
        self.full_next = false;
        Ok(changed)
    }

    /// Moves to assignment `now`: commits and drops what it loses, positions
    /// what it gains.
    async fn reassign(&mut self, c: &mut Client, now: Vec<(String, i32)>) -> anyhow::Result<bool> {
        let lost: Vec<(String, i32)> = self
            .owned
            .keys()
            .filter(|k| !now.contains(k))
            .cloned()
            .collect();
        let gained: Vec<(String, i32)> = now
            .iter()
            .filter(|k| !self.owned.contains_key(*k))
            .cloned()
            .collect();
        if lost.is_empty() && gained.is_empty() {
            return Ok(false);
        }
        if !lost.is_empty() {
            // Its next owner starts where this member stopped. (If the commit
            // fails, the next owner reads again what this member read: at least
            // once.)
            if let Err(e) = self.commit(c).await {
                tracing::warn!(group = %self.group, error = %e, "commit before giving up partitions failed");
            }
            for k in &lost {
                self.owned.remove(k);
            }
            // Acknowledge at once.
            self.last_beat = None;
        }
        if !gained.is_empty() {
            let committed: BTreeMap<(String, i32), i64> = c
                .committed_offsets(&self.group)
                .await?
                .into_iter()
                .map(|(t, p, o)| ((t, p), o))
                .collect();
            for (t, p) in gained {
                let at = match committed.get(&(t.clone(), p)) {
                    Some(o) if *o >= 0 => *o,
                    _ => {
                        let which = if self.reset == Reset::Earliest {
                            -2
                        } else {
                            -1
                        };
                        c.list_offset(&t, p, which).await?
                    }
                };
                self.committed.insert((t.clone(), p), at);
                self.owned.insert((t, p), at);
            }
        }
        self.rebalances += 1;
        tracing::debug!(group = %self.group, epoch = self.epoch, owned = ?self.owned.keys().collect::<Vec<_>>(), "assignment changed");
        Ok(true)
    }

    async fn owned_by_id(
        &mut self,
        c: &mut Client,
    ) -> anyhow::Result<Vec<consumer_group_heartbeat_request::TopicPartitions>> {
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (t, p) in self.owned.keys() {
            by_topic.entry(t).or_default().push(*p);
        }
        if by_topic
            .keys()
            .any(|t| !self.names.values().any(|n| n == t))
        {
            self.names = c.topic_ids(&self.topics).await?;
        }
        Ok(by_topic
            .into_iter()
            .filter_map(|(t, ps)| {
                let id = self.names.iter().find(|(_, n)| *n == t)?.0;
                Some(
                    consumer_group_heartbeat_request::TopicPartitions::default()
                        .with_topic_id(uuid::Uuid::from_bytes(*id))
                        .with_partitions(ps),
                )
            })
            .collect())
    }

    /// Commits the position of every owned partition read since its last
    /// commit (OffsetCommit v9, with this member's id and epoch).
    ///
    /// # Errors
    /// Connection or protocol errors, or a partition's error code.
    pub async fn commit(&mut self, c: &mut Client) -> anyhow::Result<()> {
        let due: Vec<((String, i32), i64)> = self
            .owned
            .iter()
            .filter(|(k, at)| self.committed.get(*k) != Some(*at))
            .map(|(k, at)| (k.clone(), *at))
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        let offsets: Vec<(String, i32, i64)> =
            due.iter().map(|((t, p), o)| (t.clone(), *p, *o)).collect();
        let req = groups::commit_request(&self.group, &offsets)
            .with_generation_id_or_member_epoch(self.epoch)
            .with_member_id(s(&self.member_id));
        let addr = c.coordinator(&self.group).await?;
        let answer = c
            .call(
                &addr,
                ApiKey::OffsetCommit,
                COMMIT_V,
                RequestKind::OffsetCommit(req),
            )
            .await;
        let checked = match answer {
            Ok(ResponseKind::OffsetCommit(r)) => groups::commit_errors(&self.group, &r),
            Ok(_) => Err(anyhow::anyhow!("unexpected response to OffsetCommit")),
            Err(e) => Err(e),
        };
        if let Err(e) = checked {
            // The coordinator may have moved: find it again next time.
            c.coordinators.remove(&self.group);
            return Err(e);
        }
        self.committed.extend(due);
        Ok(())
    }

    /// Commits and leaves the group (its partitions go to the others at once).
    ///
    /// # Errors
    /// Connection or protocol errors.
    pub async fn leave(mut self, c: &mut Client) -> anyhow::Result<()> {
        if self.epoch > 0 {
            self.commit(c).await?;
        }
        let req = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s(&self.group)))
            .with_member_id(s(&self.member_id))
            .with_member_epoch(-1)
            .with_rebalance_timeout_ms(-1);
        let addr = c.coordinator(&self.group).await?;
        c.call(
            &addr,
            ApiKey::ConsumerGroupHeartbeat,
            HEARTBEAT_V,
            RequestKind::ConsumerGroupHeartbeat(req),
        )
        .await?;
        Ok(())
    }
}
