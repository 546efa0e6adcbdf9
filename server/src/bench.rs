//! `weir bench`: produce and consume load against any Kafka-compatible broker, with
//! HdrHistogram latency percentiles, a progress bar, and `--json` for scripts.
//!
//! Produce: `producers` tasks, each writing record batches of `batch` records of
//! `record_size` bytes with acks=all to its own partition (round robin over
//! `partitions`), one batch in flight per task; latency is per batch, from send to
//! acknowledgement. Consume: one task reads every partition from the beginning to the
//! high watermark it saw at the start.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use serde::Serialize;
use weir_core::batch::{BatchBuilder, iter_batches};

use crate::client::Client;

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

/// Produces `args.records` records and reports throughput and latency.
///
/// # Errors
/// When the topic cannot be created or a produce fails for good.
pub async fn produce(args: &BenchArgs, quiet: bool) -> anyhow::Result<Report> {
    let mut admin = Client::new(&args.bootstrap);
    if let Err(e) = admin
        .create_topic(&args.topic, args.partitions, -1, &[])
        .await
        && !e.to_string().contains("error 36")
    {
        return Err(e);
    }
    let value = vec![b'x'; args.record_size];
    let mut b = BatchBuilder::new(0);
    for _ in 0..args.batch.max(1) {
        b = b.record(None, Some(&value));
    }
    let batch = Bytes::from(b.build());
    let batches = args.records.div_ceil(args.batch.max(1) as u64);
    let next = Arc::new(AtomicU64::new(0));
    let bar = progress(batches * args.batch.max(1) as u64, quiet);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..args.producers.max(1) {
        let (next, batch, bar, args) = (next.clone(), batch.clone(), bar.clone(), args.clone());
        tasks.push(tokio::spawn(async move {
            let mut client = Client::new(&args.bootstrap);
            let mut hist = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
            let partition = (p as i32) % args.partitions.max(1);
            while next.fetch_add(1, Ordering::Relaxed) < batches {
                let t = Instant::now();
                client
                    .produce(&args.topic, partition, batch.clone())
                    .await?;
                hist.record(t.elapsed().as_micros().max(1) as u64)?;
                bar.inc(args.batch.max(1) as u64);
            }
            Ok::<_, anyhow::Error>(hist)
        }));
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    for t in tasks {
        hist.add(t.await??)?;
    }
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    let records = batches * args.batch.max(1) as u64;
    Ok(report(
        "produce",
        records,
        records * args.record_size as u64,
        seconds,
        &hist,
    ))
}

/// Reads every partition of the topic from the beginning.
///
/// # Errors
/// When a fetch fails.
pub async fn consume(args: &BenchArgs, quiet: bool) -> anyhow::Result<Report> {
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
    let mut hist = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let (mut records, mut bytes) = (0u64, 0u64);
    let started = Instant::now();
    for (p, mut at, end) in ends {
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
    bar.finish_and_clear();
    Ok(report(
        "consume",
        records,
        bytes,
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
