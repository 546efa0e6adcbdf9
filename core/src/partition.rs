//! A partition group's state machine: committed produce entries become batches in
//! the engine's partition log.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};

use crate::engine::{Engine, LogState};
use crate::entry::{PartitionEntry, decode_partition, encode_compact};
use crate::error::{Error, Result};
use crate::ids::{GroupId, NodeId};
use crate::producers::{self, CachedBatch, SharedProducers, Verdict};
use crate::raft::driver::{Applied, StateMachine};
use crate::raft::storage::SnapshotSource;
use crate::snapshot::{Descriptor, Snapshots};
use crate::stamping::{EntriesFrom, LeaderView, ProposeAt, Stamp};
use raft::eraftpb::{Snapshot, SnapshotMetadata};

/// When the partition log is flushed (it need not be on every apply: the Raft log
/// is the write-ahead log).
#[derive(Clone, Copy, Debug)]
pub(crate) struct FlushPolicy {
    /// Flush after this many bytes were applied…
    pub(crate) bytes: u64,
    /// …or this long after the last flush.
    pub(crate) interval: Duration,
}

/// When the leader proposes compacting the Raft log.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CompactPolicy {
    /// Propose after this many bytes were flushed since the last proposal…
    pub(crate) bytes: u64,
    /// …or this long after it.
    pub(crate) interval: Duration,
    /// Past this many bytes of Raft log, compaction stops waiting for replicas
    /// that are behind: they get a snapshot instead (`None`: it always waits,
    /// for engines that cannot install one).
    pub(crate) max_log_bytes: Option<u64>,
    /// …and once its oldest batch is this old.
    pub(crate) max_log_age: Option<Duration>,
}

/// Raft log compaction of one partition replica.
///
/// The Raft log is the partition log's write-ahead log, so a replica may drop a
/// Raft entry once its partition log is durable past it. It must also keep what a
/// lagging replica still needs, since weir has no snapshots to send instead: the
/// leader, which knows every replica's progress, proposes `Compact{index}` with an
/// index every replica has matched, and each replica compacts through
/// `min(index, its durable applied index)` when it applies the command, and again
/// after later flushes.
#[derive(Debug)]
pub(crate) struct Compaction {
    /// Last index applied to the partition log (batches and skipped entries).
    applied: u64,
    /// Applied index as of the last flush: durable in the partition log.
    durable: u64,
    /// Highest index a committed compaction command allows.
    allowed: u64,
    /// The Raft log is compacted through this index.
    compacted: u64,
    /// Raft index of the last batch applied (at start: the applied index, as a
    /// batch may lie there).
    last_batch: u64,
    /// Highest index this replica proposed compacting through, as leader.
    proposed: u64,
    /// Bytes flushed since this replica last proposed a compaction.
    flushed_bytes: u64,
    /// When this replica last proposed one (or started).
    proposed_at: Instant,
    /// Bytes of batches applied in this run, and `(index, bytes applied
    /// through it, when)` about every MiB: how large and how old the Raft log
    /// has grown since its compaction point (entries from before a restart are
    /// not counted).
    applied_bytes: u64,
    marks: std::collections::VecDeque<(u64, u64, Instant)>,
}

impl Compaction {
    /// State for a replica whose state is durable at `applied` and whose Raft
    /// log is compacted through `compacted`.
    pub(crate) fn new(applied: u64, compacted: u64) -> Self {
        Compaction {
            applied,
            durable: applied,
            allowed: 0,
            compacted,
            last_batch: applied,
            proposed: 0,
            flushed_bytes: 0,
            proposed_at: Instant::now(),
            applied_bytes: 0,
            marks: std::collections::VecDeque::new(),
        }
    }

    /// A batch of `bytes` was applied at `index`.
    pub(crate) fn grew(&mut self, index: u64, bytes: u64) {
        self.applied_bytes += bytes;
        let kept = self
            .marks
            .back()
            .is_some_and(|&(i, _, _)| i > self.compacted);
        if !kept
            || self
                .marks
                .back()
                .is_some_and(|&(_, b, _)| self.applied_bytes - b >= 1 << 20)
        {
            self.marks
                .push_back((index, self.applied_bytes, Instant::now()));
        }
    }

