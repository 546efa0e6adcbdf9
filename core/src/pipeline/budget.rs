//! The node-wide budget for produce proposals (`NodeConfig::max_pending_produce_bytes`).
//!
//! A proposal's bytes count from the moment it is made until its group has decided
//! it (applied, or superseded by a leader change): in the group's mailbox, in
//! raft-rs's unstable log, in flight to followers. Producers reserve bytes before
//! proposing ([`crate::Node::reserve_produce`]) and wait while the budget is spent,
//! so a flood of produce requests — acks=0 ones included, which answer nothing and
//! so hold nothing else back — waits at the connection (and TCP pushes back on the
//! client) instead of growing queues without bound.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The node's budget; shared by every group.
#[derive(Debug)]
pub(crate) struct ProduceBudget {
    semaphore: Arc<Semaphore>,
    limit: usize,
    counts: Arc<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    pending: AtomicUsize,
    peak: AtomicUsize,
}

impl ProduceBudget {
    /// A budget of `limit` bytes (at least 1, at most 4 GiB - 1).
    pub(crate) fn new(limit: usize) -> Self {
        let limit = limit.clamp(1, u32::MAX as usize);
        ProduceBudget {
            semaphore: Arc::new(Semaphore::new(limit)),
            limit,
            counts: Arc::default(),
        }
    }

    /// Waits until `bytes` fit (more than the whole budget waits for all of it).
    pub(crate) async fn reserve(&self, bytes: usize) -> ProduceCredit {
        // `limit` fits in a u32 (see `new`); the semaphore is never closed.
        let permits = bytes.clamp(1, self.limit) as u32;
        let permit = self
            .semaphore
            .clone()
            .acquire_many_owned(permits)
            .await
            .ok();
        ProduceCredit {
            permit,
            counts: self.counts.clone(),
        }
    }

    /// Bytes of proposals not yet decided.
    pub(crate) fn pending(&self) -> usize {
        self.counts.pending.load(Ordering::Relaxed)
    }

    /// The most bytes ever pending at once.
    pub(crate) fn peak(&self) -> usize {
        self.counts.peak.load(Ordering::Relaxed)
    }
}

/// Bytes reserved for the proposals of one produce request; what is not handed to
/// a proposal returns to the budget when it is dropped.
#[derive(Debug)]
pub struct ProduceCredit {
    permit: Option<OwnedSemaphorePermit>,
    counts: Arc<Counts>,
}

impl ProduceCredit {
    /// Takes `bytes` of the credit for one proposal (what is left if less: a
    /// request's proposals never exceed the frame it came in).
    pub(crate) fn take(&mut self, bytes: usize) -> ProposalBytes {
        let permit = self.permit.as_mut().and_then(|p| {
            let n = bytes.min(p.num_permits());
            p.split(n)
        });
        let now = self.counts.pending.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.counts.peak.fetch_max(now, Ordering::Relaxed);
        ProposalBytes {
            bytes,
            _permit: permit,
            counts: self.counts.clone(),
        }
    }
}

/// One proposal's share of the budget, held by its group until the proposal is
/// decided.
#[derive(Debug)]
pub(crate) struct ProposalBytes {
    bytes: usize,
    _permit: Option<OwnedSemaphorePermit>,
    counts: Arc<Counts>,
}

impl Drop for ProposalBytes {
    fn drop(&mut self) {
        self.counts.pending.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}
