//! Cases for engines that declare [`Capabilities::unified_log`]: a stamped
//! batch is stored once, when its Raft entry is appended, and served to readers
//! only once the entry is applied (docs/write-path.md).

use weir_core::entry::TAG_PRODUCE_STAMPED;

use super::*;

/// A leader's view of a partition while it appends: the next offset to stamp
/// (what a unified-log engine's own crash tests can drive it with).
#[derive(Clone, Copy, Debug)]
pub struct Leader {
    /// The offset the next batch is stamped with.
    pub next_offset: i64,
}

impl Leader {
    /// A produce entry at `index` in `term` whose batch (of `records` records of
    /// `value` bytes) the leader stamps at its next offset; returns the entry
    /// and the stored batch.
    pub fn produce(
        &mut self,
        index: u64,
        term: u64,
        records: usize,
        value: usize,
    ) -> (Entry, Vec<u8>) {
        let b = produced_batch(records, 1_000 + index as i64, index * 7 + term, value);
        let stored = stamped(&b, self.next_offset, term as i32);
        self.next_offset += records as i64;
        let mut data = vec![TAG_PRODUCE_STAMPED];
        data.extend_from_slice(&stored);
        let e = Entry {
            index,
            term,
            entry_type: EntryType::EntryNormal,
            data: data.into(),
            ..Entry::default()
        };
        (e, stored)
    }
}

/// An entry without a batch (a new leader's empty entry, a compaction command).
fn marker(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        ..Entry::default()
    }
}

/// Entries appended, and the batches among them by Raft index.
pub type Written = (Vec<Entry>, Vec<(u64, Vec<u8>)>);

type Setup<H> = Result<(<H as EngineHarness>::Guard, <H as EngineHarness>::Engine), Outcome>;

fn unified_setup<H: EngineHarness>(h: &H) -> anyhow::Result<Setup<H>> {
    let (g, e) = h.create()?;
    if !e.capabilities().unified_log {
        return Ok(Err(Outcome::NotApplicable(
            "engine does not declare unified_log",
        )));
    }
    Ok(Ok((g, e)))
}

/// Appends `n` entries to group 1 from `first` in `term`, every third one
/// without a batch; returns them and the stored batches by index.
///
/// # Errors
/// What the engine's `raft_append` reports.
pub fn append_run(
    e: &impl Engine,
    leader: &mut Leader,
    first: u64,
    n: u64,
    term: u64,
    value: usize,
) -> anyhow::Result<Written> {
    let mut entries = Vec::new();
    let mut batches = Vec::new();
    for index in first..first + n {
        if index % 3 == 0 {
            entries.push(marker(index, term));
        } else {
            let (en, b) = leader.produce(index, term, 1 + (index % 4) as usize, value);
            entries.push(en);
            batches.push((index, b));
        }
    }
    e.raft_append(G1, &entries)?;
    Ok((entries, batches))
}

/// Applies entries `from..=to` of `entries` to group 1 (the node's apply:
/// `log_append` for a batch, `log_mark_applied` otherwise) and checks the
/// offsets given back.
///
/// # Errors
/// What the engine reports, or offsets other than the stamped ones.
pub fn apply(e: &impl Engine, entries: &[Entry], from: u64, to: u64) -> anyhow::Result<()> {
    for en in entries
        .iter()
        .filter(|en| en.index >= from && en.index <= to)
    {
        match weir_core::entry::stamped_batch(&en.data) {
            Some(b) => {
                let h = batch::BatchHeader::parse(b)?;
                let a = e.log_append(G1, en.index, en.term as i32, b)?;
                ensure_eq!(
                    (a.base_offset, a.last_offset),
                    (h.base_offset, h.last_offset()),
                    "entry {}: applied at the offsets the leader stamped",
                    en.index
                );
            }
            None => e.log_mark_applied(G1, en.index)?,
        }
    }
    Ok(())
}

/// The offset after the last batch of the entries up to `index`: where a leader
/// whose log ends at `index` stamps its next batch.
///
/// # Errors
/// When there is no such batch, or it does not parse.
pub fn offset_after(batches: &[(u64, Vec<u8>)], index: u64) -> anyhow::Result<i64> {
    let (_, b) = batches
        .iter()
        .rev()
        .find(|(i, _)| *i <= index)
        .context("no batch at or before that index")?;
    Ok(batch::BatchHeader::parse(b)?.last_offset() + 1)
}

