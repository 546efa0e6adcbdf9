//! The engine conformance suite for the redb engine.

use std::path::Path;

use weir_conformance::engine::EngineHarness;
use weir_engine_redb::{Config, RedbEngine};

struct Redb;

fn config() -> Config {
    Config {
        cache_bytes: 16 << 20,
    }
}

impl EngineHarness for Redb {
    type Engine = RedbEngine;
    type Guard = tempfile::TempDir;

    fn create(&self) -> anyhow::Result<(tempfile::TempDir, RedbEngine)> {
        let dir = tempfile::tempdir()?;
        let engine = weir_engine_redb::open(dir.path(), &config())?;
        Ok((dir, engine))
    }

    fn reopen(&self, guard: &tempfile::TempDir, engine: RedbEngine) -> anyhow::Result<RedbEngine> {
        drop(engine);
        Ok(weir_engine_redb::open(guard.path(), &config())?)
    }

    fn data_dir(&self, guard: &tempfile::TempDir) -> Option<std::path::PathBuf> {
        Some(guard.path().to_path_buf())
    }

    fn open_dir(&self, dir: &Path) -> weir_core::Result<RedbEngine> {
        weir_engine_redb::open(dir, &config())
    }
}

weir_conformance::engine_suite!(Redb);
