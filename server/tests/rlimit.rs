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
