//! Key compaction of partition logs (`cleanup.policy=compact`,
//! docs/compaction.md): the engine contract [`CompactionStore`], which engines
//! that declare [`Capabilities::key_compaction`] implement, and one cleaning pass
//! over a log ([`clean_log`]), which the node's cleaner runs on every replica on
//! its own schedule.
//!
//! A pass maps each key of the log's *dirty* section (what was appended since
//! the last pass) to its latest offset, then rewrites the log's cleanable units
//! from the start, keeping a record only if no later record of its key lies in
//! the mapped section, and dropping tombstones older than `delete.retention.ms`.
//! Offsets never change: a thinned batch keeps its base offset and
//! `lastOffsetDelta`, and a batch left empty leaves a gap that readers step over.
//!
//! # The engine's part
//!
//! The engine decides what may be rewritten ([`CompactionStore::log_clean_units`]):
//! whole units of its storage (segments, runs of batches) below the unit being
//! written and below every batch a Raft entry still refers to (unified logs).
//! A unit is replaced whole and atomically: [`clean_begin`], any number of
//! [`clean_append`], then [`clean_commit`], which swaps the new batches in only if
//! the unit is still what was listed (retention, a snapshot install or a removal
//! may have changed the log meanwhile; then nothing changes and it answers false).
//! A crash leaves the old unit or the new one, never a mix. A replacement may run
//! while the same group's log is appended to and read; only one replacement per
//! group runs at a time.
//!
//! [`Capabilities::key_compaction`]: crate::Capabilities::key_compaction
//! [`clean_begin`]: CompactionStore::clean_begin
//! [`clean_append`]: CompactionStore::clean_append
//! [`clean_commit`]: CompactionStore::clean_commit

use std::collections::HashMap;

use crate::batch::{self, Thinned};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::ids::{GroupId, Offset};

/// A unit of a partition log that the cleaner may rewrite whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CleanUnit {
    /// The first offset the unit covers (its first batch may start later).
    pub base: Offset,
    /// The offset after the last one it covers (where the next unit starts).
    pub next: Offset,
    /// Bytes it holds.
    pub bytes: u64,
    /// The largest record timestamp in it (-1 when none has one).
    pub max_timestamp: i64,
}

/// Partition-log units rewritten by the cleaner. The defaults refuse every call
/// with [`Error::Unsupported`] (engines that do not declare
/// [`Capabilities::key_compaction`](crate::Capabilities::key_compaction)).
pub trait CompactionStore: Send + Sync {
    /// The units of `group`'s log that may be rewritten, oldest first: sealed
    /// (never the one being appended to), wholly below the high watermark and
    /// below every batch a Raft entry still refers to. Units that lie wholly
    /// below the start offset are left out.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Corrupt`] on a failed read.
    fn log_clean_units(&self, group: GroupId) -> Result<Vec<CleanUnit>> {
        let _ = group;
        Err(unsupported())
    }

    /// Starts replacing `unit` of `group`'s log (dropping a replacement begun
    /// before and not committed).
    ///
    /// # Errors
    /// I/O failure (nothing of the log changes).
    fn clean_begin(&self, group: GroupId, unit: &CleanUnit) -> Result<()> {
        let _ = (group, unit);
        Err(unsupported())
    }

    /// Adds whole, verified, stamped batches (back to back in `batches`) to the
    /// replacement, in offset order, each within the unit and after the last one
    /// added.
    ///
    /// # Errors
    /// [`Error::Invalid`] when there is no replacement or a batch breaks those
    /// rules ([`check_replacement`]); I/O failure.
    fn clean_append(&self, group: GroupId, batches: &[u8]) -> Result<()> {
        let _ = (group, batches);
        Err(unsupported())
    }

    /// Swaps the replacement in for its unit, atomically and durably, and
    /// answers true; answers false (and drops the replacement) when the unit is
    /// no longer as listed.
    ///
    /// # Errors
    /// [`Error::Invalid`] when there is no replacement; a failed write or sync
    /// poisons the engine.
    fn clean_commit(&self, group: GroupId) -> Result<bool> {
        let _ = group;
        Err(unsupported())
    }
}

fn unsupported() -> Error {
    Error::Unsupported("this engine does not compact partition logs by key".into())
}

