//! Deleting a partition's oldest records: on request (DeleteRecords) and by the
//! topic's retention (`retention.ms`, `retention.bytes`). Either way the leader
//! proposes a trim entry with the new log start offset, and every replica raises
//! its start offset to it when it applies the entry (so the start moves at the same
//! point of the log everywhere); the engine releases the storage below.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::entry::encode_trim;
use crate::error::{Error, Result};
use crate::ids::{GroupId, Offset};
use crate::metadata::{Metadata, TopicKind};
use crate::node::{Node, NodeConfig};
use crate::raft::driver::{GroupMsg, Role};
use crate::retention::Retention;

/// The retention of a topic with `configs` under the broker defaults in `cfg`,
/// at `now_ms`: Kafka's `retention.ms` and `retention.bytes` (-1: no limit),
/// which apply when `cleanup.policy` includes `delete` (the default).
pub fn topic_retention(
    configs: &BTreeMap<String, String>,
    cfg: &NodeConfig,
    now_ms: i64,
) -> Retention {
    let deletes = configs
        .get("cleanup.policy")
        .is_none_or(|p| p.split(',').any(|s| s.trim() == "delete"));
    if !deletes {
        return Retention::default();
    }
    let num = |k: &str| configs.get(k).and_then(|v| v.trim().parse::<i64>().ok());
    let ms = match num("retention.ms") {
        Some(ms) => u64::try_from(ms).ok(),
        None => cfg
            .retention
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    };
    let bytes = match num("retention.bytes") {
        Some(b) => u64::try_from(b).ok(),
        None => cfg.retention_bytes,
    };
    Retention {
        expired_before: ms.map(|ms| now_ms.saturating_sub(i64::try_from(ms).unwrap_or(i64::MAX))),
        max_bytes: bytes,
    }
}

impl Node {
    /// Deletes the records of a partition this node leads below `offset` (-1: the
    /// high watermark), as Kafka's DeleteRecords does, and returns the new log
    /// start offset (the low watermark). An offset at or below the current start
    /// changes nothing.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::NotLeader`]; [`Error::LeaderNotReady`] while
    /// a new leader catches up; [`Error::InvalidTopic`] for an internal topic;
    /// [`Error::OutOfRange`] when `offset` is past the high watermark (or
    /// negative other than -1); [`Error::Timeout`] when the trim was not applied
    /// in time.
    pub async fn delete_records(
        &self,
        topic: &str,
        partition: i32,
        offset: Offset,
        timeout: Duration,
    ) -> Result<Offset> {
        if self
            .metadata()
            .topics
            .get(topic)
            .is_some_and(|t| t.is_internal())
        {
            return Err(Error::InvalidTopic(format!(
                "{topic} is internal: its records cannot be deleted"
            )));
        }
        let (p, h) = self.locate(topic, partition)?;
        if !self.leader_check(&p, &h)?.caught_up() {
            // Its log's end may be short of the high watermark (KIP-207).
            return Err(Error::LeaderNotReady(format!("{topic}-{partition}")));
        }
        let engine = self.engine().clone();
        let state = crate::raft::blocking(|| engine.log_state(p.group))?;
        let to = if offset == -1 {
            state.next_offset
        } else {
            offset
        };
        if to < 0 || to > state.next_offset {
            return Err(Error::OutOfRange {
                requested: offset,
                start: state.start_offset,
                end: state.next_offset,
            });
        }
        if to <= state.start_offset {
            return Ok(state.start_offset);
        }
        self.trim(p.group, to, timeout).await?;
        let engine = self.engine().clone();
        Ok(crate::raft::blocking(|| engine.log_state(p.group))?.start_offset)
    }

    /// Proposes raising `group`'s log start to `offset` and waits until it is
    /// applied here.
    async fn trim(&self, group: GroupId, offset: Offset, timeout: Duration) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.send_to_group(
            group,
            GroupMsg::Propose {
                data: encode_trim(offset),
                reply: Some(tx),
                bytes: None,
            },
        );
        match tokio::time::timeout(timeout, rx).await {
            Err(_) => Err(Error::Timeout(format!(
                "deleting records of {group} below {offset} not applied within {timeout:?}"
            ))),
            Ok(Err(_)) => Err(Error::Shutdown),
            Ok(Ok(r)) => r.map(|_| ()),
        }
    }

    /// One retention pass: for every data partition this node leads, asks the
    /// engine how far the topic's retention lets the log start move, and proposes
    /// a trim when it would move. Returns the number of trims proposed.
    ///
    /// # Errors
    /// Engine errors while asking.
    pub fn enforce_retention(&self) -> Result<usize> {
        let meta = self.metadata();
        let now = crate::batch::now_ms();
        let mut proposed = 0;
        for (group, r) in self.led_retentions(&meta, now) {
            let engine = self.engine();
            let (state, point) = crate::raft::blocking(|| {
                Ok::<_, Error>((
                    engine.log_state(group)?,
                    engine.log_retention_point(group, r)?,
                ))
            })?;
            if point > state.start_offset {
                tracing::debug!(%group, from = state.start_offset, to = point, "retention trims the log");
                self.send_to_group(
                    group,
                    GroupMsg::Propose {
                        data: encode_trim(point),
                        reply: None,
                        bytes: None,
                    },
                );
                proposed += 1;
            }
        }
        Ok(proposed)
    }

    /// The data partitions led here whose topics limit retention, with that limit.
    fn led_retentions(&self, meta: &Metadata, now: i64) -> Vec<(GroupId, Retention)> {
        meta.hosted_by(self.id())
            .filter(|(t, _)| t.kind == TopicKind::Data)
            .filter(|(_, p)| {
                self.group_status(p.group)
                    .is_some_and(|s| s.role == Role::Leader)
            })
            .map(|(t, p)| (p.group, topic_retention(&t.configs, self.config(), now)))
            .filter(|(_, r)| !r.is_unlimited())
            .collect()
    }
}

/// Runs [`Node::enforce_retention`] every `retention_check_interval` while the
/// node lives.
pub(crate) async fn run_retention(node: crate::node::WeakNode) {
    loop {
        let Some(n) = node.upgrade() else {
            return;
        };
        let every = n.config().retention_check_interval;
        if let Err(e) = n.enforce_retention() {
            tracing::warn!(error = %e, "a retention pass failed; it runs again");
        }
        drop(n);
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configs(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn topic_configs_override_the_broker_defaults() {
        let mut cfg = NodeConfig::new(1, vec![1], "x:1");
        cfg.retention = Some(Duration::from_secs(10));
        cfg.retention_bytes = None;
        let now = 100_000;
        let r = topic_retention(&configs(&[]), &cfg, now);
        assert_eq!(r.expired_before, Some(90_000));
        assert_eq!(r.max_bytes, None);
        let r = topic_retention(
            &configs(&[("retention.ms", "-1"), ("retention.bytes", "5000")]),
            &cfg,
            now,
        );
        assert_eq!((r.expired_before, r.max_bytes), (None, Some(5000)));
        // Compacted-only topics are not trimmed by retention.
        let r = topic_retention(&configs(&[("cleanup.policy", "compact")]), &cfg, now);
        assert!(r.is_unlimited());
        let r = topic_retention(&configs(&[("cleanup.policy", "compact,delete")]), &cfg, now);
        assert_eq!(r.expired_before, Some(90_000));
    }
}
