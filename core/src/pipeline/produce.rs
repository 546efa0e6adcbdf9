//! Produce: validate → leadership check → propose → await the ticket.
//!
//! Proposing is synchronous: [`Node::propose`] puts the batch in the partition
//! group's mailbox before it returns, so batches one caller proposes to a partition
//! are appended in the order it proposed them, however their tickets are awaited.

use std::time::Duration;

use tokio::sync::oneshot;

use crate::batch;
use crate::engine::Appended;
use crate::entry::encode_produce;
use crate::error::{Error, Result};
use crate::node::Node;
use crate::pipeline::budget::ProduceCredit;
use crate::raft::driver::{Applied, GroupMsg};

/// How many replicas must have a batch before a produce is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acks {
    /// Answer nothing; return once the leader accepted the proposal.
    None,
    /// Wait until the batch is committed and applied (Kafka acks=1 and acks=all).
    All,
}

/// A proposed batch: await [`ProduceTicket::wait`] for its offsets.
#[derive(Debug)]
pub struct ProduceTicket {
    /// `None` for [`Acks::None`] (nothing to wait for) and for a batch answered
    /// without proposing it (`answered`).
    reply: Option<oneshot::Receiver<Result<Applied>>>,
    /// A retry of a committed batch, answered with the first copy's offsets.
    answered: Option<Appended>,
    /// "topic-partition", for errors.
    what: String,
    /// The broker's time stamped on the batch, for a LogAppendTime topic.
    log_append_time: Option<i64>,
}

impl ProduceTicket {
    /// The time the broker stamped on the batch when its topic's
    /// `message.timestamp.type` is `LogAppendTime` (Produce answers it as
    /// `log_append_time_ms`); `None` for CreateTime topics.
    pub fn log_append_time(&self) -> Option<i64> {
        self.log_append_time
    }

    /// Waits until the batch is applied and returns its offsets (`None` for
    /// [`Acks::None`]).
    ///
    /// # Errors
    /// [`Error::NotLeader`] when leadership changed before the batch was committed
    /// (it was superseded and will not appear); [`Error::Timeout`] when it was not
    /// applied within `timeout` (it may still be, later); [`Error::Shutdown`];
    /// [`Error::Invalid`] when every replica refused the entry.
    pub async fn wait(self, timeout: Duration) -> Result<Option<Appended>> {
        let Some(rx) = self.reply else {
            return Ok(self.answered);
        };
        match tokio::time::timeout(timeout, rx).await {
            Err(_) => Err(Error::Timeout(format!(
                "produce to {} not applied within {timeout:?}",
                self.what
            ))),
            Ok(Err(_)) => Err(Error::Shutdown),
            Ok(Ok(Ok(Applied::Batch(a)))) => Ok(Some(a)),
            Ok(Ok(Ok(Applied::Command))) => Err(Error::Invalid(
                "produce entry was not applied as a batch".into(),
            )),
            Ok(Ok(Err(e))) => Err(e),
        }
    }
}

/// Refuses a batch with a record without a key, for a compacted topic (the
/// cleaner keeps records by key), as Kafka does.
fn check_keyed(topic: &str, bytes: &[u8], h: &batch::BatchHeader, max: usize) -> Result<()> {
    let mut unkeyed = false;
    let mut walk = || batch::for_each_record(bytes, h, max, &mut |r| unkeyed |= r.key.is_none());
    if h.compression() == 0 {
        walk()?;
    } else {
        crate::raft::blocking(walk)?;
    }
    if unkeyed {
        return Err(Error::Invalid(format!(
            "{topic} is compacted (cleanup.policy=compact): every record needs a key"
        )));
    }
    Ok(())
}

/// A topic's timestamp configs (Kafka's names and meanings).
struct TopicTimes {
    /// `message.timestamp.type=LogAppendTime`: the broker's time is the batch's.
    log_append_time: bool,
    /// `message.timestamp.before.max.ms`: how far in the past a record may be.
    before_max_ms: Option<i64>,
    /// `message.timestamp.after.max.ms`: how far in the future.
    after_max_ms: Option<i64>,
}

impl TopicTimes {
    fn of(meta: &crate::metadata::Metadata, topic: &str) -> TopicTimes {
        let configs = meta.topics.get(topic).map(|t| &t.configs);
        let get = |k: &str| configs.and_then(|c| c.get(k));
        let ms = |k: &str| get(k).and_then(|v| v.trim().parse::<i64>().ok());
        TopicTimes {
            log_append_time: get("message.timestamp.type").is_some_and(|v| v == "LogAppendTime"),
            before_max_ms: ms("message.timestamp.before.max.ms"),
            after_max_ms: ms("message.timestamp.after.max.ms"),
        }
    }

    /// Refuses records outside the topic's bounds around `now` (KIP-937).
    fn check(&self, topic: &str, min: i64, max: i64, now: i64) -> Result<()> {
        if let Some(before) = self.before_max_ms
            && min < now.saturating_sub(before)
        {
            return Err(Error::InvalidTimestamp(format!(
                "{topic}: record timestamp {min} is more than message.timestamp.before.max.ms = {before} before the broker's time {now}"
            )));
        }
        if let Some(after) = self.after_max_ms
            && max > now.saturating_add(after)
        {
            return Err(Error::InvalidTimestamp(format!(
                "{topic}: record timestamp {max} is more than message.timestamp.after.max.ms = {after} after the broker's time {now}"
            )));
        }
        Ok(())
    }
}

