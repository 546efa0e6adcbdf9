//! Raft-log cases: append, read, overwrite, compaction, hard and conf state,
//! groups, reopen.

use super::*;

/// A group never written has first 1, last 0, term(0) = 0 and default states.
pub fn raft_empty_group(h: &impl EngineHarness) -> CaseResult {
    let (_g, e) = h.create()?;
    ensure_eq!(e.raft_first_index(G1)?, 1, "first index");
    ensure_eq!(e.raft_last_index(G1)?, 0, "last index");
    ensure_eq!(e.raft_term(G1, 0)?, 0, "term(0)");
    ensure!(
        matches!(e.raft_term(G1, 1), Err(Error::Unavailable(_))),
        "term(1) must be Unavailable"
    );
    ensure_eq!(e.raft_state(G1)?, weir_core::RaftState::default(), "state");
    ensure!(e.raft_entries(G1, 1, 1, None)?.is_empty(), "empty range");
    ensure!(e.raft_groups()?.is_empty(), "no groups");
    Ok(Outcome::Passed)
}

/// Appended entries read back with their terms, in one or several appends.
pub fn raft_append_and_read(h: &impl EngineHarness) -> CaseResult {
    let (_g, e) = h.create()?;
    let mut all = entries(1, 5, 1, 100);
    e.raft_append(G1, &all)?;
    let more = entries(6, 10, 2, 10);
    e.raft_append(G1, &more)?;
    all.extend(more);
    ensure_eq!(
        (e.raft_first_index(G1)?, e.raft_last_index(G1)?),
        (1, 10),
        "bounds"
    );
    same_entries(&e.raft_entries(G1, 1, 11, None)?, &all)?;
    same_entries(&e.raft_entries(G1, 4, 7, None)?, &all[3..6])?;
    ensure_eq!(e.raft_term(G1, 5)?, 1, "term(5)");
    ensure_eq!(e.raft_term(G1, 6)?, 2, "term(6)");
    ensure_eq!(e.raft_groups()?, vec![G1], "groups");
    e.raft_sync()?;
    same_entries(&e.raft_entries(G1, 1, 11, None)?, &all)?;
    Ok(Outcome::Passed)
}

/// `max_bytes` stops early on entry boundaries but returns at least one entry.
pub fn raft_entries_max_bytes(h: &impl EngineHarness) -> CaseResult {
    let (_g, e) = h.create()?;
    let all = entries(1, 10, 1, 1000);
    e.raft_append(G1, &all)?;
    ensure_eq!(
        e.raft_entries(G1, 1, 11, Some(0))?.len(),
        1,
        "at least one entry"
    );
    let some = e.raft_entries(G1, 1, 11, Some(3500))?;
    ensure!(
        (2..=4).contains(&some.len()),
        "~3 entries of 1000 bytes fit in 3500, got {}",
        some.len()
    );
    same_entries(&some, &all[..some.len()])?;
    ensure_eq!(
        e.raft_entries(G1, 1, 11, Some(u64::MAX))?.len(),
        10,
        "no limit"
    );
    Ok(Outcome::Passed)
}

/// Reads outside the log are Compacted below it and Unavailable above it.
pub fn raft_entries_out_of_range(h: &impl EngineHarness) -> CaseResult {
    let (_g, e) = h.create()?;
    e.raft_append(G1, &entries(1, 10, 1, 10))?;
    e.raft_compact(G1, 4)?;
    ensure!(
        matches!(e.raft_entries(G1, 3, 6, None), Err(Error::Compacted(_))),
        "below first: Compacted"
    );
    ensure!(
        matches!(e.raft_entries(G1, 5, 12, None), Err(Error::Unavailable(_))),
        "past last: Unavailable"
    );
    ensure!(
        matches!(e.raft_term(G1, 3), Err(Error::Compacted(_))),
        "term below compaction point"
    );
    ensure!(
        matches!(e.raft_term(G1, 11), Err(Error::Unavailable(_))),
        "term past last"
    );
    ensure_eq!(
        e.raft_entries(G1, 5, 11, None)?.len(),
        6,
        "remaining entries"
    );
    Ok(Outcome::Passed)
}

