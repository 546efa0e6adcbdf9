//! Idempotent producers' state of one partition (KIP-98, with KIP-360's
//! rules): for each producer id, its epoch and the sequence ranges and offsets
//! of its last [`CACHED_BATCHES`] batches. A deterministic function of the
//! partition's batches in log order, so every replica that applied the same
//! entries holds the same state; the partition's state machine consults it
//! before appending a batch ([`ProducerStates::check`]) and updates it after
//! ([`ProducerStates::record`]).
//!
//! The rules are Kafka's (`ProducerStateManager`, `ProducerAppendInfo`):
//! - a batch whose epoch and sequence range equal one of the producer's cached
//!   batches is a duplicate (a client's retry): it is answered with the
//!   original offsets and not appended again;
//! - an epoch below the producer's is fenced (INVALID_PRODUCER_EPOCH);
//! - a new epoch must start at sequence 0, and within an epoch a batch must
//!   continue the last one's sequence (wrapping after `i32::MAX`), else
//!   OUT_OF_ORDER_SEQUENCE_NUMBER;
//! - a producer with no state here (new, or whose state expired) may start at
//!   any sequence: Kafka no longer answers UNKNOWN_PRODUCER_ID (KIP-360).
//!
//! Expiry is by the log's own clock — the largest batch timestamp applied so
//! far — so that every replica drops the same producers at the same entry.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A partition's producer state, shared between its state machine (which
/// writes it as it applies) and the node (which reads it for DescribeProducers).
pub(crate) type SharedProducers = std::sync::Arc<parking_lot::Mutex<ProducerStates>>;

/// Batches remembered per producer: Kafka's (and its clients' in-flight bound).
pub const CACHED_BATCHES: usize = 5;

/// A batch as producer state remembers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedBatch {
    /// Its first sequence.
    pub first_seq: i32,
    /// Its last sequence.
    pub last_seq: i32,
    /// The offset of its first record.
    pub base_offset: i64,
    /// The offset of its last record.
    pub last_offset: i64,
    /// Its largest timestamp.
    pub max_timestamp: i64,
}

impl CachedBatch {
    /// Batch `h` of an idempotent producer, stored at `base_offset..=last_offset`.
    pub fn of(h: &crate::batch::BatchHeader, base_offset: i64, last_offset: i64) -> CachedBatch {
        CachedBatch {
            first_seq: h.base_sequence,
            last_seq: last_sequence(h.base_sequence, h.record_count),
            base_offset,
            last_offset,
            max_timestamp: h.max_timestamp,
        }
    }
}

/// One producer's state in a partition.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerEntry {
    /// Its current epoch.
    pub epoch: i16,
    /// Its last batches, oldest first.
    pub batches: VecDeque<CachedBatch>,
    /// The largest timestamp of its batches (for expiry).
    pub last_timestamp: i64,
}

impl ProducerEntry {
    /// The last sequence it wrote in its epoch.
    pub fn last_seq(&self) -> Option<i32> {
        self.batches.back().map(|b| b.last_seq)
    }
}

/// What to do with a batch of an idempotent producer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Append it.
    Append,
    /// It repeats a batch already in the log at this base offset: answer that,
    /// append nothing.
    Duplicate {
        /// The original batch's base offset.
        base_offset: i64,
        /// The original batch's last offset.
        last_offset: i64,
    },
}

/// Every idempotent producer's state in one partition.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerStates {
    /// By producer id.
    pub producers: BTreeMap<i64, ProducerEntry>,
    /// The log's clock: the largest batch timestamp applied.
    pub log_time: i64,
    /// The log's clock when idle producers were last dropped.
    pub last_expiry: i64,
}

/// How often, by the log's clock, idle producers are looked for.
pub const EXPIRY_EVERY_MS: i64 = 60_000;

/// The last sequence of a batch of `count` records from `first`, wrapping
/// after `i32::MAX` as Kafka's producers do.
pub fn last_sequence(first: i32, count: i32) -> i32 {
    let n = i64::from(count.max(1)) - 1;
    let last = i64::from(first) + n;
    if last > i64::from(i32::MAX) {
        i32::try_from(last - i64::from(i32::MAX) - 1).unwrap_or(0)
    } else {
        i32::try_from(last).unwrap_or(i32::MAX)
    }
}

