//! A cleaned copy of a sealed segment (compacted topics, docs/compaction.md):
//! written beside it under a temporary name, synced, then renamed over it.
//! The copy covers the same offsets (its checkpoint keeps the segment's next
//! offset even when the cleaner removed its last batches) and is exactly as
//! long as its batches: it is never appended to.

use super::*;

/// A cleaned segment being written.
#[derive(Debug)]
pub(crate) struct CleanedFile {
    path: PathBuf,
    file: File,
    base: Offset,
    /// The offsets the copy covers end here (the original's next offset).
    next_offset: Offset,
    end: u64,
    stamp_crc: u32,
    max_timestamp: i64,
}

impl CleanedFile {
    /// Starts the cleaned copy of the segment at `base` in `dir`, which covers
    /// offsets up to `next_offset`. A copy left by a crash is removed at open
    /// (its name ends in `.tmp`).
    pub(crate) fn create(
        dir: &Path,
        base: Offset,
        next_offset: Offset,
    ) -> Result<CleanedFile, SegError> {
        let (log_path, _, _) = paths(dir, base);
        let path = log_path.with_extension("log.clean.tmp");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .ctx(|| format!("creating {}", path.display()))?;
        Ok(CleanedFile {
            path,
            file,
            base,
            next_offset,
            end: HEADER_LEN,
            stamp_crc: 0,
            max_timestamp: -1,
        })
    }

    /// Appends a verified, stamped batch (its base offset past the last one's,
    /// within the segment's offsets: the caller checked).
    pub(crate) fn append(&mut self, h: &BatchHeader, bytes: &[u8]) -> Result<(), SegError> {
        self.file
            .write_all_at(bytes, self.end)
            .map_err(|e| full_or_io(format!("writing {}", self.path.display()), e))?;
        self.end += bytes.len() as u64;
        self.stamp_crc = crc32c::crc32c_append(self.stamp_crc, &bytes[..16]);
        self.max_timestamp = self.max_timestamp.max(h.max_timestamp);
        Ok(())
    }

    /// Writes the header page with a checkpoint naming the batches (and
    /// `marks`, which only a tail segment's matter for), and syncs the file.
    pub(crate) fn finish(&self, marks: Marks, durability: &Durability) -> Result<(), SegError> {
        let what = || format!("finishing {}", self.path.display());
        let state = SegmentState {
            end: self.end,
            next_offset: self.next_offset,
            marks,
            max_timestamp: self.max_timestamp,
            stamp_crc: self.stamp_crc,
        };
        let checkpoint = Checkpoint::default().next(state.fields());
        let mut header = encode_header(Magic::Segment, self.base as u64);
        let at = checkpoint.slot_offset();
        header[at..at + 64].copy_from_slice(&checkpoint.encode());
        self.file
            .write_all_at(&header, 0)
            .map_err(|e| full_or_io(what(), e))?;
        self.file.set_len(self.end).ctx(what)?;
        durability.sync_file(&self.file, what)
    }

    /// Removes the unfinished copy.
    pub(crate) fn discard(self) {
        let _ = fs::remove_file(&self.path);
    }
}

impl Segment {
    /// Whether the segment is still as the cleaner listed it: same offsets,
    /// same bytes.
    pub(crate) fn is_unit(&self, next_offset: Offset, bytes: u64) -> bool {
        self.state.next_offset == next_offset && self.state.end == bytes
    }

    /// Replaces this sealed segment by its cleaned copy `c`, finished (synced)
    /// already: the index files go (they are rebuilt from the new log), and
    /// the copy is renamed over the log file. A crash leaves the old segment
    /// (without index files, rebuilt when read) or the new one.
    pub(crate) fn replace_with(self, c: CleanedFile) -> Result<Segment, SegError> {
        let dir = self
            .log
            .path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let (base, interval) = (self.base, self.index_interval);
        let (log_path, index_path, time_path) = paths(&dir, base);
        drop(self);
        for p in [&index_path, &time_path] {
            match fs::remove_file(p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(SegError::Io(format!("removing {}", p.display()), e)),
            }
        }
        // The old indexes are gone for good before the new log can appear.
        sync_dir(&dir)?;
        fs::rename(&c.path, &log_path).ctx(|| format!("renaming {}", c.path.display()))?;
        sync_dir(&dir)?;
        let mut seg = Segment::open(&dir, base, false, interval)?;
        if seg.offsets.is_empty() && !seg.is_empty() {
            seg.rebuild()?;
            let _ = seg.headers_checked.set(None);
        }
        Ok(seg)
    }
}
