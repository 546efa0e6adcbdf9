//! A real Prometheus (Debian's `prometheus`, installed by scripts/deps) scrapes
//! a three-node cluster (issue 21): its query API sees requests being made and
//! exactly one leader per partition, and every metric the Grafana dashboard
//! (`deploy/grafana/weir.json`) queries exists in what it scraped.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Cluster, free_port};
use weir_server::client::Client;

/// A Prometheus server, killed when dropped.
struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (admin ports) every second.
    fn start(targets: &[u16]) -> Prometheus {
        let dir = tempfile::tempdir().expect("tempdir");
        let list = targets
            .iter()
            .map(|p| format!("'127.0.0.1:{p}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: weir\n    static_configs:\n      - targets: [{list}]\n"
            ),
        )
        .expect("config");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("prometheus (installed by scripts/deps)");
        let p = Prometheus {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while p.get("/-/ready").0 != 200 {
            assert!(Instant::now() < deadline, "prometheus did not become ready");
            std::thread::sleep(Duration::from_millis(200));
        }
        p
    }

    /// `GET path`: the status (0 when the server cannot be reached) and body.
    fn get(&self, path: &str) -> (u16, String) {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return (0, String::new());
        };
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        if write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
            return (0, String::new());
        }
        let mut out = String::new();
        if s.read_to_string(&mut out).is_err() {
            return (0, String::new());
        }
        let status = out
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        (status, body.to_string())
    }

    /// The instant vector `query` evaluates to: each series' labels and value.
    fn query(&self, query: &str) -> Vec<(BTreeMap<String, String>, f64)> {
        let (status, body) = self.get(&format!("/api/v1/query?query={}", encode(query)));
        assert_eq!(status, 200, "{query}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        v["data"]["result"]
            .as_array()
            .expect("a vector")
            .iter()
            .map(|r| {
                let labels = r["metric"]
                    .as_object()
                    .expect("labels")
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect();
                let value = r["value"][1]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .expect("a value");
                (labels, value)
            })
            .collect()
    }

    /// Every metric name Prometheus has scraped.
    fn names(&self) -> BTreeSet<String> {
        let (status, body) = self.get("/api/v1/label/__name__/values");
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        v["data"]
            .as_array()
            .expect("names")
            .iter()
            .filter_map(|n| n.as_str().map(str::to_string))
            .collect()
    }
}

/// Percent-encodes a query for a URL.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn dashboard() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/weir.json")
}

/// The metric names the dashboard's queries use.
fn dashboard_metrics() -> BTreeSet<String> {
    let text = std::fs::read_to_string(dashboard()).expect("deploy/grafana/weir.json");
    let d: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let panels = d["panels"].as_array().expect("panels");
    let mut names = BTreeSet::new();
    for p in panels.iter().filter(|p| p["type"] != "row") {
        let targets = p["targets"].as_array().expect("a panel has targets");
        assert!(!targets.is_empty(), "panel {} queries nothing", p["title"]);
        for t in targets {
            let expr = t["expr"].as_str().expect("expr");
            let mut rest = expr;
            while let Some(at) = rest.find("weir_") {
                let tail = &rest[at..];
                let end = tail
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(tail.len());
                names.insert(tail[..end].to_string());
                rest = &tail[end..];
            }
        }
    }
    assert!(
        names.len() > 15,
        "the dashboard queries few metrics: {names:?}"
    );
    names
}

#[test]
fn a_real_prometheus_scrapes_the_cluster_and_the_dashboard_queries_what_it_has() {
    // The dashboard is checked first: no cluster is needed to find it invalid.
    let wanted = dashboard_metrics();
    let c = Cluster::start(3, "tcp");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut client = Client::new(&c.all());
    rt.block_on(client.create_topic("prom", 3, 3, &[]))
        .expect("create");
    let compacted = [("cleanup.policy".to_string(), "compact".to_string())];
    rt.block_on(client.create_topic("promc", 1, 3, &compacted))
        .expect("create");
    let prom = Prometheus::start(&c.admin);
    let batch = bytes::Bytes::from(
        weir_server::tools::encode_batch(
            &[(None, Some(bytes::Bytes::from_static(b"v")))],
            0,
            kafka_protocol::records::Compression::None,
        )
        .expect("batch")
        .to_vec(),
    );
    // A keyless record in a compacted topic is refused: errors are counted.
    assert!(
        rt.block_on(client.produce("promc", 0, batch.clone()))
            .is_err()
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        for p in 0..3 {
            rt.block_on(client.produce("prom", p, batch.clone()))
                .expect("produce");
        }
        let rate = prom.query("sum(rate(weir_kafka_requests_total[30s])) > 0");
        let leaders = prom.query("sum by (group, topic, partition) (weir_raft_leader)");
        let prom_leaders: Vec<f64> = leaders
            .iter()
            .filter(|(l, _)| l.get("topic").map(String::as_str) == Some("prom"))
            .map(|(_, v)| *v)
            .collect();
        let names = prom.names();
        let missing: Vec<&String> = wanted.iter().filter(|n| !names.contains(*n)).collect();
        // Every group, the metadata and coordinator groups included, has one leader.
        let one_each = leaders.iter().all(|(_, v)| *v == 1.0);
        if rate.len() == 1
            && prom_leaders.len() == 3
            && one_each
            && leaders.len() >= 5
            && missing.is_empty()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus did not see the cluster as expected:\nrate: {rate:?}\nleaders: {leaders:?}\nmissing from the scrape: {missing:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
