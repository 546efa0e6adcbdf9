//! WAL files: creating one (with the checkpoint and the records carried forward),
//! writing records, rolling to the next file and deleting files nothing needs.

use super::*;

impl Wal {
    /// Creates WAL file `seq` through a temporary name, with a header, the state of
    /// every group and a checkpoint, all synced before the rename.
    pub(super) fn create_file(&mut self, seq: u64) -> Result<(), SegError> {
        let path = self.dir.join(file_name(seq));
        let tmp = self.dir.join(format!("{}.tmp", file_name(seq)));
        let what = || format!("creating WAL file {}", path.display());
        let mut buf = encode_header(Magic::Wal, seq);
        for (g, log) in &self.groups {
            let hs = proto_bytes(&log.hard_state)?;
            let cs = proto_bytes(&log.conf_state)?;
            encode_record(
                &mut buf,
                KIND_GROUP_STATE_V2,
                *g,
                &[
                    &log.snap_index.to_le_bytes(),
                    &log.snap_term.to_le_bytes(),
                    &log.last_index().to_le_bytes(),
                    &(hs.len() as u32).to_le_bytes(),
                    &hs,
                    &cs,
                ],
            );
        }
        let relocated = self.relocate_into(&mut buf);
        let checkpoint = Checkpoint::default().next([buf.len() as u64, 0, 0, 0, 0, 0]);
        buf[checkpoint.slot_offset()..checkpoint.slot_offset() + 64]
            .copy_from_slice(&checkpoint.encode());
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .ctx(what)?;
        if let Err(e) = file.write_all_at(&buf, 0) {
            let _ = fs::remove_file(&tmp);
            return Err(full_or_io(what(), e));
        }
        (&file).seek(SeekFrom::Start(buf.len() as u64)).ctx(what)?;
        self.durability.sync_file(&file, what)?;
        fs::rename(&tmp, &path).ctx(what)?;
        sync_dir(&self.dir)?;
        self.files.insert(
            seq,
            WalFile {
                file: Arc::new(file),
                path,
            },
        );
        self.live.insert(seq, 0);
        self.current = seq;
        self.pos = buf.len() as u64;
        self.dirty = false;
        for (g, rec, pos, len) in relocated {
            self.apply(
                g,
                rec,
                Loc {
                    term: 0,
                    seq,
                    pos,
                    len,
                    placed: None,
                },
            );
        }
        Ok(())
    }

    /// Copies, into `buf` (the head of a new file), the whole live log of every small
    /// group with an entry in the oldest live file: the records, byte for byte.
    ///
    /// Files are deleted oldest first, so a group whose log is never compacted (the
    /// metadata group) or that went idle would otherwise keep its oldest file, and
    /// every later one, forever. Replaying the copy supersedes the originals (an entry
    /// record replaces the log from its index on), and the copy is synced with the
    /// new file before the file is named, so the old file can go at the next
    /// collection. Groups over [`Wal::relocate_limit`] are left alone: they shrink by
    /// compaction. Returns what to apply once the file is in place: (group, record,
    /// position, length).
    pub(super) fn relocate_into(&self, buf: &mut Vec<u8>) -> Vec<(GroupId, Record, u64, u32)> {
        let Some(oldest) = self.live.iter().find(|(_, n)| **n > 0).map(|(s, _)| *s) else {
            return Vec::new();
        };
        let limit = self.relocate_limit();
        let mut out = Vec::new();
        for (g, log) in &self.groups {
            if log.locs.front().is_none_or(|l| l.seq > oldest) {
                continue;
            }
            let bytes: u64 = log.locs.iter().map(|l| u64::from(l.len)).sum();
            if bytes > limit {
                continue;
            }
            let start = buf.len();
            let mut recs = Vec::with_capacity(log.locs.len());
            for (i, loc) in log.locs.iter().enumerate() {
                let index = log.snap_index + 1 + i as u64;
                match self.read_raw(*g, index, *loc) {
                    Ok(raw) => {
                        recs.push((
                            *g,
                            Record::Entry {
                                index,
                                term: loc.term,
                                placed: loc.placed,
                            },
                            buf.len() as u64,
                            loc.len,
                        ));
                        buf.extend_from_slice(&raw);
                    }
                    Err(e) => {
                        // Left where it is; reading it again will report the fault.
                        tracing::warn!(group = %g, error = %e, "not relocating a Raft log");
                        buf.truncate(start);
                        recs.clear();
                        break;
                    }
                }
            }
            out.extend(recs);
        }
        out
    }

