//! A consumer group through the kill -9 of its coordinator's node (3 nodes):
//! the members go on with the new coordinator, read every record, and every
//! offset commit acknowledged before the kill is still there. The negative
//! control (a coordinator that keeps offsets in memory only) fails the same
//! check.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::Cluster;

/// Runs clients/failover_groups.py, killing the coordinator's node once it is
/// READY; returns whether it passed, and its output.
fn failover(config: &str, protocol: &str) -> (bool, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/failover_groups.py");
    // One coordinator partition: its leader is the group's coordinator.
    let mut c = Cluster::start_with(3, "grpc", &format!("group_partitions = 1\n{config}"));
    let mut child = Command::new("python3")
        .arg(&script)
        .args([&c.all(), "failover", protocol])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs (scripts/test installs confluent-kafka)");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut out = String::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(line) => {
                out.push_str(&line);
                out.push('\n');
                if line == "READY" {
                    break;
                }
            }
            Err(_) => {
                let _ = child.kill();
                let o = child.wait_with_output().unwrap();
                return (
                    false,
                    format!("{out}{}", String::from_utf8_lossy(&o.stderr)),
                );
            }
        }
    }
    let coordinator = c.leader("__consumer_offsets");
    c.kill9(coordinator - 1);
    out.push_str(&format!("killed node {coordinator}, the coordinator\n"));
    child.stdin.take().unwrap().write_all(b"killed\n").unwrap();
    let o = child.wait_with_output().unwrap();
    while let Ok(line) = rx.try_recv() {
        out.push_str(&line);
        out.push('\n');
    }
    (
        o.status.success(),
        format!("{out}{}", String::from_utf8_lossy(&o.stderr)),
    )
}

#[test]
fn a_group_survives_the_kill_of_its_coordinator() {
    let (ok, out) = failover("", "classic");
    assert!(ok, "{out}");
    assert!(out.contains("failover_groups: ok"), "{out}");
    eprintln!("{out}");
}

/// The same with the consumer group protocol (KIP-848): the new coordinator
/// continues from the replicated group state.
#[test]
fn a_consumer_protocol_group_survives_the_kill_of_its_coordinator() {
    let (ok, out) = failover("", "consumer");
    assert!(ok, "{out}");
    assert!(out.contains("failover_groups: ok"), "{out}");
    eprintln!("{out}");
}

/// Negative control: with offsets kept only in the coordinator's memory, the
/// check above must fail.
#[cfg(feature = "negative-controls")]
#[test]
fn the_failover_check_catches_a_coordinator_that_does_not_replicate_offsets() {
    let (ok, out) = failover("unsafe_group_offsets_in_memory = true\n", "classic");
    assert!(
        !ok && out.contains("acknowledged before the kill are gone"),
        "the failover check did not notice lost offsets:\n{out}"
    );
}
