//! Crash points inside a suffix cut of a unified log (docs/write-path.md): a new
//! leader overwrites 51 uncommitted entries whose batches span several segments.
//! The overwrite is stopped at each of its syncs in turn (an injected fsync
//! failure: everything issued before that sync is on disk, nothing after), and
//! the directory reopened. Every stop must open, hold the applied prefix, and
//! hold a Raft log that is the old one or the new one from the cut on — never a
//! mix — whose batches are exactly what the partition log serves once applied.

use std::path::Path;

use anyhow::{Context, ensure};
use weir_conformance::engine::{
    Leader, append_run, apply, batches_through, offset_after, read_log,
};
use weir_core::eraftpb::Entry;
use weir_core::{GroupId, PartitionStore, RaftLogStore};
use weir_engine_segment::{Config, SegmentEngine};

const G1: GroupId = GroupId(1);

fn open(dir: &Path) -> weir_core::Result<SegmentEngine> {
    SegmentEngine::open(
        dir,
        Config {
            segment_bytes: 64 << 10,
            index_interval_bytes: 1024,
            wal_file_bytes: 1 << 20,
            ..Config::default()
        },
    )
}

struct Run {
    old: Vec<Entry>,
    new: Vec<Entry>,
    old_batches: Vec<(u64, Vec<u8>)>,
    new_batches: Vec<(u64, Vec<u8>)>,
    /// The high watermark after entries 1..=5 are applied.
    hw: i64,
    /// Whether the injected failure was reached (false: the overwrite finished).
    stopped: bool,
}

/// Old entries 1..=60 (term 1) synced, 1..=5 applied and flushed; then entries
/// 10..=17 of term 2 appended and synced, with the sync after `skip` failing.
fn run(dir: &Path, skip: u64) -> anyhow::Result<Run> {
    let e = open(dir)?;
    let mut leader = Leader { next_offset: 0 };
    let (old, old_batches) = append_run(&e, &mut leader, 1, 60, 1, 2_000)?;
    e.raft_sync()?;
    apply(&e, &old, 1, 5)?;
    e.log_flush(G1)?;
    let hw = e.log_state(G1)?.next_offset;
    let next = offset_after(&old_batches, 9)?;
    let mut leader = Leader { next_offset: next };
    e.inject_sync_failure_after(skip);
    let (new, new_batches, stopped) = match append_run(&e, &mut leader, 10, 8, 2, 500) {
        Ok((new, batches)) => (new, batches, e.raft_sync().is_err()),
        Err(_) => {
            let (new, batches) = replay_new(&mut Leader { next_offset: next });
            (new, batches, true)
        }
    };
    Ok(Run {
        old,
        new,
        old_batches,
        new_batches,
        hw,
        stopped,
    })
}

/// The term-2 entries `append_run` would have made (it failed part way).
fn replay_new(leader: &mut Leader) -> (Vec<Entry>, Vec<(u64, Vec<u8>)>) {
    let (mut entries, mut batches) = (Vec::new(), Vec::new());
    for index in 10..18u64 {
        if index % 3 == 0 {
            entries.push(Entry {
                index,
                term: 2,
                ..Entry::default()
            });
        } else {
            let (en, b) = leader.produce(index, 2, 1 + (index % 4) as usize, 500);
            entries.push(en);
            batches.push((index, b));
        }
    }
    (entries, batches)
}

fn check(dir: &Path, r: &Run) -> anyhow::Result<()> {
    let e = open(dir).context("a crash inside a cut must reopen")?;
    let st = e.log_state(G1)?;
    ensure!(
        (st.next_offset, st.applied_index) == (r.hw, 5),
        "high watermark and applied index {:?}, want ({}, 5)",
        (st.next_offset, st.applied_index),
        r.hw
    );
    let last = e.raft_last_index(G1)?;
    ensure!(last >= 9, "synced common entries lost: last index {last}");
    let got = e.raft_entries(G1, 1, last + 1, None)?;
    let is_new = got.get(9).is_some_and(|en| en.term == 2);
    let want: Vec<Entry> = if is_new {
        r.old[..9].iter().chain(&r.new).cloned().collect()
    } else {
        r.old.clone()
    };
    ensure!(got.len() <= want.len(), "more entries than written");
    for (g, w) in got.iter().zip(&want) {
        ensure!(
            g.index == w.index && g.term == w.term && g.data == w.data,
            "entry {} differs from the {} log's",
            g.index,
            if is_new { "new" } else { "old" }
        );
    }
    apply(&e, &got, 6, last)?;
    let batches: Vec<_> = if is_new {
        r.old_batches
            .iter()
            .filter(|(i, _)| *i <= 9)
            .chain(&r.new_batches)
            .cloned()
            .collect()
    } else {
        r.old_batches.clone()
    };
    ensure!(
        read_log(&e, G1, 0)? == batches_through(&batches, last),
        "the partition log does not hold exactly the applied entries' batches"
    );
    Ok(())
}

#[test]
fn every_sync_of_an_overwrite_is_a_safe_crash_point() -> anyhow::Result<()> {
    for skip in 0..40u64 {
        let dir = tempfile::tempdir()?;
        let r = run(dir.path(), skip)?;
        check(dir.path(), &r).with_context(|| format!("stopped at sync {skip}"))?;
        if !r.stopped {
            // The overwrite finished: the new log must be whole.
            let e = open(dir.path())?;
            ensure!(
                e.raft_last_index(G1)? == 17,
                "the finished overwrite's last index"
            );
            // `skip` stops came before this run, which finished.
            eprintln!("{skip} crash points inside the overwrite, each reopened and checked");
            ensure!(skip >= 4, "only {skip} crash points were reached");
            return Ok(());
        }
    }
    anyhow::bail!("the overwrite never finished")
}
