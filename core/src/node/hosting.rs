//! Hosting groups: starting a group's driver (with the Raft configuration DESIGN.md
//! §3 rule 5 fixes), and reconciling the partition replicas hosted here with what
//! metadata assigns to this node.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Instant;

use raft::eraftpb::ConfState;
use raft::{RawNode, ReadOnlyOption};
use tokio::sync::{oneshot, watch};

use super::{Hosted, Inner};
use crate::error::{Error, Result};
use crate::groups::machine;
use crate::ids::{GroupId, NodeId};
use crate::metadata::{Metadata, PartitionMeta, TopicKind};
use crate::partition::{CompactPolicy, Compaction, FlushPolicy, PartitionMachine};
use crate::producers::SharedProducers;
use crate::raft::driver::{self, DriverParts, GroupMsg, StateMachine};
use crate::raft::logger::logger;
use crate::raft::storage::EngineStorage;
use crate::retention::LogShape;

impl Inner {
    pub(super) fn start_group<S: StateMachine>(
        &self,
        group: GroupId,
        voters: &[NodeId],
        applied: u64,
        sm: S,
        producers: Option<SharedProducers>,
    ) -> Result<()> {
        let e = &self.engine;
        let mut state = e.raft_state(group)?;
        if state.conf_state.voters.is_empty() {
            state.conf_state = ConfState {
                voters: voters.to_vec(),
                ..ConfState::default()
            };
            e.raft_set_conf_state(group, &state.conf_state)?;
        }
        if state.hard_state.commit < applied {
            // Applied entries were committed; the hard state's commit may not have been
            // synced when the partition log was flushed.
            if applied > e.raft_last_index(group)? {
                return Err(Error::Corrupt(format!(
                    "{group}: partition log applied index {applied} is past the Raft log's last index"
                )));
            }
            state.hard_state.commit = applied;
            e.raft_set_hard_state(group, &state.hard_state)?;
        }
        // Not synced here: both fixes are derived again from durable state if they are
        // lost, and the group's first Ready that must be durable (a vote, entries) syncs
        // the log, these records included, before anything is sent. (A sync here waited,
        // after a kill -9, for the kernel to write back everything the previous process
        // left dirty: ext4 commits its journal only after that data.)
        let cfg = raft::Config {
            id: self.cfg.id,
            election_tick: self.cfg.election_ticks,
            heartbeat_tick: self.cfg.heartbeat_ticks,
            applied,
            // What a leader can have in flight to one follower of one group: at most
            // 32 appends of up to 1 MiB of entries. A follower catching up after
            // downtime is fed at that window; with 256 it was up to 256 MiB per
            // group and follower, read from the log and queued at once (1.1-1.8 GB
            // of leader RSS in a 2 GiB catch-up). Steady replication needs only a
            // few appends in flight (one per Ready, acknowledged after one fsync).
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 32,
            check_quorum: true,
            pre_vote: true,
            read_only_option: ReadOnlyOption::Safe,
            max_uncommitted_size: 256 << 20,
            max_committed_size_per_ready: 16 << 20,
            ..raft::Config::default()
        };
        cfg.validate()
            .map_err(|err| Error::Config(format!("{group}: {err}")))?;
        let mut storage = EngineStorage::new(e.clone(), group);
        if let Some(source) = sm.snapshot_source() {
            storage.set_snapshot_source(source);
        }
        let mut node = RawNode::new(&cfg, storage, &logger(self.cfg.id, group))
            .map_err(|err| Error::Corrupt(format!("{group}: cannot start Raft: {err}")))?;
        if state.conf_state.voters == [self.cfg.id] && state.conf_state.learners.is_empty() {
            // A single replica need not wait out an election timeout.
            let _ = node.campaign();
        }
        let writer = self.writer.lock().clone().ok_or(Error::Shutdown)?;
        let parts = DriverParts {
            group,
            node,
            engine: e.clone(),
            writer,
            transport: self.transport.clone(),
            fatal: self.fatal.clone(),
            space: self.space.clone(),
            tick: self.cfg.tick,
            unsafe_bypass_leader_check: self.cfg.bypass_leader_check(),
            replica_lag_max: self.cfg.replica_lag_max,
        };
        let (handle, task) = driver::spawn(parts, sm);
        self.groups.write().insert(
            group,
            Hosted {
                handle,
                task,
                producers,
            },
        );
        tracing::debug!(node = self.cfg.id, %group, ?voters, applied, "group started");
        Ok(())
    }

