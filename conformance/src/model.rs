//! Model tests: random sequences of operations run against an engine and against a
//! plain in-memory model; after every operation the engine must agree with the model.
//!
//! Operations: Raft append (including overwriting a suffix), compaction, reads, sync;
//! partition append, prefix deletion, reads, flush; and — for engines that can — a
//! reopen after syncing everything.

use anyhow::Context;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use weir_core::eraftpb::Entry;
use weir_core::{Engine, GroupId, PartitionStore, RaftLogStore};

use crate::engine::{EngineHarness, entry, produced_batch, read_log};

#[derive(Clone, Debug)]
enum Op {
    /// Append `n` entries to group `g`, starting `back` entries before the end.
    Append {
        g: u64,
        back: u64,
        n: u64,
        size: usize,
    },
    /// Compact group `g` at a fraction (per mille) of its log.
    Compact { g: u64, at: u16 },
    /// Read entries of group `g` with a byte limit.
    ReadEntries { g: u64, max: u64 },
    /// Sync the Raft log.
    Sync,
    /// Append a batch to partition `g`.
    LogAppend { g: u64, records: usize, size: usize },
    /// Delete a prefix at a fraction (per mille) of partition `g`.
    LogDelete { g: u64, at: u16 },
    /// Read partition `g` from a fraction of it.
    LogRead { g: u64, at: u16, max: usize },
    /// Sync and flush everything, then reopen.
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1..4u64, 0..4u64, 1..6u64, 0..300usize).prop_map(|(g, back, n, size)| Op::Append { g, back, n, size }),
        1 => (1..4u64, 0..1000u16).prop_map(|(g, at)| Op::Compact { g, at }),
        2 => (1..4u64, 0..2000u64).prop_map(|(g, max)| Op::ReadEntries { g, max }),
        1 => Just(Op::Sync),
        5 => (1..4u64, 1..5usize, 0..400usize).prop_map(|(g, records, size)| Op::LogAppend { g, records, size }),
        1 => (1..4u64, 0..1000u16).prop_map(|(g, at)| Op::LogDelete { g, at }),
        2 => (1..4u64, 0..1000u16, 1..3000usize).prop_map(|(g, at, max)| Op::LogRead { g, at, max }),
        1 => Just(Op::Reopen),
    ]
}

#[derive(Default, Clone)]
struct RaftModel {
    snap_index: u64,
    snap_term: u64,
    entries: Vec<Entry>,
    term: u64,
}

#[derive(Default, Clone)]
struct LogModel {
    batches: Vec<(i64, Vec<u8>)>,
    start: i64,
    next: i64,
    applied: u64,
}

fn fail(e: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}

fn check_raft(e: &impl Engine, g: GroupId, m: &RaftModel) -> Result<(), TestCaseError> {
    let first = e.raft_first_index(g).map_err(fail)?;
    let last = e.raft_last_index(g).map_err(fail)?;
    prop_assert_eq!(first, m.snap_index + 1, "first index of {}", g);
    prop_assert_eq!(
        last,
        m.snap_index + m.entries.len() as u64,
        "last index of {}",
        g
    );
    prop_assert_eq!(e.raft_term(g, m.snap_index).map_err(fail)?, m.snap_term);
    let got = e.raft_entries(g, first, last + 1, None).map_err(fail)?;
    prop_assert_eq!(got.len(), m.entries.len());
    for (a, b) in got.iter().zip(&m.entries) {
        prop_assert!(
            a.index == b.index && a.term == b.term && a.data == b.data,
            "entry {} differs",
            b.index
        );
    }
    Ok(())
}

fn check_log(e: &impl Engine, g: GroupId, m: &LogModel) -> Result<(), TestCaseError> {
    let st = e.log_state(g).map_err(fail)?;
    prop_assert_eq!(
        (st.start_offset, st.next_offset, st.applied_index),
        (m.start, m.next, m.applied)
    );
    let got = read_log(e, g, m.start).map_err(fail)?;
    let want: Vec<&Vec<u8>> = m
        .batches
        .iter()
        .filter(|(base, b)| {
            let h = weir_core::batch::BatchHeader::parse(b).ok();
            let _ = base;
            h.is_some_and(|h| h.last_offset() >= m.start)
        })
        .map(|(_, b)| b)
        .collect();
    prop_assert_eq!(got.len(), want.len(), "batches in {}", g);
    for (a, b) in got.iter().zip(want) {
        prop_assert!(a == b, "batch differs in {}", g);
    }
    Ok(())
}