fn in_sequence(last: i32, next: i32) -> bool {
    next == last.wrapping_add(1) || (last == i32::MAX && next == 0)
}

impl ProducerStates {
    /// Checks a batch of producer `pid` (epoch, sequence range) against the
    /// state.
    ///
    /// # Errors
    /// [`Error::InvalidProducerEpoch`] for an older epoch;
    /// [`Error::OutOfOrderSequence`] for a sequence that does not continue the
    /// producer's (or a new epoch not starting at 0).
    pub fn check(&self, pid: i64, epoch: i16, first_seq: i32, last_seq: i32) -> Result<Verdict> {
        let Some(e) = self.producers.get(&pid) else {
            return Ok(Verdict::Append);
        };
        if epoch < e.epoch {
            return Err(Error::InvalidProducerEpoch(format!(
                "producer {pid}: epoch {epoch} is older than its current epoch {}",
                e.epoch
            )));
        }
        if epoch > e.epoch {
            if first_seq != 0 {
                return Err(Error::OutOfOrderSequence(format!(
                    "producer {pid}: a new epoch {epoch} must start at sequence 0, not {first_seq}"
                )));
            }
            return Ok(Verdict::Append);
        }
        if let Some(b) = e
            .batches
            .iter()
            .find(|b| b.first_seq == first_seq && b.last_seq == last_seq)
        {
            return Ok(Verdict::Duplicate {
                base_offset: b.base_offset,
                last_offset: b.last_offset,
            });
        }
        match e.last_seq() {
            Some(last) if !in_sequence(last, first_seq) => Err(Error::OutOfOrderSequence(format!(
                "producer {pid} epoch {epoch}: sequence {first_seq} does not follow {last}"
            ))),
            _ => Ok(Verdict::Append),
        }
    }

    /// [`ProducerStates::check`] for batch `h` (its producer, epoch and
    /// sequence range).
    ///
    /// # Errors
    /// As [`ProducerStates::check`].
    pub fn check_batch(&self, h: &crate::batch::BatchHeader) -> Result<Verdict> {
        let last_seq = last_sequence(h.base_sequence, h.record_count);
        self.check(h.producer_id, h.producer_epoch, h.base_sequence, last_seq)
    }

    /// Records an appended batch of producer `pid`, then, at most every
    /// [`EXPIRY_EVERY_MS`] of the log's clock, drops producers idle for
    /// `expiration_ms` (a function of the batches alone: replaying the same
    /// batches gives the same state).
    pub fn record_and_expire(
        &mut self,
        pid: i64,
        epoch: i16,
        batch: CachedBatch,
        expiration_ms: i64,
    ) {
        self.record(pid, epoch, batch);
        if self.log_time.saturating_sub(self.last_expiry) >= EXPIRY_EVERY_MS {
            self.last_expiry = self.log_time;
            self.expire(expiration_ms);
        }
    }

    /// Records an appended batch of producer `pid`.
    pub fn record(&mut self, pid: i64, epoch: i16, batch: CachedBatch) {
        let e = self.producers.entry(pid).or_default();
        if epoch != e.epoch {
            e.batches.clear();
            e.epoch = epoch;
        }
        e.batches.push_back(batch);
        while e.batches.len() > CACHED_BATCHES {
            e.batches.pop_front();
        }
        e.last_timestamp = e.last_timestamp.max(batch.max_timestamp);
        self.log_time = self.log_time.max(batch.max_timestamp);
    }

    /// Drops producers whose last batch is older than `expiration_ms` by the
    /// log's clock; how many.
    pub fn expire(&mut self, expiration_ms: i64) -> usize {
        let cutoff = self.log_time.saturating_sub(expiration_ms);
        let before = self.producers.len();
        self.producers.retain(|_, e| e.last_timestamp >= cutoff);
        before - self.producers.len()
    }