/// Appending at an index inside the log replaces the suffix from there on.
pub fn raft_overwrite_conflicting_suffix(h: &impl EngineHarness) -> CaseResult {
    let (_g, e) = h.create()?;
    e.raft_append(G1, &entries(1, 10, 1, 50))?;
    e.raft_sync()?;
    let newer = entries(6, 8, 2, 70);
    e.raft_append(G1, &newer)?;
    ensure_eq!(e.raft_last_index(G1)?, 8, "suffix 9..10 must be gone");
    let mut want = entries(1, 5, 1, 50);
    want.extend(newer);
    same_entries(&read_all_entries(&e, G1)?, &want)?;
    ensure_eq!(e.raft_term(G1, 7)?, 2, "overwritten term");
    e.raft_sync()?;
    same_entries(&read_all_entries(&e, G1)?, &want)?;
    Ok(Outcome::Passed)
}

/// Overwriting from the first index replaces everything.
pub fn raft_overwrite_whole_log(h: &impl EngineHarness) -> CaseResult {
    let (_g, e) = h.create()?;
    e.raft_append(G1, &entries(1, 5, 1, 10))?;
    let newer = entries(1, 2, 3, 20);
    e.raft_append(G1, &newer)?;
    same_entries(&read_all_entries(&e, G1)?, &newer)?;
    Ok(Outcome::Passed)
}

/// An append that would leave a hole is rejected and changes nothing.
pub fn raft_append_rejects_hole(h: &impl EngineHarness) -> CaseResult {
    let (_g, e) = h.create()?;
    e.raft_append(G1, &entries(1, 3, 1, 10))?;
    let r = e.raft_append(G1, &entries(5, 6, 1, 10));
    ensure!(
        matches!(r, Err(Error::Invalid(_))),
        "hole must be Invalid, got {r:?}"
    );
    ensure_eq!(e.raft_last_index(G1)?, 3, "log unchanged");
    e.raft_append(G1, &entries(4, 4, 1, 10))?;
    Ok(Outcome::Passed)
}

/// An append at or below the compaction point is rejected.
pub fn raft_append_rejects_below_compaction(h: &impl EngineHarness) -> CaseResult {
    let (_g, e) = h.create()?;
    e.raft_append(G1, &entries(1, 6, 1, 10))?;
    e.raft_compact(G1, 4)?;
    let r = e.raft_append(G1, &entries(3, 7, 2, 10));
    ensure!(
        matches!(r, Err(Error::Invalid(_))),
        "must be Invalid, got {r:?}"
    );
    ensure_eq!(
        (e.raft_first_index(G1)?, e.raft_last_index(G1)?),
        (5, 6),
        "log unchanged"
    );
    Ok(Outcome::Passed)
}

/// Entries that are not consecutive, or whose terms go down, are rejected.
pub fn raft_append_rejects_non_consecutive(h: &impl EngineHarness) -> CaseResult {
    let (_g, e) = h.create()?;
    let mut bad = entries(1, 3, 1, 10);
    bad[2].index = 4;
    ensure!(
        matches!(e.raft_append(G1, &bad), Err(Error::Invalid(_))),
        "index gap"
    );
    let mut bad = entries(1, 3, 2, 10);
    bad[2].term = 1;
    ensure!(
        matches!(e.raft_append(G1, &bad), Err(Error::Invalid(_))),
        "term decrease"
    );
    ensure_eq!(e.raft_last_index(G1)?, 0, "nothing written");
    e.raft_append(G1, &[])?;
    Ok(Outcome::Passed)
}

/// Compaction drops entries but keeps the term of the compaction point.
pub fn raft_compact_keeps_term(h: &impl EngineHarness) -> CaseResult {
    let (_g, e) = h.create()?;
    let mut all = entries(1, 4, 1, 10);
    all.extend(entries(5, 9, 2, 10));
    e.raft_append(G1, &all)?;
    e.raft_compact(G1, 6)?;
    ensure_eq!(
        (e.raft_first_index(G1)?, e.raft_last_index(G1)?),
        (7, 9),
        "bounds"
    );
    ensure_eq!(e.raft_term(G1, 6)?, 2, "term of the compaction point");
    same_entries(&read_all_entries(&e, G1)?, &all[6..])?;
    e.raft_append(G1, &entries(10, 10, 3, 10))?;
    e.raft_compact(G1, 10)?;
    ensure_eq!(
        (e.raft_first_index(G1)?, e.raft_last_index(G1)?),
        (11, 10),
        "empty after compacting all"
    );
    ensure_eq!(e.raft_term(G1, 10)?, 3, "term of the compaction point");
    e.raft_append(G1, &entries(11, 11, 3, 10))?;
    Ok(Outcome::Passed)
}

