//! The engine conformance suite for the segment engine, with small files so that
//! segments roll and WAL files turn over within the cases.

use weir_engine_segment::{Config, SegmentEngine};

fn open(dir: &std::path::Path) -> weir_core::Result<SegmentEngine> {
    let (segment_bytes, index_interval_bytes, wal_file_bytes) = (64 << 10, 1024, 256 << 10);
    let c = Config {
        segment_bytes,
        index_interval_bytes,
        wal_file_bytes,
        ..Config::default()
    };
    SegmentEngine::open(dir, c)
}

fn main() {
    weir_conformance::engine::run(weir_conformance::engine::DirHarness(open))
}
