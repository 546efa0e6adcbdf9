//! Offset lookups: the log start, the high watermark, or the first batch at or after
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
    /// The first batch with a record at or after this timestamp (ms).
    Timestamp(i64),
}

impl Node {
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
                OffsetSpec::Timestamp(ts) => engine.log_offset_for_timestamp(p.group, ts)?,
            })
        })
    }
}
