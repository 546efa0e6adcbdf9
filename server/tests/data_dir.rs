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
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weir"));
    cmd.arg("serve");
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    cmd.args(["--engine", "segment", "--node-id", node, "--kafka-listen"])
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

#[test]
fn a_data_directory_refuses_another_node_or_cluster() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().join("data");
    let port = weir_conformance::net::stable_port();
    // Node 1 starts on it and stamps it.
    let mut first = serve(&data, port, "1", None);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "node 1 never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = first.kill();
    let _ = first.wait();

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