    /// About how many bytes of batches the Raft log holds past its compaction
    /// point.
    fn retained(&self) -> u64 {
        let base = self
            .marks
            .iter()
            .take_while(|&&(i, _, _)| i <= self.compacted)
            .last()
            .map_or(0, |&(_, b, _)| b);
        self.applied_bytes - base
    }

    /// About how long ago the oldest batch past the compaction point was applied.
    fn retained_age(&self) -> Option<Duration> {
        self.marks
            .iter()
            .find(|&&(i, _, _)| i > self.compacted)
            .map(|&(_, _, t)| t.elapsed())
    }

    /// Entry `index` was applied; `data` says whether it changed the state (a
    /// batch, a command worth compacting away).
    pub(crate) fn applied(&mut self, index: u64, data: bool) {
        self.applied = index;
        if data {
            self.last_batch = index;
        }
    }

    /// What was applied is durable now; `bytes` were made durable.
    pub(crate) fn made_durable(&mut self, bytes: u64) {
        self.durable = self.applied;
        self.flushed_bytes += bytes;
    }

    /// Whether applied entries are not durable yet.
    pub(crate) fn has_undurable(&self) -> bool {
        self.applied > self.durable
    }

    /// A committed compaction command at `index` allows compacting through
    /// `through` (only ever below the command itself: it was proposed after it).
    pub(crate) fn allow(&mut self, index: u64, through: u64) {
        self.allowed = self.allowed.max(through.min(index.saturating_sub(1)));
    }

    /// Compacts `group`'s Raft log as far as a committed command allows and the
    /// state is durable.
    pub(crate) fn compact_raft_log(
        &mut self,
        engine: &dyn Engine,
        group: GroupId,
        kind: &'static str,
    ) -> Result<()> {
        let to = self.allowed.min(self.durable);
        if to > self.compacted {
            engine.raft_compact(group, to)?;
            crate::stats::raft_log_compacted(kind);
            self.compacted = to;
            tracing::trace!(%group, index = to, "raft log compacted");
            while self.marks.get(1).is_some_and(|&(i, _, _)| i <= to) {
                self.marks.pop_front();
            }
        }
        Ok(())
    }

    /// On the leader: a compaction command if one is due under `policy`, given
    /// that every replica has matched `matched`.
    pub(crate) fn propose(&mut self, matched: u64, policy: CompactPolicy) -> Option<Vec<u8>> {
        let through = self.due(matched, policy)?;
        self.flushed_bytes = 0;
        self.proposed = through;
        self.proposed_at = Instant::now();
        Some(encode_compact(through))
    }

    /// The index a compaction command [`Compaction::propose`] would propose now
    /// goes through, if one is due.
    pub(crate) fn due(&self, matched: u64, policy: CompactPolicy) -> Option<u64> {
        // Past the bound, replicas behind are sent a snapshot instead.
        let over = policy.max_log_bytes.is_some_and(|m| self.retained() > m)
            || policy
                .max_log_age
                .is_some_and(|m| self.retained_age().is_some_and(|a| a > m));
        let through = if over {
            self.durable
        } else {
            self.durable.min(matched)
        };
        let done = self.compacted.max(self.allowed).max(self.proposed);
        // Only batches are worth a command: once the last one is covered, what is
        // left (compaction commands, elections' empty entries) stays, or every
        // command would call for the next one.
        if through <= done || self.last_batch <= done {
            return None;
        }
        if self.flushed_bytes < policy.bytes && self.proposed_at.elapsed() < policy.interval {
            return None;
        }
        Some(through)
    }

    /// A new term: what an earlier one proposed may have been dropped.
    pub(crate) fn new_term(&mut self) {
        self.proposed = 0;
    }
}

