//! The engine conformance suite for the redb engine.

use weir_engine_redb::{Config, RedbEngine};

fn open(dir: &std::path::Path) -> weir_core::Result<RedbEngine> {
    weir_engine_redb::open(
        dir,
        &Config {
            cache_bytes: 16 << 20,
        },
    )
}

fn main() {
    weir_conformance::engine::run(weir_conformance::engine::DirHarness(open))
}
