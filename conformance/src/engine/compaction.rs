//! Key compaction ([`CompactionStore`]): the cleaner's passes
//! ([`weir_core::compaction::clean_log`]) over an engine's log keep the latest
//! record of every key at its offset, and each unit is replaced whole. For
//! engines that declare [`Capabilities::key_compaction`].

use std::collections::BTreeMap;

use weir_core::CompactionStore;
use weir_core::compaction::{CleanLimits, CleanPolicy, clean_log};
use weir_core::retention::LogShape;

use super::*;

/// One record of the model: key, value (`None`: a tombstone), timestamp.
type Rec = (u8, Option<Vec<u8>>, i64);

/// Small units, so that a few hundred KiB make many of them.
fn small_units(e: &impl Engine) -> anyhow::Result<()> {
    e.log_configure(
        G1,
        LogShape {
            segment_bytes: Some(64 << 10),
            segment_ms: None,
        },
    )?;
    Ok(())
}

/// A batch of `recs`, timestamps as given.
fn keyed_batch(recs: &[Rec]) -> Vec<u8> {
    let mut b = BatchBuilder::new(recs[0].2);
    for (k, v, ts) in recs {
        b = b.record_at(*ts, Some(&[*k]), v.as_deref(), &[]);
    }
    b.build()
}

/// Every record of the log as (offset, key, value, timestamp), in log order.
fn log_records(e: &impl Engine) -> anyhow::Result<Vec<(i64, Rec)>> {
    let start = e.log_state(G1)?.start_offset;
    let mut out = Vec::new();
    for b in read_log(e, G1, start)? {
        for r in batch::decode_records(&b)? {
            let key = r.key.as_deref().and_then(|k| k.first().copied());
            let key = key.context("a record without its key")?;
            out.push((r.offset, (key, r.value.map(|v| v.to_vec()), r.timestamp)));
        }
    }
    Ok(out)
}

fn policy(tombstones_before: i64) -> CleanPolicy {
    CleanPolicy {
        tombstones_before,
        lag_before: i64::MAX,
        min_dirty_ratio: 0.0,
    }
}

/// Checks the log after a pass against every record ever appended
/// (`appended`, by offset): offsets only grow and each record read is the one
/// appended at its offset; each key's last record is the latest appended (or,
/// for a tombstone older than `tombstones_before`, may be gone); nothing at or
/// after `first_dirty` was removed; below it each key appears once.
fn check_cleaned(
    e: &impl Engine,
    appended: &BTreeMap<i64, Rec>,
    first_dirty: i64,
    tombstones_before: i64,
) -> anyhow::Result<usize> {
    let got = log_records(e)?;
    let mut prev = -1;
    let mut last_of: BTreeMap<u8, (i64, &Rec)> = BTreeMap::new();
    let mut below: BTreeMap<u8, i64> = BTreeMap::new();
    for (o, r) in &got {
        ensure!(*o > prev, "offset {o} after {prev}: offsets must only grow");
        prev = *o;
        ensure!(
            appended.get(o) == Some(r),
            "offset {o} reads {r:?}, but {:?} was appended there",
            appended.get(o)
        );
        last_of.insert(r.0, (*o, r));
        if *o < first_dirty
            && let Some(other) = below.insert(r.0, *o)
        {
            bail!(
                "key {} appears at {other} and {o}, both below the cleaned point {first_dirty}",
                r.0
            );
        }
    }
    let mut latest: BTreeMap<u8, (i64, &Rec)> = BTreeMap::new();
    for (o, r) in appended {
        latest.insert(r.0, (*o, r));
    }
    for (k, (o, r)) in &latest {
        match last_of.get(k) {
            Some((go, _)) => ensure!(
                go == o,
                "key {k}: last record at {go}, but the latest appended is at {o}"
            ),
            None => ensure!(
                r.1.is_none() && r.2 < tombstones_before,
                "key {k} is gone, but its latest record (offset {o}) is {r:?}"
            ),
        }
    }
    let kept: std::collections::BTreeSet<i64> = got.iter().map(|(o, _)| *o).collect();
    for o in appended.range(first_dirty..).map(|(o, _)| *o) {
        ensure!(
            kept.contains(&o),
            "offset {o}, at or after the cleaned point {first_dirty}, was removed"
        );
    }
    Ok(got.len())
}

