//! A group-coordinator partition's state machine: committed commands change the
//! replicated [`GroupStore`]; the store is checkpointed through the engine
//! ([`StateStore`](crate::engine::StateStore)) and the Raft log compacted
//! through the checkpoint, so that a restart loads the checkpoint and replays
//! only the tail.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::checkpoint;
use crate::engine::Engine;
use crate::entry::{PartitionEntry, TAG_COMPACT, decode_partition};
use crate::error::{Error, Result};
use crate::groups::store::{GroupCommand, GroupStore, TAG_GROUP, decode_command, encode_command};
use crate::ids::GroupId;
use crate::partition::{CompactPolicy, Compaction, FlushPolicy};
use crate::raft::driver::{Applied, StateMachine};

/// What a coordinator partition's replica shares with the node's coordinator:
/// the replicated store and how far it has applied.
#[derive(Debug, Default)]
pub(crate) struct Replica {
    /// Offsets and settled generations.
    pub(crate) store: GroupStore,
    /// The last Raft index applied to the store.
    pub(crate) applied: u64,
    /// The term of that entry: once it is the leader's own term, every entry of
    /// earlier terms has been applied (the leader's first entry follows them).
    pub(crate) applied_term: u64,
    /// Bumped when this replica becomes leader: the coordinator drops what it
    /// kept of an earlier term.
    pub(crate) leader_terms: u64,
}

/// Shared between the machine (writer) and the coordinator (reader).
pub(crate) type SharedReplica = Arc<Mutex<Replica>>;

/// Loads `group`'s checkpoint: the store and the index it reflects (0 and an
/// empty store when there is none).
pub(crate) fn load(engine: &dyn Engine, group: GroupId) -> Result<(GroupStore, u64)> {
    match engine.state_get(group)? {
        None => Ok((GroupStore::default(), 0)),
        Some(blob) => {
            let c = checkpoint::decode(group, blob)?;
            let store = GroupStore::decode(&c.payload)
                .map_err(|e| Error::Corrupt(format!("{group}: {e}")))?;
            Ok((store, c.index))
        }
    }
}

pub(crate) struct CoordinatorMachine {
    pub(crate) group: GroupId,
    pub(crate) engine: Arc<dyn Engine>,
    pub(crate) replica: SharedReplica,
    /// When a checkpoint is written (bytes of commands applied since the last, or
    /// time since it).
    pub(crate) checkpoint: FlushPolicy,
    pub(crate) compact: CompactPolicy,
    pub(crate) unsaved: u64,
    pub(crate) last_save: Instant,
    pub(crate) compaction: Compaction,
    /// Groups without members and without a commit for this long expire.
    pub(crate) retention: Duration,
    /// When this replica, as leader, last proposed an expiry.
    pub(crate) last_expiry: Instant,
}

/// How often a leader looks for expired groups.
const EXPIRY_EVERY: Duration = Duration::from_secs(60);

impl CoordinatorMachine {
    fn save(&mut self) -> Result<()> {
        // Runs inside the driver's `raft::blocking` section, off the async workers.
        let blob = {
            let r = self.replica.lock();
            checkpoint::encode(r.applied, &r.store.encode()?)
        };
        self.engine.state_put(self.group, &blob)?;
        self.compaction
            .made_durable(std::mem::take(&mut self.unsaved));
        self.last_save = Instant::now();
        self.compaction
            .compact_raft_log(self.engine.as_ref(), self.group, Self::KIND)
    }

    fn due(&self) -> bool {
        self.compaction.has_undurable()
            && (self.unsaved >= self.checkpoint.bytes
                || self.last_save.elapsed() >= self.checkpoint.interval)
    }
}

impl StateMachine for CoordinatorMachine {
    const KIND: &'static str = "coordinator";

    fn apply(&mut self, index: u64, term: u64, data: &[u8]) -> Result<Applied> {
        let what = |e: Error| Error::Invalid(format!("{}: entry {index}: {e}", self.group));
        match data.first() {
            Some(&TAG_GROUP) => {
                let cmd = decode_command(data).map_err(what)?;
                let mut r = self.replica.lock();
                r.store.apply(cmd);
                r.applied = index;
                r.applied_term = term;
                drop(r);
                self.unsaved += data.len() as u64;
                self.compaction.applied(index, true);
            }
            Some(&TAG_COMPACT) => {
                if let PartitionEntry::Compact(through) = decode_partition(data).map_err(what)? {
                    self.compaction.allow(index, through);
                }
                self.skip_at(index, term);
            }
            _ => return Err(what(Error::Invalid("not a coordinator command".into()))),
        }
        Ok(Applied::Command)
    }

    fn skip(&mut self, index: u64, term: u64) -> Result<()> {
        self.skip_at(index, term);
        Ok(())
    }

    fn after_apply(&mut self) -> Result<()> {
        if self.due() {
            self.save()
        } else {
            self.compaction
                .compact_raft_log(self.engine.as_ref(), self.group, Self::KIND)
        }
    }

    fn on_tick(&mut self) -> Result<()> {
        if self.due() { self.save() } else { Ok(()) }
    }

    fn compaction(&mut self, matched: u64) -> Option<Vec<u8>> {
        if let Some(c) = self.compaction.propose(matched, self.compact) {
            return Some(c);
        }
        // Expiry rides on the same hook: the leader proposes it by its clock, and
        // every replica drops the same groups.
        if self.last_expiry.elapsed() < EXPIRY_EVERY {
            return None;
        }
        self.last_expiry = Instant::now();
        let retention = i64::try_from(self.retention.as_millis()).unwrap_or(i64::MAX);
        let before_ms = crate::batch::now_ms().saturating_sub(retention);
        let expired = self
            .replica
            .lock()
            .store
            .groups
            .values()
            .any(|g| !g.has_members() && g.changed_ms < before_ms);
        if !expired {
            return None;
        }
        encode_command(&GroupCommand::Expire { before_ms }).ok()
    }

    fn on_leader(&mut self, _term: u64) {
        self.compaction.new_term();
        self.replica.lock().leader_terms += 1;
    }
}

impl CoordinatorMachine {
    fn skip_at(&mut self, index: u64, term: u64) {
        let mut r = self.replica.lock();
        r.applied = index;
        r.applied_term = term;
        drop(r);
        self.compaction.applied(index, false);
    }
}
