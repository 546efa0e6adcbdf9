//! Opening a segment: loading its indexes, rebuilding them from the log when they
//! are stale, and checking batch headers.

use super::*;

impl Segment {
    /// Loads the index files of a sealed segment; false when they look wrong.
    pub(super) fn load_indexes(&mut self) -> bool {
        let (mut offsets, mut times) = (Vec::new(), Vec::new());
        for e in self.index.map.chunks_exact(INDEX_ENTRY) {
            let rel = u32::from_le_bytes([e[0], e[1], e[2], e[3]]);
            let pos = u32::from_le_bytes([e[4], e[5], e[6], e[7]]);
            if pos == 0 {
                break;
            }
            let ok = (pos as u64) < self.state.end
                && offsets.last().is_none_or(|&(r, p)| rel > r && pos > p);
            if !ok {
                return false;
            }
            offsets.push((rel, pos));
        }
        for e in self.time.map.chunks_exact(TIME_ENTRY) {
            let ts = i64::from_le_bytes([e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7]]);
            let rel = u32::from_le_bytes([e[8], e[9], e[10], e[11]]);
            let check = u32::from_le_bytes([e[12], e[13], e[14], e[15]]);
            if check != rel ^ TIME_CHECK {
                break;
            }
            if times.last().is_some_and(|&(t, r)| ts <= t || rel < r) {
                return false;
            }
            times.push((ts, rel));
        }
        self.offsets = offsets;
        self.times = times;
        true
    }

    /// Walks the batch headers up to the checkpointed end, checking each one, and
    /// rewrites both indexes from them.
    pub(super) fn rebuild(&mut self) -> Result<(), SegError> {
        let want_next = self.state.next_offset;
        let want_crc = self.state.stamp_crc;
        self.walk(self.state.end)?;
        // A cleaned segment's batches may end before the offsets it covers
        // (the cleaner removed its last ones): the checkpoint keeps the end.
        if self.state.next_offset > want_next || self.state.stamp_crc != want_crc {
            return Err(SegError::Corrupt(format!(
                "segment {}: batches end at offset {} with header checksum {:#x}, but the checkpoint says {want_next} and {want_crc:#x}",
                self.log.path.display(),
                self.state.next_offset,
                self.state.stamp_crc,
            )));
        }
        self.state.next_offset = want_next;
        Ok(())
    }

    /// Resets the segment's state and indexes to the batches found by walking their
    /// headers from the start up to `end`, which must be a batch boundary.
    pub(super) fn walk(&mut self, end: u64) -> Result<(), SegError> {
        self.offsets.clear();
        self.times.clear();
        self.bytes_since_index = 0;
        self.state.stamp_crc = 0;
        self.state.end = HEADER_LEN;
        self.state.next_offset = self.base;
        self.state.max_timestamp = -1;
        let mut pos = HEADER_LEN;
        while pos < end {
            let at = pos as usize;
            let bad = |why: String| {
                SegError::Corrupt(format!(
                    "segment {}: flushed batch at byte {at} is invalid: {why}",
                    self.log.path.display()
                ))
            };
            let h = BatchHeader::parse(&self.log.map[at..end as usize])
                .map_err(|e| bad(e.to_string()))?;
            let len = h.total_len();
            if pos + len as u64 > end {
                return Err(bad("runs past the flushed end".into()));
            }
            // Bodies are not checksummed here: every read checks each batch it serves
            // (`read`), so a restart costs a walk over the headers, not a read of the
            // whole tail. The headers are checked against the checkpoint's checksum
            // of them (`stamp_crc`) by `rebuild`.
            // Offsets only grow; a gap is where the cleaner of a compacted
            // topic removed whole batches.
            if h.base_offset < self.state.next_offset {
                return Err(bad(format!(
                    "base offset {} where {} or later was expected",
                    h.base_offset, self.state.next_offset
                )));
            }
            self.reserve_indexes()?;
            self.note_batch(&h, pos);
            pos += len as u64;
            self.state.end = pos;
        }
        // Entries past the rebuilt ones are stale (an index longer before a crash
        // cut the log): clear them up to the first empty one, which ends each list.
        // (Not the whole files: zeroing 384 KiB of maps per partition was most of a
        // restart with 1,000 partitions.)
        clear_stale(&mut self.index.map, self.offsets.len(), INDEX_ENTRY);
        clear_stale(&mut self.time.map, self.times.len(), TIME_ENTRY);
        Ok(())
    }

    /// Checks a sealed segment's batch headers (order and `stamp_crc`) once.
    pub(super) fn check_headers(&self) -> Result<(), Error> {
        let outcome = self.headers_checked.get_or_init(|| {
            let mut pos = HEADER_LEN;
            let mut next = self.base;
            let mut crc = 0;
            while pos < self.state.end {
                let h = match self.header_at(pos) {
                    Ok(h) => h,
                    Err(e) => return Some(e.to_string()),
                };
                if h.base_offset < next {
                    return Some(format!(
                        "segment {} at byte {pos}: base offset {} where {next} or later was expected",
                        self.log.path.display(),
                        h.base_offset
                    ));
                }
                crc = crc32c::crc32c_append(crc, &self.log.map[pos as usize..pos as usize + 16]);
                next = h.last_offset() + 1;
                pos += h.total_len() as u64;
            }
            (crc != self.state.stamp_crc || next > self.state.next_offset).then(|| {
                format!(
                    "segment {}: batch headers do not match the checkpoint",
                    self.log.path.display()
                )
            })
        });
        match outcome {
            Some(why) => Err(Error::Corrupt(why.clone())),
            None => Ok(()),
        }
    }

    /// Updates indexes and state for a batch now stored at `pos`.
    pub(super) fn note_batch(&mut self, h: &BatchHeader, pos: u64) {
        let rel = (h.base_offset - self.base) as u32;
        if self.offsets.is_empty() || self.bytes_since_index >= self.index_interval {
            let i = self.offsets.len() * INDEX_ENTRY;
            if i + INDEX_ENTRY <= self.index.map.len() {
                self.index.map[i..i + 4].copy_from_slice(&rel.to_le_bytes());
                self.index.map[i + 4..i + 8].copy_from_slice(&(pos as u32).to_le_bytes());
                self.offsets.push((rel, pos as u32));
            }
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += h.total_len() as u64;
        if h.max_timestamp > self.state.max_timestamp {
            // Every increase of the running maximum is recorded, so a lookup that
            // starts at the last entry below the target misses nothing.
            let i = self.times.len() * TIME_ENTRY;
            if i + TIME_ENTRY <= self.time.map.len() {
                self.time.map[i..i + 8].copy_from_slice(&h.max_timestamp.to_le_bytes());
                self.time.map[i + 8..i + 12].copy_from_slice(&rel.to_le_bytes());
                self.time.map[i + 12..i + 16].copy_from_slice(&(rel ^ TIME_CHECK).to_le_bytes());
                self.times.push((h.max_timestamp, rel));
            }
            self.state.max_timestamp = h.max_timestamp;
        }
        let mut stamp = [0u8; 16];
        stamp[0..8].copy_from_slice(&h.base_offset.to_be_bytes());
        stamp[8..12].copy_from_slice(&h.batch_length.to_be_bytes());
        stamp[12..16].copy_from_slice(&h.leader_epoch.to_be_bytes());
        self.state.stamp_crc = crc32c::crc32c_append(self.state.stamp_crc, &stamp);
        self.state.next_offset = h.last_offset() + 1;
    }
}

/// Zeroes the `size`-byte entries of an index map from entry `from` on, up to the
/// first entry that is already all zeros.
fn clear_stale(map: &mut MmapMut, from: usize, size: usize) {
    for e in map[from * size..].chunks_exact_mut(size) {
        if e.iter().all(|&b| b == 0) {
            break;
        }
        e.fill(0);
    }
}