/// Compacting past the last index is Unavailable and changes nothing.
pub fn raft_compact_beyond_last_fails(h: &impl EngineHarness) -> CaseResult {
    let (_g, e) = h.create()?;
    e.raft_append(G1, &entries(1, 3, 1, 10))?;
    ensure!(
        matches!(e.raft_compact(G1, 4), Err(Error::Unavailable(_))),
        "must be Unavailable"
    );
    ensure_eq!(e.raft_first_index(G1)?, 1, "unchanged");
    Ok(Outcome::Passed)
}

/// Compacting at or below the current point does nothing.
pub fn raft_compact_is_idempotent(h: &impl EngineHarness) -> CaseResult {
    let (_g, e) = h.create()?;
    e.raft_append(G1, &entries(1, 8, 1, 10))?;
    e.raft_compact(G1, 5)?;
    e.raft_compact(G1, 5)?;
    e.raft_compact(G1, 2)?;
    ensure_eq!(
        (e.raft_first_index(G1)?, e.raft_term(G1, 5)?),
        (6, 1),
        "unchanged"
    );
    Ok(Outcome::Passed)
}

/// Hard state is stored per group and replaced by each set.
pub fn raft_hard_state_round_trip(h: &impl EngineHarness) -> CaseResult {
    let (_g, e) = h.create()?;
    e.raft_set_hard_state(G1, &hard_state(3, 2, 7))?;
    e.raft_set_hard_state(G1, &hard_state(4, 0, 9))?;
    ensure_eq!(
        e.raft_state(G1)?.hard_state,
        hard_state(4, 0, 9),
        "hard state"
    );
    ensure_eq!(
        e.raft_state(G2)?.hard_state,
        HardState::default(),
        "other group"
    );
    Ok(Outcome::Passed)
}

/// Conf state is stored per group, with learners.
pub fn raft_conf_state_round_trip(h: &impl EngineHarness) -> CaseResult {
    let (_g, e) = h.create()?;
    let cs = conf_state(&[1, 2, 3], &[4]);
    e.raft_set_conf_state(G1, &cs)?;
    ensure_eq!(e.raft_state(G1)?.conf_state, cs, "conf state");
    Ok(Outcome::Passed)
}

/// A snapshot discards the log and sets the compaction point and conf state.
pub fn raft_snapshot_resets_log(h: &impl EngineHarness) -> CaseResult {
    let (_g, e) = h.create()?;
    e.raft_append(G1, &entries(1, 5, 1, 10))?;
    let mut meta = SnapshotMetadata {
        index: 20,
        term: 4,
        ..SnapshotMetadata::default()
    };
    meta.set_conf_state(conf_state(&[1, 2, 3], &[]));
    e.raft_apply_snapshot(G1, &meta)?;
    ensure_eq!(
        (e.raft_first_index(G1)?, e.raft_last_index(G1)?),
        (21, 20),
        "bounds"
    );
    ensure_eq!(e.raft_term(G1, 20)?, 4, "snapshot term");
    ensure_eq!(
        e.raft_state(G1)?.conf_state,
        conf_state(&[1, 2, 3], &[]),
        "conf state"
    );
    e.raft_append(G1, &entries(21, 22, 4, 10))?;
    ensure_eq!(e.raft_last_index(G1)?, 22, "appends after snapshot");
    Ok(Outcome::Passed)
}

/// Writes to one group never show in another.
pub fn raft_groups_are_independent(h: &impl EngineHarness) -> CaseResult {
    let (_g, e) = h.create()?;
    let a = entries(1, 5, 1, 10);
    let b = entries(1, 3, 7, 30);
    e.raft_append(G1, &a)?;
    e.raft_append(G2, &b)?;
    e.raft_compact(G1, 2)?;
    e.raft_set_hard_state(G2, &hard_state(7, 1, 2))?;
    same_entries(&read_all_entries(&e, G1)?, &a[2..])?;
    same_entries(&read_all_entries(&e, G2)?, &b)?;
    ensure_eq!(
        e.raft_state(G1)?.hard_state,
        HardState::default(),
        "g1 hard state"
    );
    ensure_eq!(e.raft_groups()?, vec![G1, G2], "groups");
    Ok(Outcome::Passed)
}

/// Removing a group forgets it, also across a reopen.
pub fn raft_remove_group(h: &impl EngineHarness) -> CaseResult {
    let (guard, e) = h.create()?;
    e.raft_append(G1, &entries(1, 5, 1, 10))?;
    e.raft_set_hard_state(G1, &hard_state(1, 1, 3))?;
    e.raft_append(G2, &entries(1, 2, 1, 10))?;
    e.raft_remove_group(G1)?;
    ensure_eq!(e.raft_last_index(G1)?, 0, "removed");
    ensure_eq!(e.raft_groups()?, vec![G2], "groups");
    e.raft_sync()?;
    if e.capabilities().reopen {
        let e = h.reopen(&guard, e)?;
        ensure_eq!(e.raft_groups()?, vec![G2], "groups after reopen");
        ensure_eq!(
            e.raft_state(G1)?,
            weir_core::RaftState::default(),
            "state after reopen"
        );
    }
    Ok(Outcome::Passed)
}

