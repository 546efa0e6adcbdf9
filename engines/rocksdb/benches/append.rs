//! rocksdb engine append throughput next to the disk's synced write rate; see
//! `weir_conformance::engine_bench` for the method and options.

#![allow(clippy::unwrap_used, missing_docs)]

fn main() {
    weir_conformance::engine_bench::run("rocksdb", &|dir| {
        Box::new(weir_engine_rocksdb::open(dir, &weir_engine_rocksdb::Config::default()).unwrap())
    });
}
