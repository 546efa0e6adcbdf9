//! Prometheus metrics (issue 21, README "Metrics"): the process-wide recorder
//! (`metrics` with its Prometheus exporter), what the Kafka listener records
//! on every request, and what a scrape reads from the node at that moment
//! (Raft groups, storage, the process).
//!
//! Hot-path metrics are counters and histograms keyed by a small, fixed label
//! set (API name, version, error name); the `metrics` facade updates them with
//! atomics. Per-partition gauges are not kept up to date as things happen: a
//! scrape sets them from the groups' status, so they cost nothing between
//! scrapes, and above `metrics_max_partitions` hosted groups only aggregates
//! are exported.

use std::sync::OnceLock;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ApiKey;
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use weir_core::{GroupId, Node, Role};

/// Latency buckets (seconds) for request and fsync histograms: 100 µs to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();

/// The process's Prometheus recorder, installed on first use. One per process:
/// brokers started in one process (tests) share it.
///
/// # Errors
/// When another recorder was installed first.
pub fn handle() -> anyhow::Result<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_string()), LATENCY_BUCKETS)
                .and_then(|b| b.install_recorder())
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| anyhow::anyhow!("installing the metrics recorder: {e}"))
}

/// The API's name as a label value (`Produce`, `Fetch`, …).
pub fn api_name(key: ApiKey) -> &'static str {
    match key {
        ApiKey::Produce => "Produce",
        ApiKey::Fetch => "Fetch",
        ApiKey::ListOffsets => "ListOffsets",
        ApiKey::Metadata => "Metadata",
        ApiKey::OffsetCommit => "OffsetCommit",
        ApiKey::OffsetFetch => "OffsetFetch",
        ApiKey::FindCoordinator => "FindCoordinator",
        ApiKey::JoinGroup => "JoinGroup",
        ApiKey::Heartbeat => "Heartbeat",
        ApiKey::LeaveGroup => "LeaveGroup",
        ApiKey::SyncGroup => "SyncGroup",
        ApiKey::DescribeGroups => "DescribeGroups",
        ApiKey::ListGroups => "ListGroups",
        ApiKey::ApiVersions => "ApiVersions",
        ApiKey::CreateTopics => "CreateTopics",
        ApiKey::DeleteTopics => "DeleteTopics",
        ApiKey::DeleteRecords => "DeleteRecords",
        ApiKey::InitProducerId => "InitProducerId",
        ApiKey::OffsetForLeaderEpoch => "OffsetForLeaderEpoch",
        ApiKey::DescribeConfigs => "DescribeConfigs",
        ApiKey::AlterConfigs => "AlterConfigs",
        ApiKey::DeleteGroups => "DeleteGroups",
        ApiKey::IncrementalAlterConfigs => "IncrementalAlterConfigs",
        ApiKey::OffsetDelete => "OffsetDelete",
        ApiKey::DescribeProducers => "DescribeProducers",
        ApiKey::ConsumerGroupHeartbeat => "ConsumerGroupHeartbeat",
        ApiKey::ConsumerGroupDescribe => "ConsumerGroupDescribe",
        _ => "Other",
    }
}

/// Records one answered request (handles registered on the API's first
/// request: the recorder must be installed before, see [`handle`]): its count, latency (from its arrival to its
/// response, a produce with acks=all to its acknowledgement) and bytes.
pub fn request_done(
    key: ApiKey,
    version: i16,
    elapsed: Duration,
    bytes_in: usize,
    bytes_out: usize,
) {
    let m = api_metrics(key);
    if let Some(slot) = usize::try_from(version)
        .ok()
        .and_then(|v| m.requests.get(v))
    {
        let api = api_name(key);
        slot.get_or_init(|| {
            counter!("weir_kafka_requests_total", "api" => api, "version" => version_label(version))
        })
        .increment(1);
    }
    m.duration.record(elapsed.as_secs_f64());
    m.bytes_in.increment(bytes_in as u64);
    m.bytes_out.increment(bytes_out as u64);
}

