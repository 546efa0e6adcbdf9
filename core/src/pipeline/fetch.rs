//! Fetch: read partition logs up to the high watermark, long-polling.
//!
//! One long-poll serves one partition or many: it reads every partition asked for,
//! answers when together they hold at least `min_bytes` (or any of them failed, as
//! Kafka does), and otherwise waits for the node's "batches applied" signal until
//! `max_wait` has passed.

use std::time::Duration;

use bytes::Bytes;

use crate::error::Result;
use crate::ids::Offset;
use crate::node::Node;

/// What a fetch returns for one partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetched {
    /// Whole record batches (possibly empty, never null).
    pub records: Bytes,
    /// The partition's high watermark.
    pub high_watermark: Offset,
    /// The partition's log start offset.
    pub log_start_offset: Offset,
}

/// One partition of a fetch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FetchPartition<'a> {
    /// The topic.
    pub topic: &'a str,
    /// The partition index.
    pub partition: i32,
    /// The first offset wanted.
    pub offset: Offset,
    /// At most this many bytes from this partition (at least one whole batch is
    /// returned when there is one, even if larger).
    pub max_bytes: usize,
}

impl Node {
    /// Reads whole batches from `offset`, up to the high watermark, waiting up to
    /// `max_wait` for at least `min_bytes`. Served by the partition leader only.
    ///
    /// # Errors
    /// [`Error::NotFound`](crate::Error::NotFound),
    /// [`Error::NotLeader`](crate::Error::NotLeader), and
    /// [`Error::OutOfRange`](crate::Error::OutOfRange) when `offset` is outside the log.
    pub async fn fetch(
        &self,
        topic: &str,
        partition: i32,
        offset: Offset,
        max_bytes: usize,
        max_wait: Duration,
        min_bytes: usize,
    ) -> Result<Fetched> {
        let part = FetchPartition {
            topic,
            partition,
            offset,
            max_bytes,
        };
        let mut results = self
            .fetch_partitions(&[part], max_bytes, max_wait, min_bytes)
            .await;
        results.pop().unwrap_or(Err(crate::Error::Shutdown))
    }

    /// Reads several partitions at once, in order, within `max_bytes` in total (the
    /// first partition with data always gets at least one batch), waiting up to
    /// `max_wait` until together they hold at least `min_bytes`. Returns at once when
    /// any partition fails (its error stands in its place).
    pub async fn fetch_partitions(
        &self,
        parts: &[FetchPartition<'_>],
        max_bytes: usize,
        max_wait: Duration,
        min_bytes: usize,
    ) -> Vec<Result<Fetched>> {
        let deadline = tokio::time::Instant::now() + max_wait;
        let mut applied = self.batches_applied();
        loop {
            applied.borrow_and_update();
            let mut total = 0usize;
            let mut budget = max_bytes;
            let mut failed = false;
            let results: Vec<Result<Fetched>> = parts
                .iter()
                .map(|p| {
                    let max = p.max_bytes.min(budget.max(1));
                    let r = self.read_partition(p.topic, p.partition, p.offset, max);
                    match &r {
                        Ok(f) => {
                            total += f.records.len();
                            budget = budget.saturating_sub(f.records.len());
                        }
                        Err(_) => failed = true,
                    }
                    r
                })
                .collect();
            if failed || total >= min_bytes.max(1) || tokio::time::Instant::now() >= deadline {
                return results;
            }
            // Woken by new batches anywhere on this node, or at the deadline.
            let _ = tokio::time::timeout_at(deadline, applied.changed()).await;
        }
    }

    /// One read of a partition this node leads, without waiting.
    fn read_partition(
        &self,
        topic: &str,
        partition: i32,
        offset: Offset,
        max_bytes: usize,
    ) -> Result<Fetched> {
        let (p, h) = self.locate(topic, partition)?;
        let st = self.leader_check(&p, &h)?;
        let engine = self.engine();
        // A read may wait for the disk (a page fault on a cold segment) or for an
        // append that is rolling this partition's segment.
        let (state, records) = crate::raft::blocking(|| {
            let state = engine.log_state(p.group)?;
            if offset > state.next_offset && !st.caught_up() {
                // A new leader that has not applied what earlier leaders
                // committed: the offset may be one clients reached. Nothing yet,
                // rather than out of range.
                return Ok((state, bytes::Bytes::new()));
            }
            Ok::<_, crate::Error>((state, engine.log_read(p.group, offset, max_bytes)?))
        })?;
        Ok(Fetched {
            records,
            high_watermark: state.next_offset,
            log_start_offset: state.start_offset,
        })
    }
}