    /// Serializes the state for a checkpoint.
    ///
    /// # Errors
    /// [`Error::Invalid`] if it cannot be encoded (plain data: a bug).
    pub fn encode(&self) -> Result<Vec<u8>> {
        postcard::to_allocvec(self)
            .map_err(|e| Error::Invalid(format!("cannot encode producer state: {e}")))
    }

    /// Reads a state [`ProducerStates::encode`] wrote.
    ///
    /// # Errors
    /// [`Error::Corrupt`] when the bytes are not one.
    pub fn decode(bytes: &[u8]) -> Result<ProducerStates> {
        postcard::from_bytes(bytes)
            .map_err(|e| Error::Corrupt(format!("undecodable producer state: {e}")))
    }
}

/// A partition's producer state as checkpointed: the state after applying
/// Raft entries through the checkpoint's index, when the partition log's next
/// offset was `next_offset` (the batches from there on are replayed on
/// restart).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerCheckpoint {
    /// The producers.
    pub states: ProducerStates,
    /// The partition log's next offset at the checkpoint.
    pub next_offset: i64,
}

/// The checkpoint blob of `states` at Raft index `index`, next offset
/// `next_offset`.
///
/// # Errors
/// When it cannot be encoded (a bug).
pub fn checkpoint(index: u64, states: &ProducerStates, next_offset: i64) -> Result<Vec<u8>> {
    let c = ProducerCheckpoint {
        states: states.clone(),
        next_offset,
    };
    let payload = postcard::to_allocvec(&c)
        .map_err(|e| Error::Invalid(format!("cannot encode producer state: {e}")))?;
    Ok(crate::checkpoint::encode(index, &payload))
}

/// The producer state a checkpoint blob holds (one that [`checkpoint`] wrote).
///
/// # Errors
/// [`Error::Corrupt`] when the blob is not one.
pub fn from_checkpoint(group: crate::ids::GroupId, blob: &[u8]) -> Result<ProducerStates> {
    let c = crate::checkpoint::decode(group, bytes::Bytes::copy_from_slice(blob))?;
    let p: ProducerCheckpoint = postcard::from_bytes(&c.payload)
        .map_err(|e| Error::Corrupt(format!("{group}: undecodable producer state: {e}")))?;
    Ok(p.states)
}

