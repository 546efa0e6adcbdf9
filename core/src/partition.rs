//! A partition group's state machine: committed produce entries become batches in
//! the engine's partition log.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::engine::{Engine, LogState};
use crate::error::{Error, Result};
use crate::ids::{GroupId, NodeId};
use crate::metadata::{MetaCommand, TAG_PRODUCE};
use crate::raft::driver::{GroupMsg, Outcome, StateMachine};

/// Encodes a produce request's batch as a partition-group entry payload.
pub(crate) fn encode_produce(batch: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(batch.len() + 1);
    v.push(TAG_PRODUCE);
    v.extend_from_slice(batch);
    v
}

/// When the partition log is flushed (it need not be on every apply: the Raft log
/// is the write-ahead log).
#[derive(Clone, Copy, Debug)]
pub(crate) struct FlushPolicy {
    pub(crate) bytes: u64,
    pub(crate) interval: Duration,
}

pub(crate) struct PartitionMachine {
    pub(crate) node: NodeId,
    pub(crate) group: GroupId,
    pub(crate) engine: Arc<dyn Engine>,
    pub(crate) metadata: mpsc::UnboundedSender<GroupMsg>,
    pub(crate) flush: FlushPolicy,
    pub(crate) unflushed: u64,
    pub(crate) last_flush: Instant,
    /// Bumped after applying new batches: wakes long-polling fetches.
    pub(crate) data: Arc<tokio::sync::watch::Sender<u64>>,
    pub(crate) applied_batches: bool,
}

impl StateMachine for PartitionMachine {
    fn apply(&mut self, index: u64, term: u64, data: &[u8]) -> Result<Outcome> {
        let Some((&TAG_PRODUCE, batch)) = data.split_first() else {
            return Err(Error::Invalid(format!(
                "{}: entry {index} is not a produce command",
                self.group
            )));
        };
        let epoch = i32::try_from(term).unwrap_or(i32::MAX);
        let appended = self.engine.log_append(self.group, index, epoch, batch)?;
        self.unflushed += batch.len() as u64;
        self.applied_batches = true;
        Ok(Outcome::Produced(appended))
    }

    fn skip(&mut self, index: u64) -> Result<()> {
        self.engine.log_mark_applied(self.group, index)
    }

    fn after_apply(&mut self) -> Result<()> {
        if std::mem::take(&mut self.applied_batches) {
            self.data.send_modify(|n| *n = n.wrapping_add(1));
        }
        if self.unflushed >= self.flush.bytes || self.last_flush.elapsed() >= self.flush.interval {
            self.engine.log_flush(self.group)?;
            self.unflushed = 0;
            self.last_flush = Instant::now();
        }
        Ok(())
    }

    fn log_state(&self) -> Option<LogState> {
        self.engine.log_state(self.group).ok()
    }

    fn on_leader(&mut self, term: u64) {
        let cmd = MetaCommand::LeaderChanged {
            group: self.group,
            node: self.node,
            term,
        };
        let _ = self.metadata.send(GroupMsg::Forward { data: cmd.encode() });
    }
}
