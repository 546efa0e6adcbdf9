//! One partition log: its segments, oldest first, and its state.

use std::collections::{BTreeMap, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use weir_core::batch;
use weir_core::engine::check_read_range;
use weir_core::retention::{LogShape, LogUnit, Retention, retention_point};
use weir_core::{Appended, Error, LogState, Offset};

use crate::durability::Durability;
use crate::error::{IoContext, SegError};
use crate::segment::{CleanedFile, Marks, Segment};
use weir_core::compaction::CleanUnit;

mod unified;

pub(crate) use unified::{PLACED_LEN, Placed};

/// Sizes that shape a partition's files.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shape {
    pub(crate) segment_bytes: u64,
    pub(crate) index_interval: u64,
    /// Roll a segment that took its first batch this long ago (`segment.ms`).
    pub(crate) roll_after: Option<std::time::Duration>,
}

impl Shape {
    /// This shape as a topic's configs change it (`segment.bytes` within the
    /// engine's limits).
    pub(crate) fn with(self, topic: LogShape) -> Shape {
        Shape {
            segment_bytes: topic
                .segment_bytes
                .map_or(self.segment_bytes, |b| b.clamp(64 << 10, 1 << 31)),
            roll_after: topic
                .segment_ms
                .map(std::time::Duration::from_millis)
                .or(self.roll_after),
            ..self
        }
    }
}

#[derive(Debug)]
pub(crate) struct Partition {
    dir: PathBuf,
    segments: BTreeMap<Offset, Segment>,
    state: LogState,
    shape: Shape,
    /// Removed while still read: the directory (moved aside already) is deleted
    /// when this value is dropped, that is when the last reader is done with it.
    removed: bool,
    /// Batches stored for Raft entries not yet applied, in index order: the log
    /// from the high watermark (`state.next_offset`) to the tail's end.
    pending: VecDeque<(u64, Placed)>,
    /// Whether batches were stored since the tail was last synced.
    unsynced: bool,
    /// The last Raft index whose entry carries a batch stored by `append` (the
    /// copying path): batches of later entries are not stored before it is applied.
    pub(crate) copied_through: u64,
    /// When the tail took its first batch in this run (for `roll_after`).
    tail_since: Option<std::time::Instant>,
}

impl Partition {
    /// Creates an empty partition log in `dir`.
    pub(crate) fn create(dir: &Path, shape: Shape, d: &Durability) -> Result<Partition, SegError> {
        Partition::create_at(dir, shape, 0, d)
    }

    /// Creates an empty partition log in `dir` that starts at offset `start`
    /// (a log staged from a snapshot).
    pub(crate) fn create_at(
        dir: &Path,
        shape: Shape,
        start: Offset,
        d: &Durability,
    ) -> Result<Partition, SegError> {
        fs::create_dir_all(dir).ctx(|| format!("creating {}", dir.display()))?;
        crate::durability::sync_dir(dir.parent().unwrap_or(dir))?;
        let marks = Marks {
            applied_index: 0,
            start_offset: start,
            high_watermark: start,
        };
        let seg = Segment::create(
            dir,
            start,
            shape.segment_bytes,
            shape.index_interval,
            marks,
            d,
        )?;
        let mut segments = BTreeMap::new();
        segments.insert(start, seg);
        Ok(Partition {
            dir: dir.to_path_buf(),
            segments,
            state: LogState {
                start_offset: start,
                next_offset: start,
                applied_index: 0,
            },
            shape,
            removed: false,
            pending: VecDeque::new(),
            unsynced: false,
            copied_through: 0,
            tail_since: None,
        })
    }

