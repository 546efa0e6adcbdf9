//! A consumer group through the kill -9 of its coordinator's node (3 nodes):
//! the members go on with the new coordinator, read every record, and every
//! offset commit acknowledged before the kill is still there. The negative
//! control (a coordinator that keeps offsets in memory only) fails the same
//! check.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::path::Path;
use std::process::Command;

use common::{Cluster, run_with_cue};

/// Runs clients/failover_groups.py, killing the coordinator's node once it is
/// READY; returns whether it passed, and its output.
fn failover(config: &str, protocol: &str) -> (bool, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/failover_groups.py");
    // One coordinator partition: its leader is the group's coordinator.
    let mut c = Cluster::start_with(3, "grpc", &format!("group_partitions = 1\n{config}"));
    let all = c.all();
    run_with_cue(
        Command::new("python3")
            .arg(&script)
            .args([&all, "failover", protocol]),
        || {
            let coordinator = c.leader("__consumer_offsets");
            c.kill9(coordinator - 1);
            format!("killed node {coordinator}, the coordinator")
        },
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
