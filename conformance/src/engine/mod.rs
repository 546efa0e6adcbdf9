//! The storage-engine conformance suite (DESIGN.md §4).
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
use weir_core::{
    Capabilities, Engine, Error, GroupId, LogState, PartitionStore, RaftLogStore, StateStore,
};

use crate::crash::{self, Diff, Image};
use crate::{CaseResult, Outcome, ensure, ensure_eq};

mod compaction;
mod crash_cases;
mod log;
mod raft;
mod retention;
mod staging;
mod state;
mod unified;

pub use compaction::*;
pub use crash_cases::*;
pub use log::*;
pub use raft::*;
pub use retention::*;
pub use staging::*;
pub use state::*;
pub use unified::*;

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

/// An [`EngineHarness`] for an engine that lives in a directory: `open` creates it
/// there, or opens what a previous engine left. Every case gets a fresh temporary
/// directory, and the crash cases copy it.
pub struct DirHarness<E>(pub fn(&Path) -> weir_core::Result<E>);

impl<E: Engine> EngineHarness for DirHarness<E> {
    type Engine = E;
    type Guard = tempfile::TempDir;

    fn create(&self) -> anyhow::Result<(tempfile::TempDir, E)> {
        let dir = tempfile::tempdir()?;
        let engine = (self.0)(dir.path())?;
        Ok((dir, engine))
    }

    fn reopen(&self, guard: &tempfile::TempDir, engine: E) -> anyhow::Result<E> {
        drop(engine);
        Ok((self.0)(guard.path())?)
    }

    fn data_dir(&self, guard: &tempfile::TempDir) -> Option<PathBuf> {
        Some(guard.path().to_path_buf())
    }

    fn open_dir(&self, dir: &Path) -> weir_core::Result<E> {
        (self.0)(dir)
    }
}

/// What a case needs the engine to declare.
#[derive(Clone, Copy, Debug)]
enum Needs {
    /// Every engine runs it.
    Any,
    /// [`Capabilities::reopen`].
    Reopen,
    /// [`Capabilities::file_crash_simulation`].
    Files,
    /// [`Capabilities::process_kill`].
    ProcessKill,
    /// [`Capabilities::unified_log`].
    Unified,
    /// [`Capabilities::snapshot_install`].
    SnapshotInstall,
    /// [`Capabilities::key_compaction`].
    KeyCompaction,
}

impl Needs {
    fn check(self, caps: &Capabilities) -> Result<(), &'static str> {
        let (ok, why) = match self {
            Needs::Any => (true, ""),
            Needs::Reopen => (caps.reopen, "needs reopen"),
            Needs::Files => (caps.file_crash_simulation, "needs files"),
            Needs::ProcessKill => (caps.process_kill, "needs process_kill"),
            Needs::Unified => (caps.unified_log, "needs unified_log"),
            Needs::SnapshotInstall => (caps.snapshot_install, "needs snapshot_install"),
            Needs::KeyCompaction => (caps.key_compaction, "needs key_compaction"),
        };
        if ok { Ok(()) } else { Err(why) }
    }
}

/// One trial per case named, each needing what it says, on a shared harness.
macro_rules! engine_trials {
    ($h:ident, $caps:ident; $($case:ident : $needs:ident),* $(,)?) => {
        vec![$({
            let h = $h.clone();
            crate::suite::trial(stringify!($case), Needs::$needs.check(&$caps), move || $case(&*h))
        }),*]
    };
}

/// Every case of the engine suite as a trial; those that need a capability the
/// engine does not declare are ignored.
///
/// # Errors
/// When the harness cannot create an engine (to read its capabilities).
pub fn trials<H: EngineHarness + Send + Sync + 'static>(
    harness: H,
) -> anyhow::Result<Vec<crate::suite::Trial>> {
    let caps = capabilities(&harness)?;
    let h = std::sync::Arc::new(harness);
    let mut trials = engine_trials!(h, caps;
        raft_empty_group: Any, raft_append_and_read: Any, raft_entries_max_bytes: Any,
        raft_entries_out_of_range: Any, raft_overwrite_conflicting_suffix: Any,
        raft_overwrite_whole_log: Any, raft_append_rejects_hole: Any,
        raft_append_rejects_below_compaction: Any, raft_append_rejects_non_consecutive: Any,
        raft_compact_keeps_term: Any, raft_compact_beyond_last_fails: Any,
        raft_compact_is_idempotent: Any, raft_hard_state_round_trip: Any,
        raft_conf_state_round_trip: Any, raft_snapshot_resets_log: Any,
        raft_groups_are_independent: Any, raft_remove_group: Any, raft_large_entries: Any,
        raft_reopen_keeps_synced: Reopen, raft_reopen_after_compaction_and_overwrite: Reopen,
        raft_reopen_many_groups: Reopen,
        log_empty_state: Any, log_append_assigns_offsets: Any, log_append_rejects_bad_input: Any,
        log_read_from_middle_of_batch: Any, log_read_max_bytes_whole_batches: Any,
        log_read_at_end_and_out_of_range: Any, log_mark_applied: Any,
        log_offset_for_timestamp: Any, log_delete_prefix: Any, log_groups_and_remove: Any,
        log_remove_while_read: Any,
        log_many_batches: Any, log_reopen_keeps_flushed: Reopen,
        log_reopen_after_delete_prefix: Reopen, log_large_batches: Any,
        log_retention_by_time: Any, log_retention_by_size: Any,
        stage_install_replaces_the_log: SnapshotInstall,
        stage_refuses_what_does_not_continue: SnapshotInstall,
        stage_install_survives_reopen: SnapshotInstall,
        compact_model_random: KeyCompaction, compact_commit_only_the_unit_listed: KeyCompaction,
        compact_replacement_survives_reopen: KeyCompaction,
        crash_raft_cut_every_byte: Files, crash_raft_torn_pages: Files,
        crash_raft_garbage_tail: Files, crash_raft_bit_flip: Files,
        crash_log_cut_every_byte: Files, crash_log_torn_pages: Files,
        crash_log_garbage_tail: Files, crash_log_bit_flip: Files,
        state_put_get_replace_remove: Any, state_is_independent_of_the_logs: Any,
        state_reopen_keeps_the_last_put: Reopen,
        model_random_operations: Any,
        unified_batches_wait_for_apply: Unified, unified_truncation_across_segments: Unified,
        unified_restart_with_uncommitted_tail: Unified,
        unified_compaction_and_start_offset: Unified,
        unified_unstamped_batch_orders_later_ones: Unified,
    );
    const KILL: &str = "crash_sigkill_writer";
    let hk = h.clone();
    trials.push(crate::suite::trial(
        KILL,
        Needs::ProcessKill.check(&caps),
        move || crate::kill::crash_sigkill_writer(&*hk, KILL),
    ));
    Ok(trials)
}

/// Runs the engine suite as a test binary's `main` (its target has
/// `harness = false`): one named trial per case.
pub fn run<H: EngineHarness + Send + Sync + 'static>(harness: H) -> ! {
    match trials(harness) {
        Ok(t) => crate::suite::run(t),
        Err(e) => {
            eprintln!("the engine suite cannot start: {e:#}");
            std::process::exit(101)
        }
    }
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

/// Random operation sequences against a model (see [`crate::model`]).
pub fn model_random_operations(h: &impl EngineHarness) -> CaseResult {
    crate::model::run(h)?;
    Ok(Outcome::Passed)
}

/// Declared capabilities, for suites that want to report them.
pub fn capabilities(h: &impl EngineHarness) -> anyhow::Result<Capabilities> {
    Ok(h.create()?.1.capabilities())
}