pub(crate) struct PartitionMachine {
    pub(crate) group: GroupId,
    pub(crate) engine: Arc<dyn Engine>,
    /// Wakes the node's registration loop, which announces leadership in metadata.
    pub(crate) announce: Arc<Notify>,
    pub(crate) flush: FlushPolicy,
    pub(crate) compact: CompactPolicy,
    pub(crate) unflushed: u64,
    pub(crate) last_flush: Instant,
    /// Bumped after applying new batches: wakes long-polling fetches.
    pub(crate) batches_applied: Arc<watch::Sender<u64>>,
    pub(crate) applied_batches: bool,
    pub(crate) compaction: Compaction,
    /// Idempotent producers' state, as of the last applied entry (shared with
    /// the node, which answers DescribeProducers from it).
    pub(crate) producers: SharedProducers,
    /// Producers idle this long (by the log's clock) are forgotten.
    pub(crate) producer_expiration_ms: i64,
    /// Whether `producers` changed since its last checkpoint.
    pub(crate) producers_dirty: bool,
    /// Bytes of batches applied since the last producer-state checkpoint
    /// (`u64::MAX` until one is written in this run).
    pub(crate) unchecked_bytes: u64,
    /// The negative control: retries are appended again.
    pub(crate) no_dedup: bool,
    /// The partition's next offset as applied.
    pub(crate) next_offset: i64,
    /// On the leader: the offsets it stamps and the batches in flight.
    pub(crate) view: Option<LeaderView>,
    /// Whether a stamped batch was stored at other offsets than it carries
    /// (said once).
    pub(crate) renumbered: bool,
    /// The node's snapshot service, when the engine installs partition logs
    /// from snapshots.
    pub(crate) snapshots: Option<Arc<Snapshots>>,
}

/// At most this many bytes of log are applied between two producer-state
/// checkpoints, which bounds what a restart reads to rebuild the state.
const CHECKPOINT_EVERY: u64 = 64 << 20;

impl PartitionMachine {
    fn flush(&mut self) -> Result<()> {
        // Runs inside the driver's `raft::blocking` section, off the async workers.
        self.engine.log_flush(self.group)?;
        // Written when the state changed, and also every CHECKPOINT_EVERY bytes of
        // log without a change (a partition of plain producers): a restart
        // replays the log after the checkpoint looking for idempotent batches,
        // and without one it would read the whole partition log.
        if std::mem::take(&mut self.producers_dirty) || self.unchecked_bytes >= CHECKPOINT_EVERY {
            // After the log is durable: a checkpoint is never ahead of the log it
            // describes (a crash between the two leaves an older one, and the
            // batches after it are replayed from the log).
            self.unchecked_bytes = 0;
            let log = self.engine.log_state(self.group)?;
            let blob =
                producers::checkpoint(log.applied_index, &self.producers.lock(), log.next_offset)?;
            self.engine.state_put(self.group, &blob)?;
        }
        self.compaction
            .made_durable(std::mem::take(&mut self.unflushed));
        self.last_flush = Instant::now();
        self.compact_raft_log()
    }

    fn compact_raft_log(&mut self) -> Result<()> {
        self.compaction
            .compact_raft_log(self.engine.as_ref(), self.group, Self::KIND)
    }
}

impl PartitionMachine {
    /// A batch whose offsets are assigned here (an entry written before the
    /// leader stamped offsets, or while such an entry was in flight). An
    /// idempotent producer's batch is checked against the state all replicas
    /// share at this entry: a retry is answered with its first copy's offsets
    /// and not appended; a gap or a fenced epoch is refused (by every replica
    /// alike).
    fn apply_unstamped(&mut self, index: u64, term: u64, batch: &[u8]) -> Result<Applied> {
        let h = crate::batch::BatchHeader::parse(batch)?;
        if h.producer_id >= 0 && !self.no_dedup {
            let verdict = self.producers.lock().check_batch(&h)?;
            if let Verdict::Duplicate {
                base_offset,
                last_offset,
            } = verdict
            {
                self.skip(index, term)?;
                return Ok(Applied::Batch(crate::engine::Appended {
                    base_offset,
                    last_offset,
                }));
            }
        }
        self.store(index, term, batch, &h)
    }

    /// A batch the leader stamped with its offsets when it proposed it, having
    /// checked it against its producer's state (docs/write-path.md). Its offsets
    /// continue the partition log — unless records were lost and the loss
    /// accepted (`weir recover --accept-loss`, which restarts the partition log
    /// below the Raft log's remaining entries): then it is stored at the
    /// partition's next offset, as an unstamped one, and the leader's view
    /// numbers the same way.
    fn apply_stamped(&mut self, index: u64, term: u64, batch: &[u8]) -> Result<Applied> {
        let h = crate::batch::BatchHeader::parse(batch)?;
        if h.base_offset != self.next_offset && !std::mem::replace(&mut self.renumbered, true) {
            tracing::warn!(
                group = %self.group, index, stamped = h.base_offset, next = self.next_offset,
                "a stamped batch does not continue the partition log (records were lost and the loss accepted?): stored at the partition's next offset"
            );
        }
        self.store(index, term, batch, &h)
    }

