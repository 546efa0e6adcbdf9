//! Helpers shared by the multi-process tests: a cluster of `weir serve` processes.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free port on 127.0.0.1 that a restarted node can bind again (below the
/// ephemeral range, so no outgoing connection takes it meanwhile).
pub fn free_port() -> u16 {
    weir_conformance::net::stable_port()
}

/// Waits up to `secs` for `check` to hold (polling every 200 ms); the test
/// fails with `what` and the last state `check` described otherwise.
pub fn wait_for(secs: u64, what: &str, mut check: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        match check() {
            Ok(()) => return,
            Err(last) => assert!(Instant::now() < deadline, "{what}: {last}"),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs a client program (a Python or JavaScript script) to its end; the test
/// fails with its output unless it succeeded.
pub fn run_client(what: &str, cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?} ({e}); scripts/test installs it"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs a client script that prints a line `READY` whenever it wants something
/// done to the cluster: each time runs `at_ready` (which says what it did) and
/// tells the script with a line on its standard input; then waits for its end.
/// Returns whether it succeeded, and its output with what `at_ready` said. A
/// script silent for 120 s is killed and fails.
pub fn run_with_cue(cmd: &mut Command, mut at_ready: impl FnMut() -> String) -> (bool, String) {
    use std::io::{BufRead, BufReader, Write};
    use std::sync::mpsc::RecvTimeoutError;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?} ({e}); scripts/test installs it"));
    let stdout = child.stdout.take().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // Standard error is drained as it comes: a client that logs more than a
    // pipe holds (librdkafka's reconnect messages during a failover) would
    // otherwise block on it.
    let mut stderr = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stderr, &mut s);
        String::from_utf8_lossy(&s).into_owned()
    });
    let mut out = String::new();
    let silent = loop {
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(line) => {
                out.push_str(&line);
                out.push('\n');
                if line == "READY" {
                    out.push_str(&at_ready());
                    out.push('\n');
                    let _ = stdin.write_all(b"go on\n");
                }
            }
            Err(RecvTimeoutError::Disconnected) => break false,
            Err(RecvTimeoutError::Timeout) => break true,
        }
    };
    if silent {
        let _ = child.kill();
    }
    drop(stdin);
    let status = child.wait().unwrap();
    (
        status.success() && !silent,
        format!("{out}{}", errors.join().unwrap_or_default()),
    )
}