    fn start_partition(&self, p: &PartitionMeta) -> Result<()> {
        let applied = self.engine.log_state(p.group)?.applied_index;
        // The Raft log is compacted only through what the partition log holds
        // durably, so it never starts past the next entry to apply — unless the
        // partition log was lost (a deleted directory or table) or rolled back.
        let first = self.engine.raft_first_index(p.group)?;
        if first > applied + 1 {
            return Err(Error::Corrupt(format!(
                "{}: its partition log has applied Raft entries through {applied}, but the Raft log was compacted through {}: the records of entries {}..={} are gone (was the partition's data removed?). Restore them; or, to start the partition without them, stop this node and run `weir recover --accept-loss {}` with its config",
                p.group,
                first - 1,
                applied + 1,
                first - 1,
                p.group
            )));
        }
        let installs = self.engine.capabilities().snapshot_install;
        if installs && applied > self.engine.raft_last_index(p.group)? {
            self.finish_interrupted_install(p.group, applied)?;
        }
        let expiration_ms =
            i64::try_from(self.cfg.producer_id_expiration.as_millis()).unwrap_or(i64::MAX);
        let producers = Arc::new(parking_lot::Mutex::new(crate::producers::restore(
            self.engine.as_ref(),
            p.group,
            expiration_ms,
        )?));
        let sm = PartitionMachine {
            group: p.group,
            engine: self.engine.clone(),
            announce: self.announce.clone(),
            flush: FlushPolicy {
                bytes: self.cfg.flush_bytes,
                interval: self.cfg.flush_interval,
            },
            compact: CompactPolicy {
                bytes: self.cfg.compact_bytes,
                interval: self.cfg.compact_interval,
                max_log_bytes: installs.then_some(self.cfg.raft_log_max_bytes),
                max_log_age: installs.then_some(self.cfg.raft_log_max_age),
            },
            unflushed: 0,
            last_flush: Instant::now(),
            batches_applied: self.batches_applied.clone(),
            applied_batches: false,
            compaction: Compaction::new(applied, self.engine.raft_first_index(p.group)? - 1),
            producers: producers.clone(),
            producer_expiration_ms: expiration_ms,
            producers_dirty: false,
            unchecked_bytes: u64::MAX,
            no_dedup: self.cfg.no_producer_dedup(),
            next_offset: self.engine.log_state(p.group)?.next_offset,
            view: None,
            renumbered: false,
            snapshots: installs.then(|| self.snapshots.clone()),
        };
        self.start_group(p.group, self.first_voters(p), applied, sm, Some(producers))
    }
}

impl Inner {
    /// The voters a partition's replica here starts with when its engine has
    /// no configuration yet: the partition's replicas, or none for a replica
    /// being added by a reassignment (it learns the configuration from its
    /// leader: a snapshot, or the membership changes' context).
    fn first_voters<'a>(&self, p: &'a PartitionMeta) -> &'a [NodeId] {
        if p.replicas.contains(&self.cfg.id) {
            &p.replicas
        } else {
            &[]
        }
    }

    /// A partition log installed from a snapshot at `applied` whose Raft log
    /// was not reset to it yet (a crash between the two): resets it now. The
    /// snapshot's term is not known here, so the compaction point gets term 0:
    /// this replica then wins no election on it, and its leader's next append
    /// does not match, so it sends a snapshot again.
    fn finish_interrupted_install(&self, group: GroupId, applied: u64) -> Result<()> {
        tracing::warn!(%group, applied, "finishing a snapshot install a crash interrupted");
        let mut meta = raft::eraftpb::SnapshotMetadata {
            index: applied,
            ..Default::default()
        };
        meta.set_conf_state(self.engine.raft_state(group)?.conf_state);
        self.engine.raft_apply_snapshot(group, &meta)?;
        self.engine.raft_sync()
    }

    /// Starts a group-coordinator replica: its state from the checkpoint, the
    /// Raft log replayed after it.
    fn start_coordinator(&self, p: &PartitionMeta) -> Result<()> {
        let (store, applied) = machine::load(self.engine.as_ref(), p.group)?;
        let first = self.engine.raft_first_index(p.group)?;
        if first > applied + 1 {
            return Err(Error::Corrupt(format!(
                "{}: its coordinator checkpoint reflects Raft entries through {applied}, but the Raft log was compacted through {}: the commands of entries {}..={} are gone (was the checkpoint removed?)",
                p.group,
                first - 1,
                applied + 1,
                first - 1
            )));
        }
        let replica = Arc::new(parking_lot::Mutex::new(machine::Replica {
            store,
            applied,
            ..machine::Replica::default()
        }));
        self.coordinators.add(p.group, replica.clone());
        let sm = machine::CoordinatorMachine {
            group: p.group,
            engine: self.engine.clone(),
            replica,
            checkpoint: FlushPolicy {
                bytes: self.cfg.flush_bytes,
                interval: self.cfg.flush_interval,
            },
            compact: CompactPolicy {
                bytes: self.cfg.compact_bytes,
                interval: self.cfg.compact_interval,
                max_log_bytes: None,
                max_log_age: None,
            },
            unsaved: 0,
            last_save: Instant::now(),
            compaction: Compaction::new(applied, first - 1),
            retention: self.cfg.offsets_retention,
            last_expiry: Instant::now(),
        };
        self.start_group(p.group, self.first_voters(p), applied, sm, None)
    }
}

