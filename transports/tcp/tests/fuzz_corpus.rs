//! Replays the `tcp_frame` fuzz corpus (`fuzz/corpus/tcp_frame`) through the fuzz
//! target's entry point: every input is decoded or refused, never a panic.

use std::path::Path;

#[test]
fn tcp_frame_corpus_replays_without_panicking() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/tcp_frame");
    let mut decoded = 0;
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("the corpus directory") {
        let data = std::fs::read(entry.expect("a corpus entry").path()).expect("a corpus file");
        if weir_transport_tcp::decode_frames(&bytes::Bytes::from(data), 1 << 20).is_ok() {
            decoded += 1;
        }
        n += 1;
    }
    assert!(n >= 2, "only {n} corpus files in {}", dir.display());
    assert!(decoded >= 2, "the seed frames must decode");
}
