//! Offline recovery an operator asks for by name: starting a partition whose
//! records are known to be gone, instead of refusing it at every start.
//!
//! A partition log that lost records the Raft log no longer holds (its directory or
//! table removed after compaction) is refused when its group starts: the node will
//! not serve the partition as if nothing were missing. [`accept_loss`] is the
//! explicit override (`weir recover --accept-loss GROUP`): it records the lost
//! entries as applied, so the group starts from what remains and continues at the
//! partition log's next offset. The records of those entries are gone for good.

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::ids::{GroupId, Offset};

/// What [`accept_loss`] dropped from one partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loss {
    /// The group.
    pub group: GroupId,
    /// The first Raft entry whose records are gone.
    pub first_entry: u64,
    /// The last Raft entry whose records are gone.
    pub last_entry: u64,
    /// The offset the partition continues at (records produced after the recovery
    /// get it and those after).
    pub next_offset: Offset,
}

impl std::fmt::Display for Loss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: dropped the records of Raft entries {}..={} (gone from the partition log); the partition continues at offset {}",
            self.group, self.first_entry, self.last_entry, self.next_offset
        )
    }
}

/// Accepts the loss of `group`'s records that neither its partition log nor its
/// Raft log still holds, so that the group starts again. Returns what was dropped,
/// or `None` when nothing was missing (the engine is left unchanged then). Durable
/// when it returns.
///
/// Run on a stopped node's engine only (engines lock their directory, so a running
/// node's cannot be opened).
///
/// # Errors
/// [`Error::Invalid`] for a group the engine holds no Raft log of (or the metadata
/// group, which has no partition log), or the engine's error.
pub fn accept_loss(engine: &dyn Engine, group: GroupId) -> Result<Option<Loss>> {
    if group == GroupId::METADATA {
        return Err(Error::Invalid(format!(
            "{group} is the metadata group, which has no partition log to recover"
        )));
    }
    if !engine.raft_groups()?.contains(&group) {
        return Err(Error::Invalid(format!(
            "{group}: this node holds no Raft log of it (the refusal at start names the group)"
        )));
    }
    let state = engine.log_state(group)?;
    let first = engine.raft_first_index(group)?;
    if first <= state.applied_index + 1 {
        return Ok(None);
    }
    let loss = Loss {
        group,
        first_entry: state.applied_index + 1,
        last_entry: first - 1,
        next_offset: state.next_offset,
    };
    engine.log_mark_applied(group, first - 1)?;
    engine.log_flush(group)?;
    tracing::warn!(%loss, "accepted data loss");
    Ok(Some(loss))
}
