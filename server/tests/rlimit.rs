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
/// hard, holding `inherited` descriptors from its parent (as a CI runner or a
/// supervisor may pass down), and waits until it listens. Its log goes to
/// `log`.
/// A child process killed when dropped, so that a failed assertion leaves no
/// node running.
struct Killed(std::process::Child);

impl std::ops::Deref for Killed {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Killed {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve_under_256_files(
    dir: &std::path::Path,
    port: u16,
    inherited: usize,
    log: &std::path::Path,
) -> Killed {
    let log = std::fs::File::create(log).expect("a log file");
    // bash closes what this test inherited itself (its own runner's), opens
    // `inherited` descriptors without close-on-exec, then becomes prlimit, which
    // becomes weir.
    let script = r#"
        for f in /proc/$$/fd/*; do
            f=${f##*/}
            if [ "$f" -gt 2 ]; then eval "exec $f<&-"; fi
        done 2>/dev/null
        n=$1; shift
        for _ in $(seq 1 "$n"); do exec {fd}</dev/null; done
        exec prlimit --nofile=256:256 "$@"
    "#;
    let child = Command::new("bash")
        .arg("-c")
        .arg(script)
        .arg("bash")
        .arg(inherited.to_string())
        .arg(env!("CARGO_BIN_EXE_weir"))
        .args(["serve", "--engine", "segment", "--kafka-listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("bash runs prlimit, which runs weir serve");
    let child = Killed(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "weir never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// What a failure message should show: weir's last log lines, whether its
/// process runs, and who listens on its port.
fn diagnose(child: &Killed, port: u16, log: &std::path::Path) -> String {
    let pid = child.id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map(|s| s.lines().take(3).collect::<Vec<_>>().join("; "))
        .unwrap_or_else(|e| format!("no /proc/{pid}: {e}"));
    let listeners = Command::new("ss")
        .args(["-ltnp", &format!("sport = :{port}")])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    format!(
        "weir pid {pid}: {status}\nlisteners on {port}:\n{listeners}\nlog:\n{}",
        log_tail(log)
    )
}

/// The last lines weir logged, for a failure message.
fn log_tail(log: &std::path::Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Each segment-engine partition holds three files open. Topics past what the
/// open-file limit allows are refused (POLICY_VIOLATION); before, the node
/// opened files until it failed, stopped, and could not start again under the
/// same limit.
///
/// The node is started holding 150 descriptors from its parent, as a CI runner
/// or a supervisor may pass down: the budget is what is left of the limit, not
/// the limit (counting the limit alone, CI's runner made the node stop at its
/// first topic).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_past_the_open_file_limit_are_refused_and_the_node_restarts() {
    const INHERITED: usize = 150;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log = dir.path().join("weir.log");
    let data = dir.path().join("data");
    let port = weir_conformance::net::stable_port();
    let mut child = serve_under_256_files(&data, port, INHERITED, &log);
    let bootstrap = format!("127.0.0.1:{port}");
    let mut client = weir_server::client::Client::new(&bootstrap);
    // Ready: the node answers Kafka requests (not only that the port accepts).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while let Err(e) = client.metadata(Some(&[])).await {
        assert!(
            std::time::Instant::now() < deadline,
            "the node never answered: {e:#}\n{}",
            diagnose(&child, port, &log)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (mut created, mut refused) = (Vec::new(), Vec::new());
    for i in 0..20 {
        let name = format!("t{i}");
        match client.create_topic(&name, 10, 1, &[]).await {
            Ok(()) => created.push(name),
            Err(e) => refused.push(format!("{e:#}")),
        }
        assert!(
            child.try_wait().expect("child status").is_none(),
            "the node stopped after {} topics of 10 partitions: {}",
            created.len(),
            log_tail(&log)
        );
    }
    assert!(
        !created.is_empty(),
        "no topic was created: {refused:?}\n{}",
        diagnose(&child, port, &log)
    );
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
            "the node stopped hosting {} topics of 10 partitions: {}",
            created.len(),
            log_tail(&log)
        );
        produced.expect("produce");
    }
    assert!(
        refused
            .iter()
            .all(|e| e.contains("error 44") && e.contains("open-file")),
        "refusals name the limit: {refused:?}\n{}",
        log_tail(&log)
    );
    assert!(!refused.is_empty(), "200 partitions fit in 256 files?");
    // A restart under the same limit opens them all again.
    let _ = child.kill();
    let _ = child.wait();
    let mut child = serve_under_256_files(&data, port, INHERITED, &log);
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
    assert!(
        child.try_wait().expect("child status").is_none(),
        "{}",
        log_tail(&log)
    );
    let _ = child.kill();
    let _ = child.wait();
}
