//! A damaged data directory is refused with `corrupt data:` naming what is missing,
//! never opened as if nothing were: the Raft log gone while partition logs remain,
//! a partition's first segment gone. `accept_data_loss` opens it anyway, dropping
//! (and logging) the loss. (A partition log gone after its Raft log was compacted
//! is the node's to see, for every engine: core/tests/fail_stop.rs.)

use std::path::Path;

use weir_core::batch::BatchBuilder;
use weir_core::eraftpb::Entry;
use weir_core::{GroupId, PartitionStore, RaftLogStore};
use weir_engine_segment::{Config, SegmentEngine};

const G: GroupId = GroupId(7);

fn config(accept_data_loss: bool) -> Config {
    Config {
        segment_bytes: 64 << 10,
        accept_data_loss,
        ..Config::default()
    }
}

/// Writes `entries` Raft entries to group G and applies one 8 KiB batch per entry
/// to its partition log (several segments of 64 KiB), flushed and synced.
fn fill(dir: &Path, entries: u64) {
    let e = SegmentEngine::open(dir, config(false)).expect("opens");
    let value = vec![3u8; 8 << 10];
    let batch = BatchBuilder::new(0).record(None, Some(&value)).build();
    let raft: Vec<Entry> = (1..=entries)
        .map(|i| Entry {
            index: i,
            term: 1,
            ..Entry::default()
        })
        .collect();
    e.raft_append(G, &raft).expect("raft append");
    for i in 1..=entries {
        e.log_append(G, i, 1, &batch).expect("log append");
    }
    e.log_flush(G).expect("flush");
    e.raft_sync().expect("sync");
}

fn refusal(dir: &Path) -> String {
    let e = SegmentEngine::open(dir, config(false)).expect_err("a damaged directory is refused");
    let msg = e.to_string();
    assert!(msg.starts_with("corrupt data:"), "{msg}");
    assert!(
        msg.contains("accept_data_loss"),
        "the way out is named: {msg}"
    );
    msg
}

fn partition_dir(dir: &Path) -> std::path::PathBuf {
    dir.join("partitions").join(format!("{:020}", G.0))
}

#[test]
fn a_missing_raft_log_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    fill(dir.path(), 3);
    std::fs::remove_dir_all(dir.path().join("wal")).expect("rm wal");
    let msg = refusal(dir.path());
    assert!(msg.contains("wal") && msg.contains("is missing"), "{msg}");
    // Accepting the loss drops the orphaned partition logs.
    let e = SegmentEngine::open(dir.path(), config(true)).expect("opens with accept_data_loss");
    assert!(e.log_groups().expect("groups").is_empty());
}

#[test]
fn a_missing_first_segment_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    fill(dir.path(), 20);
    let pdir = partition_dir(dir.path());
    let mut bases: Vec<i64> = std::fs::read_dir(&pdir)
        .expect("list")
        .filter_map(|e| {
            let name = e.ok()?.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".log")?.parse().ok()
        })
        .collect();
    bases.sort_unstable();
    assert!(bases.len() >= 3, "several segments: {bases:?}");
    for entry in std::fs::read_dir(&pdir).expect("list") {
        let path = entry.expect("entry").path();
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        if stem.parse::<i64>().ok() == Some(bases[0]) {
            std::fs::remove_file(&path).expect("rm first segment");
        }
    }
    let msg = refusal(dir.path());
    assert!(
        msg.contains(&format!("offsets 0..{} are missing", bases[1])),
        "{msg}"
    );
    let e = SegmentEngine::open(dir.path(), config(true)).expect("opens with accept_data_loss");
    assert_eq!(e.log_state(G).expect("state").start_offset, bases[1]);
}

/// A crash while a state checkpoint was being replaced (its temporary file
/// written, not yet renamed) leaves the previous checkpoint, whole, and the
/// temporary file is deleted at open.
#[test]
fn a_checkpoint_interrupted_before_its_rename_keeps_the_previous_one() {
    use weir_core::StateStore;
    let dir = tempfile::tempdir().expect("a temporary directory");
    {
        let e = SegmentEngine::open(dir.path(), config(false)).expect("opens");
        e.state_put(G, b"previous").expect("put");
    }
    let tmp = dir
        .path()
        .join("states")
        .join(format!("{:020}.state.tmp", G.0));
    std::fs::write(&tmp, b"half of the ne").expect("a torn temporary file");
    let e = SegmentEngine::open(dir.path(), config(false)).expect("opens");
    assert_eq!(
        e.state_get(G).expect("get").as_deref(),
        Some(&b"previous"[..])
    );
    assert!(!tmp.exists(), "the temporary file is deleted");
}
