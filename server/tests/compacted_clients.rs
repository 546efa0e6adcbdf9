//! A compacted topic through real clients (clients/compacted.py): producers in
//! every codec, the brokers' cleaners, then confluent-kafka's and
//! kafka-python's consumers reading the topic from the start, on 3 nodes.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Cluster, run_client};

#[test]
fn clients_read_a_compacted_topic_from_the_start() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/compacted.py");
    let c = Cluster::start_with(3, "tcp", "cleaner_check_interval_ms = 200\n");
    run_client(
        "read a compacted topic",
        Command::new("python3")
            .arg(&script)
            .args([&c.all(), "compacted", "3"]),
    );
}
