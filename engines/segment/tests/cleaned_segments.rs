//! The segment engine's cleaned segments (compacted topics,
//! docs/compaction.md) across a crash: the replacement is renamed over the
//! segment after its index files were removed, so a crash leaves the old
//! segment without index files (read correctly, indexes rebuilt) or the new
//! one; a copy never committed is deleted at open.

#![allow(clippy::unwrap_used)]

use weir_core::batch::{self, BatchBuilder};
use weir_core::compaction::{CleanLimits, CleanPolicy, clean_log};
use weir_core::retention::LogShape;
use weir_core::{CompactionStore, GroupId, PartitionStore};
use weir_engine_segment::{Config, SegmentEngine};

const G: GroupId = GroupId(3);

/// 600 single-record batches over 6 keys in 64 KiB segments.
fn engine_with_segments(dir: &std::path::Path) -> SegmentEngine {
    let e = SegmentEngine::open(dir, Config::default()).unwrap();
    e.log_configure(
        G,
        LogShape {
            segment_bytes: Some(64 << 10),
            segment_ms: None,
        },
    )
    .unwrap();
    for i in 0..600u64 {
        let key = [(i % 6) as u8];
        let b = BatchBuilder::new(i as i64)
            .record(Some(&key), Some(&[i as u8; 400]))
            .build();
        e.log_append(G, i + 1, 1, &b).unwrap();
    }
    e.log_flush(G).unwrap();
    e
}

fn whole_log(e: &SegmentEngine) -> Vec<(i64, Vec<u8>)> {
    let (mut at, mut out) = (0, Vec::new());
    let next = e.log_state(G).unwrap().next_offset;
    while at < next {
        let bytes = e.log_read(G, at, 1 << 16).unwrap();
        assert!(!bytes.is_empty(), "an empty read at {at}");
        for b in batch::iter_batches(&bytes) {
            let (h, one) = b.unwrap();
            for r in batch::decode_records(one).unwrap() {
                out.push((r.offset, r.value.unwrap().to_vec()));
            }
            at = h.last_offset() + 1;
        }
    }
    out
}

fn segment_files(dir: &std::path::Path, ext: &str) -> Vec<std::path::PathBuf> {
    let part = dir.join("partitions").join(format!("{:020}", G.0));
    let mut v: Vec<_> = std::fs::read_dir(part)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(ext))
        .collect();
    v.sort();
    v
}

#[test]
fn a_segment_whose_index_files_are_gone_reads_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine_with_segments(dir.path());
    let before = whole_log(&e);
    drop(e);
    let indexes = segment_files(dir.path(), ".index");
    assert!(indexes.len() > 3, "{} segments", indexes.len());
    // Where a crash between the two steps of a swap leaves a sealed segment.
    for p in indexes.iter().take(2) {
        std::fs::remove_file(p).unwrap();
        std::fs::remove_file(p.with_extension("timeindex")).unwrap();
    }
    let e = SegmentEngine::open(dir.path(), Config::default()).unwrap();
    assert_eq!(whole_log(&e), before);
    assert_eq!(e.log_offset_for_timestamp(G, 10).unwrap(), Some(10));
}

#[test]
fn cleaned_segments_survive_a_restart_and_leftover_copies_go() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine_with_segments(dir.path());
    let policy = CleanPolicy {
        tombstones_before: 0,
        lag_before: i64::MAX,
        min_dirty_ratio: 0.0,
    };
    let pass = clean_log(&e, G, &policy, 0, &CleanLimits::default(), &mut |_| Ok(())).unwrap();
    assert!(pass.units_rewritten > 2, "{pass:?}");
    let cleaned = whole_log(&e);
    assert!(cleaned.len() < 200, "{} records left", cleaned.len());
    // A copy begun and never committed, as a crash leaves it.
    let unit = e.log_clean_units(G).unwrap()[0];
    e.clean_begin(G, &unit).unwrap();
    drop(e);
    assert_eq!(segment_files(dir.path(), ".tmp").len(), 1);
    let e = SegmentEngine::open(dir.path(), Config::default()).unwrap();
    assert_eq!(whole_log(&e), cleaned);
    assert!(segment_files(dir.path(), ".tmp").is_empty());
    // Every key's latest value is there.
    for k in 0..6u64 {
        let latest = 594 + k;
        assert!(
            cleaned.iter().any(|(o, _)| *o == latest as i64),
            "key {k}: offset {latest}"
        );
    }
}
