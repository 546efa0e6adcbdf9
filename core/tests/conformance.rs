//! The engine conformance suite for the in-memory reference engine.

use weir_conformance::engine::EngineHarness;
use weir_core::memory::MemoryEngine;

struct Memory;

impl EngineHarness for Memory {
    type Engine = MemoryEngine;
    type Guard = ();

    fn create(&self) -> anyhow::Result<((), MemoryEngine)> {
        Ok(((), MemoryEngine::new()))
    }

    fn reopen(&self, _: &(), engine: MemoryEngine) -> anyhow::Result<MemoryEngine> {
        Ok(engine.restart())
    }
}

fn main() {
    weir_conformance::engine::run(Memory)
}
