//! Partition snapshots (docs/snapshots.md, step 2): what a partition group's
//! `MsgSnapshot` carries (a [`Descriptor`]), and the node's snapshot service,
//! which serves a leader's partition log in chunks and downloads a leader's
//! into the engine's staged log ([`StagingStore`]).
//!
//! Chunks travel through the peer transport as group messages on the group's
//! *snapshot channel* (its id with [`CHANNEL_BIT`] set), which the node routes
//! here instead of to a Raft driver; raft-rs never sees them. A request is a
//! [`REQUEST`] message naming the offset wanted (`index`) and the offset to stop
//! at (`commit`); a chunk is a `MsgSnapshot` whose snapshot data holds whole
//! batches from that offset, `context` their CRC-32C, `reject` set when the
//! leader cannot serve the offset (its log start moved past it). Up to two
//! chunks are in flight per download (the next is asked for before the one
//! that arrived is stored); a lost one is asked again when the leader sends
//! its snapshot again.
//!
//! [`StagingStore`]: crate::staging::StagingStore

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use raft::eraftpb::{Message, MessageType};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::ids::{GroupId, NodeId, Offset};
use crate::metadata::Metadata;
use crate::transport::{GroupMessage, SharedTransport};

/// The bit of a group id that names the group's snapshot channel.
pub(crate) const CHANNEL_BIT: u64 = 1 << 62;
/// The most bytes of batches one chunk carries (at least one batch).
const CHUNK_BYTES: usize = 4 << 20;
/// The message type of a chunk request on a snapshot channel (raft-rs has no
/// type of its own for it, and never sees these messages).
const REQUEST: MessageType = MessageType::MsgSnapStatus;
/// A request unanswered this long is sent again.
const RETRY: Duration = Duration::from_secs(1);

/// What a partition group's snapshot carries: the partition log's range at the
/// snapshot's index, and the producer-state checkpoint there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Descriptor {
    /// The log start offset.
    pub(crate) start: Offset,
    /// The next offset (the log's end at the snapshot's index).
    pub(crate) next: Offset,
    /// The producer-state checkpoint blob at the snapshot's index.
    pub(crate) producers: Vec<u8>,
}

const FORMAT: u8 = 1;

impl Descriptor {
    pub(crate) fn encode(&self) -> Result<Vec<u8>> {
        crate::checkpoint::to_versioned(FORMAT, self)
            .map_err(|e| Error::Invalid(format!("encoding a snapshot descriptor: {e}")))
    }

    pub(crate) fn decode(data: &[u8]) -> Result<Descriptor> {
        crate::checkpoint::from_versioned(FORMAT, data)
            .map_err(|e| Error::Invalid(format!("a snapshot descriptor does not decode: {e}")))
    }
}

/// One download of a leader's partition log.
#[derive(Debug)]
struct Download {
    leader: NodeId,
    start: Offset,
    /// Download up to here (the newest snapshot's next offset).
    target: Offset,
    /// When the last request was sent.
    asked: Option<Instant>,
    /// The offset last asked for.
    requested: Option<Offset>,
    /// Chunks being stored or waiting to be.
    storing: u32,
    /// Taken to store a chunk: chunks are stored one at a time, in the order
    /// they arrived.
    gate: Arc<Mutex<()>>,
}

impl Download {
    fn new(leader: NodeId, start: Offset, target: Offset) -> Download {
        Download {
            leader,
            start,
            target,
            asked: None,
            requested: None,
            storing: 0,
            gate: Arc::default(),
        }
    }
}

/// The node's snapshot service: downloads in progress, and serving chunks.
pub(crate) struct Snapshots {
    me: NodeId,
    engine: Arc<dyn Engine>,
    transport: SharedTransport,
    downloads: Mutex<HashMap<GroupId, Download>>,
    /// Chunks being served or stored (on the blocking pool); `None` once the
    /// node stops.
    tasks: Mutex<Option<tokio::task::JoinSet<()>>>,
    /// Partition logs installed (or given up) so far, by group: the cleaner of
    /// compacted topics forgets what it knew of a log that changed.
    installs: Mutex<HashMap<GroupId, u64>>,
    /// Paces the chunks this node serves, over every download
    /// (`snapshot_bytes_per_sec`; `None`: as fast as they are asked for).
    pacing: Option<Mutex<Pacing>>,
    /// Paces, besides, the chunks served to replicas that a reassignment adds
    /// (`reassignment_bytes_per_sec`), known from metadata.
    moves: Option<(Mutex<Pacing>, watch::Receiver<Arc<Metadata>>)>,
}

