//! Idempotent producers through real clients (clients/idempotent.py):
//! kafka-python 3 with its default settings, confluent-kafka with
//! `enable.idempotence=true`, and kafkajs with `idempotent: true`
//! (clients/js/idempotent.js); on 1 and 3 nodes, every value read back once.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Cluster, run_client};

fn idempotent(client: &str, nodes: usize) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/idempotent.py");
    let c = Cluster::start_with(nodes, "grpc", "");
    run_client(
        &format!("{client} idempotent producer on {nodes} node(s)"),
        Command::new("python3")
            .arg(&script)
            .args([&c.all(), &format!("idem-{nodes}"), client]),
    );
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
    idempotent("kafka-python", 3);
    idempotent("confluent", 3);
    kafkajs(3);
}
