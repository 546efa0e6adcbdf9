//! The metadata group's log stays bounded and a lagging node rejoins it by
//! snapshot (docs/snapshots.md, step 1). The fixture checkpoints group 0 every
//! 20 entries and keeps 10 below a checkpoint, so every case runs over a
//! compacted metadata log.

use super::*;

const META: GroupId = GroupId::METADATA;

fn topic_names(n: &Node) -> Vec<String> {
    n.metadata().topics.keys().cloned().collect()
}

/// A node down through many topic changes comes back by snapshot (the entries
/// it missed were compacted on the others), agrees on the metadata, hosts its
/// partitions, and everything survives a full restart of the cluster.
pub async fn cluster_metadata_snapshot_brings_back_a_lagging_node<
    H: ClusterHarness,
    N: NetHarness,
>(
    h: Arc<H>,
    net: Arc<N>,
) -> CaseResult {
    let mut c = Cluster::start(h, net, 3, 23).await?;
    let left_at = c.engine(3).raft_last_index(META)?;
    c.stop(3).await;
    for i in 0..30 {
        c.node(1)
            .create_topic(&format!("m{i}"), 1, 1, BTreeMap::new(), WAIT)
            .await?;
    }
    for i in (0..30).step_by(2) {
        c.node(1).delete_topic(&format!("m{i}"), WAIT).await?;
    }
    for id in [1, 2] {
        let first = c.engine(id).raft_first_index(META)?;
        ensure!(
            first > left_at + 1,
            "node {id}'s metadata log starts at {first}: not compacted past what node 3 has ({left_at})"
        );
    }
    let want = topic_names(c.node(1));
    ensure_eq!(want.len(), 15, "topics left");
    c.restart(3).await?;
    c.wait_for(WAIT, "node 3 to catch up on metadata", |c| {
        topic_names(c.node(3)) == want
    })
    .await?;
    // The installed state is visible before the driver has reset the Raft
    // log to the snapshot (a crash between the two is finished at the next
    // start): wait for the reset, up to the bound.
    let _ = c
        .wait_for(WAIT, "node 3's Raft log to start past its old end", |c| {
            c.engine(3)
                .raft_first_index(META)
                .is_ok_and(|f| f > left_at + 1)
        })
        .await;
    let first = c.engine(3).raft_first_index(META)?;
    ensure!(
        first > left_at + 1,
        "node 3's metadata log starts at {first}: it did not install a snapshot"
    );
    // Node 3 hosts and leads its partitions again (rf 1: only it can).
    for t in &want {
        c.produce(t, 0, &produced_batch(1, 0, 1, 10), WAIT).await?;
    }
    for id in [1, 2, 3] {
        c.stop(id).await;
    }
    for id in [1, 2, 3] {
        c.restart(id).await?;
    }
    c.wait_for(WAIT, "every node to have the metadata again", |c| {
        [1, 2, 3].iter().all(|&id| topic_names(c.node(id)) == want)
    })
    .await?;
    for t in &want {
        let a = c.produce(t, 0, &produced_batch(1, 0, 2, 10), WAIT).await?;
        ensure_eq!(a.base_offset, 1, "second batch of {t}");
    }
    c.shutdown().await;
    Ok(Outcome::Passed)
}

/// The fixture's `raft_log_max_bytes`.
const LOG_BOUND: u64 = 256 << 10;

/// Bytes of entry data in `group`'s Raft log on `e`.
fn raft_log_bytes(e: &dyn Engine, group: GroupId) -> anyhow::Result<u64> {
    let (first, last) = (e.raft_first_index(group)?, e.raft_last_index(group)?);
    Ok(e.raft_entries(group, first, last + 1, None)?
        .iter()
        .map(|en| en.data.len() as u64)
        .sum())
}

