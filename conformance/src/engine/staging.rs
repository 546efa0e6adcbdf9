//! Staged logs ([`StagingStore`]): a partition log received in a snapshot is
//! staged next to the live one, which stays whole and served, then installed
//! in one step (docs/snapshots.md). For engines that declare
//! [`Capabilities::snapshot_install`].

use weir_core::StagingStore;

use super::*;

/// `n` stamped batches of 3 records from offset `from`, tagged `tag`, back to
/// back (as a leader's `log_read` returns them).
fn stamped_run(from: i64, n: u64, tag: u64) -> Vec<u8> {
    let mut out = Vec::new();
    for k in 0..n {
        let b = produced_batch(3, 1000, tag + k, 50);
        out.extend_from_slice(&stamped(&b, from + 3 * k as i64, 2));
    }
    out
}

fn live_log(e: &impl Engine, batches: u64) -> anyhow::Result<()> {
    for i in 0..batches {
        e.log_append(G1, i + 1, 1, &produced_batch(2, 0, i, 40))?;
    }
    e.log_flush(G1)?;
    Ok(())
}

/// Staging leaves the live log as it is; installing makes the staged log the
/// partition log (its start, end and the applied index given), and appends
/// continue after it. A second install switches again.
pub fn stage_install_replaces_the_log(h: &impl EngineHarness) -> CaseResult {
    let (_g, e) = h.create()?;
    live_log(&e, 10)?;
    let before = e.log_state(G1)?;
    let old = read_log(&e, G1, 0)?;
    e.stage_begin(G1, 100)?;
    let run = stamped_run(100, 10, 7);
    ensure_eq!(e.stage_append(G1, &[])?, 100, "nothing appended");
    let (first, rest) = split_first_batches(&run, 4)?;
    ensure_eq!(e.stage_append(G1, &first)?, 112, "end after 4 batches");
    ensure_eq!(e.stage_append(G1, &rest)?, 130, "end after 10 batches");
    ensure_eq!(e.stage_end(G1)?, Some((100, 130)), "staged");
    ensure_eq!(e.log_state(G1)?, before, "live state while staging");
    ensure!(read_log(&e, G1, 0)? == old, "live log while staging");
    e.stage_install(G1, 77)?;
    ensure_eq!(
        e.log_state(G1)?,
        LogState {
            start_offset: 100,
            next_offset: 130,
            applied_index: 77
        },
        "state after install"
    );
    ensure_eq!(e.stage_end(G1)?, None, "nothing staged after install");
    ensure_eq!(read_log(&e, G1, 100)?.concat(), run, "installed batches");
    ensure!(
        matches!(e.log_read(G1, 99, 100), Err(Error::OutOfRange { .. })),
        "below the installed start"
    );
    let a = e.log_append(G1, 78, 3, &produced_batch(1, 0, 1, 10))?;
    ensure_eq!(a.base_offset, 130, "appends continue");
    // Again: the next install replaces this log in turn.
    e.stage_begin(G1, 131)?;
    let run2 = stamped_run(131, 2, 9);
    e.stage_append(G1, &run2)?;
    e.stage_install(G1, 90)?;
    ensure_eq!(e.log_state(G1)?.next_offset, 137, "second install");
    ensure_eq!(
        read_log(&e, G1, 131)?.concat(),
        run2,
        "second installed batches"
    );
    Ok(Outcome::Passed)
}

/// Staged batches must continue the staged log (gaps allowed, no overlap) and
/// pass their CRC; nothing is
/// stored otherwise. Without a staged log, appends and installs are refused;
/// dropping or beginning again discards what was staged; removing the
/// partition log removes its staged log.
pub fn stage_refuses_what_does_not_continue(h: &impl EngineHarness) -> CaseResult {
    let (_g, e) = h.create()?;
    live_log(&e, 3)?;
    ensure!(
        matches!(
            e.stage_append(G1, &stamped_run(0, 1, 1)),
            Err(Error::Invalid(_))
        ),
        "append without a staged log"
    );
    ensure!(
        matches!(e.stage_install(G1, 5), Err(Error::Invalid(_))),
        "install without a staged log"
    );
    e.stage_begin(G1, 50)?;
    ensure!(
        matches!(
            e.stage_append(G1, &stamped_run(49, 1, 1)),
            Err(Error::Invalid(_))
        ),
        "a batch that starts before the staged end"
    );
    let mut bad = stamped_run(50, 1, 1);
    let last = bad.len() - 1;
    bad[last] ^= 1;
    ensure!(
        e.stage_append(G1, &bad).is_err(),
        "a batch that fails its CRC"
    );
    ensure_eq!(e.stage_end(G1)?, Some((50, 50)), "nothing stored");
    e.stage_append(G1, &stamped_run(50, 2, 1))?;
    // A gap (a compacted log's removed batches) is fine; going back is not.
    ensure_eq!(
        e.stage_append(G1, &stamped_run(58, 1, 1))?,
        61,
        "after a gap"
    );
    ensure!(
        matches!(
            e.stage_append(G1, &stamped_run(59, 1, 1)),
            Err(Error::Invalid(_))
        ),
        "a batch that overlaps the staged end"
    );
    e.stage_begin(G1, 60)?;
    ensure_eq!(e.stage_end(G1)?, Some((60, 60)), "begun again");
    e.stage_append(G1, &stamped_run(60, 1, 1))?;
    e.stage_drop(G1)?;
    ensure_eq!(e.stage_end(G1)?, None, "dropped");
    e.stage_drop(G1)?;
    ensure_eq!(e.log_state(G1)?.next_offset, 6, "live log untouched");
    e.stage_begin(G1, 70)?;
    e.log_remove(G1)?;
    ensure_eq!(e.stage_end(G1)?, None, "removed with the log");
    Ok(Outcome::Passed)
}

/// An install is durable when it returns; a staged log that was not installed
/// comes back after a restart as a prefix of itself, or not at all, and the
/// live log is whole either way.
pub fn stage_install_survives_reopen(h: &impl EngineHarness) -> CaseResult {
    if let Some(o) = needs_reopen(h)? {
        return Ok(o);
    }
    let (guard, e) = h.create()?;
    live_log(&e, 5)?;
    e.stage_begin(G1, 20)?;
    let run = stamped_run(20, 6, 3);
    e.stage_append(G1, &run)?;
    e.stage_install(G1, 40)?;
    e.stage_begin(G1, 38)?;
    e.stage_append(G1, &stamped_run(38, 3, 5))?;
    let e = h.reopen(&guard, e)?;
    let want = LogState {
        start_offset: 20,
        next_offset: 38,
        applied_index: 40,
    };
    ensure_eq!(e.log_state(G1)?, want, "installed state after reopen");
    ensure_eq!(
        read_log(&e, G1, 20)?.concat(),
        run,
        "installed batches after reopen"
    );
    match e.stage_end(G1)? {
        None => {}
        Some((38, end)) => {
            ensure!(
                end <= 47 && (end - 38) % 3 == 0,
                "staged end {end} after reopen"
            );
            // The download resumes from there.
            let more = stamped_run(end, ((47 - end) / 3) as u64, 5);
            ensure_eq!(e.stage_append(G1, &more)?, 47, "resumed");
        }
        Some(other) => anyhow::bail!("staged log after reopen: {other:?}"),
    }
    Ok(Outcome::Passed)
}

/// The first `n` batches of `run`, and the rest.
fn split_first_batches(run: &[u8], n: usize) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let mut len = 0;
    for b in batch::iter_batches(run).take(n) {
        len += b?.1.len();
    }
    Ok((run[..len].to_vec(), run[len..].to_vec()))
}
