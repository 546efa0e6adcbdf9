//! One segment of a partition log: a preallocated, memory-mapped log file holding
//! RecordBatches back to back after a header page, with a sparse offset index and a
//! time index in their own mapped files.
//!
//! The header's checkpoint slot records, at each flush, the end position, next offset,
//! applied Raft index, log start offset and max timestamp. Only bytes below the
//! checkpointed end are trusted after a crash; see `docs/format.md`.

// Memory maps are the one place weir uses `unsafe`.
#![allow(unsafe_code)]

use std::fs::{self, File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use memmap2::MmapMut;
use weir_core::batch::{self, BatchHeader};
use weir_core::{Appended, Error, Offset};

use crate::durability::{Durability, sync_dir};
use crate::error::{IoContext, SegError, full_or_io};
use crate::format::{Checkpoint, HEADER_LEN, Magic, decode_header, encode_header};

mod cleaned;
mod readahead;
mod recovery;
mod tail;

pub(crate) use cleaned::CleanedFile;

pub(super) const INDEX_ENTRY: usize = 8;
pub(super) const TIME_ENTRY: usize = 16;
pub(super) const TIME_CHECK: u32 = 0xA5A5_A5A5;

/// What a flush records besides the segment's own end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Marks {
    pub(crate) applied_index: u64,
    pub(crate) start_offset: Offset,
    /// The partition's high watermark: batches from here on were stored for Raft
    /// entries not yet applied (docs/write-path.md). Kept in the checkpoint as its
    /// distance below the segment's next offset, in the upper half of the
    /// `stamp_crc` field (0 there, as in files written before, means "equal").
    pub(crate) high_watermark: Offset,
}

/// The durable description of a segment, as read from its checkpoint.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SegmentState {
    pub(crate) end: u64,
    pub(crate) next_offset: Offset,
    pub(crate) marks: Marks,
    pub(crate) max_timestamp: i64,
    /// Running CRC-32C of the fields Kafka's batch CRC leaves out (base offset, batch
    /// length, leader epoch: bytes 0..16 of every batch), so that a flipped bit there
    /// is caught too.
    pub(crate) stamp_crc: u32,
}

impl SegmentState {
    fn fields(&self) -> [u64; 6] {
        [
            self.end,
            self.next_offset as u64,
            self.marks.applied_index,
            self.marks.start_offset as u64,
            self.max_timestamp as u64,
            u64::from(self.stamp_crc) | (self.hw_distance() << 32),
        ]
    }

    /// `next_offset - high_watermark + 1`, as the checkpoint keeps it. The
    /// uncommitted tail is bounded by what Raft lets a leader have in flight, far
    /// below 2^32 records.
    fn hw_distance(&self) -> u64 {
        let d = (self.next_offset - self.marks.high_watermark).max(0) as u64 + 1;
        debug_assert!(d <= u64::from(u32::MAX));
        d.min(u64::from(u32::MAX))
    }

    fn from_fields(f: [u64; 6]) -> Self {
        let distance = (f[5] >> 32) as i64;
        let next_offset = f[1] as i64;
        SegmentState {
            end: f[0],
            next_offset,
            marks: Marks {
                applied_index: f[2],
                start_offset: f[3] as i64,
                high_watermark: next_offset - (distance - 1).max(0),
            },
            max_timestamp: f[4] as i64,
            stamp_crc: f[5] as u32,
        }
    }
}

/// Appended bytes that [`Segment::start_writeback`] hands to writeback at once.
pub(super) const WRITEBACK_BYTES: u64 = 1 << 20;

/// Bytes of an index file [`Mapped::reserve`] allocates at a time.
const RESERVE_STEP: u64 = 16 << 10;

/// A mapped file.
#[derive(Debug)]
pub(super) struct Mapped {
    path: PathBuf,
    file: Arc<File>,
    map: MmapMut,
    /// Bytes from the start known to have blocks allocated (see [`Mapped::reserve`]).
    reserved: u64,
}

