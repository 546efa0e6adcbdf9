//! The Raft log of every group, in one write-ahead log (see `docs/format.md`).
//!
//! All groups share one sequence of WAL files, so one `fdatasync` makes the writes of
//! every group durable (group commit). An in-memory index maps each group's entries to
//! their record in a file; entry bytes are read back with `pread` and checked against
//! their CRC on every read.
//!
//! Recovery replays every file in order. In the last file, the first invalid record
//! ends the log: if it lies below a position known to have been synced — the
//! checkpoint written when the file was created, or any valid sync mark found after
//! it — the data is corrupt and opening fails; otherwise it is a torn tail and the
//! file is cut there. Every other file must be valid to its end.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{IoSlice, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use protobuf::{Message as _, ProtobufEnum as _};
use weir_core::engine::LogBounds;
use weir_core::eraftpb::{ConfState, Entry, EntryType, HardState, SnapshotMetadata};
use weir_core::{Error, GroupId, RaftState};

use crate::durability::{Durability, sync_dir};
use crate::error::{IoContext, SegError};
use crate::format::{Checkpoint, HEADER_LEN, Magic, decode_header, encode_header};

const REC_HEADER: usize = 17;
/// Largest record payload accepted when reading (a Raft entry is at most a few MiB).
const MAX_PAYLOAD: usize = 256 << 20;

const KIND_ENTRY: u8 = 1;
const KIND_HARD_STATE: u8 = 2;
const KIND_CONF_STATE: u8 = 3;
const KIND_COMPACT: u8 = 4;
const KIND_SNAPSHOT: u8 = 5;
const KIND_REMOVE: u8 = 6;
const KIND_GROUP_STATE: u8 = 7;
const KIND_SYNC_MARK: u8 = 8;
const KIND_GROUP_STATE_V2: u8 = 9;
/// Encoded size of a sync mark record.
const SYNC_MARK_LEN: usize = REC_HEADER + 8;

/// Where one entry's record is.
#[derive(Clone, Copy, Debug)]
struct Loc {
    term: u64,
    seq: u64,
    pos: u64,
    len: u32,
}

impl Loc {
    /// Stands, during replay, for an entry whose file was deleted: a later record
    /// must supersede it (overwrite, compaction, snapshot, removal), or opening fails.
    const MISSING: Loc = Loc {
        term: 0,
        seq: u64::MAX,
        pos: 0,
        len: 0,
    };
}

#[derive(Debug, Default)]
struct GroupLog {
    snap_index: u64,
    snap_term: u64,
    hard_state: HardState,
    conf_state: ConfState,
    locs: VecDeque<Loc>,
}

impl GroupLog {
    fn last_index(&self) -> u64 {
        self.snap_index + self.locs.len() as u64
    }
}

/// A decoded record, as written and as replayed.
#[derive(Debug)]
enum Record {
    Entry {
        index: u64,
        term: u64,
    },
    HardState(HardState),
    ConfState(ConfState),
    Compact {
        index: u64,
        term: u64,
    },
    Snapshot(SnapshotMetadata),
    Remove,
    GroupState {
        snap_index: u64,
        snap_term: u64,
        /// The last index when the file was created (absent in files written before
        /// it was recorded).
        last_index: Option<u64>,
        hard_state: HardState,
        conf_state: ConfState,
    },
    /// A sync mark: everything before the position it names was durable when it
    /// was written (read from the bytes by `synced_beyond`).
    SyncMark,
}

#[derive(Debug)]
struct WalFile {
    file: Arc<File>,
    path: PathBuf,
}

/// The write-ahead log holding every group's Raft log.
#[derive(Debug)]
pub(crate) struct Wal {
    dir: PathBuf,
    file_bytes: u64,
    files: BTreeMap<u64, WalFile>,
    current: u64,
    pos: u64,
    groups: BTreeMap<GroupId, GroupLog>,
    /// Live entry records per file; a file whose count reaches 0 may be deleted once
    /// every older file is gone.
    live: BTreeMap<u64, u64>,
    dirty: bool,
    durability: Arc<Durability>,
}

fn proto_bytes(m: &impl protobuf::Message) -> Vec<u8> {
    m.write_to_bytes().unwrap_or_default()
}

