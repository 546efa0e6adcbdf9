//! `weir bench producer-ids`: many idempotent producers, one batch each — a
//! load that leaves partitions holding the state of many producers (what a
//! restart must restore; `bench/restart.sh` times that), or, without
//! `--idempotent`, the same records with no producer state, for comparison.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use hdrhistogram::Histogram;

use super::{BenchArgs, Report, create_topic, gather, progress, report, text};
use crate::client::Client;

/// `args.producers` producers (each its own id from InitProducerId with
/// `args.idempotent`) each produce one batch of `args.batch` records of
/// `args.record_size` bytes to partition `i % args.partitions`, acks=all,
/// `args.in_flight` producers at a time. Latency is per producer (its
/// InitProducerId and its batch).
///
/// # Errors
/// When the topic cannot be created, or InitProducerId or a produce fails for
/// good.
pub async fn producer_ids(args: &BenchArgs, quiet: bool) -> anyhow::Result<Report> {
    create_topic(args).await?;
    let per_batch = args.batch.max(1) as u64;
    let producers = args.producers.max(1) as u64;
    let records: Vec<_> = (0..per_batch)
        .map(|i| (None, Some(text(args.record_size, i))))
        .collect();
    // Stamped now, as a producer would: records stamped 0 would be expired at
    // once by time-based retention.
    let batch = crate::tools::encode_batch(&records, weir_core::batch::now_ms(), args.compression)?;
    let next = Arc::new(AtomicU64::new(0));
    let bar = progress(producers * per_batch, quiet);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.in_flight.max(1) {
        let (next, batch, bar, args) = (next.clone(), batch.clone(), bar.clone(), args.clone());
        tasks.push(tokio::spawn(async move {
            let mut client = Client::new(&args.bootstrap);
            let mut hist = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
            let mut sent = 0u64;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= producers {
                    break;
                }
                let t = Instant::now();
                let mut copy = batch.to_vec();
                if args.idempotent {
                    let (id, epoch) = client.init_producer_id(None).await?;
                    weir_core::batch::set_producer(&mut copy, id, epoch, 0);
                }
                let partition = (i % args.partitions.max(1) as u64) as i32;
                client.produce(&args.topic, partition, copy.into()).await?;
                hist.record(t.elapsed().as_micros().max(1) as u64)?;
                sent += per_batch;
                bar.inc(per_batch);
            }
            Ok::<_, anyhow::Error>((hist, sent))
        }));
    }
    let (hist, records) = gather(tasks).await?;
    bar.finish_and_clear();
    Ok(report(
        "producer-ids",
        records,
        records * args.record_size as u64,
        started.elapsed().as_secs_f64(),
        &hist,
    ))
}
