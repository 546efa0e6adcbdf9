//! Helpers shared by the multi-process tests: a cluster of `weir serve` processes.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free port on 127.0.0.1 (bound and released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `weir serve` processes forming a static cluster.
pub struct Cluster {
    pub nodes: Vec<Option<Child>>,
    pub kafka: Vec<u16>,
    peer: Vec<u16>,
    dir: tempfile::TempDir,
    transport: &'static str,
    config: String,
}

impl Cluster {
    pub fn start(n: usize, transport: &'static str) -> Cluster {
        Cluster::start_with(n, transport, "")
    }

    /// Like [`Cluster::start`], with extra TOML for every node's config file.
    pub fn start_with(n: usize, transport: &'static str, config: &str) -> Cluster {
        let mut c = Cluster {
            nodes: (0..n).map(|_| None).collect(),
            kafka: (0..n).map(|_| free_port()).collect(),
            peer: (0..n).map(|_| free_port()).collect(),
            dir: tempfile::tempdir().unwrap(),
            transport,
            config: config.to_string(),
        };
        for i in 0..n {
            c.launch(i);
        }
        c.wait_brokers(n);
        c
    }

    pub fn launch(&mut self, i: usize) {
        let config = self.dir.path().join(format!("n{}.toml", i + 1));
        std::fs::write(&config, &self.config).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_weir"));
        cmd.args([
            "serve",
            "--node-id",
            &(i + 1).to_string(),
            "--transport",
            self.transport,
        ])
        .arg("--data-dir")
        .arg(self.dir.path().join(format!("n{}", i + 1)))
        .args(["--kafka-listen", &format!("127.0.0.1:{}", self.kafka[i])])
        .args(["--peer-listen", &format!("127.0.0.1:{}", self.peer[i])])
        .arg("--config")
        .arg(&config);
        for j in 0..self.kafka.len() {
            if j != i {
                cmd.args(["--peer", &format!("{}=127.0.0.1:{}", j + 1, self.peer[j])]);
            }
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.nodes[i] = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.kafka[i])).is_err() {
            assert!(
                Instant::now() < deadline,
                "node {} did not start listening",
                i + 1
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn kill9(&mut self, i: usize) {
        let mut c = self.nodes[i].take().unwrap();
        c.kill().unwrap();
        c.wait().unwrap();
    }

    pub fn bootstrap(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.kafka[i])
    }

    pub fn all(&self) -> String {
        (0..self.kafka.len())
            .filter(|&i| self.nodes[i].is_some())
            .map(|i| self.bootstrap(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn metadata(&self, via: &str, topic: &str) -> String {
        let out = Command::new("kcat")
            .args(["-b", via, "-L", "-t", topic])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn wait_brokers(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self
            .metadata(&self.bootstrap(0), "none")
            .contains(&format!(" {n} brokers:"))
        {
            assert!(Instant::now() < deadline, "the cluster did not form");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The leader of partition 0 of `topic` as metadata reports it (1-based node id).
    pub fn leader(&self, topic: &str) -> usize {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let m = self.metadata(&self.all(), topic);
            if let Some(l) = m
                .lines()
                .find(|l| l.contains("partition 0,"))
                .and_then(|l| l.split("leader ").nth(1))
                .and_then(|r| r.split(',').next())
                .and_then(|n| n.trim().parse::<usize>().ok())
                .filter(|&l| l >= 1 && self.nodes[l - 1].is_some())
            {
                return l;
            }
            assert!(Instant::now() < deadline, "no leader for {topic}: {m}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in self.nodes.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Cluster {
    /// Sends a signal (e.g. "-STOP", "-CONT") to node `i` (0-based).
    pub fn signal(&self, i: usize, sig: &str) {
        if let Some(c) = &self.nodes[i] {
            let _ = Command::new("kill")
                .args([sig, &c.id().to_string()])
                .status();
        }
    }

    /// Whether node `i` (0-based) is running.
    pub fn is_up(&self, i: usize) -> bool {
        self.nodes[i].is_some()
    }
}