    /// Opens the partition log in `dir`; `None` when it holds no segment (a removal
    /// that was interrupted).
    /// A first segment that starts past the durable start offset means segments
    /// are missing: refused, or with `accept_loss` logged and skipped.
    pub(crate) fn open(
        dir: &Path,
        shape: Shape,
        accept_loss: bool,
        d: &Durability,
    ) -> Result<Option<Partition>, SegError> {
        let mut bases = Vec::new();
        for entry in fs::read_dir(dir).ctx(|| format!("listing {}", dir.display()))? {
            let entry = entry.ctx(|| format!("listing {}", dir.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                fs::remove_file(entry.path()).ctx(|| format!("removing {name}"))?;
            } else if let Some(stem) = name.strip_suffix(".log") {
                bases.push(stem.parse::<Offset>().map_err(|_| {
                    SegError::Corrupt(format!(
                        "unexpected segment file {}",
                        entry.path().display()
                    ))
                })?);
            }
        }
        bases.sort_unstable();
        let cut = unified::read_cut_mark(dir)?;
        let mut fresh = None;
        if let Some(cut) = cut {
            fresh = Some(unified::freshest_marks(dir, &bases, shape.index_interval)?);
            unified::delete_segments_after(dir, &mut bases, cut)?;
        }
        let Some(&tail) = bases.last() else {
            return Ok(None);
        };
        let mut segments = BTreeMap::new();
        for &base in &bases {
            let mut seg = Segment::open(dir, base, base == tail, shape.index_interval)?;
            if base == tail {
                seg.scan_beyond_checkpoint()?;
            }
            segments.insert(base, seg);
        }
        // Neighbouring segments must meet exactly.
        let mut prev: Option<&Segment> = None;
        for seg in segments.values() {
            if let Some(p) = prev
                && p.state().next_offset != seg.base()
            {
                return Err(SegError::Corrupt(format!(
                    "{}: segment {} ends at offset {} but the next starts at {}",
                    dir.display(),
                    p.base(),
                    p.state().next_offset,
                    seg.base()
                )));
            }
            prev = Some(seg);
        }
        let tail_state = segments[&tail].state();
        let first = bases[0];
        // delete_prefix makes its start offset durable before it deletes a segment,
        // so the first segment never starts past the durable start offset.
        if first > tail_state.marks.start_offset {
            crate::config::lost(
                accept_loss,
                format!(
                    "{}: the log starts at offset {} but its first segment found starts at {}: segments holding offsets {}..{} are missing",
                    dir.display(),
                    tail_state.marks.start_offset,
                    first,
                    tail_state.marks.start_offset,
                    first
                ),
            )?;
        }
        let leo = segments[&tail].state().next_offset;
        let hw = tail_state.marks.high_watermark;
        if hw > leo {
            return Err(SegError::Corrupt(format!(
                "{}: the high watermark {hw} lies past the log's end {leo}",
                dir.display()
            )));
        }
        let state = LogState {
            start_offset: tail_state.marks.start_offset.max(first),
            next_offset: hw,
            applied_index: tail_state.marks.applied_index,
        };
        let mut p = Partition {
            dir: dir.to_path_buf(),
            segments,
            state,
            shape,
            removed: false,
            pending: VecDeque::new(),
            unsynced: false,
            copied_through: 0,
            tail_since: None,
        };
        if let (Some(cut), Some(marks)) = (cut, fresh) {
            p.redo_cut(cut, marks, d)?;
        }
        // Segments wholly below the start offset go once the engine knows which
        // batches its Raft log still refers to (`unified::reconcile`).
        Ok(Some(p))
    }

    pub(crate) fn state(&self) -> LogState {
        self.state
    }

    pub(crate) fn marks(&self) -> Marks {
        Marks {
            applied_index: self.state.applied_index,
            start_offset: self.state.start_offset,
            high_watermark: self.state.next_offset,
        }
    }

    /// The offset after the last stored batch, applied or not (the log end offset).
    pub(crate) fn leo(&self) -> Offset {
        self.segments
            .values()
            .next_back()
            .map_or(self.state.next_offset, |s| s.state().next_offset)
    }

    fn tail(&mut self) -> &mut Segment {
        // There is always at least one segment.
        self.segments
            .values_mut()
            .next_back()
            .expect("a partition always has a tail segment")
    }

    /// Appends a batch the caller verified (`h` is its header) for an applied
    /// entry (the copying path: the engine checked that no stored batch waits
    /// past the high watermark).
    pub(crate) fn append(
        &mut self,
        raft_index: u64,
        epoch: i32,
        h: &batch::BatchHeader,
        bytes: &[u8],
        d: &Durability,
    ) -> Result<Appended, SegError> {
        self.make_room(bytes.len(), d)?;
        let a = self.tail().append(h, bytes, epoch)?;
        self.state.next_offset = a.last_offset + 1;
        self.state.applied_index = raft_index;
        Ok(a)
    }

    /// Lays the log out by `shape` from now on (segments already written keep
    /// their size).
    pub(crate) fn set_shape(&mut self, shape: Shape) {
        self.shape = shape;
    }

    /// Rolls or grows the tail so that `len` more bytes fit; rolls a tail that
    /// took its first batch `roll_after` ago.
    fn make_room(&mut self, len: usize, d: &Durability) -> Result<(), SegError> {
        let aged = self
            .shape
            .roll_after
            .is_some_and(|after| self.tail_since.is_some_and(|t| t.elapsed() >= after));
        if aged && !self.tail().is_empty() {
            self.roll(d)?;
        }
        if self.tail_since.is_none() || aged {
            self.tail_since = Some(std::time::Instant::now());
        }
        if !self.tail().fits(len) {
            if self.tail().is_empty() {
                self.tail().grow_for(len)?;
            } else {
                self.roll(d)?;
                if !self.tail().fits(len) {
                    self.tail().grow_for(len)?;
                }
            }
        }
        Ok(())
    }

    fn roll(&mut self, d: &Durability) -> Result<(), SegError> {
        let marks = self.marks();
        self.tail().seal(marks, d)?;
        let base = self.leo();
        let seg = Segment::create(
            &self.dir,
            base,
            self.shape.segment_bytes,
            self.shape.index_interval,
            marks,
            d,
        )?;
        tracing::debug!(dir = %self.dir.display(), base, "rolled to a new segment");
        self.segments.insert(base, seg);
        self.tail_since = Some(std::time::Instant::now());
        Ok(())
    }

    /// Appends a batch as it is (stamped elsewhere: its base offset must be
    /// at or past the log's next offset, which the caller checked), for a
    /// staged log.
    pub(crate) fn append_stamped(
        &mut self,
        h: &batch::BatchHeader,
        bytes: &[u8],
        d: &Durability,
    ) -> Result<(), SegError> {
        self.make_room(bytes.len(), d)?;
        let a = self
            .tail()
            .append_at(h.base_offset, h, bytes, h.leader_epoch)?;
        self.state.next_offset = a.last_offset + 1;
        Ok(())
    }

    /// Counts every batch its segments hold as part of the log (a staged log
    /// reopened: it has no Raft entries, so nothing past its high watermark
    /// waits for one).
    pub(crate) fn adopt_tail(&mut self) {
        self.state.next_offset = self.leo();
        self.pending.clear();
    }

    /// The directory the log lives in from now on (a staged log installed by
    /// rename).
    pub(crate) fn moved_to(&mut self, dir: &Path) {
        self.dir = dir.to_path_buf();
        for seg in self.segments.values_mut() {
            seg.moved_to(dir);
        }
    }

    pub(crate) fn mark_applied(&mut self, raft_index: u64) {
        self.state.applied_index = self.state.applied_index.max(raft_index);
    }

    /// Raises the start offset to `offset` (at most the high watermark) and deletes
    /// the segments below it — but none holding offsets at or above `keep_from`,
    /// the first batch a Raft entry still in the Raft log refers to.
    pub(crate) fn delete_prefix(
        &mut self,
        offset: Offset,
        keep_from: Offset,
        d: &Durability,
    ) -> Result<(), SegError> {
        let start = offset.min(self.state.next_offset);
        if start > self.state.start_offset {
            self.state.start_offset = start;
            // The new start is durable before any segment goes, so that a first
            // segment past the durable start always means damage (see `open`).
            self.flush(d)?;
            self.drop_segments_below(self.state.start_offset.min(keep_from))?;
        }
        Ok(())
    }

    /// Deletes whole segments every offset of which lies below `bound`.
    pub(crate) fn drop_segments_below(&mut self, bound: Offset) -> Result<(), SegError> {
        while self.segments.len() > 1 {
            let mut it = self.segments.keys();
            let (Some(&first), Some(&second)) = (it.next(), it.next()) else {
                break;
            };
            if second > bound {
                break;
            }
            if let Some(seg) = self.segments.remove(&first) {
                seg.delete()?;
            }
        }
        Ok(())
    }

    pub(crate) fn flush(&mut self, d: &Durability) -> Result<(), SegError> {
        let marks = self.marks();
        self.tail().flush(marks, d)
    }

    pub(crate) fn read(&self, offset: Offset, max_bytes: usize) -> Result<Bytes, Error> {
        check_read_range(offset, &self.state)?;
        for (_, seg) in self
            .segments
            .range(..=offset)
            .next_back()
            .into_iter()
            .chain(self.segments.range(offset + 1..))
        {
            // Past the segment holding `offset`, reading starts at a segment's
            // first offset (`offset` lay in a gap the cleaner left).
            let from = offset.max(seg.base());
            if let Some(b) = seg.read(from, max_bytes, self.state.next_offset)? {
                return Ok(b);
            }
        }
        Ok(Bytes::new())
    }

    /// The sealed segments the cleaner may rewrite: wholly below `bound` (the
    /// first batch a Raft entry refers to) and the high watermark, not wholly
    /// below the start offset.
    pub(crate) fn clean_units(&self, bound: Offset) -> Vec<CleanUnit> {
        let bound = bound.min(self.state.next_offset);
        let last = self.segments.len().saturating_sub(1);
        self.segments
            .values()
            .take(last)
            .map(|seg| (seg.base(), seg.state()))
            .filter(|(_, st)| st.next_offset <= bound && st.next_offset > self.state.start_offset)
            .map(|(base, st)| CleanUnit {
                base,
                next: st.next_offset,
                bytes: st.end,
                max_timestamp: st.max_timestamp,
            })
            .collect()
    }

    /// The directory the log lives in.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Swaps in `c`, the cleaned copy of the segment at `unit.base`, if that
    /// segment is still sealed and as listed; otherwise discards the copy and
    /// answers false.
    pub(crate) fn replace_segment(
        &mut self,
        unit: &CleanUnit,
        c: CleanedFile,
    ) -> Result<bool, SegError> {
        let tail = self.segments.keys().next_back().copied();
        let listed = self
            .segments
            .get(&unit.base)
            .is_some_and(|seg| seg.is_unit(unit.next, unit.bytes));
        if !listed || tail == Some(unit.base) {
            c.discard();
            return Ok(false);
        }
        let Some(old) = self.segments.remove(&unit.base) else {
            c.discard();
            return Ok(false);
        };
        let seg = old.replace_with(c)?;
        self.segments.insert(unit.base, seg);
        Ok(true)
    }

    /// Where retention `r` lets the start offset move: whole segments, the tail
    /// (still written) never by size.
    /// Bytes of the log's segments (their data, not their preallocated room).
    pub(crate) fn bytes(&self) -> u64 {
        self.segments.values().map(|seg| seg.state().end).sum()
    }

    pub(crate) fn retention_point(&self, r: Retention) -> Offset {
        let last = self.segments.len().saturating_sub(1);
        let units = self.segments.values().enumerate().map(|(i, seg)| {
            let st = seg.state();
            LogUnit {
                next_offset: st.next_offset,
                bytes: st.end,
                max_timestamp: st.max_timestamp,
                sealed: i < last,
            }
        });
        retention_point(&self.state, units, r)
    }

    pub(crate) fn find_timestamp(&self, ts: i64) -> Result<Option<Offset>, Error> {
        let from = self.state.start_offset;
        for seg in self.segments.values() {
            if seg.state().next_offset <= from {
                continue;
            }
            if let Some(o) = seg.find_timestamp(ts, from)? {
                // Batches past the high watermark are not there yet for readers.
                return Ok((o < self.state.next_offset).then_some(o));
            }
        }
        Ok(None)
    }

    pub(crate) fn remove(self) -> Result<(), SegError> {
        let dir = self.dir.clone();
        drop(self);
        fs::remove_dir_all(&dir).ctx(|| format!("removing {}", dir.display()))
    }

    /// Removes a partition another thread still reads: moves its directory aside to
    /// `trash` now (so the group's name is free at once, and a crash leaves only a
    /// directory that opening deletes), and deletes it when this value is dropped.
    /// Readers keep reading the open maps meanwhile.
    pub(crate) fn remove_when_dropped(&mut self, trash: &Path) -> Result<(), SegError> {
        fs::rename(&self.dir, trash)
            .ctx(|| format!("moving {} aside to {}", self.dir.display(), trash.display()))?;
        crate::durability::sync_dir(trash.parent().unwrap_or(trash))?;
        self.moved_to(trash);
        self.removed = true;
        Ok(())
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        if self.removed
            && let Err(e) = fs::remove_dir_all(&self.dir)
        {
            // Not lost data: opening the engine deletes what is left of it.
            tracing::warn!(dir = %self.dir.display(), error = %e, "deleting a removed partition log failed");
        }
    }
}
