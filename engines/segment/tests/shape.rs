//! A topic's `segment.bytes` and `segment.ms` reach the segment engine through
//! `log_configure`: segments roll at the topic's size and age, and retention
//! then releases them whole.

#![allow(clippy::unwrap_used)]

use weir_core::batch::BatchBuilder;
use weir_core::retention::{LogShape, Retention};
use weir_core::{GroupId, PartitionStore};
use weir_engine_segment::{Config, SegmentEngine};

fn segment_files(dir: &std::path::Path) -> usize {
    let parts = dir.join("partitions");
    std::fs::read_dir(&parts)
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .filter(|f| {
            f.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".log")
        })
        .count()
}

fn batch(ts: i64) -> Vec<u8> {
    BatchBuilder::new(ts)
        .record(None, Some(&[7u8; 4000]))
        .build()
}

#[test]
fn segment_bytes_and_segment_ms_roll_segments() {
    let dir = tempfile::tempdir().unwrap();
    let e = SegmentEngine::open(dir.path(), Config::default()).unwrap();
    let g = GroupId(1);
    // 64 KiB segments instead of the engine's 64 MiB.
    let small = LogShape {
        segment_bytes: Some(64 << 10),
        segment_ms: None,
    };
    e.log_configure(g, small).unwrap();
    for i in 0..100u64 {
        e.log_append(g, i + 1, 1, &batch(1000)).unwrap();
    }
    let files = segment_files(dir.path());
    assert!(files >= 6, "{files} segments for 400 KB in 64 KiB segments");
    // Retention by size now releases whole 64 KiB segments.
    let keep = Retention {
        expired_before: None,
        max_bytes: Some(100 << 10),
    };
    let p = e.log_retention_point(g, keep).unwrap();
    assert!(p > 0 && p < 100, "retention point {p}");
    e.log_delete_prefix(g, p).unwrap();
    assert!(segment_files(dir.path()) < files, "segments released");

    // A 1 ms segment.ms rolls the tail at the next batch after a pause.
    e.log_configure(
        g,
        LogShape {
            segment_ms: Some(1),
            ..small
        },
    )
    .unwrap();
    e.log_append(g, 101, 1, &batch(1000)).unwrap();
    let before = segment_files(dir.path());
    std::thread::sleep(std::time::Duration::from_millis(5));
    e.log_append(g, 102, 1, &batch(1000)).unwrap();
    assert_eq!(segment_files(dir.path()), before + 1, "rolled by age");
}