/// The batches of entries up to `index`, in order.
pub fn batches_through(batches: &[(u64, Vec<u8>)], index: u64) -> Vec<Vec<u8>> {
    batches
        .iter()
        .filter(|(i, _)| *i <= index)
        .map(|(_, b)| b.clone())
        .collect()
}

/// Stored batches are served as entries at once, and to readers only once applied.
pub fn unified_batches_wait_for_apply(h: &impl EngineHarness) -> CaseResult {
    let (_g, e) = match unified_setup(h)? {
        Ok(x) => x,
        Err(o) => return Ok(o),
    };
    let mut leader = Leader { next_offset: 0 };
    let (entries, batches) = append_run(&e, &mut leader, 1, 12, 1, 300)?;
    e.raft_sync()?;
    same_entries(&e.raft_entries(G1, 1, 13, None)?, &entries)?;
    ensure_eq!(
        e.log_state(G1)?.next_offset,
        0,
        "nothing applied, nothing visible"
    );
    ensure!(
        e.log_read(G1, 0, 1 << 20)?.is_empty(),
        "an unapplied batch was served"
    );
    apply(&e, &entries, 1, 7)?;
    ensure_eq!(
        read_log(&e, G1, 0)?,
        batches_through(&batches, 7),
        "applied batches"
    );
    ensure!(
        matches!(
            e.log_read(G1, leader.next_offset, 1),
            Err(Error::OutOfRange { .. })
        ),
        "a read past the high watermark is out of range"
    );
    apply(&e, &entries, 8, 12)?;
    ensure_eq!(
        read_log(&e, G1, 0)?,
        batches_through(&batches, 12),
        "all batches"
    );
    same_entries(&e.raft_entries(G1, 1, 13, None)?, &entries)?;
    Ok(Outcome::Passed)
}

/// A conflicting suffix that spans segment (or table) boundaries is cut from the
/// partition log with the Raft log; the new entries' batches take its offsets.
pub fn unified_truncation_across_segments(h: &impl EngineHarness) -> CaseResult {
    let (g, e) = match unified_setup(h)? {
        Ok(x) => x,
        Err(o) => return Ok(o),
    };
    let mut leader = Leader { next_offset: 0 };
    // ~8 KiB batches, 60 entries: several segments of the suite's small files.
    let (old, old_batches) = append_run(&e, &mut leader, 1, 60, 1, 2_000)?;
    e.raft_sync()?;
    apply(&e, &old, 1, 5)?;
    // A new leader (term 2) had entries through 9 only; it overwrites from 10.
    let mut leader = Leader {
        next_offset: offset_after(&old_batches, 9)?,
    };
    let (new, new_batches) = append_run(&e, &mut leader, 10, 8, 2, 500)?;
    e.raft_sync()?;
    ensure_eq!(e.raft_last_index(G1)?, 17, "last index after the overwrite");
    let mut want = old[..9].to_vec();
    want.extend(new.iter().cloned());
    same_entries(&e.raft_entries(G1, 1, 18, None)?, &want)?;
    let mut all_batches: Vec<_> = old_batches.into_iter().filter(|(i, _)| *i <= 9).collect();
    all_batches.extend(new_batches);
    let e = if e.capabilities().reopen {
        let e = h.reopen(&g, e)?;
        same_entries(&e.raft_entries(G1, 1, 18, None)?, &want)?;
        e
    } else {
        e
    };
    apply(&e, &want, 6, 17)?;
    ensure_eq!(
        read_log(&e, G1, 0)?,
        batches_through(&all_batches, 17),
        "the log after the cut"
    );
    Ok(Outcome::Passed)
}

