//! Real Kafka clients against `weir serve` processes on 127.0.0.1: kcat
//! (librdkafka), confluent-kafka and kafka-python. `scripts/test` installs them.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `weir serve` child process, killed when dropped.
struct Broker {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl Broker {
    fn start() -> Broker {
        let dir = tempfile::tempdir().unwrap();
        let mut b = Broker {
            child: None,
            port: free_port(),
            dir,
        };
        b.launch();
        b
    }

    fn launch(&mut self) {
        let config = self.dir.path().join("weir.toml");
        std::fs::write(&config, "default_partitions = 3\nraft_tick_ms = 20\n").unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["serve", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .args(["--kafka-listen", &format!("127.0.0.1:{}", self.port)])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting weir serve");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "weir serve did not start listening"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the broker with SIGTERM and waits for a clean exit.
    fn stop(&mut self) {
        let mut child = self.child.take().unwrap();
        let st = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "weir exited with {status} after SIGTERM");
                return;
            }
            assert!(Instant::now() < deadline, "weir did not stop after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn need(tool: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .unwrap();
    assert!(
        found.status.success(),
        "{tool} is not installed; scripts/test installs it (Debian package kcat)"
    );
}

fn run(cmd: &mut Command, input: Option<&str>) -> Output {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(text) = input {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Produces `n` keyed messages with a header to each of 3 partitions with kcat.
fn kcat_produce(b: &Broker, topic: &str, n: usize, tag: &str) {
    for p in 0..3 {
        let lines: String = (0..n)
            .map(|i| format!("k{p}-{i}:{tag}-{p}-{i}\n"))
            .collect();
        run(
            Command::new("kcat")
                .args([
                    "-b",
                    &b.bootstrap(),
                    "-t",
                    topic,
                    "-p",
                    &p.to_string(),
                    "-K:",
                    "-H",
                    "src=kcat",
                ])
                .args([
                    "-X",
                    "acks=all",
                    "-X",
                    "topic.metadata.refresh.interval.ms=200",
                    "-P",
                ]),
            Some(&lines),
        );
    }
}

/// Reads a whole partition with kcat: (offset, key, value, headers) per line.
fn kcat_consume(b: &Broker, topic: &str, p: i32) -> Vec<String> {
    let out = run(
        Command::new("kcat")
            .args([
                "-b",
                &b.bootstrap(),
                "-t",
                topic,
                "-p",
                &p.to_string(),
                "-C",
                "-o",
                "beginning",
                "-e",
            ])
            .args(["-f", "%o|%k|%s|%h\n"]),
        None,
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn kcat_high_watermark(b: &Broker, topic: &str, p: i32) -> i64 {
    let out = run(
        Command::new("kcat").args(["-b", &b.bootstrap(), "-Q", "-t", &format!("{topic}:{p}:-1")]),
        None,
    );
    let text = String::from_utf8(out.stdout).unwrap();
    text.split_whitespace().last().unwrap().parse().unwrap()
}

fn check_partition(lines: &[String], p: i32, from: usize, n: usize, tag: &str) {
    assert_eq!(lines.len(), from + n, "partition {p}: message count");
    for (i, line) in lines[from..].iter().enumerate() {
        let want = format!("{}|k{p}-{i}|{tag}-{p}-{i}|src=kcat", from + i);
        assert_eq!(line, &want, "partition {p} message {i}");
    }
}

#[test]
fn kcat_produces_and_consumes_with_keys_and_headers() {
    need("kcat");
    let b = Broker::start();
    kcat_produce(&b, "kcat-topic", 1000, "a");
    for p in 0..3 {
        check_partition(&kcat_consume(&b, "kcat-topic", p), p, 0, 1000, "a");
        assert_eq!(kcat_high_watermark(&b, "kcat-topic", p), 1000);
    }
}

#[test]
fn a_restarted_broker_keeps_every_message() {
    need("kcat");
    let mut b = Broker::start();
    kcat_produce(&b, "durable", 500, "before");
    b.stop();
    b.launch();
    kcat_produce(&b, "durable", 100, "after");
    for p in 0..3 {
        let lines = kcat_consume(&b, "durable", p);
        check_partition(&lines[..500], p, 0, 500, "before");
        let after: Vec<String> = lines[500..]
            .iter()
            .enumerate()
            .map(|(i, l)| l.replacen(&format!("{}|", 500 + i), &format!("{i}|"), 1))
            .collect();
        check_partition(&after, p, 0, 100, "after");
    }
}

fn python_roundtrip(client: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/roundtrip.py");
    let b = Broker::start();
    let topic = format!("py-{client}");
    let out = Command::new("python3")
        .arg(&script)
        .args([&b.bootstrap(), &topic, client, "3000", "3"])
        .output()
        .expect("python3 is needed (scripts/test installs the clients)");
    assert!(
        out.status.success(),
        "{client} round trip failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn confluent_kafka_round_trip() {
    python_roundtrip("confluent");
}

#[test]
fn kafka_python_round_trip() {
    python_roundtrip("kafka-python");
}
