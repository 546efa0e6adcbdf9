//! The engine append benchmark every engine runs: append throughput with a sync after
//! every write, next to the disk's own synced sequential write rate at the same write
//! size, measured in the same run in the same directory.
//!
//! An engine's `benches/append.rs` calls [`run`] with a function that opens it:
//!
//! ```text
//! cargo bench -p weir-engine-segment --bench append            # in a temp dir
//! WEIR_BENCH_DIR=/data cargo bench -p weir-engine-redb --bench append
//! WEIR_BENCH_MB=256 …                                          # bytes per row
//! ```
//!
//! Method, per write size (4 KiB, 64 KiB, 1 MiB):
//! * **disk**: append `size`-byte writes to a fresh file, `fdatasync` after each
//!   (what `dd oflag=dsync` does).
//! * **raft log**: `raft_append` one entry of `size` bytes, then `raft_sync`: the
//!   synced hot path of a produce.
//! * **partition log**: `log_append` one RecordBatch of `size` bytes, then `log_flush`.
//!
//! Each figure is the best of three interleaved runs of `WEIR_BENCH_MB` MiB (default
//! 64; a quarter of that for 4 KiB writes). Under `cargo test --benches` (no
//! `--bench` argument) each row writes only a few blocks, as a smoke test.

#![allow(clippy::unwrap_used)] // a benchmark: failing loudly is the point

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use weir_core::batch::BatchBuilder;
use weir_core::eraftpb::Entry;
use weir_core::{Engine, GroupId};

/// Opens the engine under test in an empty directory.
pub type Open<'a> = dyn Fn(&Path) -> Box<dyn Engine> + 'a;

fn mb_per_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

fn disk(dir: &Path, size: usize, total: u64) -> Duration {
    let path = dir.join("disk-reference");
    let mut f = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    let buf = vec![0x5au8; size];
    let start = Instant::now();
    let mut written = 0;
    while written < total {
        f.write_all(&buf).unwrap();
        f.sync_data().unwrap();
        written += size as u64;
    }
    let d = start.elapsed();
    std::fs::remove_file(path).unwrap();
    d
}

fn raft_log(open: &Open<'_>, dir: &Path, size: usize, total: u64) -> Duration {
    let sub = dir.join("raft");
    let e = open(&sub);
    let data = Bytes::from(vec![0x5au8; size]);
    let g = GroupId(1);
    let start = Instant::now();
    let (mut written, mut index) = (0, 0);
    while written < total {
        index += 1;
        let entry = Entry {
            index,
            term: 1,
            data: data.clone(),
            ..Entry::default()
        };
        e.raft_append(g, &[entry]).unwrap();
        e.raft_sync().unwrap();
        written += size as u64;
    }
    let d = start.elapsed();
    drop(e);
    std::fs::remove_dir_all(sub).unwrap();
    d
}

fn partition_log(open: &Open<'_>, dir: &Path, size: usize, total: u64) -> Duration {
    let sub = dir.join("partition");
    let e = open(&sub);
    let value = vec![0x5au8; size.saturating_sub(80)];
    let batch = BatchBuilder::new(0).record(None, Some(&value)).build();
    let g = GroupId(1);
    let start = Instant::now();
    let (mut written, mut index) = (0, 0);
    while written < total {
        index += 1;
        e.log_append(g, index, 1, &batch).unwrap();
        e.log_flush(g).unwrap();
        written += batch.len() as u64;
    }
    let d = start.elapsed();
    drop(e);
    std::fs::remove_dir_all(sub).unwrap();
    d
}

/// Runs the benchmark for the engine `open` makes (in a fresh directory each time)
/// and prints a markdown table; see the [module docs](self).
///
/// # Panics
/// When the engine fails: this is a benchmark, not a test.
pub fn run(name: &str, open: &Open<'_>) {
    // `cargo bench` passes --bench; `cargo test --benches` runs this once, quickly.
    let quick = !std::env::args().any(|a| a == "--bench");
    let tmp = tempfile::tempdir_in(std::env::var("WEIR_BENCH_DIR").unwrap_or_else(|_| ".".into()))
        .unwrap();
    let dir = tmp.path();
    let mb: u64 = std::env::var("WEIR_BENCH_MB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    println!(
        "{name} engine append, sync after every write; directory {}",
        dir.display()
    );
    println!("| write size | disk MB/s | raft log MB/s | ratio | partition log MB/s | ratio |");
    println!("|---|---|---|---|---|---|");
    for (label, size) in [("4 KiB", 4 << 10), ("64 KiB", 64 << 10), ("1 MiB", 1 << 20)] {
        let total = if quick {
            size as u64 * 4
        } else if size == 4 << 10 {
            (mb / 4).max(1) << 20
        } else {
            mb << 20
        };
        // Interleaved, best of three: the disk's rate drifts between runs.
        let (mut d, mut r, mut p) = (Duration::MAX, Duration::MAX, Duration::MAX);
        for _ in 0..3 {
            d = d.min(disk(dir, size, total));
            r = r.min(raft_log(open, dir, size, total));
            p = p.min(partition_log(open, dir, size, total));
        }
        let (dm, rm, pm) = (mb_per_s(total, d), mb_per_s(total, r), mb_per_s(total, p));
        println!(
            "| {label} | {dm:.1} | {rm:.1} | {:.2} | {pm:.1} | {:.2} |",
            rm / dm,
            pm / dm
        );
    }
}
