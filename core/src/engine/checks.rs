//! Checks every engine makes the same way, so that they reject the same inputs.

use raft::eraftpb::Entry;

use super::LogState;
use crate::error::{Error, Result};
use crate::ids::{GroupId, Offset};

/// The compaction point and last index of one group's Raft log: what every
/// engine's [`RaftLogStore::raft_term`](super::RaftLogStore::raft_term) decides before it looks an entry up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogBounds {
    /// Index of the compaction point (0 when nothing was compacted).
    pub snap_index: u64,
    /// Term of the compaction point.
    pub snap_term: u64,
    /// Last index stored.
    pub last_index: u64,
}

impl LogBounds {
    /// The bounds of a group never written.
    pub const EMPTY: LogBounds = LogBounds {
        snap_index: 0,
        snap_term: 0,
        last_index: 0,
    };

    /// The term at `index`: the compaction point's own term, [`Error::Compacted`]
    /// below it, [`Error::Unavailable`] past the last index, else `entry_term(index)`.
    ///
    /// # Errors
    /// As above.
    pub fn term(&self, index: u64, entry_term: impl FnOnce(u64) -> u64) -> Result<u64> {
        if index < self.snap_index {
            return Err(Error::Compacted(self.snap_index));
        }
        if index == self.snap_index {
            return Ok(self.snap_term);
        }
        if index > self.last_index {
            return Err(Error::Unavailable(index));
        }
        Ok(entry_term(index))
    }
}

/// Checks the preconditions of [`RaftLogStore::raft_append`](super::RaftLogStore::raft_append): consecutive indexes,
/// non-decreasing terms, no hole after `last_index`, nothing at or below the
/// compaction point. Shared by engines so that they reject the same inputs.
///
/// # Errors
/// [`Error::Invalid`] describing the first violated precondition.
pub fn check_append(
    group: GroupId,
    entries: &[Entry],
    first_index: u64,
    last_index: u64,
) -> Result<()> {
    let Some(first) = entries.first() else {
        return Ok(());
    };
    if first.index < first_index {
        return Err(Error::Invalid(format!(
            "{group}: append at index {} is at or below the compaction point {}",
            first.index,
            first_index - 1
        )));
    }
    if first.index > last_index + 1 {
        return Err(Error::Invalid(format!(
            "{group}: append at index {} leaves a hole after last index {last_index}",
            first.index
        )));
    }
    for w in entries.windows(2) {
        if w[1].index != w[0].index + 1 || w[1].term < w[0].term {
            return Err(Error::Invalid(format!(
                "{group}: entries not consecutive: ({}, term {}) then ({}, term {})",
                w[0].index, w[0].term, w[1].index, w[1].term
            )));
        }
    }
    Ok(())
}

/// The check every engine's [`PartitionStore::log_append`](super::PartitionStore::log_append) makes before storing: the
/// Raft index must be above the log's applied index.
///
/// # Errors
/// [`Error::Invalid`] when `raft_index <= applied_index`.
pub fn check_log_append(group: GroupId, raft_index: u64, applied_index: u64) -> Result<()> {
    if raft_index <= applied_index {
        return Err(Error::Invalid(format!(
            "{group}: append for raft index {raft_index} at or below applied index {applied_index}"
        )));
    }
    Ok(())
}

/// The range check every engine's [`PartitionStore::log_read`](super::PartitionStore::log_read) starts with.
///
/// # Errors
/// [`Error::OutOfRange`] when `offset` is outside `[start_offset, next_offset]`.
pub fn check_read_range(offset: Offset, state: &LogState) -> Result<()> {
    if offset < state.start_offset || offset > state.next_offset {
        return Err(Error::OutOfRange {
            requested: offset,
            start: state.start_offset,
            end: state.next_offset,
        });
    }
    Ok(())
}