/// Stops a follower of partition "s" of a new topic, produces `batches` of
/// about 4 KiB, and returns the follower, the batches acknowledged and the
/// follower's last Raft index when it stopped.
async fn produce_past_a_stopped_follower<H: ClusterHarness, N: NetHarness>(
    c: &mut Cluster<H, N>,
    batches: u64,
) -> anyhow::Result<(NodeId, HashMap<u64, i64>, u64)> {
    c.create_topic(1, "s", 1, 3).await?;
    let g = c.group("s", 0)?;
    let leader = c.leader(g).await?;
    let follower = c.follower_of(leader)?;
    let mut acked = HashMap::new();
    for v in 0..5u64 {
        acked.insert(
            v,
            c.produce("s", 0, &produced_batch(1, 0, v, 4000), WAIT)
                .await?
                .base_offset,
        );
    }
    c.wait_for(WAIT, "the follower to have the first batches", |c| {
        c.engine(follower)
            .log_state(g)
            .is_ok_and(|s| s.next_offset == 5)
    })
    .await?;
    let left_at = c.engine(follower).raft_last_index(g)?;
    c.stop(follower).await;
    for v in 5..batches {
        let a = c
            .produce("s", 0, &produced_batch(1, 0, v, 4000), WAIT)
            .await?;
        acked.insert(v, a.base_offset);
    }
    Ok((follower, acked, left_at))
}

/// A follower down while 20 times `raft_log_max_bytes` are written: the
/// leader's Raft log stays bounded (it compacts past the follower), and the
/// follower rejoins by snapshot (its partition log streamed in chunks, staged
/// and installed), ending byte-identical to the leader.
pub async fn cluster_lagging_replica_catches_up_by_snapshot<H: ClusterHarness, N: NetHarness>(
    h: Arc<H>,
    net: Arc<N>,
) -> CaseResult {
    let mut c = Cluster::start(h, net, 3, 24).await?;
    let batches = 20 * LOG_BOUND / 4000 + 10;
    let (follower, acked, left_at) = produce_past_a_stopped_follower(&mut c, batches).await?;
    let g = c.group("s", 0)?;
    let leader = c.leader(g).await?;
    c.wait_for(WAIT, "the leader to compact past the follower", |c| {
        c.engine(leader)
            .raft_first_index(g)
            .is_ok_and(|f| f > left_at + 1)
    })
    .await?;
    let held = raft_log_bytes(c.engine(leader).as_ref(), g)?;
    ensure!(
        held <= 4 * LOG_BOUND,
        "the leader's Raft log holds {held} bytes with raft_log_max_bytes = {LOG_BOUND}"
    );
    c.restart(follower).await?;
    let log = c.converged_log(g, &c.running()).await?;
    ensure_eq!(log.len() as u64, batches, "batches after catch-up");
    check_acknowledged(&log, &acked)?;
    let first = c.engine(follower).raft_first_index(g)?;
    ensure!(
        first > left_at + 1,
        "the follower's Raft log starts at {first}: it did not install a snapshot"
    );
    // And it keeps replicating after the install.
    let a = c
        .produce("s", 0, &produced_batch(1, 0, 9999, 10), WAIT)
        .await?;
    ensure_eq!(a.base_offset, batches as i64, "next batch");
    ensure_eq!(
        c.converged_log(g, &c.running()).await?.len() as u64,
        batches + 1,
        "after"
    );
    c.shutdown().await;
    Ok(Outcome::Passed)
}

/// A follower stopped in the middle of downloading a snapshot comes back and
/// completes it (resuming from what it had staged, or from the start).
pub async fn cluster_interrupted_snapshot_download_completes<H: ClusterHarness, N: NetHarness>(
    h: Arc<H>,
    net: Arc<N>,
) -> CaseResult {
    let mut c = Cluster::start(h, net, 3, 25).await?;
    let batches = 40 * LOG_BOUND / 4000;
    let (follower, acked, _) = produce_past_a_stopped_follower(&mut c, batches).await?;
    let g = c.group("s", 0)?;
    c.restart(follower).await?;
    // Stop it as soon as it has staged a part.
    c.wait_for(WAIT, "the follower to stage part of the snapshot", |c| {
        c.engine(follower)
            .stage_end(g)
            .is_ok_and(|s| s.is_some_and(|(start, end)| end > start))
            || c.engine(follower)
                .log_state(g)
                .is_ok_and(|s| s.next_offset == batches as i64)
    })
    .await?;
    c.stop(follower).await;
    c.restart(follower).await?;
    let log = c.converged_log(g, &c.running()).await?;
    ensure_eq!(log.len() as u64, batches, "batches after catch-up");
    check_acknowledged(&log, &acked)?;
    c.shutdown().await;
    Ok(Outcome::Passed)
}
