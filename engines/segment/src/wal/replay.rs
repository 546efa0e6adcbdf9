//! Replaying WAL files at open: every record re-applied to the index, a torn tail
//! cut, damage below a synced position reported as corruption.

use super::*;

impl Wal {
    pub(super) fn replay_file(&mut self, seq: u64, is_last: bool) -> Result<(), SegError> {
        let path = self.dir.join(file_name(seq));
        let what = || format!("WAL file {}", path.display());
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .ctx(what)?;
        // Mapped, not read: replay only looks at the bytes once, and copying every
        // file into memory was the largest cost of opening.
        // SAFETY: the engine holds an exclusive lock on its data directory, so no other
        // process changes the file while it is mapped; this process cuts it only
        // after the map is dropped, below.
        #[allow(unsafe_code)]
        let map = unsafe { memmap2::Mmap::map(&file) }.ctx(what)?;
        let bytes: &[u8] = &map;
        let id = decode_header(Magic::Wal, bytes, &what())?;
        if id != seq {
            return Err(SegError::Corrupt(format!(
                "{}: header names file {id}",
                what()
            )));
        }
        let checkpoint = Checkpoint::read(bytes).unwrap_or_default();
        let mut pos = HEADER_LEN as usize;
        while pos < bytes.len() {
            let Some((kind, group, payload, len)) = parse_record(&bytes[pos..]) else {
                break;
            };
            let Some(rec) = decode_record(kind, payload) else {
                break;
            };
            if kind == KIND_SYNC_MARK
                && let Some(named) = u64_at(payload, 0)
            {
                self.synced_to = self.synced_to.max((seq, named));
            }
            let loc = Loc {
                term: 0,
                seq,
                pos: pos as u64,
                len: len as u32,
                placed: None,
            };
            self.apply(group, rec, loc);
            pos += len;
        }
        if pos < bytes.len() {
            let synced = if is_last {
                checkpoint.fields[0] as usize
            } else {
                bytes.len()
            };
            let synced = synced.max(synced_beyond(bytes, pos));
            if pos < synced {
                return Err(SegError::Corrupt(format!(
                    "{}: invalid record at byte {pos}, below the synced position {synced}",
                    what()
                )));
            }
            tracing::warn!(file = %path.display(), at = pos, len = bytes.len(), "cutting torn WAL tail");
            drop(map);
            file.set_len(pos as u64)
                .ctx(|| format!("truncating {}", what()))?;
            self.durability
                .sync_file(&file, || format!("syncing {}", what()))?;
        }
        (&file).seek(SeekFrom::Start(pos as u64)).ctx(what)?;
        self.files.insert(
            seq,
            WalFile {
                file: Arc::new(file),
                path,
            },
        );
        self.live.entry(seq).or_insert(0);
        self.current = seq;
        self.pos = pos as u64;
        Ok(())
    }
}

/// The largest position named by a valid sync mark found anywhere after `from`.
/// Scans byte by byte, since the record boundaries after an invalid record are
/// unknown; only done when opening a file with an invalid record in it.
pub(super) fn synced_beyond(bytes: &[u8], from: usize) -> usize {
    let mut best = 0;
    let mut at = from + 1;
    while at + SYNC_MARK_LEN <= bytes.len() {
        let b = &bytes[at..];
        if b[0..4] == [8, 0, 0, 0]
            && b[8] == KIND_SYNC_MARK
            && let Some((KIND_SYNC_MARK, _, payload, _)) = parse_record(b)
            && let Some(synced) = u64_at(payload, 0)
        {
            best = best.max(synced as usize);
        }
        at += 1;
    }
    best
}