/// Random keys, values and tombstones over rounds of appends and cleaning
/// passes: after each pass the log matches the model (see `check_cleaned`),
/// its start and end offsets stay, and passes actually shrink it. The
/// cleaned log survives a reopen.
pub fn compact_model_random(h: &impl EngineHarness) -> CaseResult {
    let (guard, mut e) = h.create()?;
    small_units(&e)?;
    let mut rng = StdRng::seed_from_u64(0x00c0_ffee);
    let mut appended: BTreeMap<i64, Rec> = BTreeMap::new();
    let (mut index, mut first_dirty, mut removed) = (0u64, 0i64, 0u64);
    let mut tombstones_before = 0;
    for round in 0..6i64 {
        for i in 0..300 {
            let n = rng.gen_range(1..=4);
            let recs: Vec<Rec> = (0..n)
                .map(|j| {
                    let key = rng.gen_range(0..40u8);
                    let value = (!rng.gen_bool(0.1)).then(|| {
                        let len = rng.gen_range(20..200);
                        (0..len).map(|_| rng.r#gen()).collect()
                    });
                    (key, value, round * 10_000 + i * 4 + j)
                })
                .collect();
            index += 1;
            let a = e.log_append(G1, index, 1, &keyed_batch(&recs))?;
            for (j, r) in recs.into_iter().enumerate() {
                appended.insert(a.base_offset + j as i64, r);
            }
        }
        e.log_flush(G1)?;
        let before = e.log_state(G1)?;
        // Tombstones of the rounds before the last one may go.
        tombstones_before = (round - 1) * 10_000;
        let pass = clean_log(
            &e,
            G1,
            &policy(tombstones_before),
            first_dirty,
            &CleanLimits::default(),
            &mut |_| Ok(()),
        )?;
        ensure!(
            pass.first_dirty >= first_dirty,
            "the cleaned point went back"
        );
        first_dirty = pass.first_dirty;
        removed += pass.records_removed;
        ensure_eq!(
            (e.log_state(G1)?.start_offset, e.log_state(G1)?.next_offset),
            (before.start_offset, before.next_offset),
            "cleaning moves neither end of the log"
        );
        let left = check_cleaned(&e, &appended, first_dirty, tombstones_before)?;
        ensure_eq!(
            left as u64,
            appended.len() as u64 - removed,
            "records left after round {round}"
        );
    }
    ensure!(first_dirty > 0, "passes cleaned nothing");
    ensure!(
        removed * 2 > appended.len() as u64,
        "40 keys over {} records: most should go, but {removed} did",
        appended.len()
    );
    // Appends continue after cleaning, and a reopen keeps the cleaned log.
    index += 1;
    let a = e.log_append(G1, index, 1, &keyed_batch(&[(1, Some(vec![7]), 99_999)]))?;
    appended.insert(a.base_offset, (1, Some(vec![7]), 99_999));
    e.log_flush(G1)?;
    if e.capabilities().reopen {
        e = h.reopen(&guard, e)?;
        check_cleaned(&e, &appended, first_dirty, tombstones_before)?;
    }
    Ok(Outcome::Passed)
}

/// A replacement is swapped in only if the unit is still what was listed:
/// after the start offset moved past it, committing changes nothing and
/// answers false; so does committing a replacement never begun. Batches added
/// must lie within the unit, in order.
pub fn compact_commit_only_the_unit_listed(h: &impl EngineHarness) -> CaseResult {
    let (_g, e) = h.create()?;
    small_units(&e)?;
    for i in 0..400u64 {
        let recs = vec![((i % 5) as u8, Some(vec![i as u8; 300]), i as i64)];
        e.log_append(G1, i + 1, 1, &keyed_batch(&recs))?;
    }
    e.log_flush(G1)?;
    let units = e.log_clean_units(G1)?;
    ensure!(
        units.len() >= 2,
        "{} units of 120 KiB in 64 KiB units",
        units.len()
    );
    let u = units[0];
    ensure!(
        u.base == 0 && u.next > u.base && u.bytes > 0,
        "first unit {u:?}"
    );
    let first = read_log(&e, G1, 0)?.remove(0);
    e.clean_begin(G1, &u)?;
    ensure!(
        matches!(
            e.clean_append(G1, &stamped(&keyed_batch(&[(1, None, 0)]), u.next, 1)),
            Err(Error::Invalid(_))
        ),
        "a batch past the unit"
    );
    e.clean_append(G1, &first)?;
    ensure!(
        matches!(e.clean_append(G1, &first), Err(Error::Invalid(_))),
        "a batch out of order"
    );
    let before = read_log(&e, G1, 0)?;
    e.log_delete_prefix(G1, u.next)?;
    let trimmed = read_log(&e, G1, u.next)?;
    ensure!(
        !e.clean_commit(G1)?,
        "commit after the start moved past the unit"
    );
    ensure_eq!(
        read_log(&e, G1, u.next)?,
        trimmed,
        "the log after a refused commit"
    );
    ensure!(!e.clean_commit(G1)?, "commit with nothing begun");
    ensure!(before.len() > trimmed.len(), "the prefix went");
    Ok(Outcome::Passed)
}

/// A replacement dropped before its commit (the process stops) leaves the
/// log as it was; a committed one is there after a reopen.
pub fn compact_replacement_survives_reopen(h: &impl EngineHarness) -> CaseResult {
    if let Some(o) = needs_reopen(h)? {
        return Ok(o);
    }
    let (guard, e) = h.create()?;
    small_units(&e)?;
    for i in 0..400u64 {
        let recs = vec![((i % 5) as u8, Some(vec![i as u8; 300]), i as i64)];
        e.log_append(G1, i + 1, 1, &keyed_batch(&recs))?;
    }
    e.log_flush(G1)?;
    let all = read_log(&e, G1, 0)?;
    let u = e.log_clean_units(G1)?[0];
    // Begun and half written, never committed.
    e.clean_begin(G1, &u)?;
    e.clean_append(G1, &all[0])?;
    let e = h.reopen(&guard, e)?;
    // The node configures a group's shape again after every start.
    small_units(&e)?;
    ensure_eq!(
        read_log(&e, G1, 0)?,
        all,
        "the log after an uncommitted replacement"
    );
    // Committed: the unit keeps only its last batch.
    let u = e.log_clean_units(G1)?[0];
    let in_unit: Vec<&Vec<u8>> = all
        .iter()
        .filter(|b| batch::verify(b).is_ok_and(|h| h.base_offset < u.next))
        .collect();
    let last = in_unit.last().context("a batch in the first unit")?;
    e.clean_begin(G1, &u)?;
    e.clean_append(G1, last)?;
    ensure!(e.clean_commit(G1)?, "the commit");
    let want: Vec<Vec<u8>> = all
        .iter()
        .filter(|b| batch::verify(b).is_ok_and(|h| h.base_offset >= u.next))
        .cloned()
        .collect();
    let mut expect = vec![(*last).clone()];
    expect.extend(want);
    ensure_eq!(read_log(&e, G1, 0)?, expect, "the log after the commit");
    let e = h.reopen(&guard, e)?;
    ensure_eq!(
        read_log(&e, G1, 0)?,
        expect,
        "the log after the commit and a reopen"
    );
    // Reads from inside the gap start at the batch after it.
    let gap = batch::verify(last)?.base_offset - 1;
    if gap >= 0 {
        let b = e.log_read(G1, gap, 1)?;
        ensure_eq!(b.to_vec(), (*last).clone(), "a read from inside the gap");
    }
    Ok(Outcome::Passed)
}
