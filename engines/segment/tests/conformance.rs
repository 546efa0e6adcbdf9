//! The engine conformance suite for the segment engine, with small files so that
//! segments roll and WAL files turn over within the cases.

use std::path::Path;

use weir_conformance::engine::EngineHarness;
use weir_engine_segment::{Config, SegmentEngine};

struct Segment;

fn config() -> Config {
    Config {
        segment_bytes: 64 << 10,
        index_interval_bytes: 1024,
        wal_file_bytes: 256 << 10,
    }
}

impl EngineHarness for Segment {
    type Engine = SegmentEngine;
    type Guard = tempfile::TempDir;

    fn create(&self) -> anyhow::Result<(tempfile::TempDir, SegmentEngine)> {
        let dir = tempfile::tempdir()?;
        let engine = SegmentEngine::open(dir.path(), config())?;
        Ok((dir, engine))
    }

    fn reopen(
        &self,
        guard: &tempfile::TempDir,
        engine: SegmentEngine,
    ) -> anyhow::Result<SegmentEngine> {
        drop(engine);
        Ok(SegmentEngine::open(guard.path(), config())?)
    }

    fn data_dir(&self, guard: &tempfile::TempDir) -> Option<std::path::PathBuf> {
        Some(guard.path().to_path_buf())
    }

    fn open_dir(&self, dir: &Path) -> weir_core::Result<SegmentEngine> {
        SegmentEngine::open(dir, config())
    }
}

weir_conformance::engine_suite!(Segment);
