//! Fault tests of the segment engine, and proof that the crash cases can fail.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::path::Path;

use weir_conformance::engine::{self, EngineHarness, produced_batch};
use weir_core::{Error, GroupId, PartitionStore, RaftLogStore};
use weir_engine_segment::{Config, SegmentEngine};

fn config() -> Config {
    Config {
        segment_bytes: 64 << 10,
        index_interval_bytes: 1024,
        wal_file_bytes: 256 << 10,
        ..Config::default()
    }
}

/// A harness whose recovery is broken on purpose by `damage`, applied to each crash
/// image before the engine opens it.
struct Broken(fn(&Path));

impl EngineHarness for Broken {
    type Engine = SegmentEngine;
    type Guard = tempfile::TempDir;

    fn create(&self) -> anyhow::Result<(tempfile::TempDir, SegmentEngine)> {
        let dir = tempfile::tempdir()?;
        let e = SegmentEngine::open(dir.path(), config())?;
        Ok((dir, e))
    }

    fn reopen(&self, g: &tempfile::TempDir, e: SegmentEngine) -> anyhow::Result<SegmentEngine> {
        drop(e);
        Ok(SegmentEngine::open(g.path(), config())?)
    }

    fn data_dir(&self, g: &tempfile::TempDir) -> Option<std::path::PathBuf> {
        Some(g.path().to_path_buf())
    }

    fn open_dir(&self, dir: &Path) -> weir_core::Result<SegmentEngine> {
        (self.0)(dir);
        SegmentEngine::open(dir, config())
    }
}

fn files_with_suffix(dir: &Path, suffix: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(suffix) {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn crash_cases_catch_a_recovery_that_loses_synced_raft_entries() {
    // Drop the last 100 bytes of the WAL: synced entries go missing.
    let lossy = Broken(|dir| {
        for p in files_with_suffix(dir, ".wal") {
            let len = std::fs::metadata(&p).unwrap().len();
            let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
            f.set_len(len.saturating_sub(100).max(4096)).unwrap();
            // Forget the checkpoint too, so that the engine treats the cut as torn.
            std::os::unix::fs::FileExt::write_all_at(&f, &[0u8; 128], 64).unwrap();
        }
    });
    let r = engine::crash_raft_cut_every_byte(&lossy);
    assert!(
        r.is_err(),
        "the suite must notice lost synced entries: {r:?}"
    );
}

#[test]
fn crash_cases_catch_a_recovery_that_loses_flushed_batches() {
    // Throw away every sealed segment: flushed batches go missing.
    let lossy = Broken(|dir| {
        let mut logs = files_with_suffix(dir, ".log");
        logs.sort();
        for p in &logs[..logs.len().saturating_sub(1)] {
            std::fs::remove_file(p).unwrap();
        }
    });
    let r = engine::crash_log_cut_every_byte(&lossy);
    assert!(
        r.is_err(),
        "the suite must notice lost flushed batches: {r:?}"
    );
}

#[test]
fn failed_fsync_poisons_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let e = SegmentEngine::open(dir.path(), config()).unwrap();
    let g = GroupId(1);
    e.raft_append(g, &[engine::entry(1, 1, 10)]).unwrap();
    e.raft_sync().unwrap();
    e.raft_append(g, &[engine::entry(2, 1, 10)]).unwrap();
    e.inject_sync_failure();
    assert!(matches!(e.raft_sync(), Err(Error::Io { .. })));
    // Never retried: every later write and sync is refused.
    assert!(matches!(e.raft_sync(), Err(Error::Poisoned(_))));
    assert!(matches!(
        e.raft_append(g, &[engine::entry(3, 1, 10)]),
        Err(Error::Poisoned(_))
    ));
    assert!(matches!(
        e.log_append(g, 1, 1, &produced_batch(1, 0, 1, 10)),
        Err(Error::Poisoned(_))
    ));
    // Reads still work, and a restart recovers what was durable.
    assert_eq!(e.raft_last_index(g).unwrap(), 2);
    drop(e);
    let e = SegmentEngine::open(dir.path(), config()).unwrap();
    assert!(e.raft_last_index(g).unwrap() >= 1);
}

#[test]
fn failed_partition_flush_poisons_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let e = SegmentEngine::open(dir.path(), config()).unwrap();
    let g = GroupId(3);
    e.log_append(g, 1, 1, &produced_batch(2, 0, 1, 10)).unwrap();
    e.inject_sync_failure();
    assert!(e.log_flush(g).is_err());
    assert!(matches!(e.log_flush(g), Err(Error::Poisoned(_))));
    assert!(matches!(e.raft_sync(), Err(Error::Poisoned(_))));
}

