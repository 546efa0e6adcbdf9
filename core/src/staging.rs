//! Staging a partition log that arrives in a Raft snapshot, and installing it
//! whole (docs/snapshots.md, step 2): the contract [`StagingStore`], which
//! engines that declare [`Capabilities::snapshot_install`] implement.
//!
//! A follower far behind its leader downloads the leader's partition log
//! `[start, next)` in chunks into a *staged* log next to its own, which stays
//! whole and served meanwhile; once the download is complete, one call swaps
//! the staged log in. A crash leaves the old log or the new one, never a mix.
//!
//! # Invariants (for one group)
//!
//! * At most one staged log exists; [`stage_begin`](StagingStore::stage_begin)
//!   replaces any previous one.
//! * Staged batches are whole, verified, stamped batches stored in offset order
//!   from the staged start: each one's base offset is past the previous one's
//!   last offset (the next one, or later where a compacted log has a gap). They
//!   are never served by reads of the partition log.
//! * Staging writes need not be durable. After a crash, [`stage_end`] reports a
//!   prefix of what was staged (the download resumes from there), or `None`.
//! * [`stage_install`](StagingStore::stage_install) is atomic and durable when
//!   it returns: afterwards the partition log is exactly the staged one (start
//!   = staged start, next offset = staged end, applied index as given) and no
//!   staged log remains; if it fails or a crash interrupts it, the old
//!   partition log is whole (and the staged one may remain).
//!
//! [`Capabilities::snapshot_install`]: crate::Capabilities::snapshot_install
//! [`stage_end`]: StagingStore::stage_end

use crate::error::{Error, Result};
use crate::ids::{GroupId, Offset};

/// Partition logs staged from snapshots. The defaults refuse every call with
/// [`Error::Unsupported`] (engines that do not declare
/// [`Capabilities::snapshot_install`](crate::Capabilities::snapshot_install)).
pub trait StagingStore: Send + Sync {
    /// Starts a staged log for `group` at `start` (discarding a previous one).
    ///
    /// # Errors
    /// I/O failure poisons the engine.
    fn stage_begin(&self, group: GroupId, start: Offset) -> Result<()> {
        let _ = (group, start);
        Err(unsupported())
    }

    /// Appends whole stamped batches (`batches`, back to back) at the staged
    /// log's end; returns the new end. The first batch must start at or after
    /// the current end, and each next one after the previous one.
    ///
    /// # Errors
    /// [`Error::Invalid`] when there is no staged log, the batches do not
    /// continue it, or one fails [`verify`](crate::batch::verify) (nothing is
    /// stored then); I/O failure poisons the engine.
    fn stage_append(&self, group: GroupId, batches: &[u8]) -> Result<Offset> {
        let _ = (group, batches);
        Err(unsupported())
    }

    /// The staged log's start and end, if one exists.
    ///
    /// # Errors
    /// [`Error::Io`] on a read failure.
    fn stage_end(&self, group: GroupId) -> Result<Option<(Offset, Offset)>> {
        let _ = group;
        Err(unsupported())
    }

    /// Makes the staged log `group`'s partition log, applied through
    /// `applied_index`, atomically and durably (see the module docs).
    ///
    /// # Errors
    /// [`Error::Invalid`] when there is no staged log; I/O failure poisons the
    /// engine.
    fn stage_install(&self, group: GroupId, applied_index: u64) -> Result<()> {
        let _ = (group, applied_index);
        Err(unsupported())
    }

    /// Discards `group`'s staged log, if any.
    ///
    /// # Errors
    /// I/O failure poisons the engine.
    fn stage_drop(&self, group: GroupId) -> Result<()> {
        let _ = group;
        Err(unsupported())
    }
}

fn unsupported() -> Error {
    Error::Unsupported("this engine does not install partition logs from snapshots".into())
}

/// Staged batches as [`check_staged`] found them: each one's base offset and
/// bytes.
pub type StagedBatches<'a> = Vec<(Offset, &'a [u8])>;

/// Checks that `batches` are whole, verified batches continuing a staged log
/// that ends at `end`; returns each batch's (base offset, bytes) and the new
/// end. Shared by engines so that they refuse the same inputs.
///
/// # Errors
/// [`Error::Invalid`] naming the first problem.
pub fn check_staged(
    group: GroupId,
    end: Offset,
    batches: &[u8],
) -> Result<(StagedBatches<'_>, Offset)> {
    let mut out = Vec::new();
    let mut at = end;
    for b in crate::batch::iter_batches(batches) {
        let (h, bytes) = b?;
        crate::batch::verify(bytes)?;
        // Past the end is fine: a compacted log has gaps where the cleaner
        // removed whole batches.
        if h.base_offset < at {
            return Err(Error::Invalid(format!(
                "{group}: a staged batch starts at offset {}, before the staged end {at}",
                h.base_offset
            )));
        }
        at = h.last_offset() + 1;
        out.push((h.base_offset, bytes));
    }
    Ok((out, at))
}
