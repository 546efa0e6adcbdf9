//! The segment engine on a full disk (issue 15 item 5): every write that meets
//! ENOSPC — a Raft log append, a partition append, a segment roll, an index
//! page — answers [`Error::StorageFull`] having changed nothing, the engine is
//! not poisoned, reads go on, writes succeed once space is freed, and a reopen
//! finds exactly what was acknowledged.
//!
//! The test runs itself again in a mount namespace of its own with a small
//! tmpfs on its directory (`weir_conformance::tmpfs`), so that the disk really
//! fills and nothing is mounted outside the test.

use std::io::Write as _;
use std::path::Path;

use weir_core::engine::{PartitionStore as _, RaftLogStore as _};
use weir_core::eraftpb::Entry;
use weir_core::{Error, GroupId};
use weir_engine_segment::{Config, SegmentEngine};

/// Set (to the tmpfs's path) in the re-run inside the mount namespace.
const INSIDE: &str = "WEIR_SEGMENT_TMPFS";

fn open(dir: &Path) -> SegmentEngine {
    let c = Config {
        segment_bytes: 64 << 10,
        index_interval_bytes: 512,
        wal_file_bytes: 64 << 10,
        ..Config::default()
    };
    SegmentEngine::open(dir, c).expect("open")
}

fn batch(n: u64) -> Vec<u8> {
    let mut value = vec![(n % 251) as u8; 3000];
    value[..8].copy_from_slice(&n.to_be_bytes());
    weir_core::batch::BatchBuilder::new(n as i64)
        .record(None, Some(&value))
        .build()
}

fn entry(index: u64) -> Entry {
    Entry {
        index,
        term: 1,
        data: vec![(index % 251) as u8; 3000].into(),
        ..Entry::default()
    }
}

/// Fills the file system holding `dir` with a filler file.
fn fill(dir: &Path) {
    let mut f = std::fs::File::create(dir.join("filler")).expect("the filler");
    let chunk = vec![0xabu8; 4096];
    loop {
        if let Err(e) = f.write_all(&chunk) {
            assert_eq!(e.kind(), std::io::ErrorKind::StorageFull, "{e}");
            return;
        }
    }
}

fn is_full(r: &weir_core::Result<impl std::fmt::Debug>) -> bool {
    matches!(r, Err(Error::StorageFull(_)))
}

/// Every batch of `group` from offset 0: the numbers their values start with.
fn read_all(e: &SegmentEngine, group: GroupId) -> Vec<u64> {
    let mut out = Vec::new();
    let mut next = 0;
    loop {
        let bytes = e.log_read(group, next, 1 << 20).expect("read");
        if bytes.is_empty() {
            return out;
        }
        for b in weir_core::batch::iter_batches(&bytes) {
            let (h, b) = b.expect("a whole batch");
            if h.base_offset >= next {
                for r in weir_core::batch::decode_records(b).expect("records") {
                    let v = r.value.expect("a value");
                    out.push(u64::from_be_bytes(v[..8].try_into().expect("8 bytes")));
                }
            }
            next = next.max(h.last_offset() + 1);
        }
    }
}

fn inside(dir: &Path) {
    let data = dir.join("data");
    let g = GroupId(7);
    let e = open(&data);
    // Some data first, then a full disk.
    let mut appended = Vec::new();
    let mut raft_last = 0;
    for n in 0..4 {
        raft_last += 1;
        e.raft_append(g, &[entry(raft_last)]).expect("raft append");
        e.log_append(g, raft_last, 1, &batch(n)).expect("append");
        appended.push(n);
    }
    e.raft_sync().expect("sync");
    fill(dir);
    // Partition appends until the disk says no: segments roll (64 KiB each),
    // indexes grow, and the filler left at most a page or so.
    let mut n = 4;
    let refused = loop {
        let r = e.log_append(g, raft_last + 1, 1, &batch(n));
        if r.is_err() {
            break r;
        }
        raft_last += 1;
        appended.push(n);
        n += 1;
        assert!(n < 10_000, "the disk never filled");
    };
    assert!(is_full(&refused), "a full disk is StorageFull: {refused:?}");
    // The Raft log too.
    let mut wal_refused = None;
    for i in 0..10_000 {
        let r = e.raft_append(g, &[entry(raft_last + 1 + i)]);
        if r.is_err() {
            wal_refused = Some(r);
            break;
        }
    }
    let wal_refused = wal_refused.expect("the WAL never filled");
    assert!(is_full(&wal_refused), "{wal_refused:?}");
    // Not poisoned: syncs and reads go on.
    e.raft_sync().expect("a sync on a full disk");
    e.log_flush(g).expect("a flush on a full disk");
    assert_eq!(read_all(&e, g), appended, "read on a full disk");
    // Space freed: the refused append goes through as it was.
    std::fs::remove_file(dir.join("filler")).expect("deleting the filler");
    e.log_append(g, raft_last + 1, 1, &batch(n))
        .expect("append after space was freed");
    appended.push(n);
    let last = e.raft_last_index(g).expect("last index");
    e.raft_append(g, &[entry(last + 1)])
        .expect("raft append after space was freed");
    e.raft_sync().expect("sync");
    e.log_flush(g).expect("flush");
    assert_eq!(read_all(&e, g), appended);
    let entries = e
        .raft_entries(g, 1, last + 2, None)
        .expect("every Raft entry");
    assert_eq!(entries.len() as u64, last + 1);
    for (i, en) in entries.iter().enumerate() {
        assert_eq!(en.index, i as u64 + 1);
        assert_eq!(en.data, entry(en.index).data, "entry {}", en.index);
    }
    drop(e);
    // A reopen finds exactly that.
    let e = open(&data);
    assert_eq!(read_all(&e, g), appended, "after reopening");
    assert_eq!(e.raft_last_index(g).expect("last index"), last + 1);
}

#[test]
fn a_full_disk_refuses_writes_without_poisoning_and_they_resume_when_space_is_freed() {
    if let Ok(dir) = std::env::var(INSIDE) {
        inside(Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let exe = std::env::current_exe().expect("the test binary");
    let out = weir_conformance::tmpfs::command("2m", dir.path())
        .arg(exe)
        .args([
            "--exact",
            "a_full_disk_refuses_writes_without_poisoning_and_they_resume_when_space_is_freed",
            "--nocapture",
        ])
        .env(INSIDE, dir.path())
        .output()
        .expect("unshare (util-linux) runs the test again");
    assert!(
        out.status.success(),
        "inside the mount namespace:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The inner run's own harness line proves it ran the test.
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 passed"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
