//! Offset lookups: the log start, the high watermark, the first record at or after
//! a timestamp, or where a leader epoch ends.

use crate::error::{Error, Result};
use crate::ids::{GroupId, Offset};
use crate::node::Node;
use crate::raft::driver::GroupStatus;

/// Where a leader epoch ends in a partition's log ([`Node::end_offset_for_epoch`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochEnd {
    /// The largest epoch at or below the one asked for that the log knows (the
    /// one asked for when the log starts after it); -1 when undefined.
    pub epoch: i32,
    /// The first offset of the next epoch (the log end offset for the current
    /// one); -1 when undefined.
    pub end_offset: Offset,
}

impl EpochEnd {
    /// Kafka's answer for an epoch it cannot place (`UNDEFINED_EPOCH`,
    /// `UNDEFINED_EPOCH_OFFSET`).
    pub const UNDEFINED: EpochEnd = EpochEnd {
        epoch: -1,
        end_offset: -1,
    };
}

/// Which offset [`Node::list_offset`] looks up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The high watermark.
    Latest,
    /// The first record at or after this timestamp (ms).
    Timestamp(i64),
}

/// [`Error::LeaderNotReady`] while a new leader has not caught up: where its
/// log ends is not yet the high watermark.
fn caught_up(st: &GroupStatus, topic: &str, partition: i32) -> Result<()> {
    if st.caught_up() {
        Ok(())
    } else {
        Err(Error::LeaderNotReady(format!("{topic}-{partition}")))
    }
}

impl Node {
    /// The offset and timestamp of the first record at or after `timestamp` (ms) in
    /// a partition this node leads, as Kafka's `offsets_for_times` answers: inside a
    /// batch, the record's own offset. `None` when no record is that late.
    ///
    /// # Errors
    /// [`Error::NotFound`],
    /// [`Error::NotLeader`], [`Error::LeaderNotReady`].
    pub fn offset_for_timestamp(
        &self,
        topic: &str,
        partition: i32,
        timestamp: i64,
    ) -> Result<Option<(Offset, i64)>> {
        let (p, h) = self.locate(topic, partition)?;
        caught_up(&self.leader_check(&p, &h)?, topic, partition)?;
        crate::raft::blocking(|| self.record_at_time(p.group, timestamp))
    }

    /// The engine finds the first batch whose max timestamp is at least `ts`; the
    /// record inside it is found here.
    fn record_at_time(&self, group: crate::ids::GroupId, ts: i64) -> Result<Option<(Offset, i64)>> {
        let engine = self.engine();
        let Some(at) = engine.log_offset_for_timestamp(group, ts)? else {
            return Ok(None);
        };
        let max = self.config().max_decompressed_batch_bytes;
        let data = engine.log_read(group, at, 1)?;
        for b in crate::batch::iter_batches(&data) {
            let (h, bytes) = b?;
            if h.last_offset() < at {
                continue;
            }
            if let Some((offset, time)) = crate::batch::find_timestamp(bytes, &h, ts, max)? {
                return Ok(Some((offset.max(at), time)));
            }
        }
        // The batch the engine named holds no such record after all (its max
        // timestamp was not the records'): answer its offset, as before.
        Ok(Some((at, -1)))
    }

    /// Looks up an offset of a partition this node leads (`None` when no record is
    /// at or after the timestamp asked for).
    ///
    /// # Errors
    /// [`Error::NotFound`],
    /// [`Error::NotLeader`]; [`Error::LeaderNotReady`] for the latest offset or a
    /// time while a new leader catches up (the log start is always known).
    pub fn list_offset(
        &self,
        topic: &str,
        partition: i32,
        spec: OffsetSpec,
    ) -> Result<Option<Offset>> {
        let (p, h) = self.locate(topic, partition)?;
        let st = self.leader_check(&p, &h)?;
        if spec != OffsetSpec::Earliest {
            caught_up(&st, topic, partition)?;
        }
        let engine = self.engine();
        // The engine may wait for an append that is rolling this partition's segment.
        crate::raft::blocking(|| {
            let state = engine.log_state(p.group)?;
            Ok(match spec {
                OffsetSpec::Earliest => Some(state.start_offset),
                OffsetSpec::Latest => Some(state.next_offset),
                OffsetSpec::Timestamp(ts) => self.record_at_time(p.group, ts)?.map(|(o, _)| o),
            })
        })
    }

    /// Where leader epoch `epoch` ends in a partition this node leads
    /// (OffsetForLeaderEpoch, KIP-101 and KIP-320): a follower or consumer that
    /// last saw `epoch` truncates its log to the answer. A leader epoch is the Raft
    /// term; every batch is stamped with the term of the entry that carried it,
    /// so epochs never decrease along the log and the first batch of a later
    /// epoch is found by bisection (a few one-batch reads).
    ///
    /// `current_epoch` is the caller's idea of the leader's epoch (-1: not
    /// checked), fenced as Kafka does.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::NotLeader`], [`Error::LeaderNotReady`];
    /// [`Error::FencedLeaderEpoch`]
    /// when `current_epoch` is older than this leader's,
    /// [`Error::UnknownLeaderEpoch`] when it is newer.
    pub fn end_offset_for_epoch(
        &self,
        topic: &str,
        partition: i32,
        current_epoch: i32,
        epoch: i32,
    ) -> Result<EpochEnd> {
        let (p, h) = self.locate(topic, partition)?;
        let st = self.leader_check(&p, &h)?;
        caught_up(&st, topic, partition)?;
        let term = i32::try_from(st.term).unwrap_or(i32::MAX);
        if current_epoch >= 0 && current_epoch < term {
            return Err(Error::FencedLeaderEpoch(format!(
                "{topic}-{partition}: epoch {current_epoch} is older than the leader's {term}"
            )));
        }
        if current_epoch > term {
            return Err(Error::UnknownLeaderEpoch(format!(
                "{topic}-{partition}: epoch {current_epoch} is newer than the leader's {term}"
            )));
        }
        crate::raft::blocking(|| self.epoch_end(p.group, term, epoch))
    }

    fn epoch_end(&self, group: GroupId, term: i32, epoch: i32) -> Result<EpochEnd> {
        let state = self.engine().log_state(group)?;
        if epoch < 0 || epoch > term {
            return Ok(EpochEnd::UNDEFINED);
        }
        if epoch == term {
            return Ok(EpochEnd {
                epoch,
                end_offset: state.next_offset,
            });
        }
        // The first offset whose batch is of a later epoch.
        let (mut lo, mut hi) = (state.start_offset, state.next_offset);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let b = self.batch_at(group, mid)?;
            if b.leader_epoch > epoch {
                hi = b.base_offset.max(lo);
            } else {
                lo = b.last_offset() + 1;
            }
        }
        let end = lo.min(state.next_offset);
        let floor = if end > state.start_offset {
            self.batch_at(group, end - 1)?.leader_epoch
        } else {
            epoch
        };
        Ok(EpochEnd {
            epoch: floor,
            end_offset: end,
        })
    }

    /// The header of the batch holding `offset`.
    fn batch_at(&self, group: GroupId, offset: Offset) -> Result<crate::batch::BatchHeader> {
        let data = self.engine().log_read(group, offset, 1)?;
        match crate::batch::iter_batches(&data).next() {
            Some(b) => Ok(b?.0),
            None => Err(Error::Corrupt(format!(
                "{group}: no batch holds offset {offset} below the log end"
            ))),
        }
    }
}
