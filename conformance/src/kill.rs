//! The SIGKILL crash case: a child process writes, is killed at a random point, and
//! the reopened engine must hold a prefix of its writes that includes every synced one.
//!
//! The child is the test binary itself, run again with the case's name as filter and
//! [`CHILD_ENV`] naming the data directory and seed; the case function sees the
//! variable and becomes the writer. Parent and child derive the same operation list
//! from the seed. The child reports on stdout each sync (`raft_sync`, `log_flush`) as
//! it returns; the parent kills it after a random number of reports plus a random
//! delay, so the kill lands anywhere: inside a write, between writes, inside a sync.
//!
//! After the kill the parent reopens the directory and replays the operations on the
//! in-memory reference engine, one at a time. The Raft logs must equal the model after
//! some prefix at least as long as the last reported `raft_sync`; each partition log
//! must equal the model after some prefix at least as long as its last reported
//! `log_flush`. Every read must succeed: nothing may be reported corrupt or served
//! wrong after a crash that loses no page cache.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, bail};
use rand::{Rng, SeedableRng, rngs::StdRng};
use weir_core::eraftpb::{ConfState, Entry, HardState};
use weir_core::memory::MemoryEngine;
use weir_core::{Engine, GroupId, PartitionStore};

use crate::engine::{EngineHarness, entry, produced_batch, read_log};
use crate::{CaseResult, Outcome, ensure};

/// The environment variable that turns the case into the child writer:
/// `<data dir>:<seed>`.
pub const CHILD_ENV: &str = "WEIR_CONFORMANCE_KILL_CHILD";

/// Seeds (one child each) per run of the case.
pub const SEEDS: u64 = 16;

const RAFT_GROUPS: u64 = 3;
const LOG_GROUPS: [GroupId; 2] = [GroupId(11), GroupId(12)];
const REPORT: &str = "weir-kill-report:";
const CHILD_TIMEOUT: Duration = Duration::from_secs(60);

/// One step of the child's workload.
#[derive(Clone, Debug)]
enum Op {
    RaftAppend(GroupId, Vec<Entry>),
    HardState(GroupId, HardState),
    ConfState(GroupId, ConfState),
    Compact(GroupId, u64),
    RaftSync,
    LogAppend(GroupId, u64, Vec<u8>),
    MarkApplied(GroupId, u64),
    DeletePrefix(GroupId, i64),
    LogFlush(GroupId),
}