    /// Appends a batch (numbered as `h` says) and records it in the producer
    /// state.
    fn store(
        &mut self,
        index: u64,
        term: u64,
        batch: &[u8],
        h: &crate::batch::BatchHeader,
    ) -> Result<Applied> {
        let epoch = i32::try_from(term).unwrap_or(i32::MAX);
        let appended = self.engine.log_append(self.group, index, epoch, batch)?;
        self.next_offset = appended.last_offset + 1;
        if h.producer_id >= 0 {
            let cached = CachedBatch::of(h, appended.base_offset, appended.last_offset);
            self.producers.lock().record_and_expire(
                h.producer_id,
                h.producer_epoch,
                cached,
                self.producer_expiration_ms,
            );
            self.producers_dirty = true;
        }
        self.compaction.applied(index, true);
        self.compaction.grew(index, batch.len() as u64);
        self.unflushed += batch.len() as u64;
        self.unchecked_bytes = self.unchecked_bytes.saturating_add(batch.len() as u64);
        self.applied_batches = true;
        Ok(Applied::Batch(appended))
    }
}

impl StateMachine for PartitionMachine {
    const KIND: &'static str = "partition";

    fn apply(&mut self, index: u64, term: u64, data: &[u8]) -> Result<Applied> {
        let entry = decode_partition(data)
            .map_err(|e| Error::Invalid(format!("{}: entry {index}: {e}", self.group)))?;
        let applied = match entry {
            PartitionEntry::Produce(batch) => self.apply_unstamped(index, term, batch)?,
            PartitionEntry::Stamped(batch) => self.apply_stamped(index, term, batch)?,
            PartitionEntry::Compact(through) => {
                self.compaction.allow(index, through);
                self.skip(index, term)?;
                Applied::Command
            }
            PartitionEntry::Trim(offset) => {
                // Every replica has applied the same entries before this one, so
                // the clamp to the log's end lands at the same offset everywhere.
                self.engine.log_delete_prefix(self.group, offset)?;
                self.skip(index, term)?;
                Applied::Command
            }
        };
        if let Some(v) = self.view.as_mut() {
            v.applied(index, self.next_offset);
        }
        Ok(applied)
    }

    fn skip(&mut self, index: u64, _term: u64) -> Result<()> {
        self.engine.log_mark_applied(self.group, index)?;
        self.compaction.applied(index, false);
        if let Some(v) = self.view.as_mut() {
            v.applied(index, self.next_offset);
        }
        Ok(())
    }

    fn after_apply(&mut self) -> Result<()> {
        if std::mem::take(&mut self.applied_batches) {
            self.batches_applied.send_modify(|n| *n = n.wrapping_add(1));
        }
        if self.unflushed >= self.flush.bytes || self.last_flush.elapsed() >= self.flush.interval {
            self.flush()
        } else {
            self.compact_raft_log()
        }
    }

    fn tick_work_due(&self, matched: Option<u64>) -> bool {
        (self.compaction.has_undurable() && self.last_flush.elapsed() >= self.flush.interval)
            || matched.is_some_and(|m| self.compaction.due(m, self.compact).is_some())
    }

    fn on_tick(&mut self) -> Result<()> {
        // Without new applies, data applied last still becomes durable (and its Raft
        // entries compactable) within the flush interval.
        if self.compaction.has_undurable() && self.last_flush.elapsed() >= self.flush.interval {
            self.flush()?;
        }
        Ok(())
    }

    fn compaction(&mut self, matched: u64) -> Option<Vec<u8>> {
        self.compaction.propose(matched, self.compact)
    }

    fn snapshot_source(&self) -> Option<SnapshotSource> {
        self.snapshots.as_ref()?;
        let (engine, group, producers) = (self.engine.clone(), self.group, self.producers.clone());
        Some(Arc::new(move || {
            // Called by raft-rs on this group's driver, between applies: the
            // log and the producer state agree.
            let log = engine.log_state(group)?;
            let blob =
                producers::checkpoint(log.applied_index, &producers.lock(), log.next_offset)?;
            let d = Descriptor {
                start: log.start_offset,
                next: log.next_offset,
                producers: blob,
            };
            Ok((log.applied_index, d.encode()?))
        }))
    }