/// Checks batches added to a replacement of `unit` whose last batch so far
/// ended before `after`; returns each batch's (base offset, bytes) and the
/// new `after`. Shared by engines so that they refuse the same inputs.
///
/// # Errors
/// [`Error::Invalid`] naming the first problem.
pub fn check_replacement<'a>(
    group: GroupId,
    unit: &CleanUnit,
    after: Offset,
    batches: &'a [u8],
) -> Result<(crate::staging::StagedBatches<'a>, Offset)> {
    let mut out = Vec::new();
    let mut at = after;
    for b in batch::iter_batches(batches) {
        let (h, bytes) = b?;
        if h.base_offset < at || h.last_offset() >= unit.next {
            return Err(Error::Invalid(format!(
                "{group}: a cleaned batch at offsets {}..={} is not within {}..{} after {at}",
                h.base_offset,
                h.last_offset(),
                unit.base,
                unit.next
            )));
        }
        at = h.last_offset() + 1;
        out.push((h.base_offset, bytes));
    }
    Ok((out, at))
}

/// Cuts a log into cleanable units of about `unit_bytes` for engines without
/// segments of their own: `batches` are each batch's (base offset, last offset,
/// bytes, max timestamp), in order. The unit holding the last batch is the one
/// being written and is left out, as are batches wholly below `start`.
pub fn units_by_size(
    batches: impl IntoIterator<Item = (Offset, Offset, u64, i64)>,
    start: Offset,
    unit_bytes: u64,
) -> Vec<CleanUnit> {
    let mut units: Vec<CleanUnit> = Vec::new();
    let mut open: Option<CleanUnit> = None;
    for (base, last, bytes, max_ts) in batches {
        if last < start {
            continue;
        }
        let u = open.get_or_insert(CleanUnit {
            base,
            next: base,
            bytes: 0,
            max_timestamp: -1,
        });
        u.next = last + 1;
        u.bytes += bytes;
        u.max_timestamp = u.max_timestamp.max(max_ts);
        if u.bytes >= unit_bytes {
            units.extend(open.take());
        }
    }
    // Units meet: each one covers up to the next one's first batch.
    for i in 1..units.len() {
        units[i - 1].next = units[i].base;
    }
    if open.is_none() {
        // The last unit closed on the last batch: it is the one being written.
        units.pop();
    }
    units
}

/// What a topic's compaction asks of a pass, at one moment.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CleanPolicy {
    /// Tombstones timestamped before this (ms; now − `delete.retention.ms`) may go.
    pub tombstones_before: i64,
    /// Units holding a record timestamped at or after this (ms; now −
    /// `min.compaction.lag.ms`) are not cleaned yet, nor any after them.
    pub lag_before: i64,
    /// A pass runs only when the dirty section holds at least this share of the
    /// cleanable bytes (`min.cleanable.dirty.ratio`).
    pub min_dirty_ratio: f64,
}

/// Bounds on a pass's resources.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CleanLimits {
    /// Bytes the key map may take (keys plus a fixed cost per key); the pass
    /// maps at least one batch and stops mapping where the map is full.
    pub map_bytes: usize,
    /// What a compressed batch may expand to.
    pub max_decompressed: usize,
    /// Bytes read per engine call.
    pub read_bytes: usize,
}

impl Default for CleanLimits {
    fn default() -> Self {
        CleanLimits {
            map_bytes: 64 << 20,
            max_decompressed: 64 << 20,
            read_bytes: 1 << 20,
        }
    }
}

/// Bytes the key map counts per key beyond the key itself.
const MAP_ENTRY_COST: usize = 64;

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pass {
    /// Where the next pass's dirty section starts (everything below was mapped).
    pub first_dirty: Offset,
    /// Units rewritten.
    pub units_rewritten: usize,
    /// Records removed.
    pub records_removed: u64,
    /// Bytes read (mapping and rewriting).
    pub bytes_read: u64,
    /// Bytes of the rewritten units before and after.
    pub bytes_before: u64,
    /// See `bytes_before`.
    pub bytes_after: u64,
}

