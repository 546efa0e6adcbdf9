//! `weir bench`: produce and consume load against any Kafka-compatible broker, with
//! HdrHistogram latency percentiles, a progress bar, and `--json` for scripts.
//!
//! Produce: `producers` tasks (clients), each owning the partitions `p` with
//! `p % producers == task` and sending, per request, one batch of `batch` records of
//! `record_size` bytes to each of its partitions (one request per leader), with
//! `acks`; one request in flight per task, and `linger_ms` of pause between a task's
//! requests (0: back to back; with `batch = 1` it gives a low, steady load). Latency
//! is per request, from send to acknowledgement. It stops after `records` records or,
//! with `duration`, after that many seconds. Consume: `consumers` tasks split the
//! partitions the same way and read each from the beginning to the high watermark
//! seen at the start. Probe: one client asks for a partition's latest offset every
//! few milliseconds and records how long each answer takes (how responsive the
//! broker stays under other load).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use serde::Serialize;
use weir_core::batch::iter_batches;

use crate::client::Client;

pub mod groups;
pub mod producers;

/// What to run.
#[derive(Clone, Debug)]
pub struct BenchArgs {
    /// Brokers to start from.
    pub bootstrap: String,
    /// The topic (created when missing).
    pub topic: String,
    /// Partitions of the topic.
    pub partitions: i32,
    /// Bytes per record value.
    pub record_size: usize,
    /// Records to produce in all.
    pub records: u64,
    /// Records per batch.
    pub batch: usize,
    /// Concurrent producers.
    pub producers: usize,
    /// Stop producing after this long instead of after `records`.
    pub duration: Option<Duration>,
    /// Acknowledgement: -1 (all replicas) or 1 (leader; weir treats it as all).
    pub acks: i16,
    /// Pause between a producer's requests (only with one request in flight).
    pub linger: Duration,
    /// Requests each producer keeps unanswered on its connection (1: one at a time).
    pub in_flight: usize,
    /// Concurrent consumers.
    pub consumers: usize,
    /// How produced batches are compressed.
    pub compression: kafka_protocol::records::Compression,
    /// Consume as members of this consumer group (KIP-848 protocol) instead of
    /// by assigning partitions.
    pub group: Option<String>,
    /// Produce as idempotent producers (an id from InitProducerId per task,
    /// batches numbered per partition).
    pub idempotent: bool,
    /// Record i of a batch gets key `k{i mod keys}`; 0: no keys.
    pub keys: u64,
}

/// A benchmark's figures.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// `produce` or `consume`.
    pub mode: &'static str,
    /// Records moved.
    pub records: u64,
    /// Payload bytes moved (record values).
    pub bytes: u64,
    /// Wall time in seconds.
    pub seconds: f64,
    /// Records per second.
    pub records_per_s: f64,
    /// Megabytes (10^6) of values per second.
    pub mb_per_s: f64,
    /// Latency percentiles in milliseconds (produce: per batch).
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Maximum.
    pub max_ms: f64,
}

/// Creates the benchmark's topic with `args.partitions` partitions, unless it
/// exists.
async fn create_topic(args: &BenchArgs) -> anyhow::Result<()> {
    match Client::new(&args.bootstrap)
        .create_topic(&args.topic, args.partitions, -1, &[])
        .await
    {
        Err(e) if !e.to_string().contains("error 36") => Err(e),
        _ => Ok(()),
    }
}

/// A load task: its latency histogram and the records it moved.
type LoadTask = tokio::task::JoinHandle<anyhow::Result<(Histogram<u64>, u64)>>;

/// Waits for load tasks; returns their merged histogram and the records they
/// moved in all.
async fn gather(tasks: Vec<LoadTask>) -> anyhow::Result<(Histogram<u64>, u64)> {
    let mut hist = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let mut records = 0;
    for t in tasks {
        let (h, n) = t.await??;
        hist.add(h)?;
        records += n;
    }
    Ok((hist, records))
}

fn progress(total: u64, quiet: bool) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{elapsed_precise} [{bar:40}] {pos}/{len} records {per_sec}",
    ) {
        bar.set_style(style);
    }
    bar
}