    fn check_snapshot(&mut self, from: NodeId, snap: &Snapshot) -> Result<()> {
        let Some(service) = &self.snapshots else {
            return Err(Error::Unsupported(
                "this engine does not install partition logs from snapshots".into(),
            ));
        };
        let d = Descriptor::decode(&snap.data)?;
        if d.start > d.next {
            return Err(Error::Invalid(format!(
                "{}: a snapshot of log [{}, {})",
                self.group, d.start, d.next
            )));
        }
        match self.engine.stage_end(self.group)? {
            Some((s, e)) if s == d.start && e == d.next => Ok(()),
            _ => {
                service.want(self.group, from, d.start, d.next)?;
                Err(Error::Unavailable(snap.get_metadata().index))
            }
        }
    }

    fn restore(&mut self, meta: &SnapshotMetadata, data: &[u8]) -> Result<()> {
        let d = Descriptor::decode(data)?;
        let states = producers::from_checkpoint(self.group, &d.producers)?;
        // The checkpoint first: one ahead of the log is rebuilt at a restart.
        self.engine.state_put(self.group, &d.producers)?;
        self.engine.stage_install(self.group, meta.index)?;
        crate::crash::crash_point("install-before-raft-reset");
        *self.producers.lock() = states;
        self.next_offset = d.next;
        self.compaction = Compaction::new(meta.index, meta.index);
        self.view = None;
        self.unflushed = 0;
        self.producers_dirty = false;
        self.unchecked_bytes = 0;
        self.applied_batches = true;
        if let Some(s) = &self.snapshots {
            s.done(self.group);
        }
        tracing::info!(group = %self.group, index = meta.index, start = d.start, next = d.next, "installed a partition snapshot");
        Ok(())
    }

    fn log_state(&self) -> Option<LogState> {
        self.engine.log_state(self.group).ok()
    }

    fn before_propose(
        &mut self,
        data: &mut Vec<u8>,
        at: ProposeAt,
        entries: EntriesFrom<'_>,
    ) -> Stamp {
        if self.view.as_ref().is_none_or(|v| v.term() != at.term) {
            self.view = Some(LeaderView::new(
                self.group,
                at.term,
                self.next_offset,
                at.applied,
            ));
        }
        let Some(view) = self.view.as_mut() else {
            return Stamp::Propose;
        };
        let states = self.producers.lock();
        view.stamp(data, at, &states, !self.no_dedup, entries)
    }

    fn proposal_dropped(&mut self, index: u64) {
        if let Some(v) = self.view.as_mut() {
            v.dropped(index);
        }
    }

    fn on_leader(&mut self, _term: u64) {
        self.compaction.new_term();
        // The registration loop announces the new leader (its one path to metadata).
        self.announce.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max_log_age: Option<Duration>) -> CompactPolicy {
        CompactPolicy {
            bytes: 0,
            interval: Duration::ZERO,
            max_log_bytes: None,
            max_log_age,
        }
    }

    #[test]
    fn compaction_waits_for_replicas_behind_until_a_bound_is_passed() {
        let mut c = Compaction::new(0, 0);
        c.applied(5, true);
        c.grew(5, 100);
        c.made_durable(100);
        // A replica has matched nothing: without a bound, nothing is compacted.
        assert_eq!(c.propose(0, policy(None)), None);
        // Past the age bound, compaction goes through what is durable here.
        assert_eq!(
            c.propose(0, policy(Some(Duration::ZERO))),
            Some(encode_compact(5))
        );
        // Past the size bound too.
        let mut c = Compaction::new(0, 0);
        c.applied(7, true);
        c.grew(7, 2 << 20);
        c.made_durable(2 << 20);
        let by_size = CompactPolicy {
            max_log_bytes: Some(1 << 20),
            ..policy(None)
        };
        assert_eq!(c.propose(0, by_size), Some(encode_compact(7)));
    }

    #[test]
    fn due_says_what_propose_would_without_proposing_it() {
        let mut c = Compaction::new(0, 0);
        c.applied(5, true);
        c.grew(5, 100);
        c.made_durable(100);
        let p = policy(Some(Duration::ZERO));
        assert_eq!(c.due(0, policy(None)), None);
        assert_eq!(c.due(0, p), Some(5));
        assert_eq!(c.due(0, p), Some(5), "asking changed nothing");
        assert_eq!(c.propose(0, p), Some(encode_compact(5)));
        assert_eq!(c.due(0, p), None, "proposed already");
    }
}
