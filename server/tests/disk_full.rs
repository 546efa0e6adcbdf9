//! A full disk is an error code, never an exit (issue 15 item 5, TESTING.md §4).
//!
//! Each test runs `weir serve` with its data directory on a small tmpfs in a
//! mount namespace of its own (`weir_conformance::tmpfs`: nothing is mounted
//! outside it, nothing is left behind), fills the file system with a
//! filler file reached through `/proc/PID/root`, and produces until the disk
//! says no. Produce must then answer KAFKA_STORAGE_ERROR (56), the node must stay
//! up and serve reads, and once the filler is deleted writes resume on their own;
//! every acknowledged record is read back at its offset.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use weir_server::client::Client;

/// KAFKA_STORAGE_ERROR.
const STORAGE_ERROR: i16 = 56;

/// A node on a tmpfs of `size_mib` MiB mounted over `mount`, with `config` as its
/// config file; logs to `log`.
struct FullNode {
    child: Child,
    mount: PathBuf,
    log: PathBuf,
    bootstrap: String,
}

impl FullNode {
    fn start(dir: &Path, size_mib: u64, config: &str) -> FullNode {
        let mount = dir.join("data");
        std::fs::create_dir_all(&mount).expect("the mount point");
        let port = weir_conformance::net::stable_port();
        let bootstrap = format!("127.0.0.1:{port}");
        let config_path = dir.join("weir.toml");
        std::fs::write(
            &config_path,
            format!(
                "kafka_listen = \"{bootstrap}\"\ndata_dir = \"{}\"\n{config}",
                mount.display()
            ),
        )
        .expect("the config file");
        let log = dir.join("weir.log");
        let child = weir_conformance::tmpfs::command(&format!("{size_mib}m"), &mount)
            .arg(env!("CARGO_BIN_EXE_weir"))
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("a log file"))
            .spawn()
            .expect("unshare (util-linux) runs weir serve on a tmpfs of its own");
        let mut node = FullNode {
            child,
            mount,
            log,
            bootstrap,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&node.bootstrap).is_err() {
            assert!(
                Instant::now() < deadline && node.is_up(),
                "weir never listened: {}",
                node.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        node
    }

    /// A path on the node's tmpfs, as seen from outside its mount namespace.
    fn on_tmpfs(&self, name: &str) -> PathBuf {
        let inside = self.mount.strip_prefix("/").expect("an absolute path");
        PathBuf::from(format!("/proc/{}/root", self.child.id()))
            .join(inside)
            .join(name)
    }

    /// Fills the tmpfs with a filler file until `leave` bytes are free.
    fn fill_leaving(&self, leave: u64) {
        use std::io::Write as _;
        let size = free_bytes(&self.on_tmpfs("")).saturating_sub(leave);
        let mut f = std::fs::File::create(self.on_tmpfs("filler")).expect("the filler file");
        // Written, not set_len: a sparse file would take no space.
        let chunk = vec![0xabu8; 64 << 10];
        let mut left = size;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            f.write_all(&chunk[..n]).expect("writing the filler");
            left -= n as u64;
        }
    }

    fn free_filler(&self) {
        std::fs::remove_file(self.on_tmpfs("filler")).expect("deleting the filler");
    }

