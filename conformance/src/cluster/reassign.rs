//! Moving a partition's replicas (issue 22 item 2): under produce load, and
//! with the partition's leader killed in the middle of a move.

use super::*;

/// Produces one batch numbered `*v + 1` to `topic`-0; counts it.
async fn produce_one<H: ClusterHarness, N: NetHarness>(
    c: &Cluster<H, N>,
    topic: &str,
    v: &mut u64,
) -> anyhow::Result<()> {
    *v += 1;
    c.produce(topic, 0, &produced_batch(1, 0, *v, 100), WAIT)
        .await?;
    Ok(())
}

/// Whether every running node has metadata saying `group` finished moving
/// to `target`, and hosts a replica exactly where `target` says.
fn moved<H: ClusterHarness, N: NetHarness>(
    c: &Cluster<H, N>,
    topic: &str,
    group: GroupId,
    target: &[NodeId],
) -> bool {
    c.running().iter().all(|&n| {
        let node = c.node(n);
        let m = node.metadata();
        let done = !m.reassignments.contains_key(&group)
            && m.partition(topic, 0).is_some_and(|p| p.replicas == target);
        done && node.group_status(group).is_some() == target.contains(&n)
    })
}

/// Each running node's view of `group` and of the moves, for failures.
fn state<H: ClusterHarness, N: NetHarness>(c: &Cluster<H, N>, group: GroupId) -> String {
    c.running()
        .iter()
        .map(|&n| {
            let node = c.node(n);
            format!(
                "node {n}: moves {:?}, status {:?}",
                node.metadata().reassignments,
                node.group_status(group)
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A partition of 3 replicas on 4 nodes moves to a set that drops one node
/// and adds the fourth (which becomes the preferred leader) while it takes
/// writes; then moves back with its leader stopped in the middle, which the
/// next leader completes. Every acknowledged batch is in the converged log of
/// the final replicas, and the nodes that left hold no replica.
pub async fn cluster_partition_replicas_move_under_load<H: ClusterHarness, N: NetHarness>(
    h: Arc<H>,
    net: Arc<N>,
) -> CaseResult {
    let mut c = Cluster::start(h, net, 4, 45).await?;
    c.create_topic(1, "r", 1, 3).await?;
    let g = c.group("r", 0)?;
    let first = c.replicas("r", 0)?;
    let outsider = (1..=4)
        .find(|n| !first.contains(n))
        .context("a fourth node")?;
    let target = vec![outsider, first[1], first[2]];
    let mut v = 0u64;
    for _ in 0..20 {
        produce_one(&c, "r", &mut v).await?;
    }
    c.node(1)
        .reassign(g, target.clone(), WAIT)
        .await
        .context("starting the move")?;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !moved(&c, "r", g, &target) {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the move to {target:?} did not finish: {}",
            state(&c, g)
        );
        // A steady load (not a flood): the new replica catches up with it.
        produce_one(&c, "r", &mut v).await?;
        tokio::time::sleep(TICK).await;
    }
    for _ in 0..10 {
        produce_one(&c, "r", &mut v).await?;
    }
    let log = c.converged_log(g, &target).await?;
    ensure_eq!(
        log.len() as u64,
        v,
        "every acknowledged batch on the new replicas"
    );
    // Back to the first replicas, the leader stopped as soon as the move is
    // recorded: the next leader carries it out.
    c.node(1).reassign(g, first.clone(), WAIT).await?;
    let leader = c.leader(g).await?;
    c.stop(leader).await;
    produce_one(&c, "r", &mut v).await?;
    c.restart(leader).await?;
    c.wait_for(WAIT * 2, "the interrupted move finished", |c| {
        moved(c, "r", g, &first)
    })
    .await?;
    produce_one(&c, "r", &mut v).await?;
    let log = c.converged_log(g, &first).await?;
    ensure_eq!(
        log.len() as u64,
        v,
        "every acknowledged batch after moving back"
    );
    c.shutdown().await;
    Ok(Outcome::Passed)
}

/// A node that is gone for good is replaced: a fresh node joins, the dead
/// one's replicas move to it (the move needs only a majority of each
/// partition), the dead one is removed, and every acknowledged batch is on
/// the new replicas.
pub async fn cluster_dead_node_is_replaced<H: ClusterHarness, N: NetHarness>(
    h: Arc<H>,
    net: Arc<N>,
) -> CaseResult {
    let mut c = Cluster::start_with_spares(h, net, 3, 1, 46).await?;
    c.create_topic(1, "d", 2, 3).await?;
    let mut v = 0u64;
    for _ in 0..20 {
        produce_one(&c, "d", &mut v).await?;
    }
    c.stop(3).await;
    c.join(4).await.context("the replacement joins")?;
    let deadline = tokio::time::Instant::now() + WAIT * 2;
    loop {
        let leader = c.leader(GroupId::METADATA).await?;
        match c.node(leader).drain_node(3, WAIT).await {
            Ok(0) => break,
            Ok(_) | Err(Error::NotLeader { .. } | Error::Timeout(_)) => {}
            Err(e) => return Err(e.into()),
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "node 3's replicas did not move: {}",
            state(&c, c.group("d", 0)?)
        );
        produce_one(&c, "d", &mut v).await?;
        tokio::time::sleep(TICK * 5).await;
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let leader = c.leader(GroupId::METADATA).await?;
        match c.node(leader).remove_node(3, WAIT).await {
            Ok(()) => break,
            // A leader change meanwhile: ask the next one.
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(TICK * 10).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    produce_one(&c, "d", &mut v).await?;
    for p in 0..2 {
        let replicas = c.replicas("d", p)?;
        ensure!(
            !replicas.contains(&3) && replicas.contains(&4),
            "partition {p}: replicas {replicas:?}"
        );
    }
    // Partition 0 took every batch.
    let g = c.group("d", 0)?;
    let log = c.converged_log(g, &c.replicas("d", 0)?).await?;
    ensure_eq!(
        log.len() as u64,
        v,
        "every acknowledged batch on the new replicas"
    );
    c.shutdown().await;
    Ok(Outcome::Passed)
}
