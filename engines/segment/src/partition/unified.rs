//! A partition log that also holds its Raft entries' batches (docs/write-path.md):
//! batches are stored when their entry is appended, past the high watermark,
//! and applying the entry only moves the high watermark over them.
//!
//! # Cutting a suffix
//!
//! Raft overwrites an uncommitted suffix; the batches of the entries it drops are
//! cut from the log. A cut within the bytes no checkpoint covers changes memory
//! only: after a crash those bytes are found again by scanning, and the engine
//! keeps only batches its Raft log refers to. A cut below a checkpoint, or one
//! that deletes whole segments, is made durable with a *cut mark* (`CUT`, the
//! offset to cut at, with a CRC) written and synced first and removed last, so
//! that a crash anywhere inside it finishes the cut at the next open.

use std::fs;
use std::io::Write as _;
use std::path::Path;

use super::*;
use crate::durability::sync_dir;

/// A batch stored for a Raft entry, as the entry's record in the WAL describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Placed {
    /// Offset of the batch's first record.
    pub(crate) base: Offset,
    /// The batch's length in bytes.
    pub(crate) len: u32,
    /// The batch's own CRC (Kafka's, over everything after the CRC field).
    pub(crate) crc: u32,
    /// `last_offset - base`.
    pub(crate) last_delta: u32,
}

/// Bytes of an encoded [`Placed`].
pub(crate) const PLACED_LEN: usize = 20;

impl Placed {
    pub(crate) fn last(&self) -> Offset {
        self.base + Offset::from(self.last_delta)
    }

    pub(crate) fn encode(&self) -> [u8; PLACED_LEN] {
        let mut b = [0u8; PLACED_LEN];
        b[0..8].copy_from_slice(&self.base.to_le_bytes());
        b[8..12].copy_from_slice(&self.len.to_le_bytes());
        b[12..16].copy_from_slice(&self.crc.to_le_bytes());
        b[16..20].copy_from_slice(&self.last_delta.to_le_bytes());
        b
    }

    pub(crate) fn decode(b: &[u8]) -> Option<Placed> {
        let b: &[u8; PLACED_LEN] = b.get(..PLACED_LEN)?.try_into().ok()?;
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Some(Placed {
            base: i64::from_le_bytes(b[0..8].try_into().ok()?),
            len: u32_at(8),
            crc: u32_at(12),
            last_delta: u32_at(16),
        })
    }
}

const CUT_MARK: &str = "CUT";

/// The offset a cut interrupted by a crash was cutting at, if any.
pub(super) fn read_cut_mark(dir: &Path) -> Result<Option<Offset>, SegError> {
    let path = dir.join(CUT_MARK);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(SegError::Io(format!("reading {}", path.display()), e)),
    };
    let ok = bytes.len() == 12 && crc32c::crc32c(&bytes[..8]).to_le_bytes() == bytes[8..12];
    if !ok {
        return Err(SegError::Corrupt(format!(
            "{}: a cut mark that fails its CRC",
            path.display()
        )));
    }
    let mut at = [0u8; 8];
    at.copy_from_slice(&bytes[..8]);
    Ok(Some(i64::from_le_bytes(at)))
}

fn write_cut_mark(dir: &Path, offset: Offset, d: &Durability) -> Result<(), SegError> {
    let path = dir.join(CUT_MARK);
    let tmp = dir.join(format!("{CUT_MARK}.tmp"));
    let what = || format!("writing {}", tmp.display());
    let mut f = fs::File::create(&tmp).ctx(what)?;
    let mut b = offset.to_le_bytes().to_vec();
    b.extend_from_slice(&crc32c::crc32c(&b).to_le_bytes());
    f.write_all(&b)
        .map_err(|e| crate::error::full_or_io(what(), e))?;
    d.sync_file(&f, what)?;
    fs::rename(&tmp, &path).ctx(|| format!("renaming {}", tmp.display()))?;
    sync_dir(dir)
}

fn remove_cut_mark(dir: &Path) -> Result<(), SegError> {
    let path = dir.join(CUT_MARK);
    fs::remove_file(&path).ctx(|| format!("removing {}", path.display()))?;
    sync_dir(dir)
}