/// After a restart, entries appended and synced but not applied are still Raft
/// entries, and their batches are not served until they are applied again.
pub fn unified_restart_with_uncommitted_tail(h: &impl EngineHarness) -> CaseResult {
    let (g, e) = match unified_setup(h)? {
        Ok(x) => x,
        Err(o) => return Ok(o),
    };
    if !e.capabilities().reopen {
        return Ok(Outcome::NotApplicable("engine cannot be reopened"));
    }
    let mut leader = Leader { next_offset: 0 };
    let (entries, batches) = append_run(&e, &mut leader, 1, 20, 1, 700)?;
    e.raft_sync()?;
    apply(&e, &entries, 1, 8)?;
    e.log_flush(G1)?;
    let hw = e.log_state(G1)?.next_offset;
    let e = h.reopen(&g, e)?;
    let st = e.log_state(G1)?;
    ensure_eq!(
        (st.next_offset, st.applied_index),
        (hw, 8),
        "high watermark and applied index"
    );
    ensure_eq!(
        e.raft_last_index(G1)?,
        20,
        "the uncommitted tail is still in the Raft log"
    );
    same_entries(&e.raft_entries(G1, 1, 21, None)?, &entries)?;
    ensure_eq!(
        read_log(&e, G1, 0)?,
        batches_through(&batches, 8),
        "only applied batches"
    );
    apply(&e, &entries, 9, 20)?;
    ensure_eq!(
        read_log(&e, G1, 0)?,
        batches_through(&batches, 20),
        "all batches"
    );
    Ok(Outcome::Passed)
}

/// Raft log compaction forgets entries but keeps their batches; the start offset
/// may pass entries still in the Raft log, which keep serving their batches.
pub fn unified_compaction_and_start_offset(h: &impl EngineHarness) -> CaseResult {
    let (g, e) = match unified_setup(h)? {
        Ok(x) => x,
        Err(o) => return Ok(o),
    };
    let mut leader = Leader { next_offset: 0 };
    let (entries, batches) = append_run(&e, &mut leader, 1, 40, 1, 2_000)?;
    e.raft_sync()?;
    apply(&e, &entries, 1, 40)?;
    e.log_flush(G1)?;
    e.raft_compact(G1, 30)?;
    e.raft_sync()?;
    ensure_eq!(e.raft_first_index(G1)?, 31, "first index after compaction");
    ensure_eq!(
        read_log(&e, G1, 0)?,
        batches_through(&batches, 40),
        "data kept"
    );
    let end = leader.next_offset;
    e.log_delete_prefix(G1, end - 2)?;
    let e = if e.capabilities().reopen {
        h.reopen(&g, e)?
    } else {
        e
    };
    ensure_eq!(e.log_state(G1)?.start_offset, end - 2, "start offset");
    same_entries(&e.raft_entries(G1, 31, 41, None)?, &entries[30..])?;
    e.raft_compact(G1, 40)?;
    e.raft_sync()?;
    ensure!(
        matches!(e.log_read(G1, 0, 1), Err(Error::OutOfRange { .. })),
        "offsets below the start are not served"
    );
    Ok(Outcome::Passed)
}

/// An unstamped batch (`TAG_PRODUCE`: offsets decided at its apply) is copied at
/// apply, and a stamped one appended after it, even in a later append, waits
/// for it: both are served, in order, once applied.
pub fn unified_unstamped_batch_orders_later_ones(h: &impl EngineHarness) -> CaseResult {
    let (_g, e) = match unified_setup(h)? {
        Ok(x) => x,
        Err(o) => return Ok(o),
    };
    let plain = produced_batch(3, 1_000, 1, 100);
    let mut data = vec![weir_core::entry::TAG_PRODUCE];
    data.extend_from_slice(&plain);
    let unstamped = Entry {
        index: 1,
        term: 1,
        entry_type: EntryType::EntryNormal,
        data: data.into(),
        ..Entry::default()
    };
    e.raft_append(G1, std::slice::from_ref(&unstamped))?;
    // The leader stamps after the unstamped batch's offsets (0..=2).
    let mut leader = Leader { next_offset: 3 };
    let (stamped_entry, stamped_batch) = leader.produce(2, 1, 2, 100);
    e.raft_append(G1, std::slice::from_ref(&stamped_entry))?;
    e.raft_sync()?;
    let a = e.log_append(G1, 1, 1, &plain)?;
    ensure_eq!(
        (a.base_offset, a.last_offset),
        (0, 2),
        "the unstamped batch's offsets"
    );
    apply(&e, &[stamped_entry], 2, 2)?;
    ensure_eq!(
        read_log(&e, G1, 0)?,
        vec![stamped(&plain, 0, 1), stamped_batch],
        "both batches, in order"
    );
    Ok(Outcome::Passed)
}