impl Node {
    /// Reserves `bytes` of the node's produce budget
    /// ([`NodeConfig::max_pending_produce_bytes`](crate::NodeConfig)), waiting while
    /// it is spent: call it before [`Node::propose`] with an upper bound of what
    /// the proposals will carry (a produce request's frame size). Bytes not handed
    /// to a proposal return when the credit is dropped.
    pub async fn reserve_produce(&self, bytes: usize) -> ProduceCredit {
        self.produce_budget().reserve(bytes).await
    }

    /// Proposes one RecordBatch to a partition: validates it, checks that this node
    /// leads the partition and puts the proposal in the group's mailbox before it
    /// returns, with its share of `credit` (held until the proposal is decided).
    /// Await the ticket for the outcome.
    ///
    /// # Errors
    /// [`Error::InvalidTopic`] for a name no topic can have or an internal
    /// topic; [`Error::NotFound`]
    /// for an unknown partition; [`Error::TooLarge`],
    /// [`Error::Invalid`], [`Error::UnsupportedCompression`] or [`Error::Corrupt`]
    /// for a bad batch (checked as Kafka's log validator does: see
    /// [`batch::validate_records`]); [`Error::NotLeader`]
    /// (with a hint) when this node does not lead it; [`Error::InvalidTimestamp`]
    /// for records outside the topic's `message.timestamp.before.max.ms` /
    /// `after.max.ms`; [`Error::Invalid`] for a record without a key in a
    /// compacted topic; [`Error::StorageFull`] below
    /// the free-space floor or while the disk is full; [`Error::Shutdown`].
    pub fn propose(
        &self,
        topic: &str,
        partition: i32,
        batch_bytes: &[u8],
        acks: Acks,
        credit: &mut ProduceCredit,
    ) -> Result<ProduceTicket> {
        crate::pipeline::topics::validate_topic_name(topic)?;
        let limit = self.config().max_batch_bytes;
        if batch_bytes.len() > limit {
            return Err(Error::TooLarge {
                size: batch_bytes.len(),
                limit,
            });
        }
        let header = batch::verify_produced(batch_bytes)?;
        let max = self.config().max_decompressed_batch_bytes;
        let (min_timestamp, max_timestamp) = if header.compression() == 0 {
            batch::validate_record_times(batch_bytes, &header, max)?
        } else {
            // Decompressing may take milliseconds: off the async workers.
            crate::raft::blocking(|| batch::validate_record_times(batch_bytes, &header, max))?
        };
        let meta = self.metadata();
        if meta.topics.get(topic).is_some_and(|t| t.is_internal()) {
            return Err(Error::InvalidTopic(format!(
                "{topic} is internal: clients cannot produce to it"
            )));
        }
        if meta
            .topics
            .get(topic)
            .is_some_and(|t| crate::pipeline::clean::is_compacted(&t.configs))
        {
            check_keyed(topic, batch_bytes, &header, max)?;
        }
        let (p, h) = self.locate_in(&meta, topic, partition)?;
        if !self.config().bypass_leader_check() {
            self.leader_check(&p, &h)?;
        }
        let what = format!("{topic}-{partition}");
        if header.producer_id >= 0
            && let Some(first) = self.committed_duplicate(p.group, &header)
        {
            // A retry of a batch already committed: answered now, with no
            // Raft entry (the partition's state machine would refuse it at
            // apply all the same; that check also covers retries of batches
            // still in flight).
            return Ok(ProduceTicket {
                reply: None,
                answered: (acks == Acks::All).then_some(first),
                what,
                log_append_time: None,
            });
        }
        self.space().check_produce()?;
        let times = TopicTimes::of(&meta, topic);
        let now = batch::now_ms();
        if !times.log_append_time {
            times.check(topic, min_timestamp, max_timestamp, now)?;
        }
        let mut data = encode_produce(batch_bytes);
        if times.log_append_time {
            batch::set_log_append_time(&mut data[1..], now);
        } else if header.max_timestamp != max_timestamp {
            // The header's max timestamp is what time lookups index: the records
            // decide it, as in Kafka's log validator.
            batch::set_max_timestamp(&mut data[1..], max_timestamp);
        }
        let bytes = Some(credit.take(data.len()));
        let log_append_time = times.log_append_time.then_some(now);
        if acks == Acks::None {
            let _ = h.tx.send(GroupMsg::Propose {
                data,
                reply: None,
                bytes,
            });
            return Ok(ProduceTicket {
                reply: None,
                answered: None,
                what,
                log_append_time,
            });
        }
        let (tx, rx) = oneshot::channel();
        h.tx.send(GroupMsg::Propose {
            data,
            reply: Some(tx),
            bytes,
        })
        .map_err(|_| Error::Shutdown)?;
        Ok(ProduceTicket {
            reply: Some(rx),
            answered: None,
            what,
            log_append_time,
        })
    }

    /// Produces one RecordBatch to a partition: [`Node::reserve_produce`] and
    /// [`Node::propose`], then (for [`Acks::All`]) waits up to `timeout` until it is
    /// applied, returning its offsets.
    ///
    /// # Errors
    /// Those of [`Node::propose`] and [`ProduceTicket::wait`].
    pub async fn produce(
        &self,
        topic: &str,
        partition: i32,
        batch_bytes: &[u8],
        acks: Acks,
        timeout: Duration,
    ) -> Result<Option<Appended>> {
        let mut credit = self.reserve_produce(batch_bytes.len() + 1).await;
        self.propose(topic, partition, batch_bytes, acks, &mut credit)?
            .wait(timeout)
            .await
    }
}
