//! The cluster suite over the segment engine; a restart reopens the data directory.

use weir_engine_segment::{Config, SegmentEngine};

fn open(dir: &std::path::Path) -> weir_core::Result<SegmentEngine> {
    let (segment_bytes, index_interval_bytes, wal_file_bytes) = (256 << 10, 1024, 1 << 20);
    let c = Config {
        segment_bytes,
        index_interval_bytes,
        wal_file_bytes,
        ..Config::default()
    };
    SegmentEngine::open(dir, c)
}

fn main() {
    weir_conformance::cluster::run(|| weir_conformance::cluster::DirEngines(open))
}
