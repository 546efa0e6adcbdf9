//! The cluster suite over the redb engine; a restart reopens the data directory.

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
    weir_conformance::cluster::run(|| weir_conformance::cluster::DirEngines(open))
}
