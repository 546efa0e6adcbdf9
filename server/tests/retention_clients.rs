//! Deleting records and retention through real clients (clients/retention.py):
//! confluent-kafka's and kafka-python's admin clients delete records, and their
//! consumers, below the new log start, get OFFSET_OUT_OF_RANGE and reset to the
//! earliest offset; on 1 node and on 3 (the partition replicated on each).

mod common;

use std::path::Path;
use std::process::Command;

use common::{Cluster, run_client, weir, weir_stdin};

fn retention(nodes: usize) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/retention.py");
    let c = Cluster::start_with(nodes, "grpc", "");
    run_client(
        &format!("delete records and reset on {nodes} node(s)"),
        Command::new("python3").arg(&script).args([
            &c.all(),
            &format!("ret-{nodes}"),
            &nodes.to_string(),
        ]),
    );
}

#[test]
fn clients_delete_records_and_reset_on_one_node() {
    retention(1);
}

#[test]
fn clients_delete_records_and_reset_on_three_nodes() {
    retention(3);
}

/// `weir topics trim`: the log start moves, consuming from the beginning starts
/// there, `--before end` empties the partition, and an offset past the end is
/// refused with Kafka's error named.
#[test]
fn weir_topics_trim_moves_the_log_start() {
    let c = Cluster::start_with(1, "grpc", "");
    let bs = c.all();
    let ok = |args: &[&str]| {
        let (ok, out) = weir(args);
        assert!(ok, "weir {args:?} failed: {out}");
        out
    };
    ok(&["topics", "-b", &bs, "create", "tr", "--partitions", "2"]);
    let lines: String = (0..100).map(|i| format!("v{i}\n")).collect();
    let (ok_produce, out) = weir_stdin(&["produce", "tr", "-b", &bs, "-p", "1"], &lines);
    assert!(ok_produce, "{out}");
    let out = ok(&[
        "topics", "-b", &bs, "trim", "tr", "-p", "1", "--before", "90",
    ]);
    assert!(out.contains("tr-1: log starts at offset 90"), "{out}");
    let got = ok(&["consume", "tr", "-b", &bs, "-p", "1"]);
    let want: String = (90..100).map(|i| format!("v{i}\n")).collect();
    assert_eq!(got, want);
    let (refused, out) = weir(&[
        "topics", "-b", &bs, "trim", "tr", "-p", "1", "--before", "101",
    ]);
    assert!(!refused && out.contains("OffsetOutOfRange"), "{out}");
    let out = ok(&[
        "topics", "-b", &bs, "trim", "tr", "-p", "1", "--before", "end",
    ]);
    assert!(out.contains("offset 100"), "{out}");
    assert_eq!(ok(&["consume", "tr", "-b", &bs, "-p", "1"]), "");
}