/// A byte budget refilled at a rate.
#[derive(Debug)]
struct Pacing {
    rate: u64,
    /// Served bytes are due by this time at the rate.
    due: Instant,
}

impl Pacing {
    fn new(rate: u64) -> Mutex<Pacing> {
        Mutex::new(Pacing {
            rate,
            due: Instant::now(),
        })
    }

    /// How long to wait before serving `bytes` more.
    fn wait_for(&mut self, bytes: usize) -> Duration {
        let now = Instant::now();
        let start = self.due.max(now);
        self.due = start + Duration::from_secs_f64(bytes as f64 / self.rate as f64);
        start.saturating_duration_since(now)
    }
}

fn channel(group: GroupId) -> GroupId {
    GroupId(group.0 | CHANNEL_BIT)
}

impl Snapshots {
    pub(crate) fn new(
        me: NodeId,
        engine: Arc<dyn Engine>,
        transport: SharedTransport,
        bytes_per_sec: Option<u64>,
    ) -> Self {
        Snapshots {
            pacing: bytes_per_sec.filter(|&r| r > 0).map(Pacing::new),
            moves: None,
            me,
            engine,
            transport,
            downloads: Mutex::new(HashMap::new()),
            tasks: Mutex::new(Some(tokio::task::JoinSet::new())),
            installs: Mutex::new(HashMap::new()),
        }
    }

    /// Paces the chunks served to replicas that reassignments add (as
    /// `meta` records them) to `bytes_per_sec`, on top of the pace for all.
    pub(crate) fn throttle_moves(
        mut self,
        bytes_per_sec: Option<u64>,
        meta: watch::Receiver<Arc<Metadata>>,
    ) -> Self {
        self.moves = bytes_per_sec
            .filter(|&r| r > 0)
            .map(|rate| (Pacing::new(rate), meta));
        self
    }

    /// How long to wait before serving `bytes` of `group` to `to`: the pace
    /// for all, and for a replica a reassignment adds, its own pace too.
    fn wait_for(&self, group: GroupId, to: NodeId, bytes: usize) -> Duration {
        let mut wait = self
            .pacing
            .as_ref()
            .map_or(Duration::ZERO, |p| p.lock().wait_for(bytes));
        if let Some((pacing, meta)) = &self.moves
            && meta.borrow().moving_to(group, to)
        {
            wait = wait.max(pacing.lock().wait_for(bytes));
        }
        wait
    }

    /// How many times `group`'s partition log was installed from a snapshot
    /// (or its download ended) since the node started.
    pub(crate) fn installs(&self, group: GroupId) -> u64 {
        self.installs.lock().get(&group).copied().unwrap_or(0)
    }

    /// Stops taking messages and waits for the chunks being served or stored,
    /// so that nothing holds the engine after the node stops.
    pub(crate) async fn stop(&self) {
        let tasks = self.tasks.lock().take();
        if let Some(mut tasks) = tasks {
            while tasks.join_next().await.is_some() {}
        }
    }

    /// A leader's snapshot of `group` needs `[start, target)` staged here:
    /// starts or continues downloading it from `leader`. Runs on the group's
    /// driver (blocking section).
    pub(crate) fn want(
        &self,
        group: GroupId,
        leader: NodeId,
        start: Offset,
        target: Offset,
    ) -> Result<()> {
        let mut downloads = self.downloads.lock();
        let d = downloads
            .entry(group)
            .or_insert_with(|| Download::new(leader, start, target));
        if d.start != start {
            // The leader's log start moved: begin again from it.
            let storing = d.storing;
            *d = Download::new(leader, start, target);
            d.storing = storing;
        }
        d.leader = leader;
        d.target = target;
        if d.storing > 0 || d.asked.is_some_and(|t| t.elapsed() < RETRY) {
            return Ok(());
        }
        let end = match self.engine.stage_end(group)? {
            // Staged past the target (for an earlier leader's snapshot at a
            // later index): it could not be installed at this one.
            Some((s, e)) if s == start && e <= target => e,
            _ => {
                self.engine.stage_begin(group, start)?;
                tracing::info!(%group, leader, start, target, "downloading a snapshot");
                start
            }
        };
        if end < d.target {
            d.asked = Some(Instant::now());
            d.requested = Some(end);
            self.ask(group, d.leader, end, d.target);
        }
        Ok(())
    }

