//! Segment-engine append throughput next to the disk's synced write rate; see
//! `weir_conformance::engine_bench` for the method and options.

#![allow(clippy::unwrap_used, missing_docs)]

use weir_engine_segment::{Config, SegmentEngine};

fn main() {
    weir_conformance::engine_bench::run("segment", &|dir| {
        Box::new(SegmentEngine::open(dir, Config::default()).unwrap())
    });
}
