//! Replays the `segment_recovery` fuzz corpus (`fuzz/corpus/segment_recovery`)
//! through the fuzz target's entry point: recovery from each WAL image succeeds or
//! refuses it, never panics.

use std::path::Path;

#[test]
fn segment_recovery_corpus_replays_without_panicking() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/segment_recovery");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("the corpus directory") {
        let data = std::fs::read(entry.expect("a corpus entry").path()).expect("a corpus file");
        weir_engine_segment::fuzzing::recover_image(&data);
        n += 1;
    }
    assert!(n >= 2, "only {n} corpus files in {}", dir.display());
}
