//! Offset lookups: the log start, the high watermark, or the first record at or after
//! a timestamp.

use crate::error::Result;
use crate::ids::Offset;
use crate::node::Node;

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

impl Node {
    /// The offset and timestamp of the first record at or after `timestamp` (ms) in
    /// a partition this node leads, as Kafka's `offsets_for_times` answers: inside a
    /// batch, the record's own offset. `None` when no record is that late.
    ///
    /// # Errors
    /// [`Error::NotFound`](crate::Error::NotFound),
    /// [`Error::NotLeader`](crate::Error::NotLeader).
    pub fn offset_for_timestamp(
        &self,
        topic: &str,
        partition: i32,
        timestamp: i64,
    ) -> Result<Option<(Offset, i64)>> {
        let (p, h) = self.locate(topic, partition)?;
        self.leader_check(&p, &h)?;
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
    /// [`Error::NotFound`](crate::Error::NotFound),
    /// [`Error::NotLeader`](crate::Error::NotLeader).
    pub fn list_offset(
        &self,
        topic: &str,
        partition: i32,
        spec: OffsetSpec,
    ) -> Result<Option<Offset>> {
        let (p, h) = self.locate(topic, partition)?;
        self.leader_check(&p, &h)?;
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
}
