//! The cluster cases: produce and fetch, replication, redirection, failover,
//! catch-up, restarts, compaction, many partitions, topic deletion.

use super::*;

/// One node: create a topic, produce, fetch back, list offsets.
pub async fn cluster_single_node_produce_and_fetch<H: ClusterHarness, N: NetHarness>(
    h: Arc<H>,
    net: Arc<N>,
) -> CaseResult {
    let c = Cluster::start(h, net, 1, 1).await?;
    c.create_topic(1, "t", 2, 1).await?;
    let g = c.group("t", 1)?;
    c.leader(g).await?;
    let mut acked = HashMap::new();
    for v in 0..20u64 {
        let a = c
            .produce("t", 1, &produced_batch(3, 1000 + v as i64, v, 50), WAIT)
            .await?;
        ensure_eq!(a.base_offset, 3 * v as i64, "offsets are consecutive");
        acked.insert(v, a.base_offset);
    }
    let n = c.node(1);
    let f = n.fetch("t", 1, 0, 1 << 20, Duration::ZERO, 1).await?;
    ensure_eq!(f.high_watermark, 60, "high watermark");
    ensure_eq!(
        batch::iter_batches(&f.records).count(),
        20,
        "batches fetched"
    );
    let f = n
        .fetch("t", 1, 60, 1 << 20, Duration::from_millis(50), 1)
        .await?;
    ensure!(
        f.records.is_empty(),
        "fetch at the end is empty after max_wait"
    );
    ensure!(
        matches!(
            n.fetch("t", 1, 61, 100, Duration::ZERO, 1).await,
            Err(Error::OutOfRange { .. })
        ),
        "past the end"
    );
    ensure_eq!(
        n.list_offset("t", 1, weir_core::OffsetSpec::Earliest)?,
        Some(0),
        "earliest"
    );
    ensure_eq!(
        n.list_offset("t", 1, weir_core::OffsetSpec::Latest)?,
        Some(60),
        "latest"
    );
    // Batch v holds records stamped 1000+v ..= 1002+v: 1005 is first reached by batch
    // 3 (offsets 9-11), at its third record, offset 11 (as Kafka answers: the
    // record, not the start of its batch).
    ensure_eq!(
        n.list_offset("t", 1, weir_core::OffsetSpec::Timestamp(1005))?,
        Some(11),
        "by timestamp"
    );
    ensure!(
        matches!(
            n.produce("nope", 0, &produced_batch(1, 0, 0, 1), Acks::All, WAIT)
                .await,
            Err(Error::NotFound(_))
        ),
        "unknown topic"
    );
    let mut bad = produced_batch(1, 0, 0, 10);
    let len = bad.len();
    bad[len - 1] ^= 1;
    ensure!(
        n.produce("t", 0, &bad, Acks::All, WAIT).await.is_err(),
        "corrupt batch rejected"
    );
    check_acknowledged(&c.converged_log(g, &[1]).await?, &acked)?;
    // A long poll wakes up when data arrives.
    let waiter = {
        let n = n.clone();
        tokio::spawn(async move {
            n.fetch("t", 0, 0, 1 << 20, Duration::from_secs(10), 1)
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    c.produce("t", 0, &produced_batch(1, 0, 99, 10), WAIT)
        .await?;
    let f = tokio::time::timeout(Duration::from_secs(5), waiter).await???;
    ensure_eq!(
        batch::iter_batches(&f.records).count(),
        1,
        "long poll returned the new batch"
    );
    c.shutdown().await;
    Ok(Outcome::Passed)
}

/// Three nodes: a batch produced to the leader is on every replica at the same offset.
pub async fn cluster_three_nodes_replicate_identically<H: ClusterHarness, N: NetHarness>(
    h: Arc<H>,
    net: Arc<N>,
) -> CaseResult {
    let c = Cluster::start(h, net, 3, 2).await?;
    c.create_topic(2, "r", 1, 3).await?;
    let g = c.group("r", 0)?;
    c.leader(g).await?;
    let mut acked = HashMap::new();
    for v in 0..50u64 {
        let a = c
            .produce("r", 0, &produced_batch(2, 0, v, 100), WAIT)
            .await?;
        acked.insert(v, a.base_offset);
    }
    let log = c.converged_log(g, &[1, 2, 3]).await?;
    ensure_eq!(log.len(), 50, "batches on every replica");
    check_acknowledged(&log, &acked)?;
    c.shutdown().await;
    Ok(Outcome::Passed)
}

/// A follower answers NOT_LEADER naming the actual leader.
pub async fn cluster_produce_to_follower_names_the_leader<H: ClusterHarness, N: NetHarness>(
    h: Arc<H>,
    net: Arc<N>,
) -> CaseResult {
    let c = Cluster::start(h, net, 3, 3).await?;
    c.create_topic(1, "f", 1, 3).await?;
    let g = c.group("f", 0)?;
    let leader = c.leader(g).await?;
    c.wait_for(WAIT, "followers to know the leader", |c| {
        c.running().iter().all(|&id| {
            c.node(id)
                .group_status(g)
                .is_some_and(|s| s.leader == leader)
        })
    })
    .await?;
    for id in c.running() {
        if id == leader {
            continue;
        }
        match c
            .node(id)
            .produce("f", 0, &produced_batch(1, 0, 1, 10), Acks::All, WAIT)
            .await
        {
            Err(Error::NotLeader {
                hint: Some(hint), ..
            }) => ensure_eq!(hint.node, leader, "hint from node {id}"),
            other => {
                bail!("produce to follower {id}: expected NotLeader with a hint, got {other:?}")
            }
        }
        ensure!(
            matches!(
                c.node(id).fetch("f", 0, 0, 100, Duration::ZERO, 1).await,
                Err(Error::NotLeader { .. })
            ),
            "fetch from a follower"
        );
    }
    c.shutdown().await;
    Ok(Outcome::Passed)
}

/// The leader is cut off: a new leader is elected within 10 election timeouts, the
/// old leader's unacknowledged writes never become visible, producers move on.
pub async fn cluster_isolated_leader_fails_over<H: ClusterHarness, N: NetHarness>(
    h: Arc<H>,
    net: Arc<N>,
) -> CaseResult {
    let c = Cluster::start(h, net, 3, 4).await?;
    c.create_topic(1, "i", 1, 3).await?;
    let g = c.group("i", 0)?;
    let old = c.leader(g).await?;
    let mut acked = HashMap::new();
    for v in 0..10u64 {
        acked.insert(
            v,
            c.produce("i", 0, &produced_batch(1, 0, v, 10), WAIT)
                .await?
                .base_offset,
        );
    }
    c.net_faults.isolate(old, &c.running());
    // Writes to the isolated leader cannot commit.
    let stranded = c
        .node(old)
        .produce(
            "i",
            0,
            &produced_batch(1, 0, 1000, 10),
            Acks::All,
            Duration::from_millis(300),
        )
        .await;
    ensure!(
        stranded.is_err(),
        "an isolated leader acknowledged a write: {stranded:?}"
    );
    let others: Vec<NodeId> = c.running().into_iter().filter(|&id| id != old).collect();
    c.wait_for(ELECTION * 10, "a new leader among the others", |c| {
        others.iter().any(|&id| {
            c.node(id)
                .group_status(g)
                .is_some_and(|s| s.role == Role::Leader)
        })
    })
    .await?;
    for v in 10..20u64 {
        let a = produce_on(&c, &others, "i", 0, &produced_batch(1, 0, v, 10)).await?;
        acked.insert(v, a.base_offset);
    }
    c.net_faults.heal();
    let log = c.converged_log(g, &[1, 2, 3]).await?;
    check_acknowledged(&log, &acked)?;
    ensure!(
        log.iter().all(|b| value_of(b).is_ok_and(|v| v != 1000)),
        "the stranded write became visible"
    );
    c.shutdown().await;
    Ok(Outcome::Passed)
}

pub(super) async fn produce_on<H: ClusterHarness, N: NetHarness>(
    c: &Cluster<H, N>,
    nodes: &[NodeId],
    topic: &str,
    p: i32,
    b: &[u8],
) -> anyhow::Result<Appended> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        for &id in nodes {
            if let Ok(Some(a)) = c
                .node(id)
                .produce(topic, p, b, Acks::All, Duration::from_secs(2))
                .await
            {
                return Ok(a);
            }
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("no node among {nodes:?} accepted the write");
        }
        tokio::time::sleep(TICK).await;
    }
}

/// A follower that was down catches up with what was written meanwhile.
pub async fn cluster_restarted_follower_catches_up<H: ClusterHarness, N: NetHarness>(
    h: Arc<H>,
    net: Arc<N>,
) -> CaseResult {
    let mut c = Cluster::start(h, net, 3, 5).await?;
    c.create_topic(1, "c", 1, 3).await?;
    let g = c.group("c", 0)?;
    let leader = c.leader(g).await?;
    let follower = c.follower_of(leader)?;
    let mut acked = HashMap::new();
    for v in 0..10u64 {
        acked.insert(
            v,
            c.produce("c", 0, &produced_batch(1, 0, v, 10), WAIT)
                .await?
                .base_offset,
        );
    }
    c.stop(follower).await;
    for v in 10..40u64 {
        acked.insert(
            v,
            c.produce("c", 0, &produced_batch(1, 0, v, 200), WAIT)
                .await?
                .base_offset,
        );
    }
    c.restart(follower).await?;
    let log = c.converged_log(g, &[1, 2, 3]).await?;
    ensure_eq!(log.len(), 40, "batches after catch-up");
    check_acknowledged(&log, &acked)?;
    c.shutdown().await;
    Ok(Outcome::Passed)
}

/// Every node stops and restarts: every acknowledged batch is still there, at its
/// acknowledged offset, on every replica; and the cluster keeps working.
pub async fn cluster_full_restart_keeps_acknowledged_batches<H: ClusterHarness, N: NetHarness>(
    h: Arc<H>,
    net: Arc<N>,
) -> CaseResult {
    let mut c = Cluster::start(h, net, 3, 6).await?;
    c.create_topic(1, "p", 2, 3).await?;
    let mut acked: [HashMap<u64, i64>; 2] = [HashMap::new(), HashMap::new()];
    for v in 0..30u64 {
        let p = (v % 2) as i32;
        let a = c
            .produce("p", p, &produced_batch(1, 0, v, 30), WAIT)
            .await?;
        acked[p as usize].insert(v, a.base_offset);
    }
    for id in c.running() {
        c.stop(id).await;
    }
    for id in [1, 2, 3] {
        c.restart(id).await?;
    }
    // Metadata comes back once a new leader of group 0 commits its log again (the
    // commit index is not synced on its own).
    c.wait_for(WAIT, "metadata after the restart", |c| {
        c.group("p", 1).is_ok()
    })
    .await?;
    for p in 0..2 {
        let g = c.group("p", p)?;
        c.leader(g).await?;
        let v = 100 + p as u64;
        let a = c
            .produce("p", p, &produced_batch(1, 0, v, 30), WAIT)
            .await?;
        acked[p as usize].insert(v, a.base_offset);
        check_acknowledged(&c.converged_log(g, &[1, 2, 3]).await?, &acked[p as usize])?;
    }
    c.shutdown().await;
    Ok(Outcome::Passed)
}

/// Raft logs are compacted on every replica once their partition logs are durable,
/// never past what a stopped replica has; a compacted cluster restarts with every
/// acknowledged batch, and the stopped replica catches up from the log that was kept.
pub async fn cluster_raft_logs_are_compacted<H: ClusterHarness, N: NetHarness>(
    h: Arc<H>,
    net: Arc<N>,
) -> CaseResult {
    let mut c = Cluster::start(h, net, 3, 9).await?;
    c.create_topic(1, "k", 1, 3).await?;
    let g = c.group("k", 0)?;
    let leader = c.leader(g).await?;
    let mut acked = HashMap::new();
    for v in 0..40u64 {
        let a = c
            .produce("k", 0, &produced_batch(1, 0, v, 200), WAIT)
            .await?;
        acked.insert(v, a.base_offset);
    }
    // Once the partition is idle, every produce entry goes (flushes and compaction
    // proposals also run on timers): what remains are compaction commands and
    // elections' empty entries.
    c.wait_for(WAIT, "every produce entry compacted away", |c| {
        c.running().iter().all(|&id| {
            let e = c.engine(id);
            let (Ok(first), Ok(last)) = (e.raft_first_index(g), e.raft_last_index(g)) else {
                return false;
            };
            first > 40
                && e.raft_entries(g, first, last + 1, None).is_ok_and(|v| {
                    v.iter().all(|x| {
                        !matches!(
                            x.data.first(),
                            Some(&weir_core::entry::TAG_PRODUCE)
                                | Some(&weir_core::entry::TAG_PRODUCE_STAMPED)
                        )
                    })
                })
        })
    })
    .await?;
    for id in c.running() {
        let e = c.engine(id);
        let first = e.raft_first_index(g)?;
        let applied = e.log_state(g)?.applied_index;
        ensure!(
            first - 1 <= applied,
            "node {id}: Raft log compacted through {} beyond the applied index {applied}",
            first - 1
        );
    }
    // A stopped follower holds compaction back at what it has.
    let follower = c.follower_of(leader)?;
    c.stop(follower).await;
    let has = c.engine(follower).raft_last_index(g)?;
    for v in 40..80u64 {
        let a = c
            .produce("k", 0, &produced_batch(1, 0, v, 200), WAIT)
            .await?;
        acked.insert(v, a.base_offset);
    }
    // Give compaction time to run (it must not reach past `has`).
    tokio::time::sleep(Duration::from_millis(400)).await;
    for id in c.running() {
        let first = c.engine(id).raft_first_index(g)?;
        ensure!(
            first <= has + 1,
            "node {id} compacted through {} past the stopped replica's last index {has}",
            first - 1
        );
    }
    c.restart(follower).await?;
    for id in c.running() {
        if id != follower {
            c.restart(id).await?;
        }
    }
    c.wait_for(WAIT, "metadata after the restart", |c| {
        c.group("k", 0).is_ok()
    })
    .await?;
    c.leader(g).await?;
    let a = c
        .produce("k", 0, &produced_batch(1, 0, 100, 200), WAIT)
        .await?;
    acked.insert(100, a.base_offset);
    let log = c.converged_log(g, &[1, 2, 3]).await?;
    ensure_eq!(log.len(), 81, "batches after the restart");
    check_acknowledged(&log, &acked)?;
    c.shutdown().await;
    Ok(Outcome::Passed)
}

/// Five nodes, a topic of 6 partitions with 3 replicas each: all elect and replicate.
pub async fn cluster_five_nodes_many_partitions<H: ClusterHarness, N: NetHarness>(
    h: Arc<H>,
    net: Arc<N>,
) -> CaseResult {
    let c = Cluster::start(h, net, 5, 7).await?;
    c.create_topic(3, "m", 6, 3).await?;
    for p in 0..6 {
        let g = c.group("m", p)?;
        c.leader(g).await?;
        let mut acked = HashMap::new();
        for v in 0..5u64 {
            acked.insert(
                v,
                c.produce("m", p, &produced_batch(1, 0, v, 20), WAIT)
                    .await?
                    .base_offset,
            );
        }
        let replicas = c.replicas("m", p)?;
        ensure_eq!(replicas.len(), 3, "replicas of partition {p}");
        check_acknowledged(&c.converged_log(g, &replicas).await?, &acked)?;
    }
    c.shutdown().await;
    Ok(Outcome::Passed)
}

/// Deleting a topic stops and removes its replicas; a new topic of the same name
/// starts empty.
pub async fn cluster_topic_delete_and_recreate<H: ClusterHarness, N: NetHarness>(
    h: Arc<H>,
    net: Arc<N>,
) -> CaseResult {
    let c = Cluster::start(h, net, 3, 8).await?;
    c.create_topic(1, "d", 1, 3).await?;
    let g = c.group("d", 0)?;
    c.produce("d", 0, &produced_batch(1, 0, 1, 10), WAIT)
        .await?;
    c.node(2).delete_topic("d", WAIT).await?;
    c.wait_for(WAIT, "replicas removed", |c| {
        c.running()
            .iter()
            .all(|&id| !c.node(id).hosted_groups().contains(&g))
    })
    .await?;
    ensure!(
        matches!(
            c.node(1)
                .create_topic("d", 1, 4, BTreeMap::new(), WAIT)
                .await,
            Err(Error::Invalid(_))
        ),
        "replication factor above the broker count"
    );
    c.create_topic(3, "d", 1, 3).await?;
    let g2 = c.group("d", 0)?;
    ensure!(g2 != g, "a new topic gets a new group");
    let a = c
        .produce("d", 0, &produced_batch(1, 0, 2, 10), WAIT)
        .await?;
    ensure_eq!(a.base_offset, 0, "the new topic starts empty");
    ensure!(
        matches!(
            c.node(1)
                .create_topic("d", 1, 3, BTreeMap::new(), WAIT)
                .await,
            Err(Error::AlreadyExists(_))
        ),
        "exists"
    );
    c.shutdown().await;
    Ok(Outcome::Passed)
}

/// Leader epochs (Raft terms) end where the next one's batches start
/// (OffsetForLeaderEpoch, KIP-101): one node, three batches, a restart (a new
/// term), two more batches; then every kind of question, and the fencing of the
/// caller's current epoch.
pub async fn cluster_leader_epochs_end_where_the_next_begins<H: ClusterHarness, N: NetHarness>(
    h: Arc<H>,
    net: Arc<N>,
) -> CaseResult {
    use weir_core::EpochEnd;
    let mut c = Cluster::start(h, net, 1, 9).await?;
    c.create_topic(1, "e", 1, 1).await?;
    let g = c.group("e", 0)?;
    c.leader(g).await?;
    for v in 0..3u64 {
        c.produce("e", 0, &produced_batch(1, 0, v, 10), WAIT)
            .await?;
    }
    let term = |c: &Cluster<H, N>| c.node(1).group_status(g).map_or(0, |s| s.term as i32);
    let first = term(&c);
    c.restart(1).await?;
    c.wait_for(WAIT, "the topic after the restart", |c| {
        c.group("e", 0).is_ok()
    })
    .await?;
    c.leader(g).await?;
    for v in 3..5u64 {
        c.produce("e", 0, &produced_batch(1, 0, v, 10), WAIT)
            .await?;
    }
    let second = term(&c);
    ensure!(
        second > first,
        "a restart starts a new term ({first} → {second})"
    );
    let n = c.node(1);
    let at = |epoch| n.end_offset_for_epoch("e", 0, -1, epoch);
    let end = |epoch, end_offset| EpochEnd { epoch, end_offset };
    ensure_eq!(
        at(first)?,
        end(first, 3),
        "the first epoch ends at the second's first batch"
    );
    ensure_eq!(
        at(second)?,
        end(second, 5),
        "the current epoch ends at the log end"
    );
    ensure_eq!(
        at(first - 1)?,
        end(first - 1, 0),
        "an epoch older than the log"
    );
    ensure_eq!(
        at(second + 1)?,
        EpochEnd::UNDEFINED,
        "an epoch newer than the leader's"
    );
    ensure_eq!(at(-1)?, EpochEnd::UNDEFINED, "no epoch");
    if second > first + 1 {
        // Epochs between the two without batches end where the second starts.
        ensure_eq!(at(first + 1)?, end(first, 3), "an epoch without batches");
    }
    ensure!(
        matches!(
            n.end_offset_for_epoch("e", 0, first, first),
            Err(Error::FencedLeaderEpoch(_))
        ),
        "an older current epoch is fenced"
    );
    ensure!(
        matches!(
            n.end_offset_for_epoch("e", 0, second + 1, first),
            Err(Error::UnknownLeaderEpoch(_))
        ),
        "a newer current epoch is unknown"
    );
    c.shutdown().await;
    Ok(Outcome::Passed)
}