/// Runs one cleaning pass over `group`'s log, whose dirty section starts at
/// `first_dirty` (the start of the log when unknown). `pace` is called with the
/// bytes of every read and write, to throttle the pass or stop it (by
/// returning an error, which the pass returns).
///
/// # Errors
/// Engine errors, [`Error::Invalid`] for a stored batch the cleaner cannot
/// read, and `pace`'s errors. The log is left whole whatever fails: each unit
/// is replaced atomically or not at all.
pub fn clean_log<E: Engine + ?Sized>(
    engine: &E,
    group: GroupId,
    policy: &CleanPolicy,
    first_dirty: Offset,
    limits: &CleanLimits,
    pace: &mut dyn FnMut(u64) -> Result<()>,
) -> Result<Pass> {
    let state = engine.log_state(group)?;
    let start = state.start_offset;
    // The log's last record stays whatever the rules say, so that its batch
    // still ends the log (a snapshot of the log is complete when it reaches it).
    let last = state.next_offset - 1;
    let units: Vec<CleanUnit> = engine
        .log_clean_units(group)?
        .into_iter()
        .take_while(|u| u.max_timestamp < policy.lag_before)
        .collect();
    let first_dirty = first_dirty.max(start);
    let mut pass = Pass {
        first_dirty,
        ..Pass::default()
    };
    let Some(bound) = units.last().map(|u| u.next) else {
        return Ok(pass);
    };
    if first_dirty >= bound {
        return Ok(pass);
    }
    let total: u64 = units.iter().map(|u| u.bytes).sum();
    let dirty: u64 = units
        .iter()
        .filter(|u| u.next > first_dirty)
        .map(|u| u.bytes)
        .sum();
    if (dirty as f64) < policy.min_dirty_ratio * total as f64 {
        return Ok(pass);
    }

    // Map each key of the dirty section to its latest offset.
    let mut map: HashMap<Box<[u8]>, Offset> = HashMap::new();
    let mut map_cost = 0usize;
    let mut map_end = first_dirty;
    let mut chunks = Chunks::new(engine, group, first_dirty, bound, limits.read_bytes);
    'mapping: while let Some(chunk) = chunks.next(&mut pass)? {
        pace(chunk.len() as u64)?;
        for b in batch::iter_batches(&chunk) {
            let (h, bytes) = b?;
            if map_end > first_dirty && map_cost >= limits.map_bytes {
                break 'mapping;
            }
            if !h.is_control() {
                batch::for_each_record(bytes, &h, limits.max_decompressed, &mut |r| {
                    if let Some(k) = r.key {
                        match map.get_mut(k) {
                            Some(o) => *o = r.offset,
                            None => {
                                map_cost += k.len() + MAP_ENTRY_COST;
                                map.insert(k.into(), r.offset);
                            }
                        }
                    }
                })?;
            }
            map_end = h.last_offset() + 1;
        }
        if chunks.done() {
            map_end = bound;
        }
    }
    let map_end = map_end.min(bound);
    pass.first_dirty = map_end;

    // Rewrite every unit that holds a record the map or the tombstone rule removes.
    for unit in units.iter().filter(|u| u.base < map_end) {
        let keep = &mut |r: &batch::KeyedRecord<'_>| {
            if r.offset >= map_end || r.offset == last {
                return true;
            }
            let Some(k) = r.key else {
                return true;
            };
            if map.get(k).is_some_and(|&latest| latest > r.offset) {
                return false;
            }
            !(r.tombstone && r.timestamp < policy.tombstones_before)
        };
        rewrite_unit(engine, group, unit, start, limits, keep, pace, &mut pass)?;
    }
    Ok(pass)
}

