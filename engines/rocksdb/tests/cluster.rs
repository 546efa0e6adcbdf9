//! The cluster suite over the RocksDB engine; a restart reopens the data directory.

use weir_engine_rocksdb::{Config, RocksEngine};

fn open(dir: &std::path::Path) -> weir_core::Result<RocksEngine> {
    let (block_cache_bytes, write_buffer_bytes, background_jobs) = (8 << 20, 4 << 20, 1);
    let c = Config {
        block_cache_bytes,
        write_buffer_bytes,
        background_jobs,
    };
    weir_engine_rocksdb::open(dir, &c)
}

fn main() {
    weir_conformance::cluster::run(|| weir_conformance::cluster::DirEngines(open))
}
