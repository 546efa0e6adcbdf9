//! The entry point of the `segment_recovery` fuzz target (`fuzz/`) and of the
//! test that replays its corpus: recovery over an arbitrary file.

use weir_core::{GroupId, PartitionStore as _, RaftLogStore as _};

/// Which file an input replaces, by its first byte: 0 the WAL file, 1 a segment
/// (`.log`), 2 its offset index, 3 its time index (of a partition written first).
pub const FILES: [&str; 4] = ["wal", "log", "index", "timeindex"];

/// Opens an engine over a directory where one file (chosen by `input[0]`, see
/// [`FILES`]) holds the rest of `input`, and reads back everything it
/// recovered. Errors are fine (a corrupt file must be refused); a panic is a bug.
///
/// # Panics
/// Only when the temporary directory cannot be written.
#[allow(clippy::unwrap_used)]
pub fn recover_image(input: &[u8]) {
    let Some((&which, image)) = input.split_first() else {
        return;
    };
    let dir = tempfile_dir();
    let seg = dir.join("partitions").join(format!("{:020}", 1));
    match which % 4 {
        0 => {
            let wal = dir.join("wal");
            std::fs::create_dir_all(&wal).unwrap();
            std::fs::write(wal.join(format!("{:020}.wal", 1)), image).unwrap();
        }
        n => {
            // A real partition first, then one of its files replaced.
            {
                let e = crate::SegmentEngine::open(&dir, crate::Config::default()).unwrap();
                let batch = weir_core::batch::BatchBuilder::new(1_000)
                    .record(Some(b"k"), Some(b"value"))
                    .build();
                for i in 1..=3 {
                    e.log_append(GroupId(1), i, 1, &batch).unwrap();
                }
                e.log_flush(GroupId(1)).unwrap();
            }
            let name = format!("{:020}.{}", 0, FILES[n as usize]);
            std::fs::write(seg.join(name), image).unwrap();
        }
    }
    if let Ok(e) = crate::SegmentEngine::open(&dir, crate::Config::default()) {
        for g in e.raft_groups().unwrap_or_default() {
            let _ = e.raft_state(g);
            let (Ok(first), Ok(last)) = (e.raft_first_index(g), e.raft_last_index(g)) else {
                continue;
            };
            let _ = e.raft_term(g, first.saturating_sub(1));
            if last >= first {
                let _ = e.raft_entries(g, first, last + 1, Some(1 << 20));
            }
        }
        for g in e.log_groups().unwrap_or_default() {
            let Ok(st) = e.log_state(g) else { continue };
            let mut at = st.start_offset;
            while at < st.next_offset {
                match e.log_read(g, at, 1 << 20) {
                    Ok(b) if !b.is_empty() => {
                        let mut last = at;
                        for one in weir_core::batch::iter_batches(&b) {
                            match one {
                                Ok((h, _)) => last = h.last_offset(),
                                Err(_) => break,
                            }
                        }
                        if last < at {
                            break;
                        }
                        at = last + 1;
                    }
                    _ => break,
                }
            }
            let _ = e.log_offset_for_timestamp(g, 1_000);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let d = std::env::temp_dir().join(format!(
        "weir-fuzz-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    d
}