impl Mapped {
    fn open(path: &Path, len: u64, create: bool) -> Result<Mapped, SegError> {
        let what = || format!("opening {}", path.display());
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(path)
            .ctx(what)?;
        if file.metadata().ctx(what)?.len() < len {
            file.set_len(len).ctx(what)?;
        }
        // SAFETY: the engine holds an exclusive lock on its data directory (see
        // `SegmentEngine::open`), so no other process modifies or truncates this file
        // while it is mapped; this process only ever grows it, and remaps after growing.
        let map =
            unsafe { MmapMut::map_mut(&file) }.ctx(|| format!("mapping {}", path.display()))?;
        Ok(Mapped {
            path: path.to_path_buf(),
            file: Arc::new(file),
            map,
            reserved: 0,
        })
    }

    /// Allocates the file's blocks through `upto` bytes (a step ahead, within the
    /// file) before anything is stored there through the map. The files are
    /// sized sparse; a store to a page without a block on a full file system
    /// kills the process with SIGBUS, while `fallocate` answers ENOSPC, which is
    /// [`SegError::Full`] here.
    fn reserve(&mut self, upto: u64) -> Result<(), SegError> {
        if upto <= self.reserved {
            return Ok(());
        }
        let len = self.map.len() as u64;
        let to = upto.next_multiple_of(RESERVE_STEP).min(len);
        if to <= self.reserved {
            return Ok(());
        }
        // SAFETY: a plain syscall on a descriptor this map owns; no memory is passed.
        let rc = unsafe {
            libc::fallocate(
                self.file.as_raw_fd(),
                0,
                self.reserved as libc::off64_t,
                (to - self.reserved) as libc::off64_t,
            )
        };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EOPNOTSUPP) {
                // The file system cannot reserve blocks: stores allocate them.
                self.reserved = len;
                return Ok(());
            }
            return Err(full_or_io(
                format!("reserving space in {}", self.path.display()),
                e,
            ));
        }
        self.reserved = to;
        Ok(())
    }

    fn grow(&mut self, len: u64) -> Result<(), SegError> {
        let what = || format!("growing {}", self.path.display());
        self.file.set_len(len).ctx(what)?;
        // SAFETY: as in `open`; the old map is dropped when replaced, and no slice of
        // it outlives this call (all reads copy out of the map).
        self.map = unsafe { MmapMut::map_mut(&self.file) }.ctx(what)?;
        Ok(())
    }
}

/// One open segment.
#[derive(Debug)]
pub(crate) struct Segment {
    base: Offset,
    log: Mapped,
    index: Mapped,
    time: Mapped,
    /// In-memory copies of the index files: (relative offset, position).
    offsets: Vec<(u32, u32)>,
    /// (max timestamp so far, relative offset of the batch that reached it).
    times: Vec<(i64, u32)>,
    state: SegmentState,
    bytes_since_index: u64,
    checkpoint: Checkpoint,
    flushed: u64,
    /// Bytes up to here were handed to writeback (`sync_file_range`), not yet synced.
    written_back: u64,
    index_interval: u64,
    /// For sealed segments, which open does not scan: the outcome of checking every
    /// batch header against `stamp_crc`, done on first use. `Some(err)` is corruption.
    headers_checked: OnceLock<Option<String>>,
}

pub(super) fn paths(dir: &Path, base: Offset) -> (PathBuf, PathBuf, PathBuf) {
    (
        dir.join(format!("{base:020}.log")),
        dir.join(format!("{base:020}.index")),
        dir.join(format!("{base:020}.timeindex")),
    )
}

pub(super) fn index_capacity(log_len: u64, interval: u64) -> u64 {
    log_len / interval.max(1) + 2
}

