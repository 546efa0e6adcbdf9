//! The tail of a segment that also holds Raft entries' batches (a unified log,
//! docs/write-path.md): batches synced past the last checkpoint, found again at
//! open; cutting a conflicting suffix; reading one stored batch exactly.

use super::*;

impl Segment {
    /// Extends the tail segment, after [`Segment::open`], with the batches stored
    /// past its checkpoint: a unified log syncs batches with the Raft log, not with
    /// a checkpoint. Each batch found must continue the offsets and pass its CRC;
    /// the first that does not ends the scan (a torn write, stale bytes of a cut
    /// suffix, or the zeroes of preallocated space). What is found is not yet
    /// trusted: the engine keeps only batches its Raft log refers to.
    ///
    /// The scan stops where the file's data does (`SEEK_HOLE`): the preallocated
    /// space past the last write is a hole, and touching it through the map
    /// would read ahead (and zero) up to `read_ahead_kb` of it — 8 MiB per
    /// partition on the benchmark VM, which made a restart with 1,000 partitions
    /// take 25 s.
    pub(crate) fn scan_beyond_checkpoint(&mut self) -> Result<(), SegError> {
        let mut pos = self.state.end;
        let cap = data_end(&self.log.file, pos).min(self.log.map.len() as u64);
        self.log.will_need(pos, cap);
        while pos < cap {
            let at = pos as usize;
            let Ok(h) = BatchHeader::parse(&self.log.map[at..cap as usize]) else {
                break;
            };
            let len = h.total_len() as u64;
            if h.base_offset != self.state.next_offset
                || pos + len > cap
                || batch::verify(&self.log.map[at..(pos + len) as usize]).is_err()
            {
                break;
            }
            self.reserve_indexes()?;
            self.note_batch(&h, pos);
            pos += len;
            self.state.end = pos;
        }
        self.written_back = self.state.end;
        Ok(())
    }

    /// Cuts the segment before the batch at `offset`, which must start a batch in
    /// it (or be its next offset). Only the in-memory state and the indexes change;
    /// when the cut lies below the last checkpoint the caller writes a new one
    /// ([`Segment::flush`]) before anything is appended again.
    pub(crate) fn cut(&mut self, offset: Offset) -> Result<(), SegError> {
        if offset >= self.state.next_offset {
            return Ok(());
        }
        let pos = if offset <= self.base {
            HEADER_LEN
        } else {
            match self.position_of(offset) {
                Ok(Some(p)) => p,
                Ok(None) => HEADER_LEN,
                Err(e) => return Err(SegError::Corrupt(e.to_string())),
            }
        };
        self.walk(pos)?;
        if self.state.next_offset != offset.max(self.base) {
            return Err(SegError::Corrupt(format!(
                "segment {}: offset {offset} does not start a batch (the cut ended at {})",
                self.log.path.display(),
                self.state.next_offset
            )));
        }
        self.flushed = self.flushed.min(pos);
        self.written_back = self.written_back.min(pos);
        self.headers_checked = OnceLock::from(None);
        Ok(())
    }

    /// The stored batch whose base offset is `base`, if it has `len` bytes and the
    /// CRC `crc` (what a Raft entry's record says of it) and passes that CRC.
    pub(crate) fn batch_at(&self, base: Offset, len: u32, crc: u32) -> Result<Bytes, Error> {
        self.checked_batch(base, len, crc)
            .map(Bytes::copy_from_slice)
    }

    /// Whether the batch at `base` is stored here as `len` bytes with CRC `crc`
    /// (and passes it): [`Segment::batch_at`] without the copy.
    pub(crate) fn has_batch(&self, base: Offset, len: u32, crc: u32) -> bool {
        self.checked_batch(base, len, crc).is_ok()
    }

    fn checked_batch(&self, base: Offset, len: u32, crc: u32) -> Result<&[u8], Error> {
        let missing = || {
            Error::Corrupt(format!(
                "segment {}: no batch of {len} bytes with CRC {crc:#x} at offset {base}",
                self.log.path.display()
            ))
        };
        let pos = self.position_of(base)?.ok_or_else(missing)?;
        let h = self.header_at(pos)?;
        if h.base_offset != base || h.total_len() as u32 != len || h.crc != crc {
            return Err(missing());
        }
        self.log.will_need(pos, pos + u64::from(len));
        let bytes = &self.log.map[pos as usize..pos as usize + len as usize];
        batch::verify(bytes).map_err(|e| self.corrupt(pos, e))?;
        Ok(bytes)
    }

    /// The log file, to sync without holding the partition (group commit).
    pub(crate) fn log_file(&self) -> Arc<File> {
        self.log.file.clone()
    }

    /// Whether cutting before `offset` removes bytes the last checkpoint covers.
    pub(crate) fn cut_reaches_checkpoint(&self, offset: Offset) -> bool {
        let pos = match self.position_of(offset) {
            Ok(Some(p)) if offset > self.base => p,
            _ => HEADER_LEN,
        };
        pos < self.flushed
    }
}

/// Where the data at or after `from` ends: the next hole (`SEEK_HOLE`), or the
/// file's length when the file system cannot tell.
fn data_end(file: &File, from: u64) -> u64 {
    // SAFETY: a plain syscall on a descriptor the caller owns; no memory is passed.
    let at = unsafe { libc::lseek(file.as_raw_fd(), from as libc::off_t, libc::SEEK_HOLE) };
    if at >= 0 {
        return at as u64;
    }
    file.metadata().map_or(u64::MAX, |m| m.len())
}