/// Produces `args.records` records (or for `args.duration`) and reports throughput
/// and latency.
///
/// # Errors
/// When the topic cannot be created or a produce fails for good.
pub async fn produce(args: &BenchArgs, quiet: bool) -> anyhow::Result<Report> {
    create_topic(args).await?;
    let per_batch = args.batch.max(1) as u64;
    let records: Vec<_> = (0..per_batch)
        .map(|i| {
            let key = (args.keys > 0).then(|| Bytes::from(format!("k{}", i % args.keys)));
            (key, Some(text(args.record_size, i)))
        })
        .collect();
    // Stamped now, as a producer would: records stamped 0 would be expired at
    // once by time-based retention.
    let batch = crate::tools::encode_batch(&records, weir_core::batch::now_ms(), args.compression)?;
    let producers = args.producers.max(1).min(args.partitions.max(1) as usize);
    let budget = args.records.div_ceil(per_batch);
    let next = Arc::new(AtomicU64::new(0));
    let bar = match args.duration {
        Some(d) if !quiet => {
            let bar = progress(d.as_secs().max(1), quiet);
            bar.set_message("s");
            bar
        }
        _ => progress(budget * per_batch, quiet),
    };
    let started = Instant::now();
    let until = args.duration.map(|d| started + d);
    let mut tasks = Vec::new();
    for task in 0..producers {
        let (next, batch, bar, args) = (next.clone(), batch.clone(), bar.clone(), args.clone());
        let parts: Vec<(i32, Bytes)> = (0..args.partitions.max(1))
            .filter(|p| *p as usize % producers == task)
            .map(|p| (p, batch.clone()))
            .collect();
        tasks.push(tokio::spawn(async move {
            let mut client = Client::new(&args.bootstrap);
            let mut hist = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
            let mut sent = 0u64;
            // With idempotence or without, every request's batches are fresh
            // copies with their CRC computed again (as a client builds each
            // batch), so that both loads cost the client the same.
            let mut idempotence = crate::client::Idempotence::plain();
            if args.idempotent {
                let (id, epoch) = client.init_producer_id(None).await?;
                idempotence = crate::client::Idempotence::new(id, epoch);
            }
            let mut stamped = |parts: &[(i32, Bytes)]| idempotence.stamp(parts);
            if args.in_flight > 1 {
                // The first request also finds the leaders (and waits out elections).
                let first = stamped(&parts);
                client.produce_many(&args.topic, &first, args.acks).await?;
                sent += parts.len() as u64 * per_batch;
                let more = || match until {
                    Some(t) => Instant::now() < t,
                    None => next.fetch_add(parts.len() as u64, Ordering::Relaxed) < budget,
                };
                let mut latency = Ok(());
                let acked = client
                    .produce_pipelined(
                        &args.topic,
                        &parts,
                        args.acks,
                        args.in_flight,
                        Some(&mut idempotence),
                        more,
                        |d| {
                            if latency.is_ok() {
                                latency = hist.record(d.as_micros().max(1) as u64);
                            }
                            match until {
                                Some(_) => bar.set_position(started.elapsed().as_secs()),
                                None => bar.inc(parts.len() as u64 * per_batch),
                            }
                        },
                    )
                    .await?;
                latency?;
                sent += acked * parts.len() as u64 * per_batch;
                return Ok::<_, anyhow::Error>((hist, sent));
            }
            loop {
                let go = match until {
                    Some(t) => Instant::now() < t,
                    None => next.fetch_add(parts.len() as u64, Ordering::Relaxed) < budget,
                };
                if !go {
                    break;
                }
                let t = Instant::now();
                let batches = stamped(&parts);
                client
                    .produce_many(&args.topic, &batches, args.acks)
                    .await?;
                hist.record(t.elapsed().as_micros().max(1) as u64)?;
                sent += parts.len() as u64 * per_batch;
                match until {
                    Some(_) => bar.set_position(started.elapsed().as_secs()),
                    None => bar.inc(parts.len() as u64 * per_batch),
                }
                if !args.linger.is_zero() {
                    tokio::time::sleep(args.linger).await;
                }
            }
            Ok::<_, anyhow::Error>((hist, sent))
        }));
    }
    let (hist, records) = gather(tasks).await?;
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    Ok(report(
        "produce",
        records,
        records * args.record_size as u64,
        seconds,
        &hist,
    ))
}

/// Reads every partition of the topic from the beginning, `args.consumers` tasks
/// splitting the partitions.
///
/// # Errors
/// When a fetch fails.
pub async fn consume(args: &BenchArgs, quiet: bool) -> anyhow::Result<Report> {
    if let Some(group) = &args.group {
        return groups::consume(args, group, quiet).await;
    }
    let mut client = Client::new(&args.bootstrap);
    let mut ends = Vec::new();
    for p in 0..args.partitions.max(1) {
        ends.push((
            p,
            client.list_offset(&args.topic, p, -2).await?,
            client.list_offset(&args.topic, p, -1).await?,
        ));
    }
    let total: i64 = ends.iter().map(|(_, lo, hi)| hi - lo).sum();
    let bar = progress(total.max(0) as u64, quiet);
    let consumers = args.consumers.max(1).min(ends.len());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..consumers {
        let mine: Vec<_> = ends
            .iter()
            .copied()
            .filter(|(p, _, _)| *p as usize % consumers == task)
            .collect();
        let (bar, args) = (bar.clone(), args.clone());
        tasks.push(tokio::spawn(async move {
            let mut client = Client::new(&args.bootstrap);
            let mut hist = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
            let (mut records, mut bytes) = (0u64, 0u64);
            for (p, mut at, end) in mine {
                while at < end {
                    let t = Instant::now();
                    let (data, _) = client.fetch(&args.topic, p, at, Duration::ZERO).await?;
                    hist.record(t.elapsed().as_micros().max(1) as u64)?;
                    for b in iter_batches(&data) {
                        let (h, one) = b?;
                        if h.last_offset() < at {
                            continue;
                        }
                        records += h.record_count as u64;
                        bytes += one.len() as u64;
                        bar.inc(h.record_count as u64);
                        at = h.last_offset() + 1;
                    }
                }
            }
            Ok::<_, anyhow::Error>((hist, records, bytes))
        }));
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let (mut records, mut bytes) = (0u64, 0u64);
    for t in tasks {
        let (h, r, b) = t.await??;
        hist.add(h)?;
        records += r;
        bytes += b;
    }
    bar.finish_and_clear();
    Ok(report(
        "consume",
        records,
        bytes,
        started.elapsed().as_secs_f64(),
        &hist,
    ))
}

/// `len` bytes of lowercase text that differs from record to record and compresses
/// about as well as log lines do (2-4x), unlike a run of one byte.
fn text(len: usize, seed: u64) -> Bytes {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b"etaoinshrdlu      "[(x % 18) as usize]
        })
        .collect::<Vec<u8>>()
        .into()
}