/// Records an error code (non-zero) in a response to a `key` request.
pub fn request_error(key: ApiKey, code: i16) {
    counter!("weir_kafka_errors_total", "api" => api_name(key), "error" => error_name(code))
        .increment(1);
}

/// One API's request metrics, registered once: a request then costs a few
/// atomic updates, no registry lookup.
struct ApiMetrics {
    /// By version, registered on first use.
    requests: [OnceLock<metrics::Counter>; 20],
    duration: metrics::Histogram,
    bytes_in: metrics::Counter,
    bytes_out: metrics::Counter,
}

/// Kafka API keys below this are cached (every key weir answers is).
const API_KEYS: usize = 128;
static APIS: [OnceLock<ApiMetrics>; API_KEYS] = [const { OnceLock::new() }; API_KEYS];

fn api_metrics(key: ApiKey) -> &'static ApiMetrics {
    let init = || {
        let api = api_name(key);
        ApiMetrics {
            requests: [const { OnceLock::new() }; 20],
            duration: histogram!("weir_kafka_request_duration_seconds", "api" => api),
            bytes_in: counter!("weir_kafka_request_bytes_total", "api" => api),
            bytes_out: counter!("weir_kafka_response_bytes_total", "api" => api),
        }
    };
    match usize::try_from(key as i16).ok().and_then(|i| APIS.get(i)) {
        Some(slot) => slot.get_or_init(init),
        None => Box::leak(Box::new(init())),
    }
}

/// A request that closed its connection instead of being answered.
pub fn request_refused() {
    counter!("weir_kafka_requests_refused_total").increment(1);
}

/// The listener's connection and request counts, at a scrape.
pub fn listener(stats: &crate::kafka::ListenerStats) {
    let open = stats.connections() as u64;
    let opened = stats.connections_opened();
    gauge!("weir_kafka_connections_open").set(open as f64);
    counter!("weir_kafka_connections_opened_total").absolute(opened);
    counter!("weir_kafka_connections_closed_total").absolute(opened.saturating_sub(open));
    gauge!("weir_kafka_requests_in_flight").set(stats.requests_in_flight() as f64);
}

fn version_label(v: i16) -> &'static str {
    const V: [&str; 20] = [
        "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
        "17", "18", "19",
    ];
    usize::try_from(v)
        .ok()
        .and_then(|i| V.get(i))
        .copied()
        .unwrap_or("other")
}

fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        Some(e) => format!("{e:?}"),
        None => code.to_string(),
    }
}

/// Sets the gauges a scrape reads from the node: its Raft groups, storage and
/// the process.
pub fn observe(node: &Node, max_partitions: usize) {
    let meta = node.metadata();
    let names: std::collections::HashMap<GroupId, (&str, i32)> = meta
        .topics
        .iter()
        .flat_map(|(name, t)| {
            t.partitions
                .iter()
                .map(move |p| (p.group, (name.as_str(), p.index)))
        })
        .collect();
    let mut under_replicated = 0u64;
    for (_, p) in meta.hosted_by(node.id()) {
        if node
            .group_status(p.group)
            .is_some_and(|s| s.role == Role::Leader)
            && node.in_sync_replicas(p).len() < p.replicas.len()
        {
            under_replicated += 1;
        }
    }
    gauge!("weir_partitions_under_replicated").set(under_replicated as f64);
    let groups = node.hosted_groups();
    let per_partition = groups.len() <= max_partitions;
    let (mut leading, mut hosted) = (0u64, 0u64);
    for g in groups {
        let Some(st) = node.group_status(g) else {
            continue;
        };
        hosted += 1;
        let leader = st.role == Role::Leader;
        leading += u64::from(leader);
        if !per_partition && g != GroupId::METADATA {
            continue;
        }
        let (topic, partition) = match names.get(&g) {
            Some((t, p)) => (t.to_string(), p.to_string()),
            None if g == GroupId::METADATA => ("__metadata".to_string(), "0".to_string()),
            None => (String::new(), String::new()),
        };
        let labels = [
            ("group", g.0.to_string()),
            ("topic", topic),
            ("partition", partition),
        ];
        gauge!("weir_raft_leader", &labels[..]).set(if leader { 1.0 } else { 0.0 });
        gauge!("weir_raft_term", &labels[..]).set(st.term as f64);
        gauge!("weir_raft_commit_index", &labels[..]).set(st.commit as f64);
        gauge!("weir_raft_applied_index", &labels[..]).set(st.applied as f64);
        if let Some(log) = st.log {
            gauge!("weir_partition_high_watermark", &labels[..]).set(log.next_offset as f64);
            gauge!("weir_partition_log_start_offset", &labels[..]).set(log.start_offset as f64);
        }
        if leader {
            for (replica, matched) in &st.progress {
                let mut l = labels.to_vec();
                l.push(("replica", replica.to_string()));
                gauge!("weir_raft_follower_lag_entries", &l[..])
                    .set(st.commit.saturating_sub(*matched) as f64);
            }
        }
    }
    gauge!("weir_raft_groups_hosted").set(hosted as f64);
    gauge!("weir_raft_groups_leading").set(leading as f64);
    if let Some(free) = node.free_bytes() {
        gauge!("weir_storage_free_bytes").set(free as f64);
    }
    storage(node, &names);
    process();
    runtime();
}