#[test]
fn a_second_process_cannot_open_the_same_directory() {
    let dir = tempfile::tempdir().unwrap();
    let _e = SegmentEngine::open(dir.path(), config()).unwrap();
    let r = SegmentEngine::open(dir.path(), config());
    assert!(matches!(r, Err(Error::Config(m)) if m.contains("in use")));
}

#[test]
fn bad_config_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let r = SegmentEngine::open(
        dir.path(),
        Config {
            segment_bytes: 10,
            ..Config::default()
        },
    );
    assert!(matches!(r, Err(Error::Config(m)) if m.contains("segment_bytes")));
}

#[test]
fn wal_files_are_deleted_after_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let e = SegmentEngine::open(dir.path(), config()).unwrap();
    let g = GroupId(1);
    // ~1.2 MB of entries: about five WAL files of 256 KiB.
    for i in 1..=300u64 {
        e.raft_append(g, &[engine::entry(i, 1, 4000)]).unwrap();
    }
    e.raft_sync().unwrap();
    let wal = dir.path().join("wal");
    let before = std::fs::read_dir(&wal).unwrap().count();
    assert!(before >= 4, "expected several WAL files, got {before}");
    e.raft_compact(g, 290).unwrap();
    // Files go once the compaction record is durable, not before.
    assert_eq!(std::fs::read_dir(&wal).unwrap().count(), before);
    e.raft_sync().unwrap();
    let after = std::fs::read_dir(&wal).unwrap().count();
    assert!(
        after <= 2,
        "compacted WAL files must be deleted ({before} -> {after})"
    );
    drop(e);
    let e = SegmentEngine::open(dir.path(), config()).unwrap();
    assert_eq!(e.raft_first_index(g).unwrap(), 291);
    assert_eq!(e.raft_term(g, 290).unwrap(), 1);
    let got = e.raft_entries(g, 291, 301, None).unwrap();
    assert_eq!(got.len(), 10);
    assert_eq!(got[9].data, engine::entry(300, 1, 4000).data);
}

#[test]
fn a_small_uncompacted_log_does_not_keep_old_wal_files() {
    let dir = tempfile::tempdir().unwrap();
    let e = SegmentEngine::open(dir.path(), config()).unwrap();
    // A metadata-like group: a few entries, never compacted, written first.
    let small = GroupId(0);
    for i in 1..=3u64 {
        e.raft_append(small, &[engine::entry(i, 1, 100)]).unwrap();
    }
    let big = GroupId(1);
    for i in 1..=300u64 {
        e.raft_append(big, &[engine::entry(i, 1, 4000)]).unwrap();
    }
    e.raft_compact(big, 290).unwrap();
    // More writes roll files, and each roll carries the small log forward.
    for i in 301..=400u64 {
        e.raft_append(big, &[engine::entry(i, 1, 4000)]).unwrap();
    }
    e.raft_compact(big, 395).unwrap();
    e.raft_sync().unwrap();
    let wal = dir.path().join("wal");
    let after = std::fs::read_dir(&wal).unwrap().count();
    assert!(after <= 2, "WAL files kept by a small log: {after}");
    drop(e);
    let e = SegmentEngine::open(dir.path(), config()).unwrap();
    let got = e.raft_entries(small, 1, 4, None).unwrap();
    assert_eq!(got.len(), 3);
    assert_eq!(got[2].data, engine::entry(3, 1, 100).data);
    assert_eq!(e.raft_first_index(big).unwrap(), 396);
    assert_eq!(e.raft_last_index(big).unwrap(), 400);
    assert_eq!(
        e.raft_entries(big, 400, 401, None).unwrap()[0].data,
        engine::entry(400, 1, 4000).data
    );
}
