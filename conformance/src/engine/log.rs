//! Partition-log cases: offsets, reads by offset and size, timestamps, retention,
//! groups, reopen.

use super::*;

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

/// Removing a partition log while other threads read it succeeds (a read sees the
/// log or no log, never an error other than NotFound-like emptiness), and nothing of
/// it is left: not in `log_groups`, not after a reopen. (Deleting a topic under a
/// consumer used to fail with "partition log is in use" and stop the node.)
pub fn log_remove_while_read(h: &impl EngineHarness) -> CaseResult {
    use std::sync::atomic::{AtomicBool, Ordering};
    let (guard, e) = h.create()?;
    let e = std::sync::Arc::new(e);
    let b = produced_batch(3, 0, 7, 200);
    for round in 0..100u64 {
        let g = GroupId(1_000 + round);
        e.log_append(g, 1, 1, &b)?;
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (e, stop) = (e.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut reads = 0u64;
                    while !stop.load(Ordering::Relaxed) || reads == 0 {
                        if let Err(err) = e.log_read(g, 0, 1 << 20) {
                            return Err(format!("read during removal: {err}"));
                        }
                        let _ = e.log_state(g);
                        reads += 1;
                    }
                    Ok(())
                })
            })
            .collect();
        let removed = e.log_remove(g);
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            r.join()
                .map_err(|_| anyhow::anyhow!("a reader panicked"))?
                .map_err(|m| anyhow::anyhow!("round {round}: {m}"))?;
        }
        ensure!(
            removed.is_ok(),
            "round {round}: removal under readers failed: {removed:?}"
        );
        ensure!(
            !e.log_groups()?.contains(&g),
            "round {round}: {g} still listed"
        );
    }
    let e = std::sync::Arc::try_unwrap(e).map_err(|_| anyhow::anyhow!("engine still shared"))?;
    if e.capabilities().reopen {
        let e = h.reopen(&guard, e)?;
        ensure_eq!(
            e.log_groups()?,
            Vec::<GroupId>::new(),
            "groups after reopen"
        );
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
