//! A Kafka request frame (without its size prefix) handled by a single-node broker.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use weir_server::fuzzing::KafkaHarness;

static HARNESS: OnceLock<KafkaHarness> = OnceLock::new();

/// The broker's allocator, as in the `weir` binary.
#[global_allocator]
static ALLOC: weir_server::alloc::GuardedAlloc = weir_server::alloc::GuardedAlloc;

fuzz_target!(|data: &[u8]| {
    HARNESS
        .get_or_init(|| KafkaHarness::new().expect("starting the broker"))
        .request(data);
});
