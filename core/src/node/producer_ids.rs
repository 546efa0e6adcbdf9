//! Idempotent producers at the node: InitProducerId hands out ids from blocks
//! the metadata group gives each node ([`MetaCommand::AllocateProducerIds`]), so
//! no two producers anywhere in the cluster, before or after any restart, get
//! the same id (a block this node did not use up before it stopped is skipped);
//! DescribeProducers reads a partition leader's producer state.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::ids::GroupId;
use crate::metadata::MetaCommand;
use crate::node::Node;
use crate::raft::driver::GroupMsg;

/// How long getting a new block may take.
const ALLOCATE_TIMEOUT: Duration = Duration::from_secs(10);

/// An idempotent producer a partition's leader holds state for
/// ([`Node::describe_producers`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActiveProducer {
    /// Its id.
    pub producer_id: i64,
    /// Its current epoch.
    pub epoch: i16,
    /// The last sequence number it wrote in that epoch (-1 when none is
    /// remembered).
    pub last_sequence: i32,
    /// The largest timestamp of its batches (ms).
    pub last_timestamp: i64,
}

impl Node {
    /// The idempotent producers of a partition this node leads, by id, as of
    /// the last entry it applied: what DescribeProducers and
    /// `weir producers describe` show. Producers whose state expired
    /// (`producer_id_expiration_ms` idle, by the log's clock) are not listed.
    ///
    /// A partition of an internal topic has none.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::NotLeader`].
    pub fn describe_producers(&self, topic: &str, partition: i32) -> Result<Vec<ActiveProducer>> {
        let (p, h) = self.locate(topic, partition)?;
        self.leader_check(&p, &h)?;
        let shared = self
            .inner
            .groups
            .read()
            .get(&p.group)
            .and_then(|h| h.producers.clone());
        let Some(shared) = shared else {
            return Ok(Vec::new());
        };
        let states = shared.lock();
        Ok(states
            .producers
            .iter()
            .map(|(&producer_id, e)| ActiveProducer {
                producer_id,
                epoch: e.epoch,
                last_sequence: e.last_seq().unwrap_or(-1),
                last_timestamp: e.last_timestamp,
            })
            .collect())
    }

    /// The offsets of the committed batch that `batch` repeats (same producer,
    /// epoch and sequence range among its last five), when it is a retry of
    /// one: the produce pipeline answers it without proposing it again.
    pub(crate) fn committed_duplicate(
        &self,
        group: GroupId,
        batch: &crate::batch::BatchHeader,
    ) -> Option<crate::engine::Appended> {
        if self.inner.cfg.no_producer_dedup() {
            return None;
        }
        let shared = self.inner.groups.read().get(&group)?.producers.clone()?;
        let verdict = shared.lock().check_batch(batch);
        match verdict {
            Ok(crate::producers::Verdict::Duplicate {
                base_offset,
                last_offset,
            }) => Some(crate::engine::Appended {
                base_offset,
                last_offset,
            }),
            _ => None,
        }
    }

    /// A producer id and epoch for an idempotent producer (InitProducerId).
    /// A producer that gives the id and epoch it has gets the same id with the
    /// next epoch (KIP-360); otherwise a new id, epoch 0.
    ///
    /// # Errors
    /// [`Error::Timeout`] when the metadata group gives no block in time (no
    /// quorum); [`Error::Shutdown`].
    pub async fn init_producer_id(&self, current: Option<(i64, i16)>) -> Result<(i64, i16)> {
        if let Some((id, epoch)) = current
            && id >= 0
            && (0..i16::MAX).contains(&epoch)
        {
            return Ok((id, epoch + 1));
        }
        let mut ids = self.inner.producer_ids.lock().await;
        if ids.0 >= ids.1 {
            *ids = self.allocate_producer_ids(ids.1).await?;
        }
        let id = ids.0;
        ids.0 += 1;
        Ok((id, 0))
    }

    /// Asks the metadata group for a new block and waits until it is applied:
    /// one that starts at or after `after` (the end of the last one this node
    /// used).
    async fn allocate_producer_ids(&self, after: i64) -> Result<(i64, i64)> {
        let me = self.id();
        let data = crate::entry::encode_meta(&MetaCommand::AllocateProducerIds { node: me })?;
        let mut meta = self.watch_metadata();
        // The block this node had before (in this run or an earlier one): only
        // a newer one will do.
        let stale = meta
            .borrow_and_update()
            .producer_id_blocks
            .get(&me)
            .copied();
        let deadline = tokio::time::Instant::now() + ALLOCATE_TIMEOUT;
        let mut proposed_at = None;
        loop {
            if let Some(&(start, end)) = meta.borrow_and_update().producer_id_blocks.get(&me)
                && Some((start, end)) != stale
                && start >= after
            {
                return Ok((start, end));
            }
            let now = tokio::time::Instant::now();
            if proposed_at.is_none_or(|t: tokio::time::Instant| now - t > Duration::from_secs(1)) {
                // Proposed wherever group 0's leader is (a follower forwards it);
                // again if nothing came of it.
                self.send_to_group(
                    GroupId::METADATA,
                    GroupMsg::ProposeUnanswered { data: data.clone() },
                );
                proposed_at = Some(now);
            }
            let wait = (deadline - now).min(Duration::from_millis(200));
            if now >= deadline {
                return Err(Error::Timeout("allocating producer ids".into()));
            }
            let _ = tokio::time::timeout(wait, meta.changed()).await;
        }
    }
}
