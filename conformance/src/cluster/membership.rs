//! Membership changes of the metadata group (issue 22): nodes join as
//! learners, are promoted once caught up, and leave, under produce load; the
//! configuration survives restarts.

use super::*;

impl<H: ClusterHarness, N: NetHarness> Cluster<H, N> {
    /// Starts spare node `id` empty and has the metadata group's leader add
    /// it; waits until every running node counts it a voter.
    ///
    /// # Errors
    /// When it cannot start or is not a voter in time.
    pub async fn join(&mut self, id: NodeId) -> anyhow::Result<()> {
        let (guard, engine) = self.h.create(id)?;
        self.guards.insert(id, guard);
        self.launch(id, engine)?;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let leader = self.leader(GroupId::METADATA).await?;
            match self
                .node(leader)
                .add_node(id, &format!("node-{id}"), Duration::from_secs(5))
                .await
            {
                Ok(()) => break,
                // A leader change meanwhile: ask the next one.
                Err(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(TICK * 10).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.wait_for(WAIT, "the new node a voter everywhere", |c| {
            c.running().iter().all(|&n| {
                c.node(n)
                    .group_status(GroupId::METADATA)
                    .is_some_and(|s| s.voters.contains(&id))
            })
        })
        .await
    }

    /// Has the metadata group's leader remove node `id`, then stops it;
    /// waits until no running node counts it a member.
    ///
    /// # Errors
    /// When the removal is refused or does not happen in time.
    pub async fn leave(&mut self, id: NodeId) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let leader = self.leader(GroupId::METADATA).await?;
            match self
                .node(leader)
                .remove_node(id, Duration::from_secs(5))
                .await
            {
                Ok(()) => break,
                // The leader was the node removed (it handed over), or is
                // changing: ask the next one.
                Err(Error::NotLeader { .. } | Error::Timeout(_))
                    if tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(TICK * 10).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.stop(id).await;
        self.wait_for(WAIT, "the node gone everywhere", |c| {
            c.running().iter().all(|&n| {
                let node = c.node(n);
                node.group_status(GroupId::METADATA)
                    .is_some_and(|s| !s.voters.contains(&id) && !s.learners.contains(&id))
                    && !node.metadata().brokers.contains_key(&id)
            })
        })
        .await
    }
}

/// Produces `n` batches to partition `m`-0, numbered on from `v`; their numbers.
async fn produce_n<H: ClusterHarness, N: NetHarness>(
    c: &Cluster<H, N>,
    v: &mut u64,
    n: u64,
) -> anyhow::Result<Vec<u64>> {
    let mut out = Vec::new();
    for _ in 0..n {
        *v += 1;
        c.produce("m", 0, &produced_batch(1, 0, *v, 100), WAIT)
            .await?;
        out.push(*v);
    }
    Ok(out)
}

/// Voters of the metadata group as node `id` has them.
fn voters<H: ClusterHarness, N: NetHarness>(c: &Cluster<H, N>, id: NodeId) -> Vec<NodeId> {
    c.node(id)
        .group_status(GroupId::METADATA)
        .map(|s| s.voters)
        .unwrap_or_default()
}

/// The metadata group grows from 3 to 5 voters and back while a partition
/// takes writes: every acknowledged batch is in the partition's converged log,
/// a topic created at 5 nodes can use the new ones, a node holding replicas
/// cannot be removed, and the configuration survives a restart.
pub async fn cluster_metadata_voters_grow_and_shrink_under_load<
    H: ClusterHarness,
    N: NetHarness,
>(
    h: Arc<H>,
    net: Arc<N>,
) -> CaseResult {
    let mut c = Cluster::start_with_spares(h, net, 3, 2, 31).await?;
    c.create_topic(1, "m", 1, 3).await.context("creating m")?;
    let g = c.group("m", 0)?;
    let mut acked = Vec::new();
    let mut v = 0u64;
    acked.extend(produce_n(&c, &mut v, 10).await?);
    c.join(4).await.context("adding node 4")?;
    acked.extend(produce_n(&c, &mut v, 10).await?);
    c.join(5).await.context("adding node 5")?;
    acked.extend(produce_n(&c, &mut v, 10).await?);
    ensure_eq!(voters(&c, 1), vec![1, 2, 3, 4, 5], "voters after growing");
    c.wait_for(WAIT, "the new nodes registered as brokers", |c| {
        c.running()
            .iter()
            .all(|&n| c.node(n).metadata().brokers.len() == 5)
    })
    .await?;
    // The new nodes take replicas of a new topic, and their metadata group
    // replicas take part in elections: the old leader goes.
    c.create_topic(4, "wide", 5, 1)
        .await
        .context("creating wide")?;
    let old = c.leader(GroupId::METADATA).await?;
    c.stop(old).await;
    let created = c.create_topic(c.running()[0], "after-failover", 1, 3).await;
    if let Err(e) = created {
        let views: Vec<String> = c
            .running()
            .iter()
            .map(|&n| format!("node {n}: {:?}", c.node(n).group_status(GroupId::METADATA)))
            .collect();
        bail!("creating a topic after the metadata leader {old} stopped: {e:#}; {views:?}");
    }
    c.restart(old).await.context("restarting the old leader")?;
    // A node holding replicas is refused; one that holds none leaves.
    let leader = c.leader(GroupId::METADATA).await?;
    let refused = c.node(leader).remove_node(5, WAIT).await;
    ensure!(
        matches!(
            refused,
            Err(Error::Invalid(_)) | Err(Error::NotLeader { .. })
        ),
        "removing a node with replicas: {refused:?}"
    );
    c.node(leader)
        .delete_topic("wide", WAIT)
        .await
        .context("deleting wide")?;
    if c.replicas("after-failover", 0)?.iter().any(|&r| r >= 4) {
        c.node(leader)
            .delete_topic("after-failover", WAIT)
            .await
            .context("deleting after-failover")?;
    }
    c.leave(5).await.context("removing node 5")?;
    acked.extend(produce_n(&c, &mut v, 10).await?);
    c.leave(4).await.context("removing node 4")?;
    acked.extend(produce_n(&c, &mut v, 10).await?);
    for id in c.running() {
        ensure_eq!(
            voters(&c, id),
            vec![1, 2, 3],
            "voters after shrinking, on node {id}"
        );
    }
    // Membership lives in the Raft configuration: a restart keeps it.
    c.restart(1).await.context("restarting node 1")?;
    c.wait_for(WAIT, "node 1 back with the same voters", |c| {
        voters(c, 1) == vec![1, 2, 3]
    })
    .await?;
    acked.extend(produce_n(&c, &mut v, 5).await?);
    let log = c.converged_log(g, &[1, 2, 3]).await?;
    ensure_eq!(log.len(), acked.len(), "every acknowledged batch, once");
    c.shutdown().await;
    Ok(Outcome::Passed)
}
