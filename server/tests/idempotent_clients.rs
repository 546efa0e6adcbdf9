//! Idempotent producers through real clients (clients/idempotent.py):
//! kafka-python 3 with its default settings, confluent-kafka with
//! `enable.idempotence=true`, and kafkajs with `idempotent: true`
//! (clients/js/idempotent.js); on 1 and 3 nodes, every value read back once.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Cluster, run_client, weir};

fn idempotent(client: &str, nodes: usize) -> Cluster {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/idempotent.py");
    let c = Cluster::start_with(nodes, "grpc", "");
    run_client(
        &format!("{client} idempotent producer on {nodes} node(s)"),
        Command::new("python3")
            .arg(&script)
            .args([&c.all(), &format!("idem-{nodes}"), client]),
    );
    c
}

/// `weir producers describe` after kafka-python's idempotent producer wrote
/// 200 records to each of 3 partitions: each partition's leader lists that one
/// producer, epoch 0, last sequence 199; `-p` picks one partition; an unknown
/// partition or topic is an error.
#[test]
fn weir_producers_describe_lists_each_partitions_producers() {
    let c = idempotent("kafka-python", 3);
    let b = c.all();
    let (ok, out) = weir(&["producers", "-b", &b, "describe", "idem-3"]);
    assert!(ok, "{out}");
    let rows: Vec<Vec<&str>> = out
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 3, "{out}");
    let pid = rows[0][1];
    for (p, row) in rows.iter().enumerate() {
        assert_eq!(
            (row[0], row[1], row[2], row[3]),
            (p.to_string().as_str(), pid, "0", "199"),
            "{out}"
        );
        assert!(row[4].parse::<i64>().unwrap() > 0, "{out}");
    }
    let (ok, out) = weir(&["producers", "-b", &b, "describe", "idem-3", "-p", "2"]);
    assert!(
        ok && out.lines().count() == 2 && out.lines().nth(1).unwrap().starts_with("2 "),
        "{out}"
    );
    let (ok, out) = weir(&["producers", "-b", &b, "describe", "idem-3", "-p", "7"]);
    assert!(!ok && out.contains("no partition 7"), "{out}");
    let (ok, out) = weir(&["producers", "-b", &b, "describe", "nope"]);
    assert!(!ok && out.contains("no topic nope"), "{out}");
}

#[test]
fn kafka_python_with_default_settings_produces_idempotently() {
    idempotent("kafka-python", 1);
}

#[test]
fn confluent_kafka_idempotent_producer() {
    idempotent("confluent", 1);
}

fn kafkajs(nodes: usize) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/js");
    assert!(
        dir.join("node_modules/kafkajs/package.json").exists(),
        "kafkajs is not installed; scripts/test installs it (npm ci in {})",
        dir.display()
    );
    let c = Cluster::start_with(nodes, "grpc", "");
    run_client(
        &format!("kafkajs idempotent producer on {nodes} node(s)"),
        Command::new("node")
            .arg(dir.join("idempotent.js"))
            .args([&c.all(), &format!("idem-js-{nodes}")])
            .env("KAFKAJS_NO_PARTITIONER_WARNING", "1"),
    );
}

#[test]
fn kafkajs_idempotent_producer() {
    kafkajs(1);
}

#[test]
fn idempotent_producers_on_three_nodes() {
    idempotent("confluent", 3);
    kafkajs(3);
}
