//! Negative control for the SIGKILL conformance case: the same redb store with its
//! sync turned into a no-op must fail the case (synced writes are lost with the
//! killed process, since redb keeps non-durable commits in memory).

use std::path::Path;

use weir_conformance::engine::EngineHarness;
use weir_conformance::kill::crash_sigkill_writer;
use weir_core::{Capabilities, Result};
use weir_engine_kv::{KvEngine, KvOp, KvStore, Table, Visit};
use weir_engine_redb::{Config, RedbStore};

/// A redb store that never makes anything durable.
struct NoSync(RedbStore);

impl KvStore for NoSync {
    const NAME: &'static str = "redb-without-sync";

    fn write(&self, ops: Vec<KvOp>) -> Result<()> {
        self.0.write(ops)
    }

    fn sync(&self) -> Result<()> {
        Ok(())
    }

    fn get(
        &self,
        table: Table,
        key: &[u8],
        f: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<bool> {
        self.0.get(table, key, f)
    }

    fn scan(&self, table: Table, from: &[u8], to: &[u8], f: &mut Visit<'_>) -> Result<()> {
        self.0.scan(table, from, to, f)
    }

    fn last_key(&self, table: Table, from: &[u8], to: &[u8]) -> Result<Option<Vec<u8>>> {
        self.0.last_key(table, from, to)
    }
}

struct Harness;

impl EngineHarness for Harness {
    type Engine = KvEngine<NoSync>;
    type Guard = tempfile::TempDir;

    fn create(&self) -> anyhow::Result<(tempfile::TempDir, Self::Engine)> {
        let dir = tempfile::tempdir()?;
        let e = self.open_dir(dir.path())?;
        Ok((dir, e))
    }

    fn reopen(
        &self,
        guard: &tempfile::TempDir,
        engine: Self::Engine,
    ) -> anyhow::Result<Self::Engine> {
        drop(engine);
        Ok(self.open_dir(guard.path())?)
    }

    fn open_dir(&self, dir: &Path) -> weir_core::Result<Self::Engine> {
        let store = RedbStore::open(dir, &Config::default())?;
        KvEngine::open(NoSync(store), Capabilities::database())
    }
}

#[test]
fn sigkill_case_catches_an_engine_that_never_syncs() {
    let r = crash_sigkill_writer(&Harness, "sigkill_case_catches_an_engine_that_never_syncs");
    let err = r.expect_err("an engine that never syncs must fail the SIGKILL case");
    let msg = format!("{err:#}");
    assert!(msg.contains("no prefix"), "unexpected failure: {msg}");
}