/// Rebuilds partition `group`'s producer state as of its partition log's end:
/// from its checkpoint when it is usable (not past the log), replaying the
/// batches after it; else from the whole log. When it replayed batches, it
/// checkpoints the result, so that the next start does not again.
///
/// # Errors
/// The engine's read and write errors; a checkpoint that is not one.
pub fn restore(
    engine: &dyn crate::engine::Engine,
    group: crate::ids::GroupId,
    expiration_ms: i64,
) -> Result<ProducerStates> {
    let log = engine.log_state(group)?;
    let (mut states, mut at) = match engine.state_get(group)? {
        Some(blob) => {
            let c = crate::checkpoint::decode(group, blob)?;
            let p: ProducerCheckpoint = postcard::from_bytes(&c.payload)
                .map_err(|e| Error::Corrupt(format!("{group}: undecodable producer state: {e}")))?;
            if c.index <= log.applied_index && p.next_offset <= log.next_offset {
                (p.states, p.next_offset.max(log.start_offset))
            } else {
                // Ahead of the log (rolled back, or accepted as lost): rebuild.
                (ProducerStates::default(), log.start_offset)
            }
        }
        None => (ProducerStates::default(), log.start_offset),
    };
    let from = at;
    while at < log.next_offset {
        let data = engine.log_read(group, at, 4 << 20)?;
        let before = at;
        for b in crate::batch::iter_batches(&data) {
            let (h, _) = b?;
            if h.last_offset() < at {
                continue;
            }
            if h.producer_id >= 0 {
                let cached = CachedBatch::of(&h, h.base_offset, h.last_offset());
                states.record_and_expire(h.producer_id, h.producer_epoch, cached, expiration_ms);
            }
            at = h.last_offset() + 1;
        }
        if at == before {
            break;
        }
    }
    if at != from {
        tracing::info!(%group, from, to = at, "producer state rebuilt from the partition log");
        engine.state_put(
            group,
            &checkpoint(log.applied_index, &states, log.next_offset)?,
        )?;
    }
    Ok(states)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(first: i32, count: i32, base: i64, ts: i64) -> CachedBatch {
        CachedBatch {
            first_seq: first,
            last_seq: last_sequence(first, count),
            base_offset: base,
            last_offset: base + i64::from(count) - 1,
            max_timestamp: ts,
        }
    }

    fn append(s: &mut ProducerStates, pid: i64, epoch: i16, b: CachedBatch) -> Result<Verdict> {
        let v = s.check(pid, epoch, b.first_seq, b.last_seq)?;
        if v == Verdict::Append {
            s.record(pid, epoch, b);
        }
        Ok(v)
    }

    #[test]
    fn retries_are_duplicates_and_gaps_and_old_epochs_are_refused() -> Result<()> {
        let mut s = ProducerStates::default();
        // An unknown producer may start anywhere (its state may have expired).
        assert_eq!(append(&mut s, 7, 0, batch(10, 5, 0, 1))?, Verdict::Append);
        assert_eq!(append(&mut s, 7, 0, batch(15, 5, 5, 2))?, Verdict::Append);
        // A retry of either of the last five: the original offsets, no append.
        assert_eq!(
            append(&mut s, 7, 0, batch(10, 5, 99, 3))?,
            Verdict::Duplicate {
                base_offset: 0,
                last_offset: 4
            }
        );
        assert_eq!(
            append(&mut s, 7, 0, batch(15, 5, 99, 3))?,
            Verdict::Duplicate {
                base_offset: 5,
                last_offset: 9
            }
        );
        // A gap, a reordering, an overlap that is not a retry.
        for first in [21, 19, 12] {
            assert!(matches!(
                append(&mut s, 7, 0, batch(first, 1, 99, 3)),
                Err(Error::OutOfOrderSequence(_))
            ));
        }
        // A new epoch starts at 0; the old one is fenced from then on.
        assert!(matches!(
            append(&mut s, 7, 1, batch(3, 1, 99, 3)),
            Err(Error::OutOfOrderSequence(_))
        ));
        assert_eq!(append(&mut s, 7, 1, batch(0, 2, 10, 4))?, Verdict::Append);
        assert!(matches!(
            append(&mut s, 7, 0, batch(20, 1, 99, 5)),
            Err(Error::InvalidProducerEpoch(_))
        ));
        Ok(())
    }

    #[test]
    fn only_the_last_five_batches_are_remembered_and_sequences_wrap() -> Result<()> {
        let mut s = ProducerStates::default();
        for i in 0..7 {
            append(&mut s, 1, 0, batch(i * 2, 2, i64::from(i) * 2, 0))?;
        }
        assert_eq!(s.producers[&1].batches.len(), CACHED_BATCHES);
        // The oldest two are forgotten: a resend of them is out of order.
        assert!(s.check(1, 0, 0, 1).is_err());
        assert_eq!(
            s.check(1, 0, 12, 13)?,
            Verdict::Duplicate {
                base_offset: 12,
                last_offset: 13
            }
        );
        // Wrapping after i32::MAX.
        assert_eq!(last_sequence(i32::MAX - 1, 4), 1);
        let mut w = ProducerStates::default();
        append(&mut w, 2, 0, batch(i32::MAX - 1, 2, 0, 0))?;
        assert_eq!(append(&mut w, 2, 0, batch(0, 1, 2, 0))?, Verdict::Append);
        Ok(())
    }

    #[test]
    fn producers_expire_by_the_logs_clock_and_the_state_round_trips() -> Result<()> {
        let mut s = ProducerStates::default();
        append(&mut s, 1, 0, batch(0, 1, 0, 1_000))?;
        append(&mut s, 2, 0, batch(0, 1, 1, 50_000))?;
        assert_eq!(s.expire(10_000), 1, "producer 1 is idle by the log's clock");
        assert!(s.producers.contains_key(&2) && !s.producers.contains_key(&1));
        assert_eq!(ProducerStates::decode(&s.encode()?)?, s);
        Ok(())
    }
}
