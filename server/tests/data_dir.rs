//! A data directory knows whose it is: started with another node id or cluster id,
//! `weir serve` refuses it with a message naming both, instead of recovering the
//! other node's state and advertising its address to every client.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn serve(
    dir: &std::path::Path,
    port: u16,
    node: &str,
    config: Option<&std::path::Path>,
) -> std::process::Child {
    serve_on("segment", dir, port, node, config)
}

fn serve_on(
    engine: &str,
    dir: &std::path::Path,
    port: u16,
    node: &str,
    config: Option<&std::path::Path>,
) -> std::process::Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weir"));
    cmd.arg("serve");
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    cmd.args(["--engine", engine, "--node-id", node, "--kafka-listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weir serve starts")
}

/// Waits for the child to exit (bounded) and returns its stderr, or `None` if it
/// was still running (and listening) after 20 s.
fn refused(mut child: std::process::Child, port: u16) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().expect("child status") {
            assert!(!status.success(), "a refusal exits non-zero");
            let out = child.wait_with_output().expect("stderr");
            return Some(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        if Instant::now() > deadline || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Node 1 starts on `data` (stamping it), serves, and is killed.
fn stamp_as_node_1(data: &std::path::Path, port: u16) {
    let mut first = serve(data, port, "1", None);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "node 1 never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = first.kill();
    let _ = first.wait();
}

#[test]
fn a_data_directory_refuses_another_node_or_cluster() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().join("data");
    let port = weir_conformance::net::stable_port();
    stamp_as_node_1(&data, port);

    let why = refused(serve(&data, port, "2", None), port).expect("node 2 was refused");
    assert!(
        why.contains("belongs to node 1") && why.contains("configured as node 2"),
        "{why}"
    );
    let other = dir.path().join("other.toml");
    std::fs::write(&other, "cluster_id = \"other\"\n").expect("config");
    let why =
        refused(serve(&data, port, "1", Some(&other)), port).expect("cluster other was refused");
    assert!(why.contains("belongs to cluster \"weir\""), "{why}");

    // Node 1 itself still starts on it.
    let again = serve(&data, port, "1", None);
    assert!(
        refused(again, port).is_none(),
        "node 1 could not start on its own directory"
    );
}

/// A directory that held this node's Raft log but whose engine opens empty (its
/// files deleted, a volume not mounted) is refused, instead of starting a blank
/// node that would bootstrap a metadata group of its own (issue 15 item 3).
#[test]
fn an_engine_that_lost_its_files_is_refused() {
    lost_files_refused("segment");
}

#[cfg(feature = "engine-redb")]
#[test]
fn a_redb_engine_that_lost_its_files_is_refused() {
    lost_files_refused("redb");
}

#[cfg(feature = "engine-rocksdb")]
#[test]
fn a_rocksdb_engine_that_lost_its_files_is_refused() {
    lost_files_refused("rocksdb");
}

fn lost_files_refused(engine: &str) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().join("data");
    let port = weir_conformance::net::stable_port();
    let mut first = serve_on(engine, &data, port, "1", None);
    // The stamp records that the engine holds durable Raft state.
    let stamp = data.join("weir.id");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&stamp)
        .unwrap_or_default()
        .contains("holds_raft_state = true")
    {
        assert!(
            Instant::now() < deadline,
            "{engine}: the stamp never recorded Raft state: {:?}",
            std::fs::read_to_string(&stamp)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = first.kill();
    let _ = first.wait();
    // A restart with the files in place is fine.
    let again = serve_on(engine, &data, port, "1", None);
    assert!(
        refused(again, port).is_none(),
        "{engine}: a whole directory is served"
    );
    // The engine's files go; the stamp stays.
    for entry in std::fs::read_dir(&data).expect("the data directory") {
        let path = entry.expect("an entry").path();
        if path.file_name().is_some_and(|n| n != "weir.id") {
            let _ = std::fs::remove_dir_all(&path);
            let _ = std::fs::remove_file(&path);
        }
    }
    let err = refused(serve_on(engine, &data, port, "1", None), port)
        .expect("a directory whose engine lost its files is refused");
    assert!(
        err.contains("corrupt data:") && err.contains("opened empty") && err.contains("weir.id"),
        "{engine}: {err}"
    );
}

/// Runs `weir ARGS` to completion (bounded by the command itself) and returns
/// whether it succeeded, with its stdout and stderr.
fn weir(args: &[&str], data: &std::path::Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .output()
        .expect("weir runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `weir recover` works on a stopped node's directory only, checks whose it is,
/// and changes nothing where nothing is missing. (The loss it accepts is the
/// cluster suite's `cluster_lost_partition_log_is_refused_until_the_loss_is_accepted`,
/// for every engine.)
#[test]
fn recover_runs_on_a_stopped_node_and_names_what_it_did() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().join("data");
    let recover = [
        "recover",
        "--engine",
        "segment",
        "--node-id",
        "1",
        "--accept-loss",
    ];
    let (ok, out) = weir(&[&recover[..], &["g1"]].concat(), &data);
    assert!(!ok && out.contains("holds no weir data directory"), "{out}");

    let port = weir_conformance::net::stable_port();
    let mut node = serve(&data, port, "1", None);
    let bootstrap = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let created = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["topics", "--bootstrap", &bootstrap, "create", "t"])
            .output()
            .expect("weir topics runs");
        if created.status.success() {
            break;
        }
        assert!(Instant::now() < deadline, "{created:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (ok, out) = weir(&[&recover[..], &["g1"]].concat(), &data);
    assert!(!ok && out.contains("is the node stopped?"), "{out}");
    let _ = node.kill();
    let _ = node.wait();

    let (ok, out) = weir(&[&recover[..], &["g1"]].concat(), &data);
    assert!(ok && out.contains("g1: nothing is missing"), "{out}");
    let (ok, out) = weir(&[&recover[..], &["g99"]].concat(), &data);
    assert!(!ok && out.contains("holds no Raft log of it"), "{out}");
    let (ok, out) = weir(&[&recover[..], &["t-0"]].concat(), &data);
    assert!(!ok && out.contains("is not a group"), "{out}");
    let other = [
        "recover",
        "--engine",
        "segment",
        "--node-id",
        "2",
        "--accept-loss",
        "g1",
    ];
    let (ok, out) = weir(&other, &data);
    assert!(!ok && out.contains("belongs to node 1"), "{out}");
}

/// A node that refuses its data directory never opens its Kafka port: a client
/// trying all along never connects (the port used to be bound before the
/// directory was checked, so a refusing node accepted connections for a moment
/// — and `refused` above sometimes took it for a serving one).
#[test]
fn a_refused_directory_never_opens_the_kafka_port() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().join("data");
    let port = weir_conformance::net::stable_port();
    stamp_as_node_1(&data, port);
    for _ in 0..5 {
        let mut child = serve(&data, port, "2", None);
        let mut connected = 0;
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.try_wait().expect("child status").is_none() {
            assert!(
                Instant::now() < deadline,
                "node 2 neither exited nor was refused"
            );
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                connected += 1;
            }
        }
        assert_eq!(connected, 0, "a refusing node accepted connections");
    }
}
