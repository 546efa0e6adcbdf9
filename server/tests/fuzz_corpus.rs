//! Replays the `kafka_request` fuzz corpus (`fuzz/corpus/kafka_request`: seeds and
//! inputs that once crashed the broker) through the fuzz target's entry point, under
//! the broker's allocator. Each must be answered or refused, never crash.

use std::path::Path;

#[global_allocator]
static ALLOC: weir_server::alloc::GuardedAlloc = weir_server::alloc::GuardedAlloc;

#[test]
fn kafka_request_corpus_replays_without_crashing() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/kafka_request");
    let harness = weir_server::fuzzing::KafkaHarness::new().expect("starting the broker");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("the corpus directory") {
        let path = entry.expect("a corpus entry").path();
        harness.request(&std::fs::read(&path).expect("a corpus file"));
        n += 1;
    }
    assert!(n >= 10, "only {n} corpus files in {}", dir.display());
}
