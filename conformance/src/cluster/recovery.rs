//! Damage an operator must be told about, and the override that accepts it.

use super::*;

/// A partition log lost after its Raft log was compacted (its directory or table
/// removed while the node was down) stops the node at start with the loss named;
/// [`accept_loss`](weir_core::node::recover::accept_loss) on the stopped node's
/// engine accepts it, and the partition then starts again, takes produce at the
/// offsets after what remains, and is readable from its start.
pub async fn cluster_lost_partition_log_is_refused_until_the_loss_is_accepted<
    H: ClusterHarness,
    N: NetHarness,
>(
    h: Arc<H>,
    net: Arc<N>,
) -> CaseResult {
    let mut c = Cluster::start(h, net, 1, 11).await?;
    c.create_topic(1, "lost", 1, 1).await?;
    let g = c.group("lost", 0)?;
    c.leader(g).await?;
    for v in 0..20u64 {
        c.produce("lost", 0, &produced_batch(1, 0, v, 100), WAIT)
            .await?;
    }
    c.wait_for(WAIT, "the partition's Raft log compacted", |c| {
        c.engine(1)
            .raft_first_index(g)
            .is_ok_and(|first| first > 20)
    })
    .await?;
    // One more acknowledged batch: its sync makes the compaction durable too (an
    // engine may keep a compaction only in memory until the next sync).
    c.produce("lost", 0, &produced_batch(1, 0, 20, 100), WAIT)
        .await?;
    c.stop(1).await;
    c.engine(1).log_remove(g)?;
    c.engine(1).log_flush(g)?;

    c.restart(1).await?;
    let why = tokio::time::timeout(WAIT, c.node(1).wait_fatal())
        .await
        .context("the node kept running without the partition's records")?;
    ensure!(
        why.contains("corrupt data") && why.contains(&format!("weir recover --accept-loss {g}")),
        "the refusal names the loss and the override: {why}"
    );
    c.stop(1).await;

    let first = c.engine(1).raft_first_index(g)?;
    let loss = weir_core::node::recover::accept_loss(c.engine(1).as_ref(), g)?
        .context("nothing to accept")?;
    ensure_eq!(
        (loss.first_entry, loss.last_entry, loss.next_offset),
        (1, first - 1, 0),
        "the loss accepted"
    );
    c.restart(1).await?;
    c.leader(g).await?;
    let a = c
        .produce("lost", 0, &produced_batch(2, 0, 100, 100), WAIT)
        .await?;
    let log = c.converged_log(g, &[1]).await?;
    ensure!(
        !log.is_empty() && a.base_offset >= 0,
        "the partition serves again"
    );
    ensure_eq!(
        BatchHeader::parse(log.last().context("empty log")?)?.base_offset,
        a.base_offset,
        "the batch produced after the recovery is the log's last"
    );
    c.shutdown().await;
    Ok(Outcome::Passed)
}
