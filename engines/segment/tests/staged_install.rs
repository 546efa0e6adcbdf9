//! The segment engine's install of a staged log (docs/snapshots.md) across a
//! crash: with the install marker written and the staged directory not yet
//! renamed over the live one, opening the engine finishes the install; a
//! staged log without the marker stays staged, and the live log stays whole.

#![allow(clippy::unwrap_used)]

use weir_core::batch::{self, BatchBuilder};
use weir_core::{GroupId, PartitionStore, StagingStore};
use weir_engine_segment::{Config, SegmentEngine};

const G: GroupId = GroupId(7);

fn stamped(base: i64, n: i64) -> Vec<u8> {
    let mut out = Vec::new();
    for k in 0..n {
        let mut b = BatchBuilder::new(1000)
            .record(None, Some(&[k as u8; 100]))
            .build();
        batch::stamp(&mut b, base + k, 3);
        out.extend_from_slice(&b);
    }
    out
}

fn engine_with_a_staged_log(dir: &std::path::Path) -> SegmentEngine {
    let e = SegmentEngine::open(dir, Config::default()).unwrap();
    for i in 0..4u64 {
        let b = BatchBuilder::new(1000).record(None, Some(b"old")).build();
        e.log_append(G, i + 1, 1, &b).unwrap();
    }
    e.log_flush(G).unwrap();
    e.stage_begin(G, 10).unwrap();
    e.stage_append(G, &stamped(10, 5)).unwrap();
    e
}

#[test]
fn a_marked_install_is_finished_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine_with_a_staged_log(dir.path());
    e.stage_install(G, 42).unwrap();
    drop(e);
    // Back to the state a crash inside the swap leaves: the staged log durable
    // under its staging name, the marker written, the old live log still there.
    let parts = dir.path().join("partitions");
    let live = parts.join(format!("{:020}", G.0));
    std::fs::rename(&live, parts.join(format!("{:020}.staged", G.0))).unwrap();
    std::fs::create_dir(&live).unwrap();
    std::fs::write(live.join("00000000000000000000.log"), b"the old log").unwrap();
    let marker = parts.join(format!("{:020}.install", G.0));
    std::fs::write(&marker, b"").unwrap();
    let e = SegmentEngine::open(dir.path(), Config::default()).unwrap();
    let st = e.log_state(G).unwrap();
    assert_eq!(
        (st.start_offset, st.next_offset, st.applied_index),
        (10, 15, 42),
        "the staged log"
    );
    let got = e.log_read(G, 10, 1 << 20).unwrap();
    assert_eq!(&got[..], &stamped(10, 5)[..], "its batches");
    assert_eq!(e.stage_end(G).unwrap(), None, "nothing staged any more");
    assert!(!marker.exists(), "the marker is gone");
}

#[test]
fn an_unmarked_staged_log_stays_staged() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine_with_a_staged_log(dir.path());
    drop(e);
    let e = SegmentEngine::open(dir.path(), Config::default()).unwrap();
    let st = e.log_state(G).unwrap();
    assert_eq!((st.start_offset, st.next_offset), (0, 4), "the live log");
    let staged = e.stage_end(G).unwrap();
    assert!(
        matches!(staged, Some((10, end)) if (10..=15).contains(&end)),
        "a prefix of the staged log: {staged:?}"
    );
    let end = staged.unwrap().1;
    // The download resumes from there, and the install replaces the live log.
    e.stage_append(G, &stamped(end, 15 - end)).unwrap();
    e.stage_install(G, 99).unwrap();
    drop(e);
    let e = SegmentEngine::open(dir.path(), Config::default()).unwrap();
    let st = e.log_state(G).unwrap();
    assert_eq!(
        (st.start_offset, st.next_offset, st.applied_index),
        (10, 15, 99)
    );
}

/// An installed log's segments live where the install moved them: deleting
/// its oldest segments afterwards (retention, a trim) and cleaning them work
/// on the live directory. (Before, the segments kept their staging paths, so
/// the first deletion after an install failed and poisoned the engine.)
#[test]
fn an_installed_log_deletes_and_cleans_its_segments_where_it_lives() {
    let dir = tempfile::tempdir().unwrap();
    let e = SegmentEngine::open(dir.path(), Config::default()).unwrap();
    e.log_configure(
        G,
        weir_core::retention::LogShape {
            segment_bytes: Some(64 << 10),
            segment_ms: None,
        },
    )
    .unwrap();
    e.log_append(
        G,
        1,
        1,
        &BatchBuilder::new(1000).record(None, Some(b"old")).build(),
    )
    .unwrap();
    e.stage_begin(G, 0).unwrap();
    // 400 batches of ~130 bytes' keyed records: a few 64 KiB segments.
    let mut run = Vec::new();
    for k in 0..400i64 {
        let mut b = BatchBuilder::new(1000)
            .record(Some(&[(k % 4) as u8]), Some(&[k as u8; 300]))
            .build();
        batch::stamp(&mut b, k, 3);
        run.extend_from_slice(&b);
    }
    e.stage_append(G, &run).unwrap();
    e.stage_install(G, 50).unwrap();
    let policy = weir_core::compaction::CleanPolicy {
        tombstones_before: 0,
        lag_before: i64::MAX,
        min_dirty_ratio: 0.0,
    };
    let pass = weir_core::compaction::clean_log(
        &e,
        G,
        &policy,
        0,
        &weir_core::compaction::CleanLimits::default(),
        &mut |_| Ok(()),
    )
    .unwrap();
    assert!(pass.units_rewritten >= 1, "{pass:?}");
    e.log_delete_prefix(G, 300).unwrap();
    e.log_flush(G).unwrap();
    assert_eq!(e.log_state(G).unwrap().start_offset, 300);
    let live = dir.path().join("partitions").join(format!("{:020}", G.0));
    let segments = std::fs::read_dir(&live)
        .unwrap()
        .filter(|f| {
            f.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "log")
        })
        .count();
    assert!(segments >= 1);
    drop(e);
    let e = SegmentEngine::open(dir.path(), Config::default()).unwrap();
    let st = e.log_state(G).unwrap();
    assert_eq!((st.start_offset, st.next_offset), (300, 400));
    assert!(!e.log_read(G, 300, 1 << 20).unwrap().is_empty());
}
