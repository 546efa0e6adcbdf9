//! The engine conformance suite for the RocksDB engine.

use std::path::Path;

use weir_conformance::engine::EngineHarness;
use weir_engine_rocksdb::{Config, RocksEngine};

struct Rocks;

fn config() -> Config {
    Config {
        block_cache_bytes: 8 << 20,
        write_buffer_bytes: 4 << 20,
        background_jobs: 1,
    }
}

impl EngineHarness for Rocks {
    type Engine = RocksEngine;
    type Guard = tempfile::TempDir;

    fn create(&self) -> anyhow::Result<(tempfile::TempDir, RocksEngine)> {
        let dir = tempfile::tempdir()?;
        let engine = weir_engine_rocksdb::open(dir.path(), &config())?;
        Ok((dir, engine))
    }

    fn reopen(
        &self,
        guard: &tempfile::TempDir,
        engine: RocksEngine,
    ) -> anyhow::Result<RocksEngine> {
        drop(engine);
        Ok(weir_engine_rocksdb::open(guard.path(), &config())?)
    }

    fn data_dir(&self, guard: &tempfile::TempDir) -> Option<std::path::PathBuf> {
        Some(guard.path().to_path_buf())
    }

    fn open_dir(&self, dir: &Path) -> weir_core::Result<RocksEngine> {
        weir_engine_rocksdb::open(dir, &config())
    }
}

weir_conformance::engine_suite!(Rocks);
