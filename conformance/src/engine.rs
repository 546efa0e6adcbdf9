//! The storage-engine conformance suite (DESIGN.md §4, TESTING.md §1).
//!
//! Every case takes an [`EngineHarness`] and starts from a fresh engine. Cases are
//! grouped by what they need: all engines run the Raft-log and partition-log cases;
//! `reopen` cases need [`Capabilities::reopen`]; `crash_*` cases need
//! [`Capabilities::file_crash_simulation`], except `crash_sigkill_writer`
//! ([`crate::kill`]), which needs [`Capabilities::process_kill`].

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use bytes::Bytes;
use rand::{Rng, SeedableRng, rngs::StdRng};
use weir_core::batch::{self, BatchBuilder};
use weir_core::eraftpb::{ConfState, Entry, EntryType, HardState, SnapshotMetadata};
use weir_core::{Capabilities, Engine, Error, GroupId, LogState, PartitionStore, RaftLogStore};

use crate::crash::{self, Diff, Image};
use crate::{CaseResult, Outcome, ensure, ensure_eq};

/// How a conformance test makes and reopens engines.
pub trait EngineHarness {
    /// The engine under test.
    type Engine: Engine;
    /// Keeps the engine's storage alive (for example a temporary directory).
    type Guard;

    /// A fresh, empty engine and the guard of its storage.
    ///
    /// # Errors
    /// When the engine cannot be created.
    fn create(&self) -> anyhow::Result<(Self::Guard, Self::Engine)>;

    /// Closes `engine` (without a crash) and opens the same storage again.
    ///
    /// # Errors
    /// When reopening fails.
    fn reopen(&self, guard: &Self::Guard, engine: Self::Engine) -> anyhow::Result<Self::Engine>;

    /// The directory holding the engine's files (file-based engines only).
    fn data_dir(&self, _guard: &Self::Guard) -> Option<PathBuf> {
        None
    }

    /// Opens an engine over `dir`, a copy of a data directory after a simulated crash
    /// (file-based engines only).
    ///
    /// # Errors
    /// Whatever opening reports; [`Error::Corrupt`] is the expected answer for
    /// corrupted synced data.
    fn open_dir(&self, _dir: &Path) -> weir_core::Result<Self::Engine> {
        Err(Error::Unsupported("open_dir".into()))
    }
}