impl Segment {
    /// Creates a segment at `base`: the log file is written and synced under a
    /// temporary name (header and a first checkpoint), then renamed into place.
    pub(crate) fn create(
        dir: &Path,
        base: Offset,
        capacity: u64,
        index_interval: u64,
        marks: Marks,
        durability: &Durability,
    ) -> Result<Segment, SegError> {
        let (log_path, index_path, time_path) = paths(dir, base);
        let tmp = log_path.with_extension("log.tmp");
        let state = SegmentState {
            end: HEADER_LEN,
            next_offset: base,
            marks,
            max_timestamp: -1,
            stamp_crc: 0,
        };
        let checkpoint = Checkpoint::default().next(state.fields());
        {
            let what = || format!("creating {}", tmp.display());
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)
                .ctx(what)?;
            let mut header = encode_header(Magic::Segment, base as u64);
            let at = checkpoint.slot_offset();
            header[at..at + 64].copy_from_slice(&checkpoint.encode());
            if let Err(e) = f.write_all_at(&header, 0) {
                let _ = fs::remove_file(&tmp);
                return Err(full_or_io(what(), e));
            }
            f.set_len(capacity.max(HEADER_LEN)).ctx(what)?;
            durability.sync_file(&f, what)?;
        }
        // Index files are rebuilt from the log when in doubt, so they need no sync here.
        let _ = fs::remove_file(&index_path);
        let _ = fs::remove_file(&time_path);
        fs::rename(&tmp, &log_path).ctx(|| format!("renaming {}", tmp.display()))?;
        sync_dir(dir)?;
        let cap = index_capacity(capacity, index_interval);
        Ok(Segment {
            base,
            log: Mapped::open(&log_path, capacity.max(HEADER_LEN), false)?.without_readahead(),
            index: Mapped::open(&index_path, cap * INDEX_ENTRY as u64, true)?,
            time: Mapped::open(&time_path, cap * TIME_ENTRY as u64, true)?,
            offsets: Vec::new(),
            times: Vec::new(),
            state,
            bytes_since_index: 0,
            checkpoint,
            flushed: HEADER_LEN,
            written_back: HEADER_LEN,
            index_interval,
            headers_checked: OnceLock::from(None),
        })
    }

    /// Opens an existing segment. A sealed segment (`is_tail == false`) is trusted up to
    /// its checkpoint and its index files are loaded (rebuilt if they look wrong); the
    /// tail segment is scanned up to its checkpoint, every batch checked, and its
    /// indexes rebuilt. Bytes past the checkpoint are ignored: they were never flushed.
    pub(crate) fn open(
        dir: &Path,
        base: Offset,
        is_tail: bool,
        index_interval: u64,
    ) -> Result<Segment, SegError> {
        let (log_path, index_path, time_path) = paths(dir, base);
        let log = Mapped::open(&log_path, 0, false)?.without_readahead();
        let what = || format!("segment {}", log_path.display());
        let id = decode_header(Magic::Segment, &log.map, &what())?;
        if id as i64 != base {
            return Err(SegError::Corrupt(format!(
                "{}: header names base offset {id}",
                what()
            )));
        }
        let checkpoint = Checkpoint::read(&log.map)
            .ok_or_else(|| SegError::Corrupt(format!("{}: no valid checkpoint", what())))?;
        let state = SegmentState::from_fields(checkpoint.fields);
        if state.end < HEADER_LEN || state.end > log.map.len() as u64 || state.next_offset < base {
            return Err(SegError::Corrupt(format!(
                "{}: impossible checkpoint {state:?}",
                what()
            )));
        }
        let cap = index_capacity(log.map.len() as u64, index_interval);
        let mut seg = Segment {
            base,
            index: Mapped::open(&index_path, cap * INDEX_ENTRY as u64, true)?,
            time: Mapped::open(&time_path, cap * TIME_ENTRY as u64, true)?,
            log,
            offsets: Vec::new(),
            times: Vec::new(),
            state,
            bytes_since_index: 0,
            checkpoint,
            flushed: state.end,
            written_back: state.end,
            index_interval,
            headers_checked: OnceLock::new(),
        };
        if is_tail || !seg.load_indexes() {
            seg.rebuild()?;
            let _ = seg.headers_checked.set(None);
        }
        Ok(seg)
    }

    pub(crate) fn base(&self) -> Offset {
        self.base
    }

    /// The segment's files are in `dir` from now on (their directory was
    /// renamed: a staged log installed); the open files and maps stay.
    pub(crate) fn moved_to(&mut self, dir: &Path) {
        let (log, index, time) = paths(dir, self.base);
        self.log.path = log;
        self.index.path = index;
        self.time.path = time;
    }

    pub(crate) fn state(&self) -> SegmentState {
        self.state
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.state.end == HEADER_LEN
    }

    /// Whether a batch of `len` bytes fits in the preallocated space.
    pub(crate) fn fits(&self, len: usize) -> bool {
        self.state.end + len as u64 <= self.log.map.len() as u64
    }

    /// Grows an empty segment so that one batch of `len` bytes fits.
    pub(crate) fn grow_for(&mut self, len: usize) -> Result<(), SegError> {
        self.log.grow(HEADER_LEN + len as u64)?;
        self.log.no_readahead();
        Ok(())
    }

    /// Writes a verified batch, stamped, at the end of the log. The caller checked
    /// that it fits.
    ///
    /// The log file is written with `pwrite`, not through its map: pages dirtied
    /// through a shared mapping must be write-protected again (with a TLB flush on
    /// every CPU) when they are written back, which cost the produce path more than
    /// the copy itself. Reads still go through the map, which sees these writes.
    pub(crate) fn append(
        &mut self,
        h: &BatchHeader,
        bytes: &[u8],
        epoch: i32,
    ) -> Result<Appended, SegError> {
        self.append_at(self.state.next_offset, h, bytes, epoch)
    }

    /// [`append`](Self::append) at offset `base`, at or past the segment's
    /// next offset (a staged batch of a compacted log, after a gap).
    pub(crate) fn append_at(
        &mut self,
        base: Offset,
        h: &BatchHeader,
        bytes: &[u8],
        epoch: i32,
    ) -> Result<Appended, SegError> {
        debug_assert!(base >= self.state.next_offset);
        let pos = self.state.end;
        // The broker-owned fields lie in the first 16 bytes; the rest is written as sent.
        let mut head = [0u8; 16];
        head.copy_from_slice(&bytes[..16]);
        batch::stamp(&mut head, base, epoch);
        self.reserve_indexes()?;
        // A write the disk has no room for changes nothing: the end stays where
        // it was, and the bytes past it are overwritten by the next append.
        let what = || format!("appending to {}", self.log.path.display());
        self.log
            .file
            .write_all_at(&head, pos)
            .and_then(|()| self.log.file.write_all_at(&bytes[16..], pos + 16))
            .map_err(|e| full_or_io(what(), e))?;
        let stamped = BatchHeader {
            base_offset: base,
            leader_epoch: epoch,
            ..*h
        };
        self.note_batch(&stamped, pos);
        self.state.end = pos + bytes.len() as u64;
        self.start_writeback();
        Ok(Appended {
            base_offset: base,
            last_offset: stamped.last_offset(),
        })
    }

    /// Starts writing back each [`WRITEBACK_BYTES`] of appended data without waiting
    /// for it (`sync_file_range(SYNC_FILE_RANGE_WRITE)`), so that the flush's
    /// `fdatasync`, which runs on the group's task, finds little left to write.
    /// Durability is unchanged: only `fdatasync` counts. Best effort: an error here
    /// shows again at the flush.
    /// Allocates room in the index files for the entries the next batch may add.
    pub(super) fn reserve_indexes(&mut self) -> Result<(), SegError> {
        self.index
            .reserve(((self.offsets.len() + 1) * INDEX_ENTRY) as u64)?;
        self.time
            .reserve(((self.times.len() + 1) * TIME_ENTRY) as u64)
    }

    fn start_writeback(&mut self) {
        let end = self.state.end;
        if end - self.written_back < WRITEBACK_BYTES {
            return;
        }
        let (from, len) = (self.written_back, end - self.written_back);
        // SAFETY: a plain syscall on a descriptor this segment owns; no memory is passed.
        let rc = unsafe {
            libc::sync_file_range(
                self.log.file.as_raw_fd(),
                from as libc::off64_t,
                len as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            )
        };
        if rc == 0 {
            self.written_back = end;
        }
    }

    /// Position of the batch holding `offset`, by the sparse index and a short scan.
    fn position_of(&self, offset: Offset) -> Result<Option<u64>, Error> {
        if offset < self.base || offset >= self.state.next_offset {
            return Ok(None);
        }
        self.check_headers()?;
        let rel = (offset - self.base) as u32;
        let i = self.offsets.partition_point(|&(r, _)| r <= rel);
        let mut pos = if i == 0 {
            HEADER_LEN
        } else {
            self.offsets[i - 1].1 as u64
        };
        while pos < self.state.end {
            let h = self.header_at(pos)?;
            if h.last_offset() >= offset {
                return Ok(Some(pos));
            }
            pos += h.total_len() as u64;
        }
        Ok(None)
    }

    fn header_at(&self, pos: u64) -> Result<BatchHeader, Error> {
        let at = pos as usize;
        let h = BatchHeader::parse(&self.log.map[at..self.state.end as usize])
            .map_err(|e| self.corrupt(pos, e))?;
        if pos + h.total_len() as u64 > self.state.end {
            return Err(self.corrupt(pos, "batch runs past the end of the log"));
        }
        Ok(h)
    }

    fn corrupt(&self, pos: u64, why: impl std::fmt::Display) -> Error {
        Error::Corrupt(format!(
            "segment {} at byte {pos}: {why}",
            self.log.path.display()
        ))
    }

    /// Whole batches from the one holding `offset`, within `max_bytes` but at least
    /// one, none starting at or after `limit` (the high watermark); `None` when
    /// `offset` is not in this segment. Every batch is CRC-checked.
    pub(crate) fn read(
        &self,
        offset: Offset,
        max_bytes: usize,
        limit: Offset,
    ) -> Result<Option<Bytes>, Error> {
        let Some(start) = self.position_of(offset)? else {
            return Ok(None);
        };
        self.log.will_need(
            start,
            self.state.end.min(start.saturating_add(max_bytes as u64)),
        );
        let mut pos = start;
        while pos < self.state.end {
            let h = self.header_at(pos)?;
            let len = h.total_len() as u64;
            if h.base_offset >= limit || (pos > start && (pos + len - start) as usize > max_bytes) {
                break;
            }
            batch::verify(&self.log.map[pos as usize..(pos + len) as usize])
                .map_err(|e| self.corrupt(pos, e))?;
            pos += len;
        }
        Ok(Some(Bytes::copy_from_slice(
            &self.log.map[start as usize..pos as usize],
        )))
    }

    /// Base offset of the first batch at or after `from` whose max timestamp is at
    /// least `ts`.
    pub(crate) fn find_timestamp(&self, ts: i64, from: Offset) -> Result<Option<Offset>, Error> {
        if self.state.max_timestamp < ts {
            return Ok(None);
        }
        // The last recorded maximum below `ts` marks a batch before which nothing
        // reaches `ts`.
        let i = self.times.partition_point(|&(t, _)| t < ts);
        let mut start = if i == 0 {
            self.base
        } else {
            self.base + self.times[i - 1].1 as i64
        };
        start = start.max(from);
        let Some(mut pos) = self.position_of(start)? else {
            return Ok(None);
        };
        while pos < self.state.end {
            let h = self.header_at(pos)?;
            if h.max_timestamp >= ts {
                return Ok(Some(h.base_offset.max(from)));
            }
            pos += h.total_len() as u64;
        }
        Ok(None)
    }

    /// Makes the appended batches durable, then writes and syncs a checkpoint naming
    /// them together with `marks`.
    pub(crate) fn flush(&mut self, marks: Marks, durability: &Durability) -> Result<(), SegError> {
        let what = || format!("flushing {}", self.log.path.display());
        if self.state.end > self.flushed {
            durability.sync_file(&self.log.file, what)?;
        }
        self.state.marks = marks;
        let cp = self.checkpoint.next(self.state.fields());
        self.log
            .file
            .write_all_at(&cp.encode(), cp.slot_offset() as u64)
            .ctx(what)?;
        durability.sync_file(&self.log.file, what)?;
        self.checkpoint = cp;
        self.flushed = self.state.end;
        Ok(())
    }

    /// Flushes and also syncs the index files: called before a newer segment starts,
    /// after which this one is only read.
    pub(crate) fn seal(&mut self, marks: Marks, durability: &Durability) -> Result<(), SegError> {
        self.flush(marks, durability)?;
        let what = || format!("syncing the indexes of {}", self.log.path.display());
        durability.sync_map(&self.index.map, 0, self.index.map.len(), what)?;
        durability.sync_map(&self.time.map, 0, self.time.map.len(), what)
    }

    /// Deletes the segment's files.
    pub(crate) fn delete(self) -> Result<(), SegError> {
        for p in [&self.log.path, &self.index.path, &self.time.path] {
            fs::remove_file(p).ctx(|| format!("deleting {}", p.display()))?;
        }
        Ok(())
    }
}
