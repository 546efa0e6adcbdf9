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
use crate::error::{IoContext, SegError, full_or_io};
use crate::format::{Checkpoint, HEADER_LEN, Magic, decode_header, encode_header};
use crate::partition::PLACED_LEN;
use crate::partition::Placed;

mod files;
mod record;
mod replay;
mod unified;

use record::*;

/// Where one entry's record is.
#[derive(Clone, Copy, Debug)]
pub(super) struct Loc {
    term: u64,
    seq: u64,
    pos: u64,
    len: u32,
    /// Where the entry's batch is, when the partition log holds it.
    placed: Option<Placed>,
}

impl Loc {
    /// Stands, during replay, for an entry whose file was deleted: a later record
    /// must supersede it (overwrite, compaction, snapshot, removal), or opening fails.
    const MISSING: Loc = Loc {
        term: 0,
        seq: u64::MAX,
        pos: 0,
        len: 0,
        placed: None,
    };
}

#[derive(Debug, Default)]
pub(super) struct GroupLog {
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
#[derive(Debug)]
pub(super) struct WalFile {
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
    /// The furthest (file, position) a sync mark found at open names: records
    /// before it were synced, and so were the batches they refer to.
    synced_to: (u64, u64),
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
            synced_to: (0, 0),
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
            Record::Entry {
                index,
                term,
                placed,
            } => {
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
                g.locs.push_back(Loc {
                    term,
                    placed,
                    ..loc
                });
                *live.entry(loc.seq).or_insert(0) += 1;
            }
            Record::Truncate { index } => {
                if let Some(g) = self.groups.get_mut(&group) {
                    let keep = index.saturating_sub(g.snap_index + 1) as usize;
                    if keep < g.locs.len() {
                        drop_locs(&mut g.locs.drain(keep..));
                    }
                    let last = g.last_index();
                    g.hard_state.commit = g.hard_state.commit.min(last);
                }
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

    fn group(&self, group: GroupId) -> Option<&GroupLog> {
        self.groups.get(&group)
    }

    // ----------------------------------------------------------- RaftLogStore

    /// The WAL's files and their bytes (their lengths on disk).
    pub(crate) fn usage(&self) -> (u64, u64) {
        let bytes = self
            .files
            .values()
            .filter_map(|f| f.file.metadata().ok())
            .map(|m| m.len())
            .sum();
        (self.files.len() as u64, bytes)
    }

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

    /// Entries `low..high`; `fetch` reads the batch of an entry whose batch the
    /// partition log holds.
    pub(crate) fn entries(
        &self,
        group: GroupId,
        low: u64,
        high: u64,
        max_bytes: Option<u64>,
        fetch: &dyn Fn(Placed) -> Result<Bytes, Error>,
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
            let mut e = self.read_entry(group, i, loc)?;
            if let Some(p) = loc.placed {
                let batch = fetch(p)?;
                let mut data = Vec::with_capacity(e.data.len() + batch.len());
                data.extend_from_slice(&e.data);
                data.extend_from_slice(&batch);
                e.data = data.into();
            }
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
            .and_then(|(kind, _, payload, _)| decode_any_entry(kind, payload))
            .map(|(e, _)| e)
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
        if (kind != KIND_ENTRY && kind != KIND_ENTRY_PLACED) || g != group {
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

    /// Appends entries; `placed[i]`, when set, says that the partition log holds
    /// the batch of `entries[i]` (its data's last `placed.len` bytes), which the
    /// record then leaves out.
    pub(crate) fn append(
        &mut self,
        group: GroupId,
        entries: &[Entry],
        placed: &[Option<Placed>],
    ) -> Result<(), SegError> {
        // Record headers are built here; entry data is written from the caller's
        // buffers with one vectored write, never copied.
        let mut heads = Vec::with_capacity(entries.len());
        let mut recs = Vec::with_capacity(entries.len());
        let mut datas = Vec::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            let placed = placed.get(i).copied().flatten();
            let mut head = Vec::with_capacity(REC_HEADER + 21 + PLACED_LEN + e.context.len());
            let mut payload_head = entry_payload_head(e);
            let data = match placed {
                Some(p) => {
                    payload_head.extend_from_slice(&p.encode());
                    &e.data[..e.data.len().saturating_sub(p.len as usize)]
                }
                None => &e.data[..],
            };
            let len = payload_head.len() + data.len();
            head.extend_from_slice(&(len as u32).to_le_bytes());
            head.extend_from_slice(&[0; 4]);
            head.push(if placed.is_some() {
                KIND_ENTRY_PLACED
            } else {
                KIND_ENTRY
            });
            head.extend_from_slice(&group.0.to_le_bytes());
            head.extend_from_slice(&payload_head);
            let crc = crc32c::crc32c_append(crc32c::crc32c(&head[8..]), data);
            head[4..8].copy_from_slice(&crc.to_le_bytes());
            recs.push((
                group,
                Record::Entry {
                    index: e.index,
                    term: e.term,
                    placed,
                },
                (REC_HEADER + len) as u32,
            ));
            heads.push(head);
            datas.push(data);
        }
        let mut slices = Vec::with_capacity(entries.len() * 2);
        for (head, data) in heads.iter().zip(&datas) {
            slices.push(IoSlice::new(head));
            slices.push(IoSlice::new(data));
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
            &[&proto_bytes(hs)?],
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
            &[&proto_bytes(cs)?],
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
            &[&proto_bytes(meta)?],
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
        match self.write(buf, vec![(GroupId(0), Record::SyncMark, len)]) {
            // The sync itself succeeded; its mark only lets replay tell damage
            // below it from a torn tail. Without room for it, the file stays
            // dirty and the next sync writes one.
            Err(SegError::Full(why)) => {
                tracing::debug!(error = %why, "no room for a WAL sync mark");
                return Ok(());
            }
            r => r?,
        }
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
pub(super) fn compact(
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