/// Runs the `weir` binary with `args`: whether it succeeded, and its output
/// (standard output, then standard error).
pub fn weir(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// [`weir`] with `input` on its standard input.
pub fn weir_stdin(args: &[&str], input: &str) -> (bool, String) {
    use std::io::Write as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `weir serve` processes forming a static cluster.
pub struct Cluster {
    pub nodes: Vec<Option<Child>>,
    pub kafka: Vec<u16>,
    peer: Vec<u16>,
    /// Each node's admin listener (metrics, health).
    pub admin: Vec<u16>,
    dir: tempfile::TempDir,
    transport: &'static str,
    config: String,
    /// proxies[i][j]: node i's link to node j, when the cluster was started with
    /// proxies (see [`Cluster::start_proxied_with`]).
    pub proxies: Vec<Vec<Option<LinkProxy>>>,
    /// Extra environment of each node's process (applied at its next launch).
    pub env: Vec<Vec<(String, String)>>,
    /// Extra `weir serve` arguments of each node (applied at its next launch).
    pub args: Vec<Vec<String>>,
    /// Nodes 0..static_nodes form the cluster at its first start; the others
    /// join it (`weir serve --join`) when launched.
    pub static_nodes: usize,
}

impl Cluster {
    pub fn start(n: usize, transport: &'static str) -> Cluster {
        Cluster::start_with(n, transport, "")
    }

    /// Like [`Cluster::start`], with extra TOML for every node's config file.
    pub fn start_with(n: usize, transport: &'static str, config: &str) -> Cluster {
        let mut c = Cluster::start_unbooted(n, transport, config);
        c.boot(n);
        c
    }

    /// Like [`Cluster::start_with`], with every peer link going through a
    /// [`LinkProxy`] so that the test can partition the network.
    pub fn start_proxied_with(n: usize, transport: &'static str, config: &str) -> Cluster {
        let mut c = Cluster::start_unbooted(n, transport, config);
        c.proxies = (0..n)
            .map(|i| {
                (0..n)
                    .map(|j| (i != j).then(|| LinkProxy::start(c.peer[j])))
                    .collect()
            })
            .collect();
        c.boot(n);
        c
    }

    fn start_unbooted(n: usize, transport: &'static str, config: &str) -> Cluster {
        Cluster {
            nodes: (0..n).map(|_| None).collect(),
            kafka: (0..n).map(|_| free_port()).collect(),
            peer: (0..n).map(|_| free_port()).collect(),
            admin: (0..n).map(|_| free_port()).collect(),
            dir: tempfile::tempdir().unwrap(),
            transport,
            config: config.to_string(),
            proxies: Vec::new(),
            env: (0..n).map(|_| Vec::new()).collect(),
            args: (0..n).map(|_| Vec::new()).collect(),
            static_nodes: n,
        }
    }

    /// Like [`Cluster::start_with`], each node `i` started with the extra
    /// `weir serve` arguments `args[i]`.
    pub fn start_with_args(
        transport: &'static str,
        config: &str,
        args: Vec<Vec<String>>,
    ) -> Cluster {
        let n = args.len();
        let mut c = Cluster::start_unbooted(n, transport, config);
        c.args = args;
        c.boot(n);
        c
    }

    /// Like [`Cluster::start_with`] with `n` nodes, and `spares` more that join
    /// the running cluster when launched ([`Cluster::launch`]).
    pub fn start_with_spares(
        n: usize,
        spares: usize,
        transport: &'static str,
        config: &str,
    ) -> Cluster {
        let mut c = Cluster::start_unbooted(n + spares, transport, config);
        c.static_nodes = n;
        c.boot(n);
        c
    }

    /// A new slot for a node that joins the running cluster when launched;
    /// its index.
    pub fn add_spare(&mut self) -> usize {
        self.nodes.push(None);
        self.kafka.push(free_port());
        self.peer.push(free_port());
        self.admin.push(free_port());
        self.env.push(Vec::new());
        self.args.push(Vec::new());
        self.nodes.len() - 1
    }

    fn boot(&mut self, n: usize) {
        for i in 0..n {
            self.launch(i);
        }
        self.wait_brokers(n);
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
        .args(["--admin-listen", &format!("127.0.0.1:{}", self.admin[i])])
        .arg("--config")
        .arg(&config);
        if i < self.static_nodes {
            for j in (0..self.static_nodes).filter(|&j| j != i) {
                let port = match self.proxy(i, j) {
                    Some(p) => p.port,
                    None => self.peer[j],
                };
                cmd.args(["--peer", &format!("{}=127.0.0.1:{port}", j + 1)]);
            }
        } else {
            let admins: Vec<String> = (0..self.static_nodes)
                .map(|j| format!("127.0.0.1:{}", self.admin[j]))
                .collect();
            cmd.args(["--join", &admins.join(",")]);
        }
        // WEIR_TEST_LOG_DIR=dir keeps every node's log (appended across restarts).
        let stderr = match std::env::var_os("WEIR_TEST_LOG_DIR") {
            Some(dir) => {
                let path = std::path::Path::new(&dir).join(format!("node{}.log", i + 1));
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .unwrap();
                Stdio::from(f)
            }
            None => Stdio::null(),
        };
        cmd.envs(self.env[i].iter().map(|(k, v)| (k, v)));
        cmd.args(&self.args[i]);
        let child = cmd.stdout(Stdio::null()).stderr(stderr).spawn().unwrap();
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

    /// `GET path` on node `i`'s admin listener: the status code and body.
    pub fn admin_get(&self, i: usize, path: &str) -> (u16, String) {
        use std::io::{Read, Write};
        let mut s = TcpStream::connect(("127.0.0.1", self.admin[i])).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let status = out
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        (status, body.to_string())
    }

    /// Node `i`'s data directory.
    pub fn data_dir(&self, i: usize) -> std::path::PathBuf {
        self.dir.path().join(format!("n{}", i + 1))
    }

    /// Waits until node `i`'s process exits by itself, up to `timeout`;
    /// its exit status, or `None` if it is still running.
    pub fn wait_exit(&mut self, i: usize, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.nodes[i].as_mut()?;
            if let Some(status) = child.try_wait().unwrap() {
                self.nodes[i] = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops node `i` with SIGTERM and waits for it to exit.
    pub fn stop(&mut self, i: usize) {
        self.signal(i, "-TERM");
        if self.wait_exit(i, Duration::from_secs(30)).is_none() {
            self.kill9(i);
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
        loop {
            let m = self.metadata(&self.bootstrap(0), "none");
            if m.contains(&format!(" {n} brokers:")) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not form: {n} brokers expected, node 1 says:\n{m}"
            );
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
    /// Cuts node `i` (0-based) off from every other node, both ways.
    pub fn isolate(&self, i: usize) {
        for j in 0..self.kafka.len() {
            for (a, b) in [(i, j), (j, i)] {
                if let Some(p) = self.proxy(a, b) {
                    p.cut();
                }
            }
        }
    }

    /// Cuts every link between a node of `a` and a node of `b`, both ways (0-based).
    pub fn cut_between(&self, a: &[usize], b: &[usize]) {
        for &i in a {
            for &j in b {
                for (x, y) in [(i, j), (j, i)] {
                    if let Some(p) = self.proxy(x, y) {
                        p.cut();
                    }
                }
            }
        }
    }

    /// Node `a`'s proxied link to node `b`, if there is one (only links
    /// between the nodes that formed the cluster are proxied).
    fn proxy(&self, a: usize, b: usize) -> Option<&LinkProxy> {
        self.proxies.get(a)?.get(b)?.as_ref()
    }

    /// Heals every link.
    pub fn heal(&self) {
        for p in self.proxies.iter().flatten().flatten() {
            p.heal();
        }
    }

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

/// A TCP proxy for one directed link between two nodes, which a test can cut (all
/// connections closed, new ones refused) and heal. Blocking std I/O on threads.
pub struct LinkProxy {
    pub port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    live: std::sync::Arc<std::sync::Mutex<Vec<TcpStream>>>,
}

impl LinkProxy {
    /// Forwards connections on a fresh local port to `target`.
    pub fn start(target: u16) -> LinkProxy {
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let live = std::sync::Arc::new(std::sync::Mutex::new(Vec::<TcpStream>::new()));
        let (c, l) = (cut.clone(), live.clone());
        std::thread::spawn(move || {
            for inbound in listener.incoming() {
                let Ok(inbound) = inbound else { continue };
                if c.load(Ordering::SeqCst) {
                    let _ = inbound.shutdown(std::net::Shutdown::Both);
                    continue;
                }
                let Ok(outbound) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let _ = inbound.set_nodelay(true);
                let _ = outbound.set_nodelay(true);
                {
                    let mut g = l.lock().unwrap();
                    g.push(inbound.try_clone().unwrap());
                    g.push(outbound.try_clone().unwrap());
                }
                for (mut from, mut to) in [
                    (inbound.try_clone().unwrap(), outbound.try_clone().unwrap()),
                    (outbound, inbound),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                        let _ = from.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        LinkProxy { port, cut, live }
    }

    /// Drops every connection on this link and refuses new ones.
    pub fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        for s in self.live.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Lets connections through again.
    pub fn heal(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}
