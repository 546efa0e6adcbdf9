//! State checkpoints ([`weir_core::StateStore`]): one blob per group, replaced
//! whole, kept across a reopen, independent of the group's logs.

use super::*;

/// Put, get, replace and remove, per group; empty and large blobs.
pub fn state_put_get_replace_remove(h: &impl EngineHarness) -> CaseResult {
    let (_g, e) = h.create()?;
    ensure_eq!(e.state_get(G1)?, None, "a new group has no checkpoint");
    e.state_put(G1, b"first")?;
    ensure_eq!(e.state_get(G1)?.as_deref(), Some(&b"first"[..]), "put");
    e.state_put(G1, b"second, longer than the first")?;
    ensure_eq!(
        e.state_get(G1)?.as_deref(),
        Some(&b"second, longer than the first"[..]),
        "replaced whole"
    );
    e.state_put(G1, b"3")?;
    ensure_eq!(
        e.state_get(G1)?.as_deref(),
        Some(&b"3"[..]),
        "a shorter blob leaves nothing of the longer one"
    );
    ensure_eq!(e.state_get(G2)?, None, "groups are independent");
    let big: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 251) as u8).collect();
    e.state_put(G2, &big)?;
    ensure!(e.state_get(G2)?.as_deref() == Some(&big[..]), "1 MiB blob");
    e.state_remove(G1)?;
    ensure_eq!(e.state_get(G1)?, None, "removed");
    e.state_remove(G1)?;
    e.state_put(G1, b"")?;
    ensure_eq!(e.state_get(G1)?.as_deref(), Some(&b""[..]), "an empty blob");
    ensure!(
        e.state_get(G2)?.as_deref() == Some(&big[..]),
        "the other group is untouched"
    );
    Ok(Outcome::Passed)
}

/// Checkpoints are independent of the Raft log and partition log of their group:
/// removing those leaves the checkpoint, and removing it leaves them.
pub fn state_is_independent_of_the_logs(h: &impl EngineHarness) -> CaseResult {
    let (_g, e) = h.create()?;
    e.raft_append(G1, &entries(1, 5, 1, 10))?;
    e.log_append(G1, 1, 1, &produced_batch(1, 0, 1, 10))?;
    e.state_put(G1, b"state")?;
    e.state_remove(G1)?;
    ensure_eq!(e.raft_last_index(G1)?, 5, "the Raft log stays");
    ensure_eq!(e.log_state(G1)?.next_offset, 1, "the partition log stays");
    e.state_put(G1, b"state")?;
    e.log_remove(G1)?;
    e.raft_remove_group(G1)?;
    ensure_eq!(
        e.state_get(G1)?.as_deref(),
        Some(&b"state"[..]),
        "the checkpoint stays"
    );
    Ok(Outcome::Passed)
}

/// A reopen keeps the last checkpoint put (durable when `state_put` returned, with
/// no other sync) and no removed one.
pub fn state_reopen_keeps_the_last_put(h: &impl EngineHarness) -> CaseResult {
    if let Some(o) = needs_reopen(h)? {
        return Ok(o);
    }
    let (guard, e) = h.create()?;
    e.state_put(G1, b"old")?;
    e.state_put(G1, b"new")?;
    e.state_put(G2, b"gone")?;
    e.state_remove(G2)?;
    let e = h.reopen(&guard, e)?;
    ensure_eq!(e.state_get(G1)?.as_deref(), Some(&b"new"[..]), "last put");
    ensure_eq!(e.state_get(G2)?, None, "removed");
    e.state_put(G2, b"again")?;
    ensure_eq!(e.state_get(G2)?.as_deref(), Some(&b"again"[..]), "writable");
    Ok(Outcome::Passed)
}