/// Entries of 1 MiB (Raft's max message size) are stored and read back intact.
pub fn raft_large_entries(h: &impl EngineHarness) -> CaseResult {
    let (guard, e) = h.create()?;
    let big = entries(1, 4, 1, 1 << 20);
    e.raft_append(G1, &big)?;
    e.raft_sync()?;
    same_entries(&read_all_entries(&e, G1)?, &big)?;
    if e.capabilities().reopen {
        let e = h.reopen(&guard, e)?;
        same_entries(&read_all_entries(&e, G1)?, &big)?;
    }
    Ok(Outcome::Passed)
}

/// Synced entries and states survive a reopen.
pub fn raft_reopen_keeps_synced(h: &impl EngineHarness) -> CaseResult {
    if let Some(o) = needs_reopen(h)? {
        return Ok(o);
    }
    let (guard, e) = h.create()?;
    let all = entries(1, 20, 1, 300);
    e.raft_append(G1, &all)?;
    e.raft_set_hard_state(G1, &hard_state(1, 1, 15))?;
    e.raft_set_conf_state(G1, &conf_state(&[1, 2, 3], &[]))?;
    e.raft_sync()?;
    let e = h.reopen(&guard, e)?;
    same_entries(&read_all_entries(&e, G1)?, &all)?;
    ensure_eq!(
        e.raft_state(G1)?.hard_state,
        hard_state(1, 1, 15),
        "hard state"
    );
    ensure_eq!(
        e.raft_state(G1)?.conf_state,
        conf_state(&[1, 2, 3], &[]),
        "conf state"
    );
    e.raft_append(G1, &entries(21, 22, 2, 10))?;
    ensure_eq!(e.raft_last_index(G1)?, 22, "appends after reopen");
    Ok(Outcome::Passed)
}

/// Compaction, overwrite and snapshots replay correctly after a reopen.
pub fn raft_reopen_after_compaction_and_overwrite(h: &impl EngineHarness) -> CaseResult {
    if let Some(o) = needs_reopen(h)? {
        return Ok(o);
    }
    let (guard, e) = h.create()?;
    e.raft_append(G1, &entries(1, 30, 1, 200))?;
    e.raft_compact(G1, 10)?;
    e.raft_append(G1, &entries(25, 40, 2, 100))?;
    e.raft_compact(G1, 27)?;
    let meta = SnapshotMetadata {
        index: 50,
        term: 3,
        ..SnapshotMetadata::default()
    };
    e.raft_append(G2, &entries(1, 10, 1, 10))?;
    e.raft_apply_snapshot(G2, &meta)?;
    e.raft_append(G2, &entries(51, 55, 3, 10))?;
    e.raft_sync()?;
    let e = h.reopen(&guard, e)?;
    ensure_eq!(
        (e.raft_first_index(G1)?, e.raft_last_index(G1)?),
        (28, 40),
        "g1 bounds"
    );
    ensure_eq!(e.raft_term(G1, 27)?, 2, "g1 compaction term");
    same_entries(&read_all_entries(&e, G1)?, &entries(28, 40, 2, 100))?;
    ensure_eq!(
        (e.raft_first_index(G2)?, e.raft_last_index(G2)?),
        (51, 55),
        "g2 bounds"
    );
    ensure_eq!(e.raft_term(G2, 50)?, 3, "g2 snapshot term");
    Ok(Outcome::Passed)
}

/// Many groups with interleaved writes all come back.
pub fn raft_reopen_many_groups(h: &impl EngineHarness) -> CaseResult {
    if let Some(o) = needs_reopen(h)? {
        return Ok(o);
    }
    let (guard, e) = h.create()?;
    for round in 0..5u64 {
        for g in 1..=50u64 {
            let lo = round * 4 + 1;
            e.raft_append(GroupId(g), &entries(lo, lo + 3, g, 64))?;
        }
        e.raft_sync()?;
    }
    let e = h.reopen(&guard, e)?;
    ensure_eq!(e.raft_groups()?.len(), 50, "groups");
    for g in 1..=50u64 {
        same_entries(&read_all_entries(&e, GroupId(g))?, &entries(1, 20, g, 64))?;
    }
    Ok(Outcome::Passed)
}
