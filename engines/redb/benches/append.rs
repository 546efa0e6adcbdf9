//! redb engine append throughput next to the disk's synced write rate; see
//! `weir_conformance::engine_bench` for the method and options.

#![allow(clippy::unwrap_used, missing_docs)]

fn main() {
    weir_conformance::engine_bench::run("redb", &|dir| {
        Box::new(weir_engine_redb::open(dir, &weir_engine_redb::Config::default()).unwrap())
    });
}