fn encode_record(out: &mut Vec<u8>, kind: u8, group: GroupId, payload: &[&[u8]]) -> u32 {
    let start = out.len();
    let len: usize = payload.iter().map(|p| p.len()).sum();
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.push(kind);
    out.extend_from_slice(&group.0.to_le_bytes());
    for p in payload {
        out.extend_from_slice(p);
    }
    let crc = crc32c::crc32c(&out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    (out.len() - start) as u32
}

fn entry_payload_head(e: &Entry) -> Vec<u8> {
    let mut h = Vec::with_capacity(21 + e.context.len());
    h.extend_from_slice(&e.index.to_le_bytes());
    h.extend_from_slice(&e.term.to_le_bytes());
    h.push(e.entry_type.value() as u8);
    h.extend_from_slice(&(e.context.len() as u32).to_le_bytes());
    h.extend_from_slice(&e.context);
    h
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Checks the record at the start of `buf`; returns (kind, group, payload, length).
fn parse_record(buf: &[u8]) -> Option<(u8, GroupId, &[u8], usize)> {
    let len = u32_at(buf, 0)? as usize;
    if len > MAX_PAYLOAD || buf.len() < REC_HEADER + len {
        return None;
    }
    let crc = u32_at(buf, 4)?;
    let body = &buf[8..REC_HEADER + len];
    if crc32c::crc32c(body) != crc {
        return None;
    }
    let kind = buf[8];
    let group = GroupId(u64_at(buf, 9)?);
    Some((
        kind,
        group,
        &buf[REC_HEADER..REC_HEADER + len],
        REC_HEADER + len,
    ))
}

fn decode_entry(payload: &[u8]) -> Option<Entry> {
    let index = u64_at(payload, 0)?;
    let term = u64_at(payload, 8)?;
    let ty = match *payload.get(16)? {
        0 => EntryType::EntryNormal,
        1 => EntryType::EntryConfChange,
        2 => EntryType::EntryConfChangeV2,
        _ => return None,
    };
    let ctx_len = u32_at(payload, 17)? as usize;
    let ctx = payload.get(21..21 + ctx_len)?;
    let data = payload.get(21 + ctx_len..)?;
    Some(Entry {
        index,
        term,
        entry_type: ty,
        context: Bytes::copy_from_slice(ctx),
        data: Bytes::copy_from_slice(data),
        ..Entry::default()
    })
}

fn decode_record(kind: u8, payload: &[u8]) -> Option<Record> {
    Some(match kind {
        KIND_ENTRY => {
            let e = decode_entry(payload)?;
            Record::Entry {
                index: e.index,
                term: e.term,
            }
        }
        KIND_HARD_STATE => Record::HardState(HardState::parse_from_bytes(payload).ok()?),
        KIND_CONF_STATE => Record::ConfState(ConfState::parse_from_bytes(payload).ok()?),
        KIND_COMPACT => Record::Compact {
            index: u64_at(payload, 0)?,
            term: u64_at(payload, 8)?,
        },
        KIND_SNAPSHOT => Record::Snapshot(SnapshotMetadata::parse_from_bytes(payload).ok()?),
        KIND_REMOVE => Record::Remove,
        KIND_SYNC_MARK => {
            u64_at(payload, 0)?;
            Record::SyncMark
        }
        KIND_GROUP_STATE | KIND_GROUP_STATE_V2 => {
            let (last_index, at) = if kind == KIND_GROUP_STATE_V2 {
                (Some(u64_at(payload, 16)?), 24)
            } else {
                (None, 16)
            };
            let hs_len = u32_at(payload, at)? as usize;
            let hs = payload.get(at + 4..at + 4 + hs_len)?;
            let cs = payload.get(at + 4 + hs_len..)?;
            Record::GroupState {
                snap_index: u64_at(payload, 0)?,
                snap_term: u64_at(payload, 8)?,
                last_index,
                hard_state: HardState::parse_from_bytes(hs).ok()?,
                conf_state: ConfState::parse_from_bytes(cs).ok()?,
            }
        }
        _ => return None,
    })
}

fn file_name(seq: u64) -> String {
    format!("{seq:020}.wal")
}

impl Wal {
    /// Opens (or creates) the WAL in `dir`, replaying every file.
    pub(crate) fn open(
        dir: &Path,
        file_bytes: u64,
        durability: Arc<Durability>,
    ) -> Result<Wal, SegError> {
        fs::create_dir_all(dir).ctx(|| format!("creating {}", dir.display()))?;
        let mut seqs = Vec::new();
        for entry in fs::read_dir(dir).ctx(|| format!("listing {}", dir.display()))? {
            let entry = entry.ctx(|| format!("listing {}", dir.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                fs::remove_file(entry.path()).ctx(|| format!("removing {name}"))?;
            } else if let Some(stem) = name.strip_suffix(".wal") {
                let seq = stem
                    .parse::<u64>()
                    .map_err(|_| SegError::Corrupt(format!("unexpected WAL file name {name}")))?;
                seqs.push(seq);
            }
        }
        seqs.sort_unstable();
        let mut wal = Wal {
            dir: dir.to_path_buf(),
            file_bytes,
            files: BTreeMap::new(),
            current: 0,
            pos: 0,
            groups: BTreeMap::new(),
            live: BTreeMap::new(),
            dirty: false,
            durability,
        };
        if seqs.is_empty() {
            wal.create_file(1)?;
            return Ok(wal);
        }
        let last = seqs[seqs.len() - 1];
        for seq in seqs {
            wal.replay_file(seq, seq == last)?;
        }
        for (g, log) in &wal.groups {
            if let Some(i) = log.locs.iter().position(|l| l.seq == Loc::MISSING.seq) {
                return Err(SegError::Corrupt(format!(
                    "{g}: raft entry {} is missing: its WAL file is gone and no later \
                     record replaced it",
                    log.snap_index + 1 + i as u64
                )));
            }
        }
        Ok(wal)
    }

    fn replay_file(&mut self, seq: u64, is_last: bool) -> Result<(), SegError> {
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
            let loc = Loc {
                term: 0,
                seq,
                pos: pos as u64,
                len: len as u32,
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

    /// Creates WAL file `seq` through a temporary name, with a header, the state of
    /// every group and a checkpoint, all synced before the rename.
    fn create_file(&mut self, seq: u64) -> Result<(), SegError> {
        let path = self.dir.join(file_name(seq));
        let tmp = self.dir.join(format!("{}.tmp", file_name(seq)));
        let what = || format!("creating WAL file {}", path.display());
        let mut buf = encode_header(Magic::Wal, seq);
        for (g, log) in &self.groups {
            let hs = proto_bytes(&log.hard_state);
            let cs = proto_bytes(&log.conf_state);
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
        file.write_all_at(&buf, 0).ctx(what)?;
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
    fn relocate_into(&self, buf: &mut Vec<u8>) -> Vec<(GroupId, Record, u64, u32)> {
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
    fn relocate_limit(&self) -> u64 {
        (self.file_bytes / 8).min(8 << 20)
    }

    /// Applies a record to the in-memory index. Lenient, because replay may start after
    /// deleted files: entries that were in them are [`Loc::MISSING`] until a later
    /// record supersedes them. (Dead entries in files that survive come back to life
    /// here, and are dropped again by the record that killed them, which is later.)
    fn apply(&mut self, group: GroupId, rec: Record, loc: Loc) {
        let live = &mut self.live;
        let mut drop_locs = |locs: &mut dyn Iterator<Item = Loc>| {
            for l in locs {
                if let Some(n) = live.get_mut(&l.seq) {
                    *n = n.saturating_sub(1);
                }
            }
        };
        match rec {
            Record::SyncMark => {}
            Record::Remove => {
                if let Some(mut g) = self.groups.remove(&group) {
                    drop_locs(&mut g.locs.drain(..));
                }
            }
            Record::Entry { index, term } => {
                let g = self.groups.entry(group).or_default();
                if index <= g.snap_index {
                    return;
                }
                if index > g.last_index() + 1 {
                    let missing = index - g.last_index() - 1;
                    g.locs.extend((0..missing).map(|_| Loc::MISSING));
                }
                let keep = (index - g.snap_index - 1) as usize;
                if keep < g.locs.len() {
                    drop_locs(&mut g.locs.drain(keep..));
                }
                g.locs.push_back(Loc { term, ..loc });
                *live.entry(loc.seq).or_insert(0) += 1;
            }
            Record::HardState(hs) => self.groups.entry(group).or_default().hard_state = hs,
            Record::ConfState(cs) => self.groups.entry(group).or_default().conf_state = cs,
            Record::Compact { index, term } => {
                let g = self.groups.entry(group).or_default();
                compact(g, index, term, &mut drop_locs);
            }
            Record::Snapshot(meta) => {
                let g = self.groups.entry(group).or_default();
                drop_locs(&mut g.locs.drain(..));
                g.snap_index = meta.index;
                g.snap_term = meta.term;
                g.conf_state = meta.get_conf_state().clone();
            }
            Record::GroupState {
                snap_index,
                snap_term,
                last_index,
                hard_state,
                conf_state,
            } => {
                let g = self.groups.entry(group).or_default();
                g.hard_state = hard_state;
                g.conf_state = conf_state;
                if let Some(last) = last_index {
                    // The log was exactly (snap_index, last] when this file began:
                    // anything replayed beyond was already dead, anything short of it
                    // was in deleted files.
                    let keep = last.saturating_sub(g.snap_index) as usize;
                    if keep < g.locs.len() {
                        drop_locs(&mut g.locs.drain(keep..));
                    } else {
                        let missing = keep - g.locs.len();
                        g.locs.extend((0..missing).map(|_| Loc::MISSING));
                    }
                }
                compact(g, snap_index, snap_term, &mut drop_locs);
            }
        }
    }

    /// Writes encoded records at the end of the current file and applies them.
    fn write(&mut self, buf: Vec<u8>, recs: Vec<(GroupId, Record, u32)>) -> Result<(), SegError> {
        self.write_slices(&mut [IoSlice::new(&buf)], recs)
    }

    fn write_slices(
        &mut self,
        slices: &mut [IoSlice<'_>],
        recs: Vec<(GroupId, Record, u32)>,
    ) -> Result<(), SegError> {
        let seq = self.current;
        let f = &self.files[&seq];
        let pos = self.pos;
        let total: usize = slices.iter().map(|s| s.len()).sum();
        write_all_vectored(&f.file, slices).ctx(|| format!("appending to {}", f.path.display()))?;
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
                },
            );
            at += len as u64;
        }
        if self.pos >= self.file_bytes {
            self.roll()?;
        }
        Ok(())
    }

    fn write_one(
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
    fn roll(&mut self) -> Result<(), SegError> {
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
    fn collect_garbage(&mut self) -> Result<(), SegError> {
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

    fn group(&self, group: GroupId) -> Option<&GroupLog> {
        self.groups.get(&group)
    }

    // ----------------------------------------------------------- RaftLogStore

    pub(crate) fn groups(&self) -> Vec<GroupId> {
        self.groups.keys().copied().collect()
    }

    pub(crate) fn state(&self, group: GroupId) -> RaftState {
        self.group(group)
            .map(|g| RaftState {
                hard_state: g.hard_state.clone(),
                conf_state: g.conf_state.clone(),
            })
            .unwrap_or_default()
    }

    pub(crate) fn first_index(&self, group: GroupId) -> u64 {
        self.group(group).map_or(1, |g| g.snap_index + 1)
    }

    pub(crate) fn last_index(&self, group: GroupId) -> u64 {
        self.group(group).map_or(0, GroupLog::last_index)
    }

    pub(crate) fn term(&self, group: GroupId, index: u64) -> Result<u64, Error> {
        match self.group(group) {
            None => LogBounds::EMPTY.term(index, |_| 0),
            Some(g) => LogBounds {
                snap_index: g.snap_index,
                snap_term: g.snap_term,
                last_index: g.last_index(),
            }
            .term(index, |i| g.locs[(i - g.snap_index - 1) as usize].term),
        }
    }

    pub(crate) fn entries(
        &self,
        group: GroupId,
        low: u64,
        high: u64,
        max_bytes: Option<u64>,
    ) -> Result<Vec<Entry>, Error> {
        let (snap, last) = self
            .group(group)
            .map_or((0, 0), |g| (g.snap_index, g.last_index()));
        if low <= snap {
            return Err(Error::Compacted(snap));
        }
        if high > last + 1 {
            return Err(Error::Unavailable(high - 1));
        }
        let Some(g) = self.group(group) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        let mut size = 0u64;
        for i in low..high {
            let loc = g.locs[(i - snap - 1) as usize];
            let e = self.read_entry(group, i, loc)?;
            size += u64::from(e.compute_size());
            if !out.is_empty() && max_bytes.is_some_and(|m| size > m) {
                break;
            }
            out.push(e);
        }
        Ok(out)
    }

    fn read_entry(&self, group: GroupId, index: u64, loc: Loc) -> Result<Entry, Error> {
        let buf = self.read_raw(group, index, loc)?;
        // `read_raw` checked the record; decoding it again cannot fail.
        parse_record(&buf)
            .and_then(|(_, _, payload, _)| decode_entry(payload))
            .ok_or_else(|| Error::Corrupt(format!("{group}: entry {index} is undecodable")))
    }

    /// Reads an entry's record and checks its checksum, kind, group, index and term.
    fn read_raw(&self, group: GroupId, index: u64, loc: Loc) -> Result<Vec<u8>, Error> {
        let f = self.files.get(&loc.seq).ok_or_else(|| {
            Error::Corrupt(format!(
                "{group}: entry {index} refers to a deleted WAL file"
            ))
        })?;
        let mut buf = vec![0u8; loc.len as usize];
        f.file
            .read_exact_at(&mut buf, loc.pos)
            .map_err(|e| Error::io(format!("reading {}", f.path.display()), e))?;
        let bad = || {
            Error::Corrupt(format!(
                "{group}: entry {index} in {} at byte {} fails its checksum",
                f.path.display(),
                loc.pos
            ))
        };
        let (kind, g, payload, _) = parse_record(&buf).ok_or_else(bad)?;
        if kind != KIND_ENTRY || g != group {
            return Err(bad());
        }
        let (Some(i), Some(t)) = (u64_at(payload, 0), u64_at(payload, 8)) else {
            return Err(bad());
        };
        if i != index || t != loc.term {
            return Err(bad());
        }
        Ok(buf)
    }

    pub(crate) fn append(&mut self, group: GroupId, entries: &[Entry]) -> Result<(), SegError> {
        // Record headers are built here; entry data is written from the caller's
        // buffers with one vectored write, never copied.
        let mut heads = Vec::with_capacity(entries.len());
        let mut recs = Vec::with_capacity(entries.len());
        for e in entries {
            let mut head = Vec::with_capacity(REC_HEADER + 21 + e.context.len());
            let payload_head = entry_payload_head(e);
            let len = payload_head.len() + e.data.len();
            head.extend_from_slice(&(len as u32).to_le_bytes());
            head.extend_from_slice(&[0; 4]);
            head.push(KIND_ENTRY);
            head.extend_from_slice(&group.0.to_le_bytes());
            head.extend_from_slice(&payload_head);
            let crc = crc32c::crc32c_append(crc32c::crc32c(&head[8..]), &e.data);
            head[4..8].copy_from_slice(&crc.to_le_bytes());
            recs.push((
                group,
                Record::Entry {
                    index: e.index,
                    term: e.term,
                },
                (REC_HEADER + len) as u32,
            ));
            heads.push(head);
        }
        let mut slices = Vec::with_capacity(entries.len() * 2);
        for (head, e) in heads.iter().zip(entries) {
            slices.push(IoSlice::new(head));
            slices.push(IoSlice::new(&e.data));
        }
        self.write_slices(&mut slices, recs)
    }

    pub(crate) fn set_hard_state(
        &mut self,
        group: GroupId,
        hs: &HardState,
    ) -> Result<(), SegError> {
        self.write_one(
            group,
            KIND_HARD_STATE,
            &[&proto_bytes(hs)],
            Record::HardState(hs.clone()),
        )
    }

    pub(crate) fn set_conf_state(
        &mut self,
        group: GroupId,
        cs: &ConfState,
    ) -> Result<(), SegError> {
        self.write_one(
            group,
            KIND_CONF_STATE,
            &[&proto_bytes(cs)],
            Record::ConfState(cs.clone()),
        )
    }

    /// Compacts through `index` (the caller checked `index <= last_index`).
    pub(crate) fn compact(
        &mut self,
        group: GroupId,
        index: u64,
        term: u64,
    ) -> Result<(), SegError> {
        if index <= self.group(group).map_or(0, |g| g.snap_index) {
            return Ok(());
        }
        self.write_one(
            group,
            KIND_COMPACT,
            &[&index.to_le_bytes(), &term.to_le_bytes()],
            Record::Compact { index, term },
        )
    }

    pub(crate) fn apply_snapshot(
        &mut self,
        group: GroupId,
        meta: &SnapshotMetadata,
    ) -> Result<(), SegError> {
        self.write_one(
            group,
            KIND_SNAPSHOT,
            &[&proto_bytes(meta)],
            Record::Snapshot(meta.clone()),
        )
    }

    pub(crate) fn remove_group(&mut self, group: GroupId) -> Result<(), SegError> {
        self.write_one(group, KIND_REMOVE, &[], Record::Remove)
    }

    /// What a sync must do, taken under the engine's lock so that the `fdatasync`
    /// itself can run without it (appends of other groups go on meanwhile).
    ///
    /// After the sync, [`Wal::sync_end`] appends a sync mark naming the synced
    /// position. The mark is not synced then: it reaches the disk with the next sync
    /// (it sits right before the next write, so that costs no extra seek) or by
    /// writeback. A mark can only be on disk if everything before the position it
    /// names was durable, which is what recovery relies on to tell corruption from a
    /// torn tail.
    pub(crate) fn sync_begin(&self) -> Option<SyncJob> {
        if !self.dirty {
            return None;
        }
        let f = &self.files[&self.current];
        Some(SyncJob {
            file: f.file.clone(),
            path: f.path.clone(),
            seq: self.current,
            pos: self.pos,
        })
    }

    /// Records a finished sync: appends the sync mark naming the synced position.
    pub(crate) fn sync_end(&mut self, job: SyncJob) -> Result<(), SegError> {
        if job.seq != self.current {
            // The file rolled meanwhile, which synced it to its end.
            return Ok(());
        }
        let still_dirty = self.pos > job.pos;
        let mut buf = Vec::with_capacity(SYNC_MARK_LEN);
        let len = encode_record(
            &mut buf,
            KIND_SYNC_MARK,
            GroupId(0),
            &[&job.pos.to_le_bytes()],
        );
        self.write(buf, vec![(GroupId(0), Record::SyncMark, len)])?;
        self.dirty = still_dirty;
        if !still_dirty {
            // Nothing was written during the sync: every record that killed an entry
            // is durable now, so dead files may go (see `collect_garbage`).
            self.collect_garbage()?;
        }
        Ok(())
    }
}

/// An `fdatasync` to run outside the engine's lock; see [`Wal::sync_begin`].
#[derive(Debug)]
pub(crate) struct SyncJob {
    file: Arc<File>,
    path: PathBuf,
    seq: u64,
    pos: u64,
}

impl SyncJob {
    pub(crate) fn run(&self, durability: &Durability) -> Result<(), SegError> {
        durability.sync_file(&self.file, || format!("syncing {}", self.path.display()))
    }
}

fn compact(
    g: &mut GroupLog,
    index: u64,
    term: u64,
    drop_locs: &mut dyn FnMut(&mut dyn Iterator<Item = Loc>),
) {
    if index <= g.snap_index {
        return;
    }
    let n = ((index - g.snap_index) as usize).min(g.locs.len());
    drop_locs(&mut g.locs.drain(..n));
    if index > g.snap_index + n as u64 {
        drop_locs(&mut g.locs.drain(..));
    }
    g.snap_index = index;
    g.snap_term = term;
}

/// The largest position named by a valid sync mark found anywhere after `from`.
/// Scans byte by byte, since the record boundaries after an invalid record are
/// unknown; only done when opening a file with an invalid record in it.
fn synced_beyond(bytes: &[u8], from: usize) -> usize {
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

/// Writes all of `slices` at the file's cursor, which always sits at the end of the
/// log (set at open, after a cut, and at creation).
fn write_all_vectored(mut f: &File, mut slices: &mut [IoSlice<'_>]) -> std::io::Result<()> {
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