fn run_ops<H: EngineHarness>(h: &H, ops: &[Op]) -> Result<(), TestCaseError> {
    let (guard, mut e) = h.create().map_err(fail)?;
    let reopen_ok = e.capabilities().reopen;
    let mut raft: Vec<RaftModel> = vec![RaftModel::default(); 4];
    let mut logs: Vec<LogModel> = vec![LogModel::default(); 4];
    let mut raft_index = 0u64;
    for op in ops {
        match op.clone() {
            Op::Append { g, back, n, size } => {
                let m = &mut raft[g as usize];
                let last = m.snap_index + m.entries.len() as u64;
                let back = back.min(m.entries.len() as u64);
                let from = last + 1 - back;
                m.term += 1;
                let es: Vec<Entry> = (from..from + n).map(|i| entry(i, m.term, size)).collect();
                e.raft_append(GroupId(g), &es).map_err(fail)?;
                m.entries.truncate((from - m.snap_index - 1) as usize);
                m.entries.extend(es);
            }
            Op::Compact { g, at } => {
                let m = &mut raft[g as usize];
                let k = m.entries.len() as u64 * at as u64 / 1000;
                if k > 0 {
                    let idx = m.snap_index + k;
                    e.raft_compact(GroupId(g), idx).map_err(fail)?;
                    m.snap_term = m.entries[k as usize - 1].term;
                    m.entries.drain(..k as usize);
                    m.snap_index = idx;
                }
            }
            Op::ReadEntries { g, max } => {
                let m = &raft[g as usize];
                if !m.entries.is_empty() {
                    let lo = m.snap_index + 1;
                    let got = e
                        .raft_entries(GroupId(g), lo, lo + m.entries.len() as u64, Some(max))
                        .map_err(fail)?;
                    prop_assert!(!got.is_empty() && got.len() <= m.entries.len());
                    prop_assert_eq!(got[0].index, lo);
                }
            }
            Op::Sync => e.raft_sync().map_err(fail)?,
            Op::LogAppend { g, records, size } => {
                let m = &mut logs[g as usize];
                raft_index += 1;
                let b = produced_batch(records, raft_index as i64, raft_index, size);
                let a = e.log_append(GroupId(g), raft_index, 1, &b).map_err(fail)?;
                prop_assert_eq!(a.base_offset, m.next);
                let mut s = b.clone();
                weir_core::batch::stamp(&mut s, m.next, 1);
                m.batches.push((m.next, s));
                m.next = a.last_offset + 1;
                m.applied = raft_index;
            }
            Op::LogDelete { g, at } => {
                let m = &mut logs[g as usize];
                let o = m.start + (m.next - m.start) * at as i64 / 1000;
                e.log_delete_prefix(GroupId(g), o).map_err(fail)?;
                m.start = m.start.max(o);
            }
            Op::LogRead { g, at, max } => {
                let m = &logs[g as usize];
                let o = m.start + (m.next - m.start) * at as i64 / 1000;
                let got = e.log_read(GroupId(g), o, max).map_err(fail)?;
                prop_assert_eq!(got.is_empty(), o == m.next);
            }
            Op::Reopen => {
                if reopen_ok {
                    e.raft_sync().map_err(fail)?;
                    for (g, m) in logs.iter().enumerate().skip(1) {
                        if m.next > 0 || m.applied > 0 {
                            e.log_flush(GroupId(g as u64)).map_err(fail)?;
                        }
                    }
                    e = h.reopen(&guard, e).map_err(fail)?;
                }
            }
        }
    }
    for g in 1..4u64 {
        check_raft(&e, GroupId(g), &raft[g as usize])?;
        check_log(&e, GroupId(g), &logs[g as usize])?;
    }
    Ok(())
}

/// Runs 64 random sequences of up to 60 operations (a fixed seed, so failures repeat).
///
/// # Errors
/// The shrunk failing sequence and what disagreed.
pub fn run<H: EngineHarness>(h: &H) -> anyhow::Result<()> {
    let mut runner = TestRunner::new_with_rng(
        Config {
            cases: 64,
            failure_persistence: None,
            ..Config::default()
        },
        proptest::test_runner::TestRng::deterministic_rng(
            proptest::test_runner::RngAlgorithm::ChaCha,
        ),
    );
    runner
        .run(&proptest::collection::vec(op(), 1..60), |ops| {
            run_ops(h, &ops)
        })
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("model test")
}
