//! `weir bench consume --group` and `weir bench rebalance`: consumption and
//! rebalances of a consumer group whose members use the consumer group
//! protocol (KIP-848, [`crate::client::member`]).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use weir_core::batch::iter_batches;

use super::{BenchArgs, Report, create_topic, progress, report};
use crate::client::Client;
use crate::client::member::Reset;

/// Group consumption: `args.consumers` members of group `group` read the topic
/// from the beginning (or the group's committed offsets) to the high
/// watermarks seen at the start, taking the partitions the coordinator assigns
/// them; a member that loses a partition commits where it stopped, so nothing
/// is counted twice. The time includes joining.
///
/// # Errors
/// Connection or protocol errors.
pub async fn consume(args: &BenchArgs, group: &str, quiet: bool) -> anyhow::Result<Report> {
    let mut client = Client::new(&args.bootstrap);
    let mut ends = Vec::new();
    for p in 0..args.partitions.max(1) {
        ends.push(client.list_offset(&args.topic, p, -1).await?);
    }
    let mut total = 0i64;
    for (p, end) in ends.iter().enumerate() {
        let start = client
            .list_offset(&args.topic, i32::try_from(p)?, -2)
            .await?;
        total += end - start;
    }
    let bar = progress(u64::try_from(total.max(0))?, quiet);
    let remaining = Arc::new(AtomicI64::new(total));
    let ends = Arc::new(ends);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.consumers.max(1) {
        let (bar, remaining, ends) = (bar.clone(), remaining.clone(), ends.clone());
        let (bootstrap, topic, group) = (
            args.bootstrap.clone(),
            args.topic.clone(),
            group.to_string(),
        );
        tasks.spawn(async move {
            let mut c = Client::new(&bootstrap);
            let mut m = c.join(&group, &[topic.as_str()], Reset::Earliest).await?;
            let mut hist = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
            let (mut records, mut bytes) = (0u64, 0u64);
            while remaining.load(Ordering::Relaxed) > 0 {
                m.heartbeat_if_due(&mut c).await?;
                let owned: Vec<((String, i32), i64)> = m
                    .assignment()
                    .iter()
                    .map(|(k, o)| (k.clone(), *o))
                    .collect();
                let mut idle = true;
                for ((t, p), mut at) in owned {
                    let end = ends[usize::try_from(p)?];
                    if at >= end {
                        continue;
                    }
                    idle = false;
                    let sent = Instant::now();
                    let (data, _) = c.fetch(&t, p, at, Duration::ZERO).await?;
                    hist.record(sent.elapsed().as_micros().max(1) as u64)?;
                    for b in iter_batches(&data) {
                        let (h, one) = b?;
                        let (first, last) = (h.base_offset.max(at), h.last_offset().min(end - 1));
                        if last < first {
                            continue;
                        }
                        let n = last - first + 1;
                        records += u64::try_from(n)?;
                        bytes += one.len() as u64;
                        bar.inc(u64::try_from(n)?);
                        remaining.fetch_sub(n, Ordering::Relaxed);
                        at = last + 1;
                    }
                    m.advance(&t, p, at);
                }
                if idle {
                    // Waiting for partitions (or for the others to finish).
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            m.leave(&mut c).await?;
            anyhow::Ok((hist, records, bytes))
        });
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let (mut records, mut bytes) = (0u64, 0u64);
    while let Some(r) = tasks.join_next().await {
        let (h, r, b) = r??;
        hist.add(h)?;
        records += r;
        bytes += b;
    }
    bar.finish_and_clear();
    Ok(report(
        "consume-group",
        records,
        bytes,
        started.elapsed().as_secs_f64(),
        &hist,
    ))
}

/// Rebalance time, `rounds` times: three members of a new group share the
/// topic's partitions; a fourth joins; the time from its join until every
/// partition is owned again and every member holds its share (partitions / 4,
/// rounded either way). Members heartbeat as the coordinator asks and do not
/// fetch. The report's records are rounds; its latencies are the rebalance
/// times.
///
/// # Errors
/// Connection or protocol errors, or a round that does not settle in 60 s.
pub async fn rebalance(args: &BenchArgs, rounds: usize) -> anyhow::Result<Report> {
    create_topic(args).await?;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let partitions = usize::try_from(args.partitions.max(1))?;
    let started = Instant::now();
    for round in 0..rounds.max(1) {
        let group = format!("{}-rebalance-{}-{round}", args.topic, std::process::id());
        let owned: Arc<Mutex<Vec<BTreeSet<i32>>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let mut members = tokio::task::JoinSet::new();
        let mut start = |i: usize| {
            owned.lock().push(BTreeSet::new());
            let (owned, stop) = (owned.clone(), stop.clone());
            let (bootstrap, topic, group) =
                (args.bootstrap.clone(), args.topic.clone(), group.clone());
            members.spawn(async move {
                let mut c = Client::new(&bootstrap);
                let mut m = c.join(&group, &[topic.as_str()], Reset::Latest).await?;
                while !stop.load(Ordering::Relaxed) {
                    if m.heartbeat_if_due(&mut c).await? {
                        owned.lock()[i] = m.assignment().keys().map(|(_, p)| *p).collect();
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                m.leave(&mut c).await
            });
        };
        for i in 0..3 {
            start(i);
        }
        settle(&owned, partitions, 3).await?;
        // Join at a different point of the others' heartbeat cycle each round.
        let phase = u64::try_from(round)?.wrapping_mul(379) % 1000;
        tokio::time::sleep(Duration::from_millis(phase)).await;
        let joined = Instant::now();
        start(3);
        settle(&owned, partitions, 4).await?;
        let took = joined.elapsed();
        hist.record(took.as_micros().max(1) as u64)?;
        tracing::info!(round, ms = took.as_secs_f64() * 1000.0, "rebalance");
        stop.store(true, Ordering::Relaxed);
        while let Some(r) = members.join_next().await {
            r??;
        }
    }
    Ok(report(
        "rebalance",
        u64::try_from(rounds)?,
        0,
        started.elapsed().as_secs_f64(),
        &hist,
    ))
}

/// Waits until `members` members own every partition between them, each its
/// share.
async fn settle(
    owned: &Mutex<Vec<BTreeSet<i32>>>,
    partitions: usize,
    members: usize,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        {
            let o = owned.lock();
            let all: BTreeSet<i32> = o.iter().flatten().copied().collect();
            let fair = o.iter().all(|m| {
                m.len() == partitions / members || m.len() == partitions.div_ceil(members)
            });
            if o.len() == members && all.len() == partitions && fair {
                return Ok(());
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{members} members did not settle in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