    /// The largest log (in record bytes) that [`Wal::relocate_into`] copies.
    pub(super) fn relocate_limit(&self) -> u64 {
        (self.file_bytes / 8).min(8 << 20)
    }

    /// Writes encoded records at the end of the current file and applies them.
    pub(super) fn write(
        &mut self,
        buf: Vec<u8>,
        recs: Vec<(GroupId, Record, u32)>,
    ) -> Result<(), SegError> {
        self.write_slices(&mut [IoSlice::new(&buf)], recs)
    }

    pub(super) fn write_slices(
        &mut self,
        slices: &mut [IoSlice<'_>],
        recs: Vec<(GroupId, Record, u32)>,
    ) -> Result<(), SegError> {
        let seq = self.current;
        let f = &self.files[&seq];
        let pos = self.pos;
        let total: usize = slices.iter().map(|s| s.len()).sum();
        if let Err(e) = write_all_vectored(&f.file, slices) {
            let what = format!("appending to {}", f.path.display());
            if !weir_core::error::is_out_of_space(&e) {
                return Err(SegError::Io(what, e));
            }
            // A full disk: cut what part of the records got written, so that the
            // file ends where the log does and the write can be tried again.
            f.file
                .set_len(pos)
                .and_then(|()| (&*f.file).seek(SeekFrom::Start(pos)))
                .ctx(|| format!("undoing a partial write to {}", f.path.display()))?;
            return Err(full_or_io(what, e));
        }
        self.pos += total as u64;
        self.dirty = true;
        let mut at = pos;
        for (g, rec, len) in recs {
            self.apply(
                g,
                rec,
                Loc {
                    term: 0,
                    seq,
                    pos: at,
                    len,
                    placed: None,
                },
            );
            at += len as u64;
        }
        if self.pos >= self.file_bytes {
            match self.roll() {
                // The records are written; the next file waits for space, and
                // this one grows meanwhile.
                Err(SegError::Full(why)) => tracing::warn!(
                    error = %why,
                    "no room to start the next WAL file; the current one grows until space is freed"
                ),
                r => r?,
            }
        }
        Ok(())
    }

    pub(super) fn write_one(
        &mut self,
        group: GroupId,
        kind: u8,
        payload: &[&[u8]],
        rec: Record,
    ) -> Result<(), SegError> {
        let mut buf = Vec::new();
        let len = encode_record(&mut buf, kind, group, payload);
        self.write(buf, vec![(group, rec, len)])
    }

    /// Syncs the full file, then starts the next one and deletes dead files.
    pub(super) fn roll(&mut self) -> Result<(), SegError> {
        let f = &self.files[&self.current];
        self.durability
            .sync_file(&f.file, || format!("syncing {}", f.path.display()))?;
        self.create_file(self.current + 1)?;
        self.collect_garbage()
    }

    /// Deletes the oldest files while no live entry refers to them. Only called right
    /// after a sync that covered every record written so far (a roll, or a
    /// `raft_sync` with no write during it): the records that killed those entries
    /// (overwrites, compactions, removals) are then durable, so no crash can bring
    /// back a state that needs the deleted entries.
    pub(super) fn collect_garbage(&mut self) -> Result<(), SegError> {
        let mut removed = false;
        while let Some((&seq, &n)) = self.live.first_key_value() {
            if seq >= self.current || n > 0 {
                break;
            }
            self.live.remove(&seq);
            if let Some(f) = self.files.remove(&seq) {
                fs::remove_file(&f.path).ctx(|| format!("deleting {}", f.path.display()))?;
                removed = true;
            }
        }
        if removed {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }
}

/// Writes all of `slices` at the file's cursor, which always sits at the end of the
/// log (set at open, after a cut, and at creation).
pub(super) fn write_all_vectored(
    mut f: &File,
    mut slices: &mut [IoSlice<'_>],
) -> std::io::Result<()> {
    use std::io::Write;
    while !slices.is_empty() {
        match f.write_vectored(slices) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::WriteZero,
                    "short write",
                ));
            }
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
