//! `weir serve` raises its soft open-file limit to the hard limit at start, so that
//! a node started under a low soft limit (1,024 is common) does not run out of
//! descriptors with a few hundred partitions and clients.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The soft and hard "Max open files" of a running process.
fn open_file_limits(pid: u32) -> Option<(u64, u64)> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut n = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .map(|v| v.parse::<u64>().ok());
    Some((n.next()??, n.next()??))
}

#[test]
fn serve_raises_the_soft_open_file_limit_to_the_hard_one() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let port = weir_conformance::net::stable_port();
    // Start under a soft limit of 256 with a hard limit of 2,048 (prlimit, from
    // util-linux, sets both for the command it runs).
    let mut child = Command::new("prlimit")
        .arg("--nofile=256:2048")
        .arg(env!("CARGO_BIN_EXE_weir"))
        .args(["serve", "--engine", "memory", "--kafka-listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prlimit runs weir serve");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = None;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            seen = open_file_limits(child.id());
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        seen,
        Some((2048, 2048)),
        "soft and hard open-file limits while serving"
    );
}

/// Starts `weir serve` (segment engine) under an open-file limit of 256, soft and
/// hard, and waits until it listens.
fn serve_under_256_files(dir: &std::path::Path, port: u16) -> std::process::Child {
    let child = Command::new("prlimit")
        .arg("--nofile=256:256")
        .arg(env!("CARGO_BIN_EXE_weir"))
        .args(["serve", "--engine", "segment", "--kafka-listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prlimit runs weir serve");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "weir never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// Each segment-engine partition holds three files open. Topics past what the
/// open-file limit allows are refused (POLICY_VIOLATION); before, the node
/// opened files until it failed, stopped, and could not start again under the
/// same limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_past_the_open_file_limit_are_refused_and_the_node_restarts() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let port = weir_conformance::net::stable_port();
    let mut child = serve_under_256_files(dir.path(), port);
    let bootstrap = format!("127.0.0.1:{port}");
    let mut client = weir_server::client::Client::new(&bootstrap);
    let (mut created, mut refused) = (Vec::new(), Vec::new());
    for i in 0..20 {
        let name = format!("t{i}");
        match client.create_topic(&name, 10, 1, &[]).await {
            Ok(()) => created.push(name),
            Err(e) => refused.push(e.to_string()),
        }
        assert!(
            child.try_wait().expect("child status").is_none(),
            "the node stopped after {} topics of 10 partitions",
            created.len()
        );
    }
    assert!(!created.is_empty(), "no topic was created: {refused:?}");
    // Every created partition works.
    let batch = bytes::Bytes::from(
        weir_core::batch::BatchBuilder::new(0)
            .record(None, Some(b"v"))
            .build(),
    );
    for name in &created {
        let produced = client.produce(name, 9, batch.clone()).await;
        assert!(
            child.try_wait().expect("child status").is_none(),
            "the node stopped hosting {} topics of 10 partitions",
            created.len()
        );
        produced.expect("produce");
    }
    assert!(
        refused
            .iter()
            .all(|e| e.contains("error 44") && e.contains("open-file")),
        "refusals name the limit: {refused:?}"
    );
    assert!(!refused.is_empty(), "200 partitions fit in 256 files?");
    // A restart under the same limit opens them all again.
    let _ = child.kill();
    let _ = child.wait();
    let mut child = serve_under_256_files(dir.path(), port);
    let mut client = weir_server::client::Client::new(&bootstrap);
    for name in &created {
        let end = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                if let Ok(end) = client.list_offset(name, 9, -1).await {
                    return end;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .expect("the partition is served after the restart");
        assert_eq!(end, 1, "{name}");
    }
    assert!(child.try_wait().expect("child status").is_none());
    let _ = child.kill();
    let _ = child.wait();
}
