//! The admin listener (issue 21): `/metrics` parsed by a real parser
//! (prometheus_client's, clients/parse_metrics.py) moves by exactly the
//! requests made; `/health/live`, `/health/ready` (503 on a node cut off from
//! its peers, 200 after the heal) and `/v1/cluster`.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Cluster;
use weir_server::client::Client;

type Samples = Vec<(String, BTreeMap<String, String>, f64)>;

/// `/metrics` of node `i`, parsed.
fn scrape(c: &Cluster, i: usize) -> Samples {
    let (status, body) = c.admin_get(i, "/metrics");
    assert_eq!(status, 200, "{body}");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/parse_metrics.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("parser");
    assert!(
        out.status.success(),
        "the parser refused /metrics: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json");
            let labels = v["labels"]
                .as_object()
                .expect("labels")
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect();
            (
                v["name"].as_str().expect("name").to_string(),
                labels,
                v["value"].as_f64().expect("value"),
            )
        })
        .collect()
}

/// The sum of `name`'s samples whose labels include `with`.
fn sum(s: &Samples, name: &str, with: &[(&str, &str)]) -> f64 {
    s.iter()
        .filter(|(n, l, _)| {
            n == name
                && with
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| v)
        .sum()
}

#[test]
fn metrics_move_by_exactly_the_requests_made() {
    let c = Cluster::start(1, "tcp");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let bs = c.all();
    let mut client = Client::new(&bs);
    rt.block_on(client.create_topic("met", 2, 1, &[]))
        .expect("create");
    let compacted = [("cleanup.policy".to_string(), "compact".to_string())];
    rt.block_on(client.create_topic("metc", 1, 1, &compacted))
        .expect("create");
    // The client's setup (metadata) is done before the first scrape.
    rt.block_on(client.metadata(Some(&["met", "metc"])))
        .expect("metadata");
    let before = scrape(&c, 0);
    let batch = bytes::Bytes::from(
        weir_server::tools::encode_batch(
            &[(None, Some(bytes::Bytes::from_static(b"v")))],
            0,
            kafka_protocol::records::Compression::None,
        )
        .expect("batch")
        .to_vec(),
    );
    for _ in 0..7 {
        rt.block_on(client.produce("met", 0, batch.clone()))
            .expect("produce");
    }
    // A record without a key in a compacted topic: refused, and counted.
    assert!(
        rt.block_on(client.produce("metc", 0, batch.clone()))
            .is_err()
    );
    for _ in 0..3 {
        rt.block_on(client.fetch("met", 0, 0, Duration::ZERO))
            .expect("fetch");
    }
    let after = scrape(&c, 0);
    let delta =
        |name: &str, with: &[(&str, &str)]| sum(&after, name, with) - sum(&before, name, with);
    assert_eq!(
        delta("weir_kafka_requests_total", &[("api", "Produce")]),
        8.0
    );
    assert_eq!(delta("weir_kafka_requests_total", &[("api", "Fetch")]), 3.0);
    assert_eq!(
        delta(
            "weir_kafka_request_duration_seconds_count",
            &[("api", "Produce")]
        ),
        8.0
    );
    assert_eq!(
        delta(
            "weir_kafka_errors_total",
            &[("api", "Produce"), ("error", "InvalidRecord")]
        ),
        1.0
    );
    assert!(delta("weir_kafka_request_bytes_total", &[("api", "Produce")]) > 0.0);
    assert!(delta("weir_kafka_response_bytes_total", &[("api", "Fetch")]) > 0.0);
    // Per-partition Raft state, and the node as a whole.
    assert_eq!(
        sum(&after, "weir_raft_leader", &[("topic", "met")]),
        2.0,
        "this node leads both partitions"
    );
    assert_eq!(
        sum(
            &after,
            "weir_partition_high_watermark",
            &[("topic", "met"), ("partition", "0")]
        ),
        7.0
    );
    assert!(sum(&after, "weir_process_resident_memory_bytes", &[]) > 0.0);
    // The core's counters: the produced entries were appended and synced,
    // each partition got a leader; the engine's files are counted.
    assert!(delta("weir_storage_append_bytes_total", &[("kind", "partition")]) > 0.0);
    assert!(delta("weir_storage_syncs_total", &[("engine", "segment")]) >= 1.0);
    assert!(
        sum(&after, "weir_storage_sync_duration_seconds_count", &[])
            >= sum(&after, "weir_storage_syncs_total", &[]),
        "every sync is timed"
    );
    assert!(
        sum(
            &after,
            "weir_raft_leader_changes_total",
            &[("kind", "partition")]
        ) >= 3.0
    );
    assert!(
        sum(
            &after,
            "weir_raft_leader_changes_total",
            &[("kind", "metadata")]
        ) >= 1.0
    );
    for zero in [
        "weir_raft_proposals_dropped_total",
        "weir_raft_snapshots_sent_total",
        "weir_raft_snapshots_installed_total",
        "weir_cleaner_records_removed_total",
    ] {
        assert!(
            after.iter().any(|(n, _, _)| n == zero),
            "{zero} exists before its first event"
        );
    }
    assert!(sum(&after, "weir_storage_wal_files", &[]) >= 1.0);
    assert!(sum(&after, "weir_storage_partition_bytes", &[("topic", "met")]) > 0.0);
    assert!(
        sum(&after, "weir_storage_bytes", &[]) >= sum(&after, "weir_storage_partition_bytes", &[])
    );
    assert!(sum(&after, "weir_tokio_workers", &[]) >= 1.0);
    assert_eq!(sum(&after, "weir_partitions_under_replicated", &[]), 0.0);
    assert!(sum(&after, "weir_kafka_connections_open", &[]) >= 1.0);
    // Health and the cluster view.
    assert_eq!(c.admin_get(0, "/health/live").0, 200);
    assert_eq!(c.admin_get(0, "/health/ready").0, 200);
    let (status, body) = c.admin_get(0, "/v1/cluster");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).expect("cluster json");
    let met = v["topics"]
        .as_array()
        .expect("topics")
        .iter()
        .find(|t| t["name"] == "met")
        .expect("topic met");
    assert_eq!(met["partitions"][0]["raft"]["high_watermark"], 7);
    assert_eq!(v["brokers"][0]["id"], 1);
}

/// Waits up to 30 s until `GET /health/ready` on node `i` answers `want`.
fn ready_becomes(c: &Cluster, i: usize, want: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = c.admin_get(i, "/health/ready");
        if status == want {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "node {} stayed {status} ({body}), not {want}",
            i + 1
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_node_cut_off_from_its_peers_is_not_ready_until_healed() {
    let c = Cluster::start_proxied_with(3, "tcp", "");
    for i in 0..3 {
        ready_becomes(&c, i, 200);
    }
    c.isolate(2);
    let why = ready_becomes(&c, 2, 503);
    assert!(why.contains("metadata group has no leader"), "{why}");
    c.heal();
    ready_becomes(&c, 2, 200);
}