/// What the engine holds on disk: its WAL, its total and each topic's logs.
fn storage(node: &Node, names: &std::collections::HashMap<GroupId, (&str, i32)>) {
    let engine = node.engine_name();
    let usage = node.storage_usage();
    if let Some(files) = usage.wal_files {
        gauge!("weir_storage_wal_files", "engine" => engine).set(files as f64);
    }
    if let Some(bytes) = usage.wal_bytes {
        gauge!("weir_storage_wal_bytes", "engine" => engine).set(bytes as f64);
    }
    if let Some(bytes) = usage.total_bytes {
        gauge!("weir_storage_bytes", "engine" => engine).set(bytes as f64);
    }
    let mut by_topic: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
    for (group, bytes) in usage.partition_bytes {
        if let Some((topic, _)) = names.get(&group) {
            *by_topic.entry(topic).or_default() += bytes;
        }
    }
    for (topic, bytes) in by_topic {
        gauge!("weir_storage_partition_bytes", "topic" => topic.to_string()).set(bytes as f64);
    }
}

/// Resident memory and open descriptors, from /proc (Linux; elsewhere none).
fn process() {
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        for (field, name) in [
            ("VmRSS:", "weir_process_resident_memory_bytes"),
            ("RssAnon:", "weir_process_heap_bytes"),
        ] {
            if let Some(kb) = status
                .lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
            {
                gauge!(name).set(kb * 1024.0);
            }
        }
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        gauge!("weir_process_open_fds").set(fds.count() as f64);
    }
}

/// The tokio runtime serving the scrape (the broker's one runtime): its
/// workers, live tasks, global queue, and the share of the time since the
/// previous scrape that its workers were busy (0 to 1).
fn runtime() {
    static LAST: std::sync::Mutex<Option<(std::time::Instant, Duration)>> =
        std::sync::Mutex::new(None);
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let m = rt.metrics();
    let workers = m.num_workers();
    gauge!("weir_tokio_workers").set(workers as f64);
    gauge!("weir_tokio_alive_tasks").set(m.num_alive_tasks() as f64);
    gauge!("weir_tokio_global_queue_depth").set(m.global_queue_depth() as f64);
    let busy: Duration = (0..workers).map(|w| m.worker_total_busy_duration(w)).sum();
    let now = std::time::Instant::now();
    let Ok(mut last) = LAST.lock() else {
        return;
    };
    if let Some((at, before)) = last.replace((now, busy)) {
        let wall = now.duration_since(at).as_secs_f64() * workers.max(1) as f64;
        if wall > 0.0 {
            let ratio = busy.saturating_sub(before).as_secs_f64() / wall;
            gauge!("weir_tokio_busy_ratio").set(ratio.clamp(0.0, 1.0));
        }
    }
}