/// The freshest marks any segment's checkpoint holds: each mark only grows, and
/// an interrupted cut may have deleted the segment that had them, or not yet.
pub(super) fn freshest_marks(
    dir: &Path,
    bases: &[Offset],
    index_interval: u64,
) -> Result<Marks, SegError> {
    let mut m = Marks::default();
    for &base in bases {
        let s = Segment::open(dir, base, false, index_interval)?
            .state()
            .marks;
        m.applied_index = m.applied_index.max(s.applied_index);
        m.start_offset = m.start_offset.max(s.start_offset);
        m.high_watermark = m.high_watermark.max(s.high_watermark);
    }
    Ok(m)
}

/// Deletes the files of every segment that starts past `cut` (the last of an
/// interrupted cut's steps, redone at open).
pub(super) fn delete_segments_after(
    dir: &Path,
    bases: &mut Vec<Offset>,
    cut: Offset,
) -> Result<(), SegError> {
    while bases.len() > 1 && bases.last().is_some_and(|&b| b > cut) {
        if let Some(b) = bases.pop() {
            let (log, index, time) = crate::segment::paths(dir, b);
            for p in [index, time, log] {
                match fs::remove_file(&p) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(SegError::Io(format!("deleting {}", p.display()), e));
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(())
}

impl Partition {
    /// Stores the batch of Raft entry `index` at the end of the log, past the high
    /// watermark, numbered from the log's end (`h` is its verified header).
    pub(crate) fn place(
        &mut self,
        index: u64,
        h: &batch::BatchHeader,
        bytes: &[u8],
        d: &Durability,
    ) -> Result<Placed, SegError> {
        self.make_room(bytes.len(), d)?;
        let a = self.tail().append(h, bytes, h.leader_epoch)?;
        let placed = Placed {
            base: a.base_offset,
            len: bytes.len() as u32,
            crc: h.crc,
            last_delta: (a.last_offset - a.base_offset) as u32,
        };
        self.pending.push_back((index, placed));
        self.unsynced = true;
        Ok(placed)
    }

    /// Applies Raft entry `index` if its batch was stored when it was appended:
    /// the high watermark moves past the batch. `None` when it was not (the
    /// copying path).
    ///
    /// # Errors
    /// [`Error::Invalid`] when a stored batch of an earlier entry was never applied,
    /// or `crc` (the applied batch's) is not the stored one's.
    pub(crate) fn commit(&mut self, index: u64, crc: u32) -> Result<Option<Appended>, Error> {
        let Some(&(first, placed)) = self.pending.front() else {
            return Ok(None);
        };
        if first > index {
            return Ok(None);
        }
        if first < index || placed.crc != crc {
            return Err(Error::Invalid(format!(
                "{}: applying entry {index} (CRC {crc:#x}) while the batch of entry {first} (CRC {:#x}) waits",
                self.dir.display(),
                placed.crc
            )));
        }
        self.pending.pop_front();
        self.state.next_offset = placed.last() + 1;
        self.state.applied_index = index;
        Ok(Some(Appended {
            base_offset: placed.base,
            last_offset: placed.last(),
        }))
    }

    /// Whether a batch was stored past the high watermark.
    pub(crate) fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Whether batches of Raft entries `index` and later are stored.
    pub(crate) fn stores_batches_from(&self, index: u64) -> bool {
        self.pending.back().is_some_and(|&(i, _)| i >= index)
    }

    /// Removes the batches of Raft entries `from_index` and later (Raft overwrites
    /// them).
    pub(crate) fn truncate_entries(
        &mut self,
        from_index: u64,
        d: &Durability,
    ) -> Result<(), SegError> {
        let keep = self.pending.partition_point(|&(i, _)| i < from_index);
        if let Some(&(_, first)) = self.pending.get(keep) {
            self.pending.truncate(keep);
            self.cut_to(first.base, d)?;
        }
        Ok(())
    }

    /// Cuts the log before `offset` (a batch boundary at or above the high
    /// watermark), durably when it must be (see the module docs).
    fn cut_to(&mut self, offset: Offset, d: &Durability) -> Result<(), SegError> {
        if offset >= self.leo() {
            return Ok(());
        }
        if offset < self.state.next_offset {
            return Err(SegError::Corrupt(format!(
                "{}: cutting at offset {offset}, below the high watermark {}",
                self.dir.display(),
                self.state.next_offset
            )));
        }
        let holder = self
            .segments
            .range(..=offset)
            .next_back()
            .map_or(0, |(&b, _)| b);
        let whole_segments = self.segments.range(holder + 1..).next().is_some();
        let below_checkpoint = self
            .segments
            .get(&holder)
            .is_some_and(|s| s.cut_reaches_checkpoint(offset));
        if !whole_segments && !below_checkpoint {
            return self.tail().cut(offset);
        }
        // The mark first; then the segment holding the cut gets its new end and
        // the current marks in a checkpoint (so that no older checkpoint of it
        // speaks for the log once the segments after it are gone); then those go.
        write_cut_mark(&self.dir, offset, d)?;
        let marks = self.marks();
        if let Some(seg) = self.segments.get_mut(&holder) {
            seg.cut(offset)?;
            seg.flush(marks, d)?;
        }
        while let Some((&b, _)) = self.segments.last_key_value()
            && b > holder
        {
            if let Some(seg) = self.segments.remove(&b) {
                seg.delete()?;
            }
        }
        remove_cut_mark(&self.dir)
    }

    /// At open, after a crash inside a cut (its mark is there; the segments
    /// after it are deleted already): cuts the tail and checkpoints it with
    /// `marks`, the freshest any segment had, then removes the mark.
    pub(super) fn redo_cut(
        &mut self,
        offset: Offset,
        marks: Marks,
        d: &Durability,
    ) -> Result<(), SegError> {
        self.tail().cut(offset)?;
        self.state.applied_index = self.state.applied_index.max(marks.applied_index);
        self.state.start_offset = self.state.start_offset.max(marks.start_offset);
        self.state.next_offset = self.state.next_offset.max(marks.high_watermark);
        if self.state.next_offset > self.leo() {
            return Err(SegError::Corrupt(format!(
                "{}: an interrupted cut at offset {offset} lies below the high watermark {}",
                self.dir.display(),
                self.state.next_offset
            )));
        }
        let marks = self.marks();
        self.tail().flush(marks, d)?;
        remove_cut_mark(&self.dir)
    }

    /// At open: keeps the stored batches that the Raft log's entries after the
    /// applied index refer to (`refs`, in index order), in order from the high
    /// watermark, and cuts everything after them. Returns the first entry whose
    /// batch is not there (its record outlived the batch in a crash): the Raft
    /// log must end before it.
    pub(crate) fn reconcile(
        &mut self,
        refs: &[(u64, Placed)],
        d: &Durability,
    ) -> Result<Option<u64>, SegError> {
        let mut expected = self.state.next_offset;
        let mut missing = None;
        for &(index, placed) in refs {
            if index <= self.state.applied_index {
                continue;
            }
            if placed.base != expected || !self.has_batch(placed) {
                missing = Some(index);
                break;
            }
            self.pending.push_back((index, placed));
            expected = placed.last() + 1;
        }
        self.cut_to(expected, d)?;
        Ok(missing)
    }

    fn has_batch(&self, p: Placed) -> bool {
        self.segments
            .range(..=p.base)
            .next_back()
            .is_some_and(|(_, s)| s.has_batch(p.base, p.len, p.crc))
    }

    /// The stored batch `p` describes, applied or not, even below the start
    /// offset (a Raft entry still refers to it).
    pub(crate) fn read_placed(&self, p: Placed) -> Result<Bytes, Error> {
        match self.segments.range(..=p.base).next_back() {
            Some((_, s)) => s.batch_at(p.base, p.len, p.crc),
            None => Err(Error::Corrupt(format!(
                "{}: the batch at offset {} is gone",
                self.dir.display(),
                p.base
            ))),
        }
    }

    /// The tail's file if batches were stored in it since it was last synced, for
    /// the Raft log's sync; the flag is cleared.
    pub(crate) fn take_unsynced(&mut self) -> Option<std::sync::Arc<std::fs::File>> {
        std::mem::take(&mut self.unsynced).then(|| self.tail().log_file())
    }
}
