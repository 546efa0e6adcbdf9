//! Retention cases: [`PartitionStore::log_retention_point`] by time and by size,
//! whatever units the engine releases (segments, batches).

use weir_core::retention::Retention;

use super::*;

/// Batches in the retention cases: 10 records of 1,000 bytes each (about 10 KiB),
/// batch `k` holding offsets `10k ..= 10k+9` and timestamps `1000+100k ..= +9`.
const BATCHES: u64 = 60;

fn ts_of_batch(k: u64) -> i64 {
    1000 + 100 * k as i64
}

/// An engine holding the retention cases' log in G1, and the stored size of
/// each batch.
fn filled<E: Engine>(e: &E) -> anyhow::Result<Vec<u64>> {
    let mut sizes = Vec::new();
    for k in 0..BATCHES {
        let b = produced_batch(10, ts_of_batch(k), k, 1000);
        sizes.push(b.len() as u64);
        e.log_append(G1, k + 1, 1, &b)?;
    }
    e.log_flush(G1)?;
    Ok(sizes)
}

fn by_time(before: i64) -> Retention {
    Retention {
        expired_before: Some(before),
        max_bytes: None,
    }
}

fn by_size(keep: u64) -> Retention {
    Retention {
        expired_before: None,
        max_bytes: Some(keep),
    }
}

/// `point` is where a batch starts (or the end): deleting up to it and reading
/// from it gives a batch based there.
fn check_boundary(e: &(impl Engine + ?Sized), point: i64) -> anyhow::Result<()> {
    e.log_delete_prefix(G1, point)?;
    ensure_eq!(e.log_state(G1)?.start_offset, point, "start after delete");
    let next = e.log_state(G1)?.next_offset;
    if point < next {
        let bytes = e.log_read(G1, point, 1)?;
        let (h, _) = batch::iter_batches(&bytes)
            .next()
            .ok_or_else(|| anyhow::anyhow!("nothing read at {point}"))??;
        ensure_eq!(h.base_offset, point, "retention point is a batch boundary");
    }
    Ok(())
}

/// Retention by time never releases a record newer than the cutoff, releases
/// something once most of the log is older, everything once all of it is, and
/// nothing with no limit; asking again after the delete gives the same point.
pub fn log_retention_by_time(h: &impl EngineHarness) -> CaseResult {
    let (_g, e) = h.create()?;
    filled(&e)?;
    let end = 10 * BATCHES as i64;
    ensure_eq!(
        e.log_retention_point(G1, Retention::default())?,
        0,
        "no limit"
    );
    ensure_eq!(e.log_retention_point(G1, by_time(0))?, 0, "nothing expired");
    ensure_eq!(
        e.log_retention_point(G1, by_time(ts_of_batch(0) + 9))?,
        0,
        "first batch's last record not expired"
    );
    // Batches 0..=44 have expired; batch 45 (offset 450) has not.
    let cutoff = ts_of_batch(45);
    let p = e.log_retention_point(G1, by_time(cutoff))?;
    ensure!(
        p > 0 && p <= 450,
        "three quarters expired: point {p} must release something and stop by offset 450"
    );
    check_boundary(&e, p)?;
    ensure_eq!(
        e.log_retention_point(G1, by_time(cutoff))?,
        p,
        "asked again after the delete"
    );
    let all = e.log_retention_point(G1, by_time(ts_of_batch(BATCHES) + 1))?;
    ensure_eq!(all, end, "everything expired");
    check_boundary(&e, all)?;
    let a = e.log_append(G1, BATCHES + 1, 1, &produced_batch(1, 0, 1, 10))?;
    ensure_eq!(a.base_offset, end, "appends continue after the end");
    Ok(Outcome::Passed)
}

/// Retention by size keeps at least the limit, releases something once the log
/// is three times larger, nothing under the limit, and gives the same point
/// after the delete (and after a reopen, for engines that reopen).
pub fn log_retention_by_size(h: &impl EngineHarness) -> CaseResult {
    let (guard, e) = h.create()?;
    let sizes = filled(&e)?;
    let total: u64 = sizes.iter().sum();
    let kept_from = |p: i64| -> u64 { sizes[(p / 10) as usize..].iter().sum() };
    ensure_eq!(
        e.log_retention_point(G1, by_size(total))?,
        0,
        "exactly at the limit"
    );
    ensure_eq!(
        e.log_retention_point(G1, by_size(2 * total))?,
        0,
        "under the limit"
    );
    let keep = total / 3;
    let p = e.log_retention_point(G1, by_size(keep))?;
    ensure!(p % 10 == 0, "point {p} inside a batch");
    ensure!(
        kept_from(p) >= keep,
        "point {p} keeps {} bytes, below the limit of {keep}",
        kept_from(p)
    );
    ensure!(
        kept_from(p) <= keep + total / 3,
        "point {p} keeps {} bytes of {total} with a limit of {keep}: too little released",
        kept_from(p)
    );
    check_boundary(&e, p)?;
    e.log_flush(G1)?;
    ensure_eq!(
        e.log_retention_point(G1, by_size(keep))?,
        p,
        "asked again after the delete"
    );
    if e.capabilities().reopen {
        let e = h.reopen(&guard, e)?;
        ensure_eq!(e.log_state(G1)?.start_offset, p, "start after reopen");
        ensure_eq!(
            e.log_retention_point(G1, by_size(keep))?,
            p,
            "asked again after a reopen"
        );
        ensure_eq!(
            read_log(&e, G1, p)?.len() as u64,
            BATCHES - (p / 10) as u64,
            "what is kept reads"
        );
    }
    Ok(Outcome::Passed)
}
