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