/// The deterministic workload of `seed`: appends (with suffix overwrites), states,
/// compactions and syncs on three Raft groups; appends, applied marks, prefix
/// deletes and flushes on two partition logs.
fn workload(seed: u64) -> Vec<Op> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut ops = Vec::new();
    // (first index, last index, term) per Raft group; (next offset, applied) per log.
    let mut raft = vec![(1u64, 0u64, 1u64); RAFT_GROUPS as usize];
    let mut logs = vec![(0i64, 0u64); LOG_GROUPS.len()];
    for _ in 0..240 {
        match rng.gen_range(0..100) {
            0..=39 => {
                let gi = rng.gen_range(0..RAFT_GROUPS as usize);
                let (first, last, term) = &mut raft[gi];
                let mut from = *last + 1;
                if *last >= *first && rng.gen_bool(0.15) {
                    // A new leader overwrites a suffix.
                    from = rng.gen_range(*first..=*last);
                    *term += 1;
                }
                let n = rng.gen_range(1..=6);
                let size = if rng.gen_bool(0.05) {
                    rng.gen_range(32 << 10..200 << 10)
                } else {
                    rng.gen_range(1..3000)
                };
                let es = (from..from + n).map(|i| entry(i, *term, size)).collect();
                *last = from + n - 1;
                ops.push(Op::RaftAppend(GroupId(gi as u64 + 1), es));
            }
            40..=49 => {
                let gi = rng.gen_range(0..RAFT_GROUPS as usize);
                let (_, last, term) = raft[gi];
                let hs = HardState {
                    term,
                    vote: rng.gen_range(1..4),
                    commit: last,
                    ..HardState::default()
                };
                ops.push(Op::HardState(GroupId(gi as u64 + 1), hs));
            }
            50..=51 => {
                let gi = rng.gen_range(0..RAFT_GROUPS as usize);
                let cs = ConfState {
                    voters: (1..=rng.gen_range(1..6)).collect(),
                    ..ConfState::default()
                };
                ops.push(Op::ConfState(GroupId(gi as u64 + 1), cs));
            }
            52..=54 => {
                let gi = rng.gen_range(0..RAFT_GROUPS as usize);
                let (first, last, _) = &mut raft[gi];
                if *last > *first {
                    let at = rng.gen_range(*first..*last);
                    *first = at + 1;
                    ops.push(Op::Compact(GroupId(gi as u64 + 1), at));
                }
            }
            55..=64 => ops.push(Op::RaftSync),
            65..=84 => {
                let li = rng.gen_range(0..LOG_GROUPS.len());
                let (next, applied) = &mut logs[li];
                let records = rng.gen_range(1..8usize);
                let value = if rng.gen_bool(0.05) {
                    rng.gen_range(8 << 10..64 << 10)
                } else {
                    rng.gen_range(1..400)
                };
                *applied += rng.gen_range(1..3);
                let batch = produced_batch(records, 1_000 + *next, rng.r#gen(), value);
                *next += records as i64;
                ops.push(Op::LogAppend(LOG_GROUPS[li], *applied, batch));
            }
            85..=88 => {
                let li = rng.gen_range(0..LOG_GROUPS.len());
                logs[li].1 += 1;
                ops.push(Op::MarkApplied(LOG_GROUPS[li], logs[li].1));
            }
            89..=90 => {
                let li = rng.gen_range(0..LOG_GROUPS.len());
                let at = rng.gen_range(0..=logs[li].0);
                ops.push(Op::DeletePrefix(LOG_GROUPS[li], at));
            }
            _ => {
                let li = rng.gen_range(0..LOG_GROUPS.len());
                ops.push(Op::LogFlush(LOG_GROUPS[li]));
            }
        }
    }
    ops
}

fn apply(e: &impl Engine, op: &Op) -> weir_core::Result<()> {
    match op {
        Op::RaftAppend(g, es) => e.raft_append(*g, es),
        Op::HardState(g, hs) => e.raft_set_hard_state(*g, hs),
        Op::ConfState(g, cs) => e.raft_set_conf_state(*g, cs),
        Op::Compact(g, at) => e.raft_compact(*g, *at),
        Op::RaftSync => e.raft_sync(),
        Op::LogAppend(g, index, batch) => e.log_append(*g, *index, 1, batch).map(|_| ()),
        Op::MarkApplied(g, index) => e.log_mark_applied(*g, *index),
        Op::DeletePrefix(g, at) => e.log_delete_prefix(*g, *at),
        Op::LogFlush(g) => e.log_flush(*g),
    }
}

/// Everything the Raft logs of the workload's groups hold, as comparable bytes.
fn raft_fingerprint(e: &impl Engine) -> anyhow::Result<Vec<u8>> {
    let mut fp = Vec::new();
    for g in (1..=RAFT_GROUPS).map(GroupId) {
        let first = e.raft_first_index(g)?;
        let last = e.raft_last_index(g)?;
        let st = e.raft_state(g)?;
        fp.extend_from_slice(format!("{g} {first}..={last} {st:?} ").as_bytes());
        fp.extend_from_slice(&e.raft_term(g, first - 1)?.to_le_bytes());
        for en in e.raft_entries(g, first, last + 1, None)? {
            fp.extend_from_slice(&en.index.to_le_bytes());
            fp.extend_from_slice(&en.term.to_le_bytes());
            fp.extend_from_slice(&crc(&en.data).to_le_bytes());
        }
    }
    Ok(fp)
}

/// What partition log `g` holds from `start` on (its own start offset when `None`),
/// as comparable bytes; `None` when `start` lies outside the log.
///
/// A prefix delete may be durable ahead of earlier appends (see the engine contract),
/// so the recovered log is compared with the model read from the recovered start.
fn log_fingerprint(
    e: &impl Engine,
    g: GroupId,
    start: Option<i64>,
) -> anyhow::Result<Option<Vec<u8>>> {
    let st = e.log_state(g)?;
    let start = start.unwrap_or(st.start_offset);
    if start < st.start_offset || start > st.next_offset {
        return Ok(None);
    }
    let mut fp = format!("{start} {} {}", st.next_offset, st.applied_index).into_bytes();
    for b in read_log(e, g, start)? {
        fp.extend_from_slice(&crc(&b).to_le_bytes());
    }
    Ok(Some(fp))
}

