//! Retention and DeleteRecords across replicas: the leader proposes the new log
//! start, and every replica moves to it at the same point of its log.

use weir_core::OffsetSpec;
use weir_core::batch::{BatchBuilder, now_ms};

use super::*;

/// A batch of one record of `size` bytes stamped `ts`, tagged `v`.
fn record(v: u64, ts: i64, size: usize) -> Vec<u8> {
    let value: Vec<u8> = (0..size).map(|i| (v as usize + i) as u8).collect();
    BatchBuilder::new(ts)
        .record(Some(&v.to_be_bytes()), Some(&value))
        .build()
}

/// Waits until every running replica of `group` has the same log state with a
/// start offset of at least `min_start`, and returns that start.
async fn converged_start<H: ClusterHarness, N: NetHarness>(
    c: &Cluster<H, N>,
    group: GroupId,
    min_start: i64,
) -> anyhow::Result<i64> {
    c.wait_for(WAIT, "every replica to move its log start", |c| {
        let states: Vec<_> = c
            .running()
            .iter()
            .map(|&r| c.engine(r).log_state(group).ok())
            .collect();
        states.windows(2).all(|w| w[0] == w[1])
            && states[0].is_some_and(|s| s.start_offset >= min_start)
    })
    .await?;
    let first = *c.running().first().context("no node")?;
    Ok(c.engine(first).log_state(group)?.start_offset)
}

/// A topic's size and time retention trim every replica alike: at least
/// `retention.bytes` stay, expired records go, reads below the start are out of
/// range, and producing goes on after the start.
pub async fn cluster_retention_trims_every_replica_alike<H: ClusterHarness, N: NetHarness>(
    h: Arc<H>,
    net: Arc<N>,
) -> CaseResult {
    let c = Cluster::start(h, net, 3, 21).await?;
    let keep: u64 = 32 << 10;
    let configs = BTreeMap::from([("retention.bytes".to_string(), keep.to_string())]);
    c.node(1).create_topic("sized", 1, 3, configs, WAIT).await?;
    let configs = BTreeMap::from([("retention.ms".to_string(), "60000".to_string())]);
    c.node(1).create_topic("timed", 1, 3, configs, WAIT).await?;
    let now = now_ms();
    // 800 KB: more than one segment of the engines' test configurations (the
    // segment being written is never deleted by size).
    for v in 0..200u64 {
        c.produce("sized", 0, &record(v, now, 4000), WAIT).await?;
    }
    // Ten minutes old: past the topic's one-minute retention.
    for v in 0..20u64 {
        c.produce("timed", 0, &record(v, now - 600_000, 100), WAIT)
            .await?;
    }
    let (sized, timed) = (c.group("sized", 0)?, c.group("timed", 0)?);
    for g in [sized, timed] {
        let leader = c.leader(g).await?;
        c.wait_for(WAIT, "the leader to apply every batch", |c| {
            c.engine(leader)
                .log_state(g)
                .is_ok_and(|s| s.next_offset == if g == sized { 200 } else { 20 })
        })
        .await?;
        ensure!(
            c.node(leader).enforce_retention()? >= 1,
            "the leader of {g} proposed no trim"
        );
    }
    let start = converged_start(&c, sized, 1).await?;
    let kept = c.converged_log(sized, &c.running()).await?;
    let kept_bytes: u64 = kept.iter().map(|b| b.len() as u64).sum();
    ensure!(
        kept_bytes >= keep,
        "{kept_bytes} bytes kept with retention.bytes = {keep}"
    );
    ensure_eq!(kept.len() as i64, 200 - start, "batches from the start");
    ensure_eq!(
        converged_start(&c, timed, 20).await?,
        20,
        "every expired record deleted"
    );

    let leader = c.leader(sized).await?;
    let n = c.node(leader);
    ensure_eq!(
        n.list_offset("sized", 0, OffsetSpec::Earliest)?,
        Some(start),
        "ListOffsets earliest"
    );
    let below = n
        .fetch("sized", 0, start - 1, 1 << 20, Duration::ZERO, 0)
        .await;
    ensure!(
        matches!(below, Err(Error::OutOfRange { .. })),
        "a fetch below the start: {below:?}"
    );
    let a = c
        .produce("timed", 0, &record(99, now_ms(), 10), WAIT)
        .await?;
    ensure_eq!(a.base_offset, 20, "producing continues at the end");
    let log = c.converged_log(timed, &c.running()).await?;
    ensure_eq!(log.len(), 1, "the new record, alone");
    c.shutdown().await;
    Ok(Outcome::Passed)
}

/// DeleteRecords moves the low watermark on every replica, never back, to the
/// high watermark for -1, refuses offsets past it and non-leaders, and the new
/// start survives a restart.
pub async fn cluster_delete_records_moves_the_low_watermark<H: ClusterHarness, N: NetHarness>(
    h: Arc<H>,
    net: Arc<N>,
) -> CaseResult {
    let mut c = Cluster::start(h, net, 3, 22).await?;
    c.create_topic(1, "d", 1, 3).await?;
    for v in 0..20u64 {
        c.produce("d", 0, &record(v, now_ms(), 50), WAIT).await?;
    }
    let g = c.group("d", 0)?;
    let leader = c.leader(g).await?;
    let n = c.node(leader).clone();
    ensure_eq!(n.delete_records("d", 0, 7, WAIT).await?, 7, "low watermark");
    ensure_eq!(converged_start(&c, g, 7).await?, 7, "on every replica");
    ensure_eq!(
        n.delete_records("d", 0, 3, WAIT).await?,
        7,
        "never moved back"
    );
    let past = n.delete_records("d", 0, 21, WAIT).await;
    ensure!(
        matches!(past, Err(Error::OutOfRange { .. })),
        "past the high watermark: {past:?}"
    );
    let follower = c.follower_of(leader)?;
    let r = c.node(follower).delete_records("d", 0, 9, WAIT).await;
    ensure!(
        matches!(r, Err(Error::NotLeader { .. })),
        "on a follower: {r:?}"
    );
    c.stop(follower).await;
    ensure_eq!(
        n.delete_records("d", 0, -1, WAIT).await?,
        20,
        "-1 is the high watermark"
    );
    c.restart(follower).await?;
    ensure_eq!(converged_start(&c, g, 20).await?, 20, "after a restart");
    let a = c.produce("d", 0, &record(20, now_ms(), 50), WAIT).await?;
    ensure_eq!(a.base_offset, 20, "producing continues");
    ensure_eq!(
        c.converged_log(g, &c.running()).await?.len(),
        1,
        "one batch"
    );
    c.shutdown().await;
    Ok(Outcome::Passed)
}