/// Expands to one `#[test]` per engine conformance case, each running the case on the
/// given harness value.
#[macro_export]
macro_rules! engine_suite {
    ($harness:expr) => {
        $crate::__engine_cases!($harness;
            raft_empty_group, raft_append_and_read, raft_entries_max_bytes,
            raft_entries_out_of_range, raft_overwrite_conflicting_suffix,
            raft_overwrite_whole_log, raft_append_rejects_hole,
            raft_append_rejects_below_compaction, raft_append_rejects_non_consecutive,
            raft_compact_keeps_term, raft_compact_beyond_last_fails,
            raft_compact_is_idempotent, raft_hard_state_round_trip,
            raft_conf_state_round_trip, raft_snapshot_resets_log,
            raft_groups_are_independent, raft_remove_group, raft_large_entries,
            raft_reopen_keeps_synced, raft_reopen_after_compaction_and_overwrite,
            raft_reopen_many_groups,
            log_empty_state, log_append_assigns_offsets, log_append_rejects_bad_input,
            log_read_from_middle_of_batch, log_read_max_bytes_whole_batches,
            log_read_at_end_and_out_of_range, log_mark_applied,
            log_offset_for_timestamp, log_delete_prefix, log_groups_and_remove,
            log_many_batches, log_reopen_keeps_flushed, log_reopen_after_delete_prefix,
            log_large_batches,
            crash_raft_cut_every_byte, crash_raft_torn_pages, crash_raft_garbage_tail,
            crash_raft_bit_flip, crash_log_cut_every_byte, crash_log_torn_pages,
            crash_log_garbage_tail, crash_log_bit_flip,
            model_random_operations,
        );
        #[test]
        fn crash_sigkill_writer() {
            $crate::run_case(
                "crash_sigkill_writer",
                $crate::kill::crash_sigkill_writer(&$harness, "crash_sigkill_writer"),
            );
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __engine_cases {
    ($harness:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::run_case(stringify!($case), $crate::engine::$case(&$harness));
            }
        )*
    };
}

const G1: GroupId = GroupId(1);
const G2: GroupId = GroupId(2);

/// An entry whose payload is derived from its index and term (so reads can be checked).
pub fn entry(index: u64, term: u64, size: usize) -> Entry {
    let seed = index.wrapping_mul(31).wrapping_add(term);
    Entry {
        index,
        term,
        entry_type: EntryType::EntryNormal,
        data: Bytes::from(
            (0..size)
                .map(|i| (seed as usize + i) as u8)
                .collect::<Vec<_>>(),
        ),
        ..Entry::default()
    }
}

fn entries(lo: u64, hi: u64, term: u64, size: usize) -> Vec<Entry> {
    (lo..=hi).map(|i| entry(i, term, size)).collect()
}

fn hard_state(term: u64, vote: u64, commit: u64) -> HardState {
    HardState {
        term,
        vote,
        commit,
        ..HardState::default()
    }
}

fn conf_state(voters: &[u64], learners: &[u64]) -> ConfState {
    ConfState {
        voters: voters.to_vec(),
        learners: learners.to_vec(),
        ..ConfState::default()
    }
}

/// A producer batch of `records` records with timestamps from `ts`, tagged by `tag`.
pub fn produced_batch(records: usize, ts: i64, tag: u64, value_size: usize) -> Vec<u8> {
    let mut b = BatchBuilder::new(ts);
    for r in 0..records {
        let v: Vec<u8> = (0..value_size)
            .map(|i| (tag as usize + r + i) as u8)
            .collect();
        b = b.record_at(ts + r as i64, Some(&tag.to_be_bytes()), Some(&v), &[]);
    }
    b.build()
}

fn stamped(batch: &[u8], base: i64, epoch: i32) -> Vec<u8> {
    let mut v = batch.to_vec();
    batch::stamp(&mut v, base, epoch);
    v
}

fn same_entries(got: &[Entry], want: &[Entry]) -> anyhow::Result<()> {
    ensure_eq!(got.len(), want.len(), "number of entries");
    for (g, w) in got.iter().zip(want) {
        ensure!(
            g.index == w.index
                && g.term == w.term
                && g.data == w.data
                && g.entry_type == w.entry_type,
            "entry {} differs: got (index {}, term {}, {} bytes), want (index {}, term {}, {} bytes)",
            w.index,
            g.index,
            g.term,
            g.data.len(),
            w.index,
            w.term,
            w.data.len()
        );
    }
    Ok(())
}

fn read_all_entries(e: &(impl Engine + ?Sized), g: GroupId) -> anyhow::Result<Vec<Entry>> {
    let lo = e.raft_first_index(g)?;
    let hi = e.raft_last_index(g)? + 1;
    Ok(e.raft_entries(g, lo, hi, None)?)
}

/// Reads a partition log from `from` to its end, batch by batch.
pub fn read_log(e: &(impl Engine + ?Sized), g: GroupId, from: i64) -> anyhow::Result<Vec<Vec<u8>>> {
    let next = e.log_state(g)?.next_offset;
    let mut out = Vec::new();
    let mut at = from;
    while at < next {
        let bytes = e.log_read(g, at, 1)?;
        ensure!(
            !bytes.is_empty(),
            "empty read at {at} below next offset {next}"
        );
        for b in batch::iter_batches(&bytes) {
            let (h, one) = b?;
            out.push(one.to_vec());
            at = h.last_offset() + 1;
        }
    }
    Ok(out)
}

fn needs_reopen(h: &impl EngineHarness) -> anyhow::Result<Option<Outcome>> {
    let (_g, e) = h.create()?;
    Ok((!e.capabilities().reopen).then_some(Outcome::NotApplicable("engine cannot be reopened")))
}

// ---------------------------------------------------------------- Raft log

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

// ---------------------------------------------------------------- partition log

/// An unknown partition log is empty at offset 0.
pub fn log_empty_state(h: &impl EngineHarness) -> CaseResult {
    let (_g, e) = h.create()?;
    ensure_eq!(e.log_state(G1)?, LogState::default(), "state");
    ensure!(e.log_read(G1, 0, 1000)?.is_empty(), "empty read");
    ensure!(e.log_groups()?.is_empty(), "no groups");
    ensure_eq!(e.log_offset_for_timestamp(G1, 0)?, None, "timestamp lookup");
    Ok(Outcome::Passed)
}

/// Batches get consecutive offsets; stored bytes differ only in the stamped fields.
pub fn log_append_assigns_offsets(h: &impl EngineHarness) -> CaseResult {
    let (_g, e) = h.create()?;
    let b1 = produced_batch(3, 1000, 1, 20);
    let b2 = produced_batch(1, 2000, 2, 20);
    let a1 = e.log_append(G1, 1, 5, &b1)?;
    let a2 = e.log_append(G1, 3, 6, &b2)?;
    ensure_eq!((a1.base_offset, a1.last_offset), (0, 2), "first batch");
    ensure_eq!((a2.base_offset, a2.last_offset), (3, 3), "second batch");
    ensure_eq!(
        e.log_state(G1)?,
        LogState {
            start_offset: 0,
            next_offset: 4,
            applied_index: 3
        },
        "state"
    );
    let got = read_log(&e, G1, 0)?;
    ensure!(
        got == vec![stamped(&b1, 0, 5), stamped(&b2, 3, 6)],
        "stored bytes are the stamped input"
    );
    ensure_eq!(e.log_groups()?, vec![G1], "groups");
    Ok(Outcome::Passed)
}

/// A corrupt or malformed batch, or a stale Raft index, stores nothing.
pub fn log_append_rejects_bad_input(h: &impl EngineHarness) -> CaseResult {
    let (_g, e) = h.create()?;
    let good = produced_batch(2, 0, 1, 10);
    e.log_append(G1, 5, 1, &good)?;
    let mut bad_crc = good.clone();
    let n = bad_crc.len();
    bad_crc[n - 1] ^= 0x10;
    ensure!(
        e.log_append(G1, 6, 1, &bad_crc).is_err(),
        "bad CRC rejected"
    );
    ensure!(
        matches!(e.log_append(G1, 7, 1, &good[..40]), Err(Error::Invalid(_))),
        "short batch rejected"
    );
    ensure!(
        matches!(
            e.log_append(G1, 8, 1, &[good.clone(), good.clone()].concat()),
            Err(Error::Invalid(_))
        ),
        "two batches rejected"
    );
    ensure!(
        matches!(e.log_append(G1, 5, 1, &good), Err(Error::Invalid(_))),
        "stale raft index rejected"
    );
    ensure_eq!(
        e.log_state(G1)?,
        LogState {
            start_offset: 0,
            next_offset: 2,
            applied_index: 5
        },
        "unchanged"
    );
    Ok(Outcome::Passed)
}

/// A read from inside a batch returns the whole batch, starting before the offset.
pub fn log_read_from_middle_of_batch(h: &impl EngineHarness) -> CaseResult {
    let (_g, e) = h.create()?;
    let b1 = produced_batch(5, 0, 1, 10);
    let b2 = produced_batch(5, 0, 2, 10);
    e.log_append(G1, 1, 1, &b1)?;
    e.log_append(G1, 2, 1, &b2)?;
    let got = e.log_read(G1, 7, 1 << 20)?;
    ensure_eq!(got.to_vec(), stamped(&b2, 5, 1), "read from offset 7");
    let got = e.log_read(G1, 3, 1 << 20)?;
    ensure_eq!(
        got.to_vec(),
        [stamped(&b1, 0, 1), stamped(&b2, 5, 1)].concat(),
        "read from offset 3"
    );
    Ok(Outcome::Passed)
}

/// `max_bytes` limits a read to whole batches, but at least one is returned.
pub fn log_read_max_bytes_whole_batches(h: &impl EngineHarness) -> CaseResult {
    let (_g, e) = h.create()?;
    let mut want = Vec::new();
    for i in 0..10u64 {
        let b = produced_batch(1, 0, i, 200);
        e.log_append(G1, i + 1, 1, &b)?;
        want.push(stamped(&b, i as i64, 1));
    }
    let one = want[0].len();
    ensure_eq!(
        e.log_read(G1, 0, 1)?.to_vec(),
        want[0],
        "at least one batch"
    );
    let got = e.log_read(G1, 2, one * 3 + one / 2)?;
    ensure_eq!(got.to_vec(), want[2..5].concat(), "three whole batches fit");
    Ok(Outcome::Passed)
}

/// Reading at the end is empty; before the start or past the end is OutOfRange.
pub fn log_read_at_end_and_out_of_range(h: &impl EngineHarness) -> CaseResult {
    let (_g, e) = h.create()?;
    e.log_append(G1, 1, 1, &produced_batch(3, 0, 1, 10))?;
    ensure!(
        e.log_read(G1, 3, 1000)?.is_empty(),
        "read at next offset is empty"
    );
    let r = e.log_read(G1, 4, 1000);
    ensure!(
        matches!(
            r,
            Err(Error::OutOfRange {
                requested: 4,
                start: 0,
                end: 3
            })
        ),
        "past end: {r:?}"
    );
    ensure!(
        matches!(e.log_read(G1, -1, 1000), Err(Error::OutOfRange { .. })),
        "negative offset"
    );
    Ok(Outcome::Passed)
}

/// Entries without batches advance the applied index, never backwards.
pub fn log_mark_applied(h: &impl EngineHarness) -> CaseResult {
    let (_g, e) = h.create()?;
    e.log_mark_applied(G1, 3)?;
    ensure_eq!(e.log_state(G1)?.applied_index, 3, "applied");
    e.log_append(G1, 4, 1, &produced_batch(1, 0, 1, 10))?;
    e.log_mark_applied(G1, 2)?;
    ensure_eq!(e.log_state(G1)?.applied_index, 4, "never backwards");
    e.log_mark_applied(G1, 9)?;
    ensure!(
        matches!(
            e.log_append(G1, 9, 1, &produced_batch(1, 0, 1, 10)),
            Err(Error::Invalid(_))
        ),
        "append at applied index"
    );
    ensure_eq!(
        e.log_state(G1)?,
        LogState {
            start_offset: 0,
            next_offset: 1,
            applied_index: 9
        },
        "state"
    );
    Ok(Outcome::Passed)
}

/// Timestamp lookup finds the first batch whose max timestamp reaches the target.
pub fn log_offset_for_timestamp(h: &impl EngineHarness) -> CaseResult {
    let (_g, e) = h.create()?;
    // Batches of 10 records with timestamps 1000+100k .. +9 (offsets 10k..10k+9).
    for k in 0..50u64 {
        e.log_append(
            G1,
            k + 1,
            1,
            &produced_batch(10, 1000 + 100 * k as i64, k, 100),
        )?;
    }
    ensure_eq!(e.log_offset_for_timestamp(G1, 0)?, Some(0), "before all");
    ensure_eq!(
        e.log_offset_for_timestamp(G1, 1009)?,
        Some(0),
        "inside first batch"
    );
    ensure_eq!(
        e.log_offset_for_timestamp(G1, 1010)?,
        Some(10),
        "between batches"
    );
    ensure_eq!(
        e.log_offset_for_timestamp(G1, 1000 + 100 * 37 + 5)?,
        Some(370),
        "inside batch 37"
    );
    ensure_eq!(
        e.log_offset_for_timestamp(G1, 1000 + 100 * 49 + 9)?,
        Some(490),
        "last record"
    );
    ensure_eq!(
        e.log_offset_for_timestamp(G1, 1000 + 100 * 49 + 10)?,
        None,
        "after all"
    );
    e.log_delete_prefix(G1, 200)?;
    ensure_eq!(
        e.log_offset_for_timestamp(G1, 0)?,
        Some(200),
        "never below start offset"
    );
    Ok(Outcome::Passed)
}

/// Deleting a prefix raises the start offset; reads below it are OutOfRange.
pub fn log_delete_prefix(h: &impl EngineHarness) -> CaseResult {
    let (_g, e) = h.create()?;
    let mut want = Vec::new();
    for i in 0..100u64 {
        let b = produced_batch(2, 0, i, 300);
        e.log_append(G1, i + 1, 1, &b)?;
        want.push(stamped(&b, 2 * i as i64, 1));
    }
    e.log_delete_prefix(G1, 101)?;
    ensure_eq!(e.log_state(G1)?.start_offset, 101, "start offset");
    ensure!(
        matches!(e.log_read(G1, 100, 100), Err(Error::OutOfRange { .. })),
        "below start"
    );
    let first = e.log_read(G1, 101, 1)?;
    ensure_eq!(first.to_vec(), want[50], "batch holding the start offset");
    e.log_delete_prefix(G1, 50)?;
    ensure_eq!(e.log_state(G1)?.start_offset, 101, "never lowered");
    e.log_delete_prefix(G1, 10_000)?;
    ensure_eq!(e.log_state(G1)?.start_offset, 200, "clamped to next offset");
    ensure!(e.log_read(G1, 200, 100)?.is_empty(), "empty at end");
    let a = e.log_append(G1, 101, 1, &produced_batch(1, 0, 1, 10))?;
    ensure_eq!(a.base_offset, 200, "appends continue");
    Ok(Outcome::Passed)
}

/// Partition logs are independent; removing one leaves the others.
pub fn log_groups_and_remove(h: &impl EngineHarness) -> CaseResult {
    let (guard, e) = h.create()?;
    let b = produced_batch(2, 0, 1, 10);
    e.log_append(G1, 1, 1, &b)?;
    e.log_append(G2, 1, 1, &b)?;
    e.log_append(G2, 2, 1, &b)?;
    ensure_eq!(e.log_state(G1)?.next_offset, 2, "g1");
    ensure_eq!(e.log_state(G2)?.next_offset, 4, "g2");
    e.log_remove(G1)?;
    ensure_eq!(e.log_groups()?, vec![G2], "groups");
    ensure_eq!(e.log_state(G1)?, LogState::default(), "removed log");
    e.log_flush(G2)?;
    if e.capabilities().reopen {
        let e = h.reopen(&guard, e)?;
        ensure_eq!(e.log_groups()?, vec![G2], "groups after reopen");
        ensure_eq!(read_log(&e, G2, 0)?.len(), 2, "g2 after reopen");
    }
    Ok(Outcome::Passed)
}

/// Thousands of batches (several segments in segmented engines) read back in order.
pub fn log_many_batches(h: &impl EngineHarness) -> CaseResult {
    let (_g, e) = h.create()?;
    let mut want = Vec::new();
    for i in 0..3000u64 {
        let b = produced_batch(1 + (i % 3) as usize, i as i64, i, 50 + (i % 200) as usize);
        let a = e.log_append(G1, i + 1, 1, &b)?;
        want.push(stamped(&b, a.base_offset, 1));
    }
    let got = read_log(&e, G1, 0)?;
    ensure!(got == want, "all batches read back in order");
    // Random probes: the batch holding each offset comes first.
    let mut rng = StdRng::seed_from_u64(7);
    let next = e.log_state(G1)?.next_offset;
    for _ in 0..200 {
        let o = rng.gen_range(0..next);
        let bytes = e.log_read(G1, o, 1)?;
        let h = batch::BatchHeader::parse(&bytes)?;
        ensure!(
            h.base_offset <= o && o <= h.last_offset(),
            "read at {o} returned batch {}..{}",
            h.base_offset,
            h.last_offset()
        );
    }
    Ok(Outcome::Passed)
}

/// Flushed batches, applied index and start offset survive a reopen.
pub fn log_reopen_keeps_flushed(h: &impl EngineHarness) -> CaseResult {
    if let Some(o) = needs_reopen(h)? {
        return Ok(o);
    }
    let (guard, e) = h.create()?;
    let mut want = Vec::new();
    for i in 0..500u64 {
        let b = produced_batch(2, i as i64 * 10, i, 100);
        let a = e.log_append(G1, 2 * i + 1, 3, &b)?;
        want.push(stamped(&b, a.base_offset, 3));
    }
    e.log_mark_applied(G1, 1001)?;
    e.log_flush(G1)?;
    let e = h.reopen(&guard, e)?;
    ensure_eq!(
        e.log_state(G1)?,
        LogState {
            start_offset: 0,
            next_offset: 1000,
            applied_index: 1001
        },
        "state"
    );
    ensure!(read_log(&e, G1, 0)? == want, "batches after reopen");
    ensure_eq!(
        e.log_offset_for_timestamp(G1, 2500)?,
        Some(500),
        "time index after reopen"
    );
    let a = e.log_append(G1, 1002, 3, &produced_batch(1, 0, 1, 10))?;
    ensure_eq!(a.base_offset, 1000, "appends continue");
    Ok(Outcome::Passed)
}

/// The start offset survives a reopen.
pub fn log_reopen_after_delete_prefix(h: &impl EngineHarness) -> CaseResult {
    if let Some(o) = needs_reopen(h)? {
        return Ok(o);
    }
    let (guard, e) = h.create()?;
    for i in 0..2000u64 {
        e.log_append(G1, i + 1, 1, &produced_batch(1, 0, i, 100))?;
    }
    e.log_delete_prefix(G1, 1500)?;
    e.log_flush(G1)?;
    let e = h.reopen(&guard, e)?;
    ensure_eq!(
        e.log_state(G1)?,
        LogState {
            start_offset: 1500,
            next_offset: 2000,
            applied_index: 2000
        },
        "state"
    );
    ensure!(
        matches!(e.log_read(G1, 1499, 10), Err(Error::OutOfRange { .. })),
        "below start"
    );
    ensure_eq!(read_log(&e, G1, 1500)?.len(), 500, "rest readable");
    Ok(Outcome::Passed)
}

/// Batches of 1 MiB and more (larger than small segments) are stored intact.
pub fn log_large_batches(h: &impl EngineHarness) -> CaseResult {
    let (guard, e) = h.create()?;
    let mut want = Vec::new();
    for i in 0..4u64 {
        let b = produced_batch(2, 0, i, (1 << 20) + 17);
        let a = e.log_append(G1, i + 1, 1, &b)?;
        want.push(stamped(&b, a.base_offset, 1));
    }
    ensure!(read_log(&e, G1, 0)? == want, "large batches");
    e.log_flush(G1)?;
    if e.capabilities().reopen {
        let e = h.reopen(&guard, e)?;
        ensure!(read_log(&e, G1, 0)? == want, "large batches after reopen");
    }
    Ok(Outcome::Passed)
}

// ---------------------------------------------------------------- crash cases

struct CrashSetup<H: EngineHarness> {
    _guard: H::Guard,
    dir: PathBuf,
    scratch: tempfile::TempDir,
}

type Setup<H> = Result<(CrashSetup<H>, <H as EngineHarness>::Engine), Outcome>;

fn crash_setup<H: EngineHarness>(h: &H) -> anyhow::Result<Setup<H>> {
    let (guard, e) = h.create()?;
    if !e.capabilities().file_crash_simulation {
        return Ok(Err(Outcome::NotApplicable(
            "engine does not keep files to cut",
        )));
    }
    let dir = h
        .data_dir(&guard)
        .context("file-based harness must give data_dir")?;
    let scratch = tempfile::tempdir()?;
    Ok(Ok((
        CrashSetup {
            _guard: guard,
            dir,
            scratch,
        },
        e,
    )))
}

/// Opens the engine on `image`; `Ok(None)` when it reports corruption.
fn open_image<H: EngineHarness>(
    h: &H,
    s: &CrashSetup<H>,
    image: &Image,
) -> anyhow::Result<Option<H::Engine>> {
    let dir = s.scratch.path().join("img");
    crash::materialize(image, &dir)?;
    match h.open_dir(&dir) {
        Ok(e) => Ok(Some(e)),
        Err(Error::Corrupt(_)) => Ok(None),
        Err(e) => bail!("opening a crash image failed with a non-corruption error: {e}"),
    }
}

/// The Raft writes of a crash scenario, to compare recovered state against.
struct RaftScenario {
    /// Per group: every entry ever appended (append-only scenario).
    entries: Vec<(GroupId, Vec<Entry>)>,
    /// Per group: number of entries synced.
    synced: Vec<usize>,
    /// Per group: the hard states written, the synced one first.
    hard_states: Vec<Vec<HardState>>,
}

fn raft_phase(
    e: &(impl Engine + ?Sized),
    s: &mut RaftScenario,
    lo: u64,
    hi: u64,
    term: u64,
) -> anyhow::Result<()> {
    for (gi, (g, all)) in s.entries.iter_mut().enumerate() {
        let mut i = lo;
        while i <= hi {
            let j = (i + (gi as u64 % 3)).min(hi);
            let es: Vec<Entry> = (i..=j)
                .map(|k| entry(k, term, 40 + (k as usize * 37) % 500))
                .collect();
            e.raft_append(*g, &es)?;
            all.extend(es);
            i = j + 1;
        }
        let hs = hard_state(term, 1, hi);
        e.raft_set_hard_state(*g, &hs)?;
        s.hard_states[gi].push(hs);
    }
    Ok(())
}

fn new_raft_scenario() -> RaftScenario {
    RaftScenario {
        entries: vec![(G1, Vec::new()), (G2, Vec::new())],
        synced: vec![0, 0],
        hard_states: vec![vec![HardState::default()], vec![HardState::default()]],
    }
}

fn mark_raft_synced(s: &mut RaftScenario) {
    for (gi, (_, all)) in s.entries.iter().enumerate() {
        s.synced[gi] = all.len();
        let last = s.hard_states[gi].pop().unwrap_or_default();
        s.hard_states[gi] = vec![last];
    }
}

/// Checks a recovered engine: each group's log is a prefix of what was written that
/// holds every synced entry; its hard state is the synced one or a later one; and it
/// accepts the next append.
fn check_raft_recovered(
    e: &(impl Engine + ?Sized),
    s: &RaftScenario,
    try_append: bool,
) -> anyhow::Result<()> {
    for (gi, (g, all)) in s.entries.iter().enumerate() {
        let got = read_all_entries(e, *g)?;
        ensure!(
            got.len() >= s.synced[gi],
            "{g}: {} entries recovered but {} were synced",
            got.len(),
            s.synced[gi]
        );
        ensure!(got.len() <= all.len(), "{g}: more entries than written");
        same_entries(&got, &all[..got.len()])?;
        let hs = e.raft_state(*g)?.hard_state;
        ensure!(
            s.hard_states[gi].contains(&hs),
            "{g}: hard state {hs:?} was never written after the last sync"
        );
        if try_append {
            let next = got.len() as u64 + 1;
            e.raft_append(*g, &[entry(next, 9, 10)])?;
            ensure_eq!(e.raft_last_index(*g)?, next, "{g}: append after recovery");
        }
    }
    Ok(())
}

/// Writes a crash case makes (some synced, then some not) and how to judge what an
/// engine recovered from them.
trait CrashScenario {
    /// Writes and syncs.
    fn write_synced(&mut self, e: &dyn Engine) -> anyhow::Result<()>;
    /// Writes more without syncing.
    fn write_unsynced(&mut self, e: &dyn Engine) -> anyhow::Result<()>;
    /// Checks a recovered engine; `try_append` also checks that it takes new writes.
    fn check(&self, e: &dyn Engine, try_append: bool) -> anyhow::Result<()>;
}

/// Runs a crash case: writes, captures the files after the sync and after the
/// unsynced writes, builds crash images from the two, and checks the engine opened
/// on each image.
fn crash_images<H: EngineHarness>(
    h: &H,
    mut sc: impl CrashScenario,
    min_images: usize,
    build: impl Fn(&Image, &Image) -> Vec<Image>,
) -> CaseResult {
    let (s, e) = match crash_setup(h)? {
        Ok(x) => x,
        Err(o) => return Ok(o),
    };
    sc.write_synced(&e)?;
    let before = crash::capture(&s.dir)?;
    sc.write_unsynced(&e)?;
    let after = crash::capture(&s.dir)?;
    let images = build(&before, &after);
    ensure!(
        images.len() >= min_images.max(1),
        "only {} crash images were built, {min_images} wanted",
        images.len()
    );
    for (n, image) in images.iter().enumerate() {
        let e = open_image(h, &s, image)?
            .with_context(|| format!("crash image {n}: unsynced damage reported as corruption"))?;
        sc.check(&e, n % 50 == 0)
            .with_context(|| format!("crash image {n}"))?;
    }
    Ok(Outcome::Passed)
}

impl CrashScenario for RaftScenario {
    fn write_synced(&mut self, e: &dyn Engine) -> anyhow::Result<()> {
        raft_phase(e, self, 1, 20, 1)?;
        e.raft_sync()?;
        mark_raft_synced(self);
        Ok(())
    }

    fn write_unsynced(&mut self, e: &dyn Engine) -> anyhow::Result<()> {
        raft_phase(e, self, 21, 30, 2)?;
        raft_phase(e, self, 31, 36, 3)
    }

    fn check(&self, e: &dyn Engine, try_append: bool) -> anyhow::Result<()> {
        check_raft_recovered(e, self, try_append)
    }
}

impl CrashScenario for LogScenario {
    // ~70 KB flushed (segmented engines roll during this synced phase), then ~10 KB
    // unsynced: small enough that no engine needs to create files for it, since file
    // creation does its own syncs that this model cannot see.
    fn write_synced(&mut self, e: &dyn Engine) -> anyhow::Result<()> {
        log_phase(e, self, 200)?;
        e.log_flush(G1)?;
        self.synced = self.want.len();
        Ok(())
    }

    fn write_unsynced(&mut self, e: &dyn Engine) -> anyhow::Result<()> {
        log_phase(e, self, 30)
    }

    fn check(&self, e: &dyn Engine, try_append: bool) -> anyhow::Result<()> {
        check_log_recovered(e, self, try_append)
    }
}

fn new_log_scenario() -> LogScenario {
    LogScenario {
        want: Vec::new(),
        raft_index: Vec::new(),
        synced: 0,
    }
}

/// Cut images: the unsynced bytes persisted up to each of 1,500 points.
fn cut_images(before: &Image, after: &Image) -> Vec<Image> {
    let d = Diff::new(before, after);
    d.cut_points(1500).into_iter().map(|k| d.cut(k)).collect()
}

/// Torn images: each touched page persisted alone, and all but each one.
fn torn_images(before: &Image, after: &Image) -> Vec<Image> {
    Diff::new(before, after).torn_images()
}

/// The number of crash points the cut cases try at least.
pub const MIN_CRASH_POINTS: usize = 1000;

/// Raft log: crash after a sync with the unsynced bytes persisted up to every point.
pub fn crash_raft_cut_every_byte(h: &impl EngineHarness) -> CaseResult {
    crash_images(h, new_raft_scenario(), MIN_CRASH_POINTS, cut_images)
}

/// Raft log: unsynced pages persisted out of order.
pub fn crash_raft_torn_pages(h: &impl EngineHarness) -> CaseResult {
    crash_images(h, new_raft_scenario(), 2, torn_images)
}

/// Raft log: garbage where the next write would have gone.
pub fn crash_raft_garbage_tail(h: &impl EngineHarness) -> CaseResult {
    crash_images(h, new_raft_scenario(), 200, garbage_images)
}

/// 200 images: a cut at an evenly spread point, then garbage of 1 to 5000 bytes.
fn garbage_images(before: &Image, after: &Image) -> Vec<Image> {
    let d = Diff::new(before, after);
    (0..200u64)
        .map(|seed| {
            let k = d.len() * (seed as usize) / 200;
            d.garbage_at_cut(k, 1 + (seed as usize * 97) % 5000, seed)
        })
        .collect()
}

/// Raft log: one bit flipped inside data synced before the last sync is reported as
/// corruption (at open or read), never served and never silently dropped.
pub fn crash_raft_bit_flip(h: &impl EngineHarness) -> CaseResult {
    let (s, e) = match crash_setup(h)? {
        Ok(x) => x,
        Err(o) => return Ok(o),
    };
    let mut sc = new_raft_scenario();
    let empty = crash::capture(&s.dir)?;
    raft_phase(&e, &mut sc, 1, 20, 1)?;
    e.raft_sync()?;
    let first_sync = crash::capture(&s.dir)?;
    raft_phase(&e, &mut sc, 21, 30, 2)?;
    e.raft_sync()?;
    mark_raft_synced(&mut sc);
    raft_phase(&e, &mut sc, 31, 36, 3)?;
    let now = crash::capture(&s.dir)?;
    let d = Diff::new(&empty, &first_sync);
    let mut rng = StdRng::seed_from_u64(11);
    let (mut detected, mut harmless) = (0, 0);
    for n in 0..300 {
        let (file, pos) = d.positions()[rng.gen_range(0..d.len())];
        let image = crash::with_flip(&now, file, pos, rng.r#gen());
        let Some(e) = open_image(h, &s, &image)? else {
            detected += 1;
            continue;
        };
        // Opened: every synced entry must read back intact, or the read must fail
        // with Corrupt. Fewer entries without an error is silent loss.
        let mut corrupt_read = false;
        for (gi, (g, all)) in sc.entries.iter().enumerate() {
            let last = e.raft_last_index(*g)?;
            match e.raft_entries(*g, 1, last + 1, None) {
                Ok(got) => {
                    ensure!(
                        got.len() >= sc.synced[gi],
                        "flip {n} at {}:{pos}: synced entries silently dropped ({} < {})",
                        file.display(),
                        got.len(),
                        sc.synced[gi]
                    );
                    same_entries(&got, &all[..got.len()])
                        .with_context(|| format!("flip {n} at {}:{pos}", file.display()))?;
                }
                Err(Error::Corrupt(_)) => corrupt_read = true,
                Err(other) => bail!("flip {n}: read failed with {other}"),
            }
        }
        if corrupt_read {
            detected += 1;
        } else {
            harmless += 1;
        }
    }
    ensure!(
        detected > 0,
        "no bit flip was ever detected ({harmless} harmless)"
    );
    Ok(Outcome::Passed)
}

struct LogScenario {
    want: Vec<Vec<u8>>,
    raft_index: Vec<u64>,
    synced: usize,
}

fn log_phase(e: &(impl Engine + ?Sized), s: &mut LogScenario, n: usize) -> anyhow::Result<()> {
    for _ in 0..n {
        let i = s.want.len() as u64;
        let b = produced_batch(
            1 + (i % 4) as usize,
            1000 + i as i64,
            i,
            10 + (i as usize * 53) % 200,
        );
        let idx = 3 * i + 2;
        let a = e.log_append(G1, idx, 2, &b)?;
        s.want.push(stamped(&b, a.base_offset, 2));
        s.raft_index.push(idx);
    }
    Ok(())
}

fn check_log_recovered(
    e: &(impl Engine + ?Sized),
    s: &LogScenario,
    try_append: bool,
) -> anyhow::Result<()> {
    let got = read_log(e, G1, 0)?;
    ensure!(
        got.len() >= s.synced,
        "{} batches recovered but {} were flushed",
        got.len(),
        s.synced
    );
    ensure!(got.len() <= s.want.len(), "more batches than written");
    ensure!(
        got[..] == s.want[..got.len()],
        "recovered batches differ from those written"
    );
    let st = e.log_state(G1)?;
    let applied = if got.is_empty() {
        0
    } else {
        s.raft_index[got.len() - 1]
    };
    ensure_eq!(
        st.applied_index,
        applied,
        "applied index must match the last recovered batch"
    );
    if try_append {
        let a = e.log_append(G1, applied + 1, 9, &produced_batch(1, 0, 1, 10))?;
        ensure_eq!(a.base_offset, st.next_offset, "append after recovery");
        ensure!(
            read_log(e, G1, 0)?.len() == got.len() + 1,
            "appended batch readable"
        );
    }
    Ok(())
}

/// Partition log: crash after a flush with unsynced bytes persisted up to every point.
pub fn crash_log_cut_every_byte(h: &impl EngineHarness) -> CaseResult {
    crash_images(h, new_log_scenario(), MIN_CRASH_POINTS, cut_images)
}

/// Partition log: unsynced pages persisted out of order.
pub fn crash_log_torn_pages(h: &impl EngineHarness) -> CaseResult {
    crash_images(h, new_log_scenario(), 2, torn_images)
}

/// Partition log: garbage where the next write would have gone.
pub fn crash_log_garbage_tail(h: &impl EngineHarness) -> CaseResult {
    crash_images(h, new_log_scenario(), 200, garbage_images)
}

/// Partition log: one bit flipped in flushed data is reported, never served, never
/// silently dropped.
pub fn crash_log_bit_flip(h: &impl EngineHarness) -> CaseResult {
    let (s, e) = match crash_setup(h)? {
        Ok(x) => x,
        Err(o) => return Ok(o),
    };
    let mut sc = LogScenario {
        want: Vec::new(),
        raft_index: Vec::new(),
        synced: 0,
    };
    let empty = crash::capture(&s.dir)?;
    log_phase(&e, &mut sc, 200)?;
    e.log_flush(G1)?;
    let first = crash::capture(&s.dir)?;
    log_phase(&e, &mut sc, 10)?;
    e.log_flush(G1)?;
    sc.synced = sc.want.len();
    log_phase(&e, &mut sc, 10)?;
    let now = crash::capture(&s.dir)?;
    let d = Diff::new(&empty, &first);
    let mut rng = StdRng::seed_from_u64(13);
    let mut detected = 0;
    for n in 0..300 {
        let (file, pos) = d.positions()[rng.gen_range(0..d.len())];
        let image = crash::with_flip(&now, file, pos, rng.r#gen());
        let Some(e) = open_image(h, &s, &image)? else {
            detected += 1;
            continue;
        };
        let ctx = || format!("flip {n} at {}:{pos}", file.display());
        let st = e.log_state(G1)?;
        ensure!(
            st.next_offset >= offset_after(&sc.want[..sc.synced]),
            "{}: flushed batches silently dropped",
            ctx()
        );
        // Read batch by batch; a Corrupt error is a detection, anything served must
        // be exactly what was written.
        let mut at = 0;
        let mut k = 0;
        while at < st.next_offset {
            match e.log_read(G1, at, 1) {
                Ok(bytes) => {
                    let (h0, one) = batch::iter_batches(&bytes).next().context("empty read")??;
                    ensure!(
                        k < sc.want.len() && one == &sc.want[k][..],
                        "{}: served bytes differ at batch {k}",
                        ctx()
                    );
                    at = h0.last_offset() + 1;
                    k += 1;
                }
                Err(Error::Corrupt(_)) => {
                    detected += 1;
                    break;
                }
                Err(other) => bail!("{}: read failed with {other}", ctx()),
            }
        }
    }
    ensure!(detected > 0, "no bit flip was ever detected");
    Ok(Outcome::Passed)
}

fn offset_after(batches: &[Vec<u8>]) -> i64 {
    batches
        .last()
        .and_then(|b| batch::BatchHeader::parse(b).ok())
        .map_or(0, |h| h.last_offset() + 1)
}

/// Random operation sequences against a model (see [`crate::model`]).
pub fn model_random_operations(h: &impl EngineHarness) -> CaseResult {
    crate::model::run(h)?;
    Ok(Outcome::Passed)
}

/// Declared capabilities, for suites that want to report them.
pub fn capabilities(h: &impl EngineHarness) -> anyhow::Result<Capabilities> {
    Ok(h.create()?.1.capabilities())
}