/// Rewrites one unit with the records `keep` keeps, if it drops any.
#[allow(clippy::too_many_arguments)]
fn rewrite_unit<E: Engine + ?Sized>(
    engine: &E,
    group: GroupId,
    unit: &CleanUnit,
    start: Offset,
    limits: &CleanLimits,
    keep: &mut dyn FnMut(&batch::KeyedRecord<'_>) -> bool,
    pace: &mut dyn FnMut(u64) -> Result<()>,
    pass: &mut Pass,
) -> Result<()> {
    // A first look: does anything in the unit go?
    let from = unit.base.max(start);
    let mut removes = false;
    let mut chunks = Chunks::new(engine, group, from, unit.next, limits.read_bytes);
    'look: while let Some(chunk) = chunks.next(pass)? {
        pace(chunk.len() as u64)?;
        for b in batch::iter_batches(&chunk) {
            let (h, bytes) = b?;
            if !h.is_control() {
                batch::for_each_record(bytes, &h, limits.max_decompressed, &mut |r| {
                    removes |= !keep(r);
                })?;
            }
            if removes {
                break 'look;
            }
        }
    }
    if !removes {
        return Ok(());
    }
    engine.clean_begin(group, unit)?;
    let (mut before, mut after, mut removed) = (0u64, 0u64, 0u64);
    let mut chunks = Chunks::new(engine, group, from, unit.next, limits.read_bytes);
    while let Some(chunk) = chunks.next(pass)? {
        let mut out = Vec::with_capacity(chunk.len());
        for b in batch::iter_batches(&chunk) {
            let (h, bytes) = b?;
            before += bytes.len() as u64;
            let thinned = if h.is_control() {
                Thinned::Unchanged
            } else {
                batch::retain_records(bytes, &h, limits.max_decompressed, keep)?
            };
            match thinned {
                Thinned::Unchanged => out.extend_from_slice(bytes),
                Thinned::Empty => removed += h.record_count.max(0) as u64,
                Thinned::Rewritten(b) => {
                    let kept = batch::BatchHeader::parse(&b)?.record_count;
                    removed += (h.record_count - kept).max(0) as u64;
                    out.extend_from_slice(&b);
                }
            }
        }
        after += out.len() as u64;
        pace((chunk.len() + out.len()) as u64)?;
        if !out.is_empty() {
            engine.clean_append(group, &out)?;
        }
    }
    if engine.clean_commit(group)? {
        pass.units_rewritten += 1;
        pass.records_removed += removed;
        pass.bytes_before += before;
        pass.bytes_after += after;
    }
    Ok(())
}

/// Reads the batches of a log whose base offsets lie in `[at, to)`, whole
/// batches per engine call, counting what it reads into the pass.
struct Chunks<'e, E: ?Sized> {
    engine: &'e E,
    group: GroupId,
    at: Offset,
    to: Offset,
    read_bytes: usize,
    /// The range's end was reached (a batch at or past `to`, or the log's end).
    done: bool,
}

impl<'e, E: Engine + ?Sized> Chunks<'e, E> {
    fn new(engine: &'e E, group: GroupId, at: Offset, to: Offset, read_bytes: usize) -> Self {
        Chunks {
            engine,
            group,
            at,
            to,
            read_bytes,
            done: at >= to,
        }
    }

    /// The next chunk of whole batches in the range, or `None` past its end.
    fn next(&mut self, pass: &mut Pass) -> Result<Option<bytes::Bytes>> {
        if self.done {
            return Ok(None);
        }
        let chunk = self.engine.log_read(self.group, self.at, self.read_bytes)?;
        pass.bytes_read += chunk.len() as u64;
        let mut len = 0;
        for b in batch::iter_batches(&chunk) {
            let (h, one) = b?;
            if h.base_offset >= self.to {
                self.done = true;
                break;
            }
            len += one.len();
            self.at = h.last_offset() + 1;
        }
        if len == 0 || self.at >= self.to {
            self.done = true;
        }
        Ok((len > 0).then(|| chunk.slice(..len)))
    }

    /// Whether the whole range was read.
    fn done(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_by_size_leave_the_last_unit_out_and_meet() {
        let batches = (0..10).map(|i| (i * 10, i * 10 + 9, 100u64, i));
        let units = units_by_size(batches.clone(), 0, 300);
        // Units of three batches: 0..30, 30..60, 60..90; 90..100 is open.
        assert_eq!(
            units.iter().map(|u| (u.base, u.next)).collect::<Vec<_>>(),
            vec![(0, 30), (30, 60), (60, 90)]
        );
        assert_eq!(units[2].max_timestamp, 8);
        // When the last batch closes a unit, that unit is the one being written.
        let units = units_by_size(batches.clone().take(9), 0, 300);
        assert_eq!(units.len(), 2);
        // Batches below the start are left out.
        let units = units_by_size(batches, 35, 300);
        assert_eq!(units[0].base, 30);
        assert_eq!(units[0].next, 60);
    }
}