fn crc(b: &[u8]) -> u32 {
    // Not a checksum of anything stored: only a short stand-in for the bytes.
    b.iter().fold(0x811c_9dc5u32, |h, x| {
        (h ^ u32::from(*x)).wrapping_mul(0x0100_0193)
    })
}

/// The case: [`SEEDS`] children, each killed at a random point; see the module docs.
pub fn crash_sigkill_writer(h: &impl EngineHarness, case: &str) -> CaseResult {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        run_child(h, &spec);
    }
    let (guard, e) = h.create()?;
    if !e.capabilities().process_kill {
        return Ok(Outcome::NotApplicable(
            "engine does not keep data that outlives a process",
        ));
    }
    drop(e);
    drop(guard);
    for seed in 0..SEEDS {
        one_seed(h, case, seed).with_context(|| format!("seed {seed}"))?;
    }
    Ok(Outcome::Passed)
}

/// Kills the child when dropped, so that a failing parent leaves no process behind.
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn one_seed(h: &impl EngineHarness, case: &str, seed: u64) -> anyhow::Result<()> {
    let scratch = tempfile::tempdir()?;
    let dir = scratch.path().join("data");
    std::fs::create_dir_all(&dir)?;
    let ops = workload(seed);
    let syncs = ops
        .iter()
        .filter(|o| matches!(o, Op::RaftSync | Op::LogFlush(_)))
        .count();
    let mut rng = StdRng::seed_from_u64(seed ^ 0x6b69_6c6c);
    let kill_after = rng.gen_range(0..=syncs);
    let delay = Duration::from_micros(rng.gen_range(0..3_000));

    let exe = std::env::current_exe()?;
    let child = Command::new(exe)
        .args([case, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, format!("{}:{seed}", dir.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("spawning the writer")?;
    let mut child = Reap(child);
    let stdout = child.0.stdout.take().context("child stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(r) = line.strip_prefix(REPORT)
                && tx.send(r.trim().to_string()).is_err()
            {
                break;
            }
        }
    });

    // Last op index of each sync kind the child reported.
    let mut raft_synced: Option<usize> = None;
    let mut flushed: Vec<Option<usize>> = vec![None; LOG_GROUPS.len()];
    let mut reports = 0;
    let mut done = false;
    while reports < kill_after && !done {
        let r = rx
            .recv_timeout(CHILD_TIMEOUT)
            .context("the writer went silent")?;
        done = note_report(&r, &ops, &mut raft_synced, &mut flushed)?;
        reports += 1;
    }
    std::thread::sleep(delay);
    child.0.kill().ok();
    child.0.wait()?;
    // Reports that were already on their way count too.
    while let Ok(r) = rx.recv_timeout(Duration::from_millis(200)) {
        note_report(&r, &ops, &mut raft_synced, &mut flushed)?;
    }

    let e = h
        .open_dir(&dir)
        .map_err(|err| anyhow::anyhow!("reopening after SIGKILL: {err}"))?;
    let got_raft = raft_fingerprint(&e).context("reading the Raft logs after the kill")?;
    let got_logs: Vec<_> = LOG_GROUPS
        .iter()
        .map(|g| {
            log_fingerprint(&e, *g, None).with_context(|| format!("reading {g} after the kill"))
        })
        .collect::<anyhow::Result<_>>()?;
    let got_starts: Vec<i64> = LOG_GROUPS
        .iter()
        .map(|g| Ok(e.log_state(*g)?.start_offset))
        .collect::<anyhow::Result<_>>()?;
    for (g, start) in LOG_GROUPS.iter().zip(&got_starts) {
        let asked = ops
            .iter()
            .any(|op| matches!(op, Op::DeletePrefix(x, at) if x == g && at >= start));
        ensure!(
            *start == 0 || asked,
            "after SIGKILL, {g} starts at offset {start}, which no prefix delete asked for"
        );
    }

    let model = MemoryEngine::new();
    let need_raft = raft_synced.map_or(0, |i| i + 1);
    let mut raft_ok = need_raft == 0 && got_raft == raft_fingerprint(&model)?;
    let mut log_ok: Vec<bool> = LOG_GROUPS
        .iter()
        .zip(&got_logs)
        .zip(&flushed)
        .zip(&got_starts)
        .map(|(((g, got), f), s)| Ok(f.is_none() && *got == log_fingerprint(&model, *g, Some(*s))?))
        .collect::<anyhow::Result<_>>()?;
    // A multi-entry append may survive in part (the engine contract counts each
    // entry as a write), so the model steps through appends one entry at a time;
    // `prefix` counts the operations completed.
    let steps = ops.iter().enumerate().flat_map(|(i, op)| match op {
        Op::RaftAppend(g, es) => (0..es.len())
            .map(|k| {
                (
                    i,
                    k + 1 == es.len(),
                    Op::RaftAppend(*g, vec![es[k].clone()]),
                )
            })
            .collect::<Vec<_>>(),
        _ => vec![(i, true, op.clone())],
    });
    for (i, last, op) in steps {
        apply(&model, &op).with_context(|| format!("model op {i}"))?;
        let prefix = if last { i + 1 } else { i };
        if prefix >= need_raft && !raft_ok {
            raft_ok = got_raft == raft_fingerprint(&model)?;
        }
        for (li, g) in LOG_GROUPS.iter().enumerate() {
            if !log_ok[li] && prefix >= flushed[li].map_or(0, |f| f + 1) {
                log_ok[li] = got_logs[li] == log_fingerprint(&model, *g, Some(got_starts[li]))?;
            }
        }
    }
    ensure!(
        raft_ok,
        "after SIGKILL (kill after {kill_after} reports, last raft_sync at op {raft_synced:?}) \
         the Raft logs match no prefix of the writes that includes every synced one"
    );
    for (li, g) in LOG_GROUPS.iter().enumerate() {
        ensure!(
            log_ok[li],
            "after SIGKILL, partition log {g} (last flush at op {:?}) matches no prefix of \
             its writes that includes every flushed one",
            flushed[li]
        );
    }
    Ok(())
}

/// Records one report line; returns whether the child finished.
fn note_report(
    r: &str,
    ops: &[Op],
    raft_synced: &mut Option<usize>,
    flushed: &mut [Option<usize>],
) -> anyhow::Result<bool> {
    if r == "done" {
        return Ok(true);
    }
    if let Some(err) = r.strip_prefix("error ") {
        bail!("the writer failed: {err}");
    }
    let i: usize = r.parse().with_context(|| format!("report {r:?}"))?;
    match ops.get(i) {
        Some(Op::RaftSync) => *raft_synced = Some(i),
        Some(Op::LogFlush(g)) => {
            if let Some(li) = LOG_GROUPS.iter().position(|x| x == g) {
                flushed[li] = Some(i);
            }
        }
        _ => bail!("report of op {i}, which is no sync"),
    }
    Ok(false)
}

/// The child: opens the directory, runs the workload, reports each sync, and exits.
fn run_child(h: &impl EngineHarness, spec: &str) -> ! {
    let code = match child_writes(h, spec) {
        Ok(()) => {
            println!("{REPORT} done");
            0
        }
        Err(e) => {
            println!("{REPORT} error {e:#}");
            1
        }
    };
    std::process::exit(code);
}

fn child_writes(h: &impl EngineHarness, spec: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let (dir, seed) = spec.rsplit_once(':').context("bad child spec")?;
    let seed: u64 = seed.parse()?;
    let e = h
        .open_dir(Path::new(dir))
        .map_err(|err| anyhow::anyhow!("opening {dir}: {err}"))?;
    let mut out = std::io::stdout().lock();
    for (i, op) in workload(seed).iter().enumerate() {
        apply(&e, op).with_context(|| format!("op {i}"))?;
        if matches!(op, Op::RaftSync | Op::LogFlush(_)) {
            writeln!(out, "{REPORT} {i}")?;
            out.flush()?;
        }
    }
    Ok(())
}
