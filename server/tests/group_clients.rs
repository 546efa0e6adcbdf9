//! Consumer groups through real clients (subscribe(), the way applications
//! consume): confluent-kafka, kafka-python 3 and kafkajs members of one group
//! share a topic's partitions, take over a leaving member's, resume at committed
//! offsets, and (Python clients) keep a static member's partitions across its
//! restart — on one node and on a three-node cluster.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::path::Path;
use std::process::Command;

use common::{Cluster, run_client, weir};

fn python_groups(client: &str, nodes: usize) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/groups.py");
    let c = Cluster::start_with(nodes, "grpc", "engine = \"segment\"\n");
    run_client(
        &format!("{client} groups on {nodes} node(s)"),
        Command::new("python3")
            .arg(&script)
            .args([&c.all(), &format!("groups-{nodes}"), client]),
    );
}

#[test]
fn confluent_kafka_consumer_groups() {
    python_groups("confluent", 1);
}

#[test]
fn kafka_python_consumer_groups() {
    python_groups("kafka-python", 1);
}

/// The consumer group protocol (KIP-848, `group.protocol=consumer`): the
/// coordinator assigns with its server-side assignor and members reconcile
/// incrementally; the same checks, and a member joining while others consume.
#[test]
fn confluent_kafka_consumer_protocol_groups() {
    python_groups("confluent-consumer", 1);
}

/// Incremental rebalancing (KIP-429): the client runs it over the classic
/// protocol; the coordinator relays it as it relays eager assignments.
#[test]
fn confluent_kafka_cooperative_consumer_groups() {
    python_groups("confluent-cooperative", 1);
}

#[test]
fn confluent_kafka_consumer_groups_on_three_nodes() {
    python_groups("confluent", 3);
}

#[test]
fn confluent_kafka_consumer_protocol_groups_on_three_nodes() {
    python_groups("confluent-consumer", 3);
}

#[test]
fn kafkajs_consumer_groups() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/js");
    assert!(
        dir.join("node_modules/kafkajs/package.json").exists(),
        "kafkajs is not installed; scripts/test installs it (npm ci in {})",
        dir.display()
    );
    let c = Cluster::start_with(1, "grpc", "engine = \"segment\"\n");
    run_client(
        "kafkajs groups",
        Command::new("node")
            .arg(dir.join("groups.js"))
            .args([&c.bootstrap(0), "groups-js"])
            .env("KAFKAJS_NO_PARTITIONER_WARNING", "1"),
    );
}

/// confluent-kafka's AdminClient lists, describes, resets and deletes a group
/// (clients/admin_groups.py).
#[test]
fn confluent_kafka_admin_manages_groups() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/admin_groups.py");
    let c = Cluster::start_with(1, "grpc", "engine = \"segment\"\n");
    run_client(
        "confluent-kafka group admin",
        Command::new("python3")
            .arg(&script)
            .args([&c.bootstrap(0), "groups-admin"]),
    );
}

/// `weir groups`: reset a group's offsets (creating it), describe it with its
/// lag, list it, delete it.
#[test]
fn weir_groups_cli_resets_describes_lists_and_deletes() {
    let c = Cluster::start_with(1, "grpc", "");
    let b = c.bootstrap(0);
    let (ok, out) = weir(&["topics", "-b", &b, "create", "cli", "--partitions", "2"]);
    assert!(ok, "{out}");
    let lines = (0..10).map(|i| format!("r{i}\n")).collect::<String>();
    let mut p = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["produce", "-b", &b, "cli", "-p", "0"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut p.stdin.take().unwrap(), lines.as_bytes()).unwrap();
    assert!(p.wait().unwrap().success());

    let (ok, out) = weir(&[
        "groups", "-b", &b, "reset", "g", "--topic", "cli", "--to", "4",
    ]);
    assert!(
        ok && out.contains("g: cli-0 -> 4") && out.contains("g: cli-1 -> 4"),
        "{out}"
    );
    let (ok, out) = weir(&["groups", "-b", &b, "describe", "g"]);
    assert!(ok && out.contains("group g: Empty, 0 member(s)"), "{out}");
    let row = out
        .lines()
        .find(|l| l.starts_with("cli ") && l.contains(" 0 "))
        .unwrap_or_default();
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols.get(1..5), Some(&["0", "4", "10", "6"][..]), "{out}");
    let (ok, out) = weir(&[
        "groups", "-b", &b, "reset", "g", "--topic", "cli", "--to", "latest",
    ]);
    assert!(ok && out.contains("g: cli-0 -> 10"), "{out}");
    let (ok, out) = weir(&["groups", "-b", &b, "list"]);
    assert!(
        ok && out
            .lines()
            .any(|l| l.starts_with("g ") && l.contains("Empty")),
        "{out}"
    );
    let (ok, out) = weir(&["groups", "-b", &b, "delete", "g"]);
    assert!(ok, "{out}");
    let (ok, out) = weir(&["groups", "-b", &b, "delete", "g"]);
    assert!(!ok && out.contains("does not exist"), "{out}");
    let (ok, out) = weir(&[
        "groups", "-b", &b, "reset", "g", "--topic", "cli", "--to", "soon",
    ]);
    assert!(
        !ok && out.contains("want earliest, latest or an offset"),
        "{out}"
    );
}

/// Commits pipelined on one connection (as clients' asynchronous commits are)
/// are applied in the order they were sent: the last one sent is what stays.
#[test]
fn pipelined_commits_are_applied_in_the_order_they_were_sent() {
    let c = Cluster::start_with(1, "grpc", "");
    let b = c.bootstrap(0);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut client = weir_server::client::Client::new(&b);
        let mut left = 2_000;
        let acked = client
            .commit_pipelined(
                "ordered",
                "t",
                32,
                || {
                    left -= 1;
                    left >= 0
                },
                |_| {},
            )
            .await
            .unwrap();
        assert_eq!(acked, 2_000);
        let committed = client.committed_offsets("ordered").await.unwrap();
        assert_eq!(committed, vec![("t".to_string(), 0, 1_999)]);
    });
}

/// `weir consume --group`: a member reads what the group has not consumed yet
/// and commits it; the next member resumes after it.
#[test]
fn weir_consume_with_a_group_resumes_where_the_group_left_off() {
    let c = Cluster::start_with(1, "grpc", "");
    let b = c.bootstrap(0);
    let (ok, out) = weir(&["topics", "-b", &b, "create", "gc", "--partitions", "3"]);
    assert!(ok, "{out}");
    let produce = |p: &str, lines: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["produce", "-b", &b, "gc", "-p", p])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), lines.as_bytes()).unwrap();
        assert!(child.wait().unwrap().success());
    };
    for p in ["0", "1", "2"] {
        produce(
            p,
            &(0..4).map(|i| format!("p{p}-{i}\n")).collect::<String>(),
        );
    }
    let consume = || {
        let out = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["consume", "-b", &b, "gc", "--group", "cg"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        lines.sort();
        lines
    };
    let first = consume();
    assert_eq!(first.len(), 12, "{first:?}");
    assert!(consume().is_empty(), "the group's offsets were committed");
    produce("1", "late\n");
    assert_eq!(consume(), vec!["late".to_string()]);
    let (ok, out) = weir(&["groups", "-b", &b, "describe", "cg"]);
    assert!(ok && out.contains("group cg: Empty"), "{out}");
}