    /// Forgets `group`'s download (installed, or the group is gone).
    pub(crate) fn done(&self, group: GroupId) {
        self.downloads.lock().remove(&group);
        *self.installs.lock().entry(group).or_default() += 1;
    }

    fn ask(&self, group: GroupId, leader: NodeId, offset: Offset, upto: Offset) {
        let msg = Message {
            msg_type: REQUEST,
            to: leader,
            from: self.me,
            index: offset as u64,
            commit: upto as u64,
            ..Message::default()
        };
        self.transport.send(
            leader,
            vec![GroupMessage {
                group: channel(group),
                msg,
            }],
        );
    }

    /// A message on a snapshot channel from `from`: a request to serve, or a
    /// chunk to store. The engine work runs on the blocking pool.
    pub(crate) fn deliver(self: &Arc<Self>, from: NodeId, m: GroupMessage) {
        let group = GroupId(m.group.0 & !CHANNEL_BIT);
        let this = self.clone();
        let work = move || match m.msg.msg_type {
            REQUEST => this.serve(group, from, &m.msg),
            MessageType::MsgSnapshot => this.store(group, from, &m.msg),
            other => {
                tracing::debug!(%group, from, ?other, "dropped a message on a snapshot channel")
            }
        };
        let mut tasks = self.tasks.lock();
        let Some(tasks) = tasks.as_mut() else {
            return;
        };
        while tasks.try_join_next().is_some() {}
        if tokio::runtime::Handle::try_current().is_ok() {
            tasks.spawn_blocking(work);
        }
    }

    /// Answers a request with the batches of `[offset, upto)` that fit a chunk.
    fn serve(&self, group: GroupId, to: NodeId, req: &Message) {
        let (offset, upto) = (req.index as Offset, req.commit as Offset);
        let mut reply = Message {
            msg_type: MessageType::MsgSnapshot,
            to,
            from: self.me,
            index: req.index,
            commit: req.commit,
            ..Message::default()
        };
        match self.read_chunk(group, offset, upto) {
            Ok(data) => {
                // Paced on the blocking pool, where this runs: the chunk
                // leaves when the rate allows.
                let wait = self.wait_for(group, to, data.len());
                if !wait.is_zero() {
                    std::thread::sleep(wait);
                }
                reply.context = crc32c::crc32c(&data).to_be_bytes().to_vec().into();
                reply.mut_snapshot().data = data.into();
            }
            Err(e) => {
                tracing::debug!(%group, to, offset, error = %e, "cannot serve a snapshot chunk");
                reply.reject = true;
            }
        }
        self.transport.send(
            to,
            vec![GroupMessage {
                group: channel(group),
                msg: reply,
            }],
        );
    }

    fn read_chunk(&self, group: GroupId, offset: Offset, upto: Offset) -> Result<Vec<u8>> {
        let data = self.engine.log_read(group, offset, CHUNK_BYTES)?;
        let mut len = 0;
        for b in crate::batch::iter_batches(&data) {
            let (h, one) = b?;
            if h.base_offset >= upto {
                break;
            }
            len += one.len();
        }
        Ok(data[..len].to_vec())
    }