/// Starts the partition groups metadata assigns to this node and stops (and deletes)
/// those whose topic was deleted.
pub(super) async fn reconcile(node: Weak<Inner>, mut meta: watch::Receiver<Arc<Metadata>>) {
    // The layout each data partition's engine log was given (`log_configure`).
    let mut shapes: HashMap<GroupId, LogShape> = HashMap::new();
    loop {
        let m = meta.borrow_and_update().clone();
        let Some(inner) = node.upgrade() else {
            return;
        };
        for (t, p) in m.hosted_by(inner.cfg.id) {
            let default_ms = inner
                .cfg
                .segment_ms
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            let shape = LogShape::of(&t.configs, default_ms);
            if t.kind == TopicKind::Data && shapes.get(&p.group) != Some(&shape) {
                if let Err(e) = inner.engine.log_configure(p.group, shape) {
                    tracing::warn!(group = %p.group, error = %e, "the engine refused the topic's segment.bytes/segment.ms");
                }
                shapes.insert(p.group, shape);
            }
        }
        let wanted: HashMap<GroupId, (PartitionMeta, TopicKind)> = m
            .hosted_by(inner.cfg.id)
            .map(|(t, p)| (p.group, (p.clone(), t.kind)))
            .collect();
        let running: Vec<GroupId> = inner.groups.read().keys().copied().collect();
        // Replicas that could not start for want of disk space, tried again.
        let mut retry = false;
        for (g, (p, kind)) in &wanted {
            if running.contains(g) {
                continue;
            }
            let started = match kind {
                TopicKind::Data => inner.start_partition(p),
                TopicKind::GroupCoordinator => inner.start_coordinator(p),
            };
            match started {
                Ok(()) => {}
                Err(e @ Error::StorageFull(_)) => {
                    tracing::warn!(node = inner.cfg.id, group = %g, error = %e, "replica not started yet: retried once space is freed");
                    retry = true;
                }
                Err(e) => inner.fatal.raise(format!("starting {g}: {e}")),
            }
        }
        for g in running {
            if g == GroupId::METADATA || wanted.contains_key(&g) {
                continue;
            }
            let Some(h) = inner.groups.write().remove(&g) else {
                continue;
            };
            let (tx, _rx) = oneshot::channel();
            let _ = h.handle.tx.send(GroupMsg::Stop(tx));
            h.task.await;
            inner.coordinators.remove(g);
            inner.snapshots.done(g);
            shapes.remove(&g);
            let removed = inner
                .engine
                .log_remove(g)
                .and_then(|()| inner.engine.state_remove(g))
                .and_then(|()| inner.engine.raft_remove_group(g));
            if let Err(e) = removed {
                inner.fatal.raise(format!("removing {g}: {e}"));
            }
            tracing::info!(node = inner.cfg.id, group = %g, "partition replica removed");
        }
        drop(inner);
        if retry {
            tokio::select! {
                changed = meta.changed() => if changed.is_err() {
                    return;
                },
                () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            }
        } else if meta.changed().await.is_err() {
            return;
        }
    }
}
