//! Growing and shrinking a running cluster with real processes (issue 22):
//! `weir serve --join`, `weir cluster add-node`/`remove-node`, membership
//! surviving restarts, and clients using the new node.

mod common;

use std::process::Command;

use common::{Cluster, wait_for};

/// The metadata group's voters as node `i`'s `/v1/cluster` reports them.
fn voters(c: &Cluster, i: usize) -> Result<Vec<u64>, String> {
    let (status, body) = c.admin_get(i, "/v1/cluster");
    if status != 200 {
        return Err(format!("{status}: {body}"));
    }
    let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
    Ok(v["metadata"]["voters"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x.as_u64()).collect())
        .unwrap_or_default())
}

fn voters_are(c: &Cluster, want: &[u64]) -> Result<(), String> {
    for i in (0..c.kafka.len()).filter(|&i| c.is_up(i)) {
        let v = voters(c, i)?;
        if v != want {
            return Err(format!("node {}: voters {v:?}", i + 1));
        }
    }
    Ok(())
}

fn kcat(args: &[&str], input: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new("kcat")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kcat (scripts/test installs it)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("kcat");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn a_node_joins_a_running_cluster_serves_clients_and_leaves() {
    let mut c = Cluster::start_with_spares(3, 1, "tcp", "");
    let admins: String = (0..3)
        .map(|i| format!("127.0.0.1:{}", c.admin[i]))
        .collect::<Vec<_>>()
        .join(",");
    // Node 4 starts with --join (no --peer) and becomes a voter.
    c.launch(3);
    c.wait_brokers(4);
    wait_for(60, "node 4 a voter everywhere", || {
        voters_are(&c, &[1, 2, 3, 4])
    });
    // A topic over the four nodes; clients use node 4 directly.
    let b = c.all();
    let (ok, out) = common::weir(&[
        "topics",
        "-b",
        &b,
        "create",
        "wide",
        "--partitions",
        "4",
        "--replication",
        "3",
    ]);
    assert!(ok, "{out}");
    let lines: String = (0..200).map(|i| format!("v{i}\n")).collect();
    let via4 = c.bootstrap(3);
    for p in ["0", "1", "2", "3"] {
        let (ok, out) = kcat(&["-b", &via4, "-t", "wide", "-P", "-p", p], &lines);
        assert!(ok, "{out}");
    }
    let read = |c: &Cluster, p: &str| {
        let (ok, out) = kcat(
            &[
                "-b",
                &c.all(),
                "-t",
                "wide",
                "-C",
                "-p",
                p,
                "-o",
                "beginning",
                "-e",
                "-q",
            ],
            "",
        );
        assert!(ok, "{out}");
        out.lines().count()
    };
    assert_eq!(read(&c, "1"), 200);
    // Membership survives restarts: of the joined node, and of a first one.
    c.stop(3);
    c.launch(3);
    c.stop(0);
    c.launch(0);
    wait_for(60, "voters kept across restarts", || {
        voters_are(&c, &[1, 2, 3, 4])
    });
    // Removing node 4 first moves its replicas to the other nodes.
    let held = c
        .metadata(&c.all(), "wide")
        .lines()
        .filter(|l| {
            l.contains("replicas:")
                && l.split("replicas: ").nth(1).is_some_and(|r| {
                    r.split(", ")
                        .next()
                        .unwrap_or("")
                        .split(',')
                        .any(|n| n == "4")
                })
        })
        .count();
    assert!(held > 0, "node 4 holds replicas before its removal");
    let (ok, out) = common::weir(&["cluster", "remove-node", "4", "--admin", &admins]);
    assert!(ok, "{out}");
    c.stop(3);
    wait_for(30, "three voters again", || voters_are(&c, &[1, 2, 3]));
    // A removed node started again (with its --join) stays out: it was a
    // member before, so it does not ask to join again.
    c.launch(3);
    let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < until {
        for i in 0..3 {
            let v = voters(&c, i).unwrap_or_default();
            assert!(
                !v.contains(&4),
                "the removed node 4 came back: node {} has voters {v:?}",
                i + 1
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    c.stop(3);
    wait_for(
        30,
        "three brokers in metadata, no replica on node 4",
        || {
            let m = c.metadata(&c.all(), "wide");
            let on4 = m.lines().any(|l| {
                l.split("replicas: ").nth(1).is_some_and(|r| {
                    r.split(", ")
                        .next()
                        .unwrap_or("")
                        .split(',')
                        .any(|n| n == "4")
                })
            });
            if m.contains(" 3 brokers:") && !on4 {
                Ok(())
            } else {
                Err(m)
            }
        },
    );
    // Every record is still there, and the three serve on.
    for p in ["0", "1", "2", "3"] {
        assert_eq!(read(&c, p), 200, "partition {p} after the move");
    }
    let (ok, out) = common::weir(&[
        "topics",
        "-b",
        &c.all(),
        "create",
        "after",
        "--replication",
        "3",
    ]);
    assert!(ok, "{out}");
    let (ok, out) = kcat(&["-b", &c.all(), "-t", "after", "-P"], "x\n");
    assert!(ok, "{out}");
}

#[test]
fn kafka_python_moves_a_partition_while_a_producer_writes() {
    let c = Cluster::start(4, "tcp");
    let (ok, out) = common::weir(&[
        "topics",
        "-b",
        &c.all(),
        "create",
        "moving",
        "--partitions",
        "1",
        "--replication",
        "3",
    ]);
    assert!(ok, "{out}");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/reassign.py");
    let out = Command::new("python3")
        .arg(script)
        .args([c.all().as_str(), "moving"])
        .output()
        .expect("python3");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    let target = text
        .lines()
        .find_map(|l| l.strip_prefix("TARGET "))
        .expect("the script names its target")
        .to_string();
    // kcat sees the new replicas.
    wait_for(30, "kcat lists the new replicas", || {
        let m = c.metadata(&c.all(), "moving");
        if m.contains(&format!("replicas: {target},")) {
            Ok(())
        } else {
            Err(m)
        }
    });
    eprintln!("{text}");
}