/// Measures how fast the broker answers a cheap request while other load runs:
/// one task asks for the latest offset of partition 0 of the topic (created with
/// one partition when missing) every `args.linger` (at least 1 ms) until
/// `args.duration` (default 10 s) has passed. Latency is per request; the records
/// and bytes of the report are the requests made and 0.
///
/// # Errors
/// When a request fails.
pub async fn probe(args: &BenchArgs) -> anyhow::Result<Report> {
    let mut client = Client::new(&args.bootstrap);
    if client.list_offset(&args.topic, 0, -1).await.is_err() {
        // Missing (or not yet led): create it, then wait for a leader.
        let _ = client.create_topic(&args.topic, 1, 1, &[]).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        while client.list_offset(&args.topic, 0, -1).await.is_err() {
            anyhow::ensure!(Instant::now() < deadline, "{} has no leader", args.topic);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let every = args.linger.max(Duration::from_millis(1));
    let run_for = args.duration.unwrap_or(Duration::from_secs(10));
    let mut hist = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let started = Instant::now();
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut requests = 0u64;
    while started.elapsed() < run_for {
        ticker.tick().await;
        let t = Instant::now();
        client.list_offset(&args.topic, 0, -1).await?;
        hist.record(t.elapsed().as_micros().max(1) as u64)?;
        requests += 1;
    }
    Ok(report(
        "probe",
        requests,
        0,
        started.elapsed().as_secs_f64(),
        &hist,
    ))
}

/// OffsetCommit throughput: `args.producers` clients, each committing one
/// partition's offset per request (`args.in_flight` requests unanswered) for its own group
/// (`<topic>-commit-<i>`, as a client that assigns its partitions), for
/// `args.duration` (default 10 s). Latency is per commit; the records of the
/// report are commits.
///
/// # Errors
/// When a commit fails.
pub async fn commit(args: &BenchArgs) -> anyhow::Result<Report> {
    let run_for = args.duration.unwrap_or(Duration::from_secs(10));
    let clients = args.producers.max(1);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..clients {
        let bootstrap = args.bootstrap.clone();
        let group = format!("{}-commit-{i}", args.topic);
        let topic = args.topic.clone();
        let in_flight = args.in_flight;
        tasks.spawn(async move {
            let mut client = Client::new(&bootstrap);
            // Find the coordinator (the cluster may create its group topic now).
            client.coordinator(&group).await?;
            let mut hist = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
            let started = Instant::now();
            let n = client
                .commit_pipelined(
                    &group,
                    &topic,
                    in_flight,
                    || started.elapsed() < run_for,
                    |d| {
                        let _ = hist.record(d.as_micros().max(1) as u64);
                    },
                )
                .await?;
            anyhow::Ok((n, hist))
        });
    }
    let started = Instant::now();
    let mut total = 0u64;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    while let Some(r) = tasks.join_next().await {
        let (n, h) = r??;
        total += n;
        hist.add(&h)?;
    }
    Ok(report(
        "commit",
        total,
        0,
        started.elapsed().as_secs_f64(),
        &hist,
    ))
}

fn report(
    mode: &'static str,
    records: u64,
    bytes: u64,
    seconds: f64,
    hist: &Histogram<u64>,
) -> Report {
    let ms = |us: u64| us as f64 / 1000.0;
    Report {
        mode,
        records,
        bytes,
        seconds,
        records_per_s: records as f64 / seconds.max(1e-9),
        mb_per_s: bytes as f64 / seconds.max(1e-9) / 1e6,
        p50_ms: ms(hist.value_at_quantile(0.5)),
        p99_ms: ms(hist.value_at_quantile(0.99)),
        p999_ms: ms(hist.value_at_quantile(0.999)),
        max_ms: ms(hist.max()),
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} records in {:.2} s: {:.0} records/s, {:.1} MB/s; latency ms p50 {:.2} p99 {:.2} p99.9 {:.2} max {:.2}",
            self.mode,
            self.records,
            self.seconds,
            self.records_per_s,
            self.mb_per_s,
            self.p50_ms,
            self.p99_ms,
            self.p999_ms,
            self.max_ms
        )
    }
}
