//! Real Kafka clients against `weir serve` processes on 127.0.0.1: kcat
//! (librdkafka), confluent-kafka and kafka-python. `scripts/test` installs them.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use common::{Cluster, free_port, run_client};

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A `weir serve` child process, killed when dropped.
struct Broker {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    engine: &'static str,
}

impl Broker {
    /// A broker on the default (segment) engine.
    fn start() -> Broker {
        Broker::start_on("segment")
    }

    fn start_on(engine: &'static str) -> Broker {
        let dir = tempfile::tempdir().unwrap();
        let mut b = Broker {
            child: None,
            port: free_port(),
            dir,
            engine,
        };
        b.launch();
        b
    }

    fn launch(&mut self) {
        let config = self.dir.path().join("weir.toml");
        std::fs::write(
            &config,
            format!(
                "default_partitions = 3\nraft_tick_ms = 20\nengine = \"{}\"\n",
                self.engine
            ),
        )
        .unwrap();
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
    kcat_round_trip("segment");
}

fn kcat_round_trip(engine: &'static str) {
    need("kcat");
    let b = Broker::start_on(engine);
    kcat_produce(&b, "kcat-topic", 1000, "a");
    for p in 0..3 {
        check_partition(&kcat_consume(&b, "kcat-topic", p), p, 0, 1000, "a");
        assert_eq!(kcat_high_watermark(&b, "kcat-topic", p), 1000);
    }
}

#[test]
fn a_restarted_broker_keeps_every_message() {
    restart_keeps_every_message("segment");
}

fn restart_keeps_every_message(engine: &'static str) {
    need("kcat");
    let mut b = Broker::start_on(engine);
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
    python_roundtrip_on(client, "segment");
}

fn python_roundtrip_on(client: &str, engine: &'static str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/roundtrip.py");
    let b = Broker::start_on(engine);
    let topic = format!("py-{client}");
    run_client(
        &format!("{client} round trip"),
        Command::new("python3")
            .arg(&script)
            .args([&b.bootstrap(), &topic, client, "3000", "3"]),
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

/// kafkajs, a pure-JavaScript client: create a topic and produce at once (no
/// retries), gzip, offsets for a time inside a batch, DescribeConfigs defaults,
/// metadata (server/tests/clients/js/admin.js; its consumers, which use groups,
/// are group_clients.rs's).
#[test]
fn kafkajs_creates_produces_and_looks_up() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/js");
    assert!(
        dir.join("node_modules/kafkajs/package.json").exists(),
        "kafkajs is not installed; scripts/test installs it (npm ci in {})",
        dir.display()
    );
    let b = Broker::start();
    run_client(
        "kafkajs",
        Command::new("node")
            .arg(dir.join("admin.js"))
            .args([&b.bootstrap(), "kjs"])
            .env("KAFKAJS_NO_PARTITIONER_WARNING", "1"),
    );
}

/// confluent-kafka's AdminClient: create a topic with a config, Metadata right
/// after it (leaders known), DescribeConfigs of the topic and of the broker.
#[test]
fn confluent_kafka_admin_creates_and_describes() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/describe_configs.py");
    let b = Broker::start();
    run_client(
        "confluent-kafka admin",
        Command::new("python3")
            .arg(&script)
            .args([&b.bootstrap(), "described"]),
    );
}

fn kcat_lines(bootstrap: &str, topic: &str, lines: &str) {
    run(
        Command::new("kcat")
            .args([
                "-b", bootstrap, "-t", topic, "-p", "0", "-P", "-X", "acks=all",
            ])
            .args([
                "-X",
                "message.timeout.ms=30000",
                "-X",
                "topic.metadata.refresh.interval.ms=200",
            ]),
        Some(lines),
    );
}

fn kcat_all(bootstrap: &str, topic: &str) -> Vec<String> {
    let out = run(
        Command::new("kcat").args([
            "-b",
            bootstrap,
            "-t",
            topic,
            "-p",
            "0",
            "-C",
            "-o",
            "beginning",
            "-e",
        ]),
        None,
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn three_node_cluster_serves_clients_through_a_node_that_leads_nothing_grpc() {
    three_node_cluster_serves_clients_through_a_node_that_leads_nothing("grpc");
}

#[cfg(feature = "transport-tcp")]
#[test]
fn three_node_cluster_serves_clients_through_a_node_that_leads_nothing_tcp() {
    three_node_cluster_serves_clients_through_a_node_that_leads_nothing("tcp");
}

fn three_node_cluster_serves_clients_through_a_node_that_leads_nothing(transport: &'static str) {
    need("kcat");
    let c = Cluster::start(3, transport);
    // Auto-create through node 1 (replication 3), then find a node that leads nothing.
    kcat_lines(&c.bootstrap(0), "replicated", "first\n");
    let leader = c.leader("replicated");
    let other = (1..=3).find(|&n| n != leader).unwrap();
    let lines: String = (0..2000).map(|i| format!("m{i}\n")).collect();
    kcat_lines(&c.bootstrap(other - 1), "replicated", &lines);
    let got = kcat_all(&c.bootstrap(other - 1), "replicated");
    assert_eq!(got.len(), 2001);
    assert_eq!(got[0], "first");
    for (i, l) in got[1..].iter().enumerate() {
        assert_eq!(l, &format!("m{i}"));
    }
    assert!(
        c.metadata(&c.bootstrap(other - 1), "replicated")
            .contains("replicas: "),
        "metadata lists replicas"
    );
    // A real client library against the cluster, bootstrapped through one node.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/roundtrip.py");
    let out = Command::new("python3")
        .arg(&script)
        .args([&c.bootstrap(other - 1), "py3", "confluent", "1500", "3"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn killing_the_leader_keeps_producing_and_the_node_catches_up_grpc() {
    killing_the_leader_keeps_producing_and_the_node_catches_up("grpc");
}

#[cfg(feature = "transport-tcp")]
#[test]
fn killing_the_leader_keeps_producing_and_the_node_catches_up_tcp() {
    killing_the_leader_keeps_producing_and_the_node_catches_up("tcp");
}

fn killing_the_leader_keeps_producing_and_the_node_catches_up(transport: &'static str) {
    kill_leader_on(transport, "segment");
}

fn kill_leader_on(transport: &'static str, engine: &'static str) {
    need("kcat");
    let mut c = Cluster::start_with(3, transport, &format!("engine = \"{engine}\"\n"));
    kcat_lines(&c.all(), "failover", "v0\n");
    let leader = c.leader("failover");
    let before: String = (1..500).map(|i| format!("v{i}\n")).collect();
    kcat_lines(&c.all(), "failover", &before);
    c.kill9(leader - 1);
    // Producing goes on through the new leader.
    let after: String = (500..1000).map(|i| format!("v{i}\n")).collect();
    kcat_lines(&c.all(), "failover", &after);
    let new_leader = c.leader("failover");
    assert_ne!(new_leader, leader);
    c.launch(leader - 1);
    let got = kcat_all(&c.all(), "failover");
    // Every acknowledged value exactly once, in order (kcat retries could only
    // duplicate, which would show here).
    let want: Vec<String> = (0..1000).map(|i| format!("v{i}")).collect();
    assert_eq!(got, want);
    // The restarted node catches up: make it leader-eligible by waiting until
    // metadata lists it in the ISR again.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !isr_has(&c.metadata(&c.all(), "failover"), leader) {
        assert!(
            Instant::now() < deadline,
            "restarted node {leader} never caught up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn isr_has(metadata: &str, node: usize) -> bool {
    metadata
        .lines()
        .find(|l| l.contains("partition 0,"))
        .and_then(|l| l.split("isrs: ").nth(1))
        .is_some_and(|isr| isr.split(',').any(|n| n.trim() == node.to_string()))
}

#[test]
fn compressed_batches_are_stored_and_served_as_sent() {
    need("kcat");
    let b = Broker::start();
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("z-{codec}");
        let lines: String = (0..300)
            .map(|i| format!("{codec}-{i}-{}\n", "abc".repeat(i % 20)))
            .collect();
        run(
            Command::new("kcat")
                .args([
                    "-b",
                    &b.bootstrap(),
                    "-t",
                    &topic,
                    "-p",
                    "0",
                    "-P",
                    "-z",
                    codec,
                ])
                .args(["-X", "acks=all", "-X", "linger.ms=50"]),
            Some(&lines),
        );
        let out = run(
            Command::new("kcat").args([
                "-b",
                &b.bootstrap(),
                "-t",
                &topic,
                "-p",
                "0",
                "-C",
                "-o",
                "beginning",
                "-e",
            ]),
            None,
        );
        let got = String::from_utf8(out.stdout).unwrap();
        assert_eq!(got, lines, "{codec} round trip");
        // Stored with the codec kcat was asked for: librdkafka before 2.11.1
        // compresses only when the broker advertises Produce v0 (KAFKA-18659),
        // and silently sent these uncompressed before weir did.
        let want = match codec {
            "gzip" => 1,
            "snappy" => 2,
            "lz4" => 3,
            _ => 4,
        };
        // (librdkafka sends a batch uncompressed when compressing would not
        // shrink it, so a small one may be stored with codec 0.)
        let seen = stored_codecs(&b.bootstrap(), &topic);
        assert!(
            seen.contains(&want) && seen.iter().all(|&c| c == want || c == 0),
            "{codec}: batches stored with codecs {seen:?}"
        );
    }
}

/// The compression codec of every batch stored in partition 0 of `topic`.
fn stored_codecs(bootstrap: &str, topic: &str) -> Vec<u8> {
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    rt.block_on(async {
        let mut client = weir_server::client::Client::new(bootstrap);
        let (bytes, _) = client
            .fetch(topic, 0, 0, Duration::ZERO)
            .await
            .expect("fetch");
        let codecs: Vec<u8> = weir_core::batch::iter_batches(&bytes)
            .map(|b| b.expect("a whole batch").0.compression())
            .collect();
        assert!(!codecs.is_empty(), "nothing stored in {topic}");
        codecs
    })
}

fn weir(args: &[&str], input: Option<&str>) -> String {
    let out = run(Command::new(env!("CARGO_BIN_EXE_weir")).args(args), input);
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn weir_cli_topics_produce_consume() {
    let b = Broker::start();
    let bs = b.bootstrap();
    weir(
        &[
            "topics",
            "-b",
            &bs,
            "create",
            "cli",
            "--partitions",
            "2",
            "--config",
            "retention.ms=60000",
        ],
        None,
    );
    assert_eq!(weir(&["topics", "-b", &bs, "list"], None), "cli\n");
    let d = weir(&["topics", "-b", &bs, "describe", "cli"], None);
    assert!(
        d.contains("2 partitions") && d.contains("partition 1: leader 1"),
        "{d}"
    );
    let lines: String = (0..1500).map(|i| format!("k{i}:v{i}\n")).collect();
    weir(
        &[
            "produce",
            "cli",
            "-b",
            &bs,
            "-p",
            "1",
            "--key-separator",
            ":",
        ],
        Some(&lines),
    );
    let got = weir(&["consume", "cli", "-b", &bs, "-p", "1", "--verbose"], None);
    let want: String = (0..1500).map(|i| format!("{i} k{i} v{i}\n")).collect();
    assert_eq!(got, want);
    assert_eq!(
        weir(
            &["consume", "cli", "-b", &bs, "-p", "1", "--from", "1498"],
            None
        ),
        "v1498\nv1499\n"
    );
    weir(&["topics", "-b", &bs, "delete", "cli"], None);
    assert_eq!(weir(&["topics", "-b", &bs, "list"], None), "");
    let missing = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["topics", "-b", &bs, "describe", "nope"])
        .output()
        .unwrap();
    assert!(
        !missing.status.success(),
        "describing a missing topic fails"
    );
    assert_eq!(
        weir(&["topics", "-b", &bs, "list"], None),
        "",
        "describe must not create the topic"
    );
}

#[test]
fn weir_bench_produces_and_consumes() {
    let b = Broker::start();
    let out = weir(
        &[
            "bench",
            "e2e",
            "-b",
            &b.bootstrap(),
            "--records",
            "5000",
            "--batch",
            "100",
            "--record-size",
            "200",
            "--json",
        ],
        None,
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].contains("\"mode\":\"produce\"") && lines[0].contains("\"records\":5000"),
        "{out}"
    );
    assert!(
        lines[1].contains("\"mode\":\"consume\"") && lines[1].contains("\"records\":5000"),
        "{out}"
    );
    // One producer for all four partitions, low steady load for one second, then
    // two consumers.
    let out = weir(
        &[
            "bench",
            "e2e",
            "-b",
            &b.bootstrap(),
            "--topic",
            "timed",
            "--duration",
            "1",
            "--producers",
            "1",
            "--batch",
            "1",
            "--linger-ms",
            "5",
            "--consumers",
            "2",
            "--json",
        ],
        None,
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    let records = |l: &str| -> u64 {
        l.split("\"records\":")
            .nth(1)
            .and_then(|r| r.split(',').next())
            .unwrap()
            .parse()
            .unwrap()
    };
    let produced = records(lines[0]);
    assert!(produced >= 4 && produced % 4 == 0, "{out}");
    assert_eq!(records(lines[1]), produced, "{out}");
}

/// The real-client tests again on each optional engine compiled in (CI builds both).
macro_rules! engine_client_tests {
    ($feature:literal, $engine:ident) => {
        #[cfg(feature = $feature)]
        mod $engine {
            use super::*;

            #[test]
            fn kcat_round_trip() {
                super::kcat_round_trip(stringify!($engine));
            }

            #[test]
            fn a_restarted_broker_keeps_every_message() {
                restart_keeps_every_message(stringify!($engine));
            }

            #[test]
            fn confluent_kafka_round_trip() {
                python_roundtrip_on("confluent", stringify!($engine));
            }

            #[test]
            fn kafka_python_round_trip() {
                python_roundtrip_on("kafka-python", stringify!($engine));
            }

            #[test]
            fn killing_the_leader_keeps_producing_and_the_node_catches_up() {
                kill_leader_on("grpc", stringify!($engine));
            }
        }
    };
}

engine_client_tests!("engine-rocksdb", rocksdb);
engine_client_tests!("engine-redb", redb);