    fn is_up(&mut self) -> bool {
        self.child.try_wait().expect("child status").is_none()
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for FullNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Free bytes of the file system holding `path`, as an unprivileged writer
/// sees them (`stat --file-system`, which asks that file system itself; `df`
/// looks the mount up in its own namespace, where the tmpfs is not).
fn free_bytes(path: &Path) -> u64 {
    let out = Command::new("stat")
        .args(["--file-system", "--format=%a %S"])
        .arg(path)
        .output()
        .expect("stat runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut n = text.split_whitespace().map(|v| v.parse::<u64>().ok());
    match (n.next().flatten(), n.next().flatten()) {
        (Some(blocks), Some(size)) => blocks * size,
        _ => panic!("stat printed {text:?}"),
    }
}

/// A batch of one record of `size` bytes whose value starts with `n`.
fn batch(n: u64, size: usize) -> Bytes {
    let mut value = vec![(n % 251) as u8; size];
    value[..8].copy_from_slice(&n.to_be_bytes());
    Bytes::from(
        weir_core::batch::BatchBuilder::new(0)
            .record(None, Some(&value))
            .build(),
    )
}

/// Every record of partition 0 of `topic` up to its high watermark: offset →
/// the number its value starts with.
async fn read_all(client: &mut Client, topic: &str) -> BTreeMap<i64, u64> {
    let mut out = BTreeMap::new();
    let mut next = 0;
    loop {
        let (bytes, hw) = client
            .fetch(topic, 0, next, Duration::ZERO)
            .await
            .expect("fetch is served on a full disk");
        for b in weir_core::batch::iter_batches(&bytes) {
            let (h, b) = b.expect("a whole batch");
            for r in weir_core::batch::decode_records(b).expect("records") {
                if r.offset >= next {
                    let v = r.value.expect("a value");
                    out.insert(
                        r.offset,
                        u64::from_be_bytes(v[..8].try_into().expect("8 bytes")),
                    );
                }
            }
            next = next.max(h.last_offset() + 1);
        }
        if next >= hw {
            return out;
        }
    }
}

/// Produces numbered batches until the node refuses one; returns what was
/// acknowledged (offset → number), the refusal codes seen, and the next number.
async fn produce_until_refused(
    node: &mut FullNode,
    client: &mut Client,
    topic: &str,
    from: u64,
    size: usize,
) -> (BTreeMap<i64, u64>, Vec<i16>, u64) {
    let mut acked = BTreeMap::new();
    let mut refusals = Vec::new();
    let mut n = from;
    let deadline = Instant::now() + Duration::from_secs(60);
    while refusals.len() < 5 {
        assert!(
            Instant::now() < deadline,
            "60 s of produce and the disk never filled"
        );
        match client
            .produce_to(&node.bootstrap, topic, 0, batch(n, size))
            .await
        {
            Ok(Ok(offset)) => {
                acked.insert(offset, n);
            }
            Ok(Err(code)) => refusals.push(code),
            Err(e) => panic!("produce failed: {e:#}\n{}", node.log_tail()),
        }
        n += 1;
        assert!(node.is_up(), "the node stopped:\n{}", node.log_tail());
    }
    (acked, refusals, n)
}

/// Waits until a produce succeeds again (writes resume on their own).
async fn produce_until_accepted(
    node: &mut FullNode,
    client: &mut Client,
    topic: &str,
    n: u64,
    size: usize,
) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match client
            .produce_to(&node.bootstrap, topic, 0, batch(n, size))
            .await
        {
            Ok(Ok(offset)) => return offset,
            Ok(Err(code)) => assert_eq!(code, STORAGE_ERROR, "{}", node.log_tail()),
            Err(e) => panic!("produce failed: {e:#}\n{}", node.log_tail()),
        }
        assert!(node.is_up(), "the node stopped:\n{}", node.log_tail());
        assert!(
            Instant::now() < deadline,
            "writes did not resume within 30 s of freeing space:\n{}",
            node.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Shared by both tests: fill, produce until refused, check the refusals, the
/// reads, the resumption and every acknowledged record.
async fn fill_refuse_resume(config: &str, leave: u64) -> (FullNode, Vec<i16>) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut node = FullNode::start(dir.path(), 48, config);
    let mut client = Client::new(&node.bootstrap);
    client
        .create_topic("t", 1, 1, &[])
        .await
        .expect("create topic");
    node.fill_leaving(leave);
    let size = 32 << 10;
    let (mut acked, refusals, n) =
        produce_until_refused(&mut node, &mut client, "t", 0, size).await;
    assert!(
        !acked.is_empty(),
        "nothing was acknowledged before the disk filled"
    );
    assert!(
        refusals.iter().all(|&c| c == STORAGE_ERROR),
        "a full disk answers KAFKA_STORAGE_ERROR (56), got {refusals:?}\n{}",
        node.log_tail()
    );
    // Reads are served while the disk is full.
    let read = read_all(&mut client, "t").await;
    for (offset, want) in &acked {
        assert_eq!(
            read.get(offset),
            Some(want),
            "offset {offset} on a full disk"
        );
    }
    assert!(node.is_up(), "the node stopped:\n{}", node.log_tail());
    // Space freed: writes resume without a restart.
    node.free_filler();
    let offset = produce_until_accepted(&mut node, &mut client, "t", n, size).await;
    acked.insert(offset, n);
    let read = read_all(&mut client, "t").await;
    for (offset, want) in &acked {
        assert_eq!(read.get(offset), Some(want), "acknowledged offset {offset}");
    }
    // Keep the directory until the node is gone.
    std::mem::forget(dir);
    (node, refusals)
}

/// With the free-space floor off, the disk really fills: the WAL, the segment
/// files and their indexes hit ENOSPC, and none of it may stop the node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_storage_errors_and_writes_resume_when_space_is_freed() {
    let config = "engine = \"segment\"\nmin_free_bytes = 0\n[engine_segment]\nsegment_bytes = 1048576\nwal_file_bytes = 1048576\n";
    let (node, _) = fill_refuse_resume(config, 3 << 20).await;
    let log = std::fs::read_to_string(&node.log).unwrap_or_default();
    assert!(
        log.contains("No space left on device"),
        "the disk did not fill (the floor refused first?):\n{}",
        node.log_tail()
    );
}

/// With the floor, produce is refused while some space is still free, so that
/// the Raft log's own records can still be written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_is_refused_below_the_free_space_floor() {
    let config = "engine = \"segment\"\nmin_free_bytes = 4194304\n[engine_segment]\nsegment_bytes = 1048576\nwal_file_bytes = 1048576\n";
    let (node, _) = fill_refuse_resume(config, 6 << 20).await;
    let log = std::fs::read_to_string(&node.log).unwrap_or_default();
    assert!(
        !log.contains("No space left on device"),
        "the floor let the disk fill:\n{}",
        node.log_tail()
    );
}

/// The database engines are kept off a full disk by the floor (an ENOSPC inside
/// RocksDB or redb poisons the engine, and the node stops with the cause).
#[cfg(feature = "engine-redb")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_refuses_produce_below_the_free_space_floor() {
    let (mut node, _) =
        fill_refuse_resume("engine = \"redb\"\nmin_free_bytes = 4194304\n", 6 << 20).await;
    assert!(node.is_up());
}

/// As for redb.
#[cfg(feature = "engine-rocksdb")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rocksdb_refuses_produce_below_the_free_space_floor() {
    let (mut node, _) =
        fill_refuse_resume("engine = \"rocksdb\"\nmin_free_bytes = 4194304\n", 6 << 20).await;
    assert!(node.is_up());
}