    /// Stores a chunk that continues `group`'s staged log. The next chunk is
    /// asked for before this one is stored, so that the leader reads and sends
    /// it meanwhile (two chunks in flight per download); it waits for this one
    /// at the gate.
    fn store(&self, group: GroupId, from: NodeId, chunk: &Message) {
        let gate = {
            let mut downloads = self.downloads.lock();
            let Some(d) = downloads.get_mut(&group) else {
                return;
            };
            if chunk.reject {
                tracing::info!(%group, from, "the leader cannot serve the snapshot from here; it begins again");
                downloads.remove(&group);
                return;
            }
            d.storing += 1;
            d.gate.clone()
        };
        let stored = {
            let _gate = gate.lock();
            if let Some(next) = chunk_end(chunk) {
                self.ask_ahead(group, chunk.index as Offset, next);
            }
            self.append(group, chunk)
        };
        let mut downloads = self.downloads.lock();
        let Some(d) = downloads.get_mut(&group) else {
            return;
        };
        d.storing = d.storing.saturating_sub(1);
        let (leader, target) = (d.leader, d.target);
        match stored {
            Ok(Some(end)) if end < target => {
                if d.requested != Some(end) {
                    d.asked = Some(Instant::now());
                    d.requested = Some(end);
                    self.ask(group, leader, end, target);
                }
            }
            Ok(Some(end)) => tracing::info!(%group, end, target, "snapshot downloaded"),
            // A stale or empty chunk: the next snapshot from the leader asks again.
            Ok(None) => {}
            Err(e) => tracing::debug!(%group, error = %e, "dropped a snapshot chunk"),
        }
    }

    /// Asks for the chunk at `next` if the chunk at `from` was the last one
    /// asked for and the download does not end before `next`.
    fn ask_ahead(&self, group: GroupId, from: Offset, next: Offset) {
        let mut downloads = self.downloads.lock();
        let Some(d) = downloads.get_mut(&group) else {
            return;
        };
        if d.requested == Some(from) && next < d.target {
            d.asked = Some(Instant::now());
            d.requested = Some(next);
            self.ask(group, d.leader, next, d.target);
        }
    }

    /// Appends a chunk at the staged end; the new end, or `None` for a chunk
    /// that does not continue it or holds nothing.
    fn append(&self, group: GroupId, chunk: &Message) -> Result<Option<Offset>> {
        let data = &chunk.get_snapshot().data;
        let crc = u32::from_be_bytes(
            chunk.context[..]
                .try_into()
                .map_err(|_| Error::Corrupt("a snapshot chunk without its CRC".into()))?,
        );
        if crc32c::crc32c(data) != crc {
            return Err(Error::Corrupt("a snapshot chunk fails its CRC".into()));
        }
        match self.engine.stage_end(group)? {
            Some((_, end)) if end == chunk.index as Offset && !data.is_empty() => {
                self.engine.stage_append(group, data).map(Some)
            }
            Some(_) => Ok(None),
            None => Err(Error::Invalid("no staged log".into())),
        }
    }
}

/// The offset after a chunk's last batch, from the batch headers (not yet
/// checked: the chunk's CRC is checked when it is stored); `None` for an empty
/// or malformed chunk.
fn chunk_end(chunk: &Message) -> Option<Offset> {
    let mut data = &chunk.get_snapshot().data[..];
    let mut end = None;
    while !data.is_empty() {
        let h = crate::batch::BatchHeader::parse(data).ok()?;
        let len = h.total_len();
        if len > data.len() {
            return None;
        }
        end = Some(h.last_offset() + 1);
        data = &data[len..];
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{PartitionMeta, Topic};

    #[test]
    fn pacing_spaces_chunks_at_the_rate() {
        let pacing = Pacing::new(1 << 20);
        let mut p = pacing.lock();
        let first = p.wait_for(1 << 20);
        assert!(first.is_zero(), "the first chunk leaves at once");
        let second = p.wait_for(1 << 20);
        assert!(
            second > Duration::from_millis(900) && second <= Duration::from_secs(1),
            "the next MiB waits about a second at 1 MiB/s: {second:?}"
        );
    }

    #[test]
    fn only_replicas_a_move_adds_are_throttled_as_moves() {
        let group = GroupId(7);
        let mut m = Metadata::default();
        m.topics.insert(
            "t".into(),
            Topic {
                name: "t".into(),
                id: [1; 16],
                partitions: vec![PartitionMeta {
                    index: 0,
                    group,
                    replicas: vec![1, 2, 3],
                    leader: None,
                }],
                configs: Default::default(),
                kind: Default::default(),
            },
        );
        assert!(!m.moving_to(group, 4), "no move under way");
        m.reassignments.insert(group, vec![2, 3, 4]);
        assert!(m.moving_to(group, 4), "node 4 is being added");
        assert!(!m.moving_to(group, 2), "node 2 already has a replica");
        assert!(!m.moving_to(GroupId(8), 4), "another group");
    }
}
