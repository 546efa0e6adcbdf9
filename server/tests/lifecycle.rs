//! Cluster lifecycle (issue 22) with real processes: the ISR as Kafka means it,
//! leadership handed over at a graceful stop, leaders balanced back to each
//! partition's preferred replica.

mod common;

use std::time::{Duration, Instant};

use common::{Cluster, wait_for};

/// What kcat's metadata listing says of `topic`'s partition `p` through
/// `via`: (leader, replicas, ISR), node ids.
fn partition(
    c: &Cluster,
    via: &str,
    topic: &str,
    p: i32,
) -> Option<(usize, Vec<usize>, Vec<usize>)> {
    let m = c.metadata(via, topic);
    let line = m
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("partition {p},")))?;
    let ids = |after: &str| -> Vec<usize> {
        line.split(after)
            .nth(1)
            .map(|r| {
                r.split(", ")
                    .next()
                    .unwrap_or_default()
                    .split(',')
                    .filter_map(|n| n.trim().parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    let leader = line
        .split("leader ")
        .nth(1)?
        .split(',')
        .next()?
        .trim()
        .parse()
        .ok()?;
    Some((leader, ids("replicas: "), ids("isrs: ")))
}

fn create(c: &Cluster, topic: &str, partitions: i32, replicas: i16, configs: &[(String, String)]) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut client = weir_server::client::Client::new(&c.all());
    rt.block_on(client.create_topic(topic, partitions, replicas, configs))
        .expect("create topic");
}

#[test]
fn a_killed_replica_leaves_the_isr_and_comes_back_once_caught_up() {
    let mut c = Cluster::start_with(3, "tcp", "replica_lag_time_max_ms = 2000\n");
    create(&c, "isr", 1, 3, &[]);
    let leader = c.leader("isr");
    let via = c.bootstrap(leader - 1);
    wait_for(30, "every replica in sync at first", || {
        match partition(&c, &via, "isr", 0) {
            Some((_, _, isr)) if isr.len() == 3 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    let victim = if leader == 3 { 2 } else { 3 };
    // The third node, a follower: it answers from metadata, where the leader
    // records the ISR.
    let other = (1..=3).find(|&n| n != leader && n != victim).unwrap_or(1);
    let via_follower = c.bootstrap(other - 1);
    c.kill9(victim - 1);
    for (who, via) in [("the leader", &via), ("a follower", &via_follower)] {
        wait_for(
            30,
            &format!("{who} reports the killed replica out of the ISR"),
            || match partition(&c, via, "isr", 0) {
                Some((l, r, isr)) if l == leader && r.len() == 3 && !isr.contains(&victim) => {
                    assert!(isr.contains(&leader), "the leader is in sync: {isr:?}");
                    Ok(())
                }
                other => Err(format!("{other:?}")),
            },
        );
    }
    c.launch(victim - 1);
    for (who, via) in [("the leader", &via), ("a follower", &via_follower)] {
        wait_for(
            60,
            &format!("{who} reports the restarted replica back in the ISR"),
            || match partition(&c, via, "isr", 0) {
                Some((_, _, isr)) if isr.contains(&victim) && isr.len() == 3 => Ok(()),
                other => Err(format!("{other:?}")),
            },
        );
    }
}

/// Waits until every partition of `topic` has a leader that says so itself
/// (`/v1/cluster` of each running node) with all of its replicas in sync.
fn wait_fully_in_sync(c: &Cluster, topic: &str, partitions: i32) {
    wait_for(90, "every partition led, every replica in sync", || {
        let mut led = vec![0; partitions as usize];
        for i in (0..3).filter(|&i| c.is_up(i)) {
            let (_, body) = c.admin_get(i, "/v1/cluster");
            let v: serde_json::Value =
                serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
            let Some(t) = v["topics"]
                .as_array()
                .and_then(|ts| ts.iter().find(|t| t["name"] == topic))
            else {
                return Err(format!("node {} does not know {topic} yet", i + 1));
            };
            for p in t["partitions"].as_array().into_iter().flatten() {
                if p["raft"]["role"] != "Leader" {
                    continue;
                }
                let idx = p["partition"].as_u64().unwrap_or(0) as usize;
                let replicas = p["replicas"].as_array().map_or(0, Vec::len);
                let in_sync = p["raft"]["in_sync"].as_array().map_or(0, Vec::len);
                if in_sync != replicas {
                    return Err(format!(
                        "{topic}-{idx} on node {}: {in_sync} of {replicas} in sync",
                        i + 1
                    ));
                }
                if let Some(n) = led.get_mut(idx) {
                    *n += 1;
                }
            }
        }
        if led.iter().all(|&n| n == 1) {
            Ok(())
        } else {
            Err(format!("nodes leading each partition: {led:?}"))
        }
    });
}

#[test]
fn a_rolling_restart_fails_no_delivery_and_loses_nothing() {
    let mut c = Cluster::start_with(3, "tcp", "replica_lag_time_max_ms = 3000\n");
    create(&c, "rolling", 3, 3, &[]);
    wait_fully_in_sync(&c, "rolling", 3);
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/rolling_restart.py");
    let bootstrap = c.all();
    let mut next = 0;
    let (ok, out) = common::run_with_cue(
        std::process::Command::new("python3").arg(script).args([
            bootstrap.as_str(),
            "rolling",
            "3",
        ]),
        || {
            let i = next;
            next += 1;
            let began = Instant::now();
            c.signal(i, "-TERM");
            let status = c
                .wait_exit(i, Duration::from_secs(40))
                .unwrap_or_else(|| panic!("node {} did not stop on SIGTERM", i + 1));
            assert!(status.success(), "node {} stopped with {status}", i + 1);
            let stopped = began.elapsed();
            // It handed its leaderships over before exiting: its peers name
            // live leaders at once, not after an election timeout.
            let peer = c.bootstrap((i + 1) % 3);
            for p in 0..3 {
                let (leader, _, _) = partition(&c, &peer, "rolling", p).expect("metadata");
                assert_ne!(
                    leader,
                    i + 1,
                    "partition {p} still led by the node that stopped"
                );
            }
            c.launch(i);
            wait_fully_in_sync(&c, "rolling", 3);
            format!(
                "node {} stopped in {} ms, restarted and caught up in {} ms",
                i + 1,
                stopped.as_millis(),
                began.elapsed().as_millis()
            )
        },
    );
    assert!(ok, "{out}");
    eprintln!("{out}");
}

/// Leaders per node of `topic`'s `partitions` (kcat's view through every node).
fn leaders_per_node(c: &Cluster, topic: &str, partitions: i32) -> Result<Vec<usize>, String> {
    let m = c.metadata(&c.all(), topic);
    let mut per = vec![0; 3];
    let mut counted = 0;
    for l in m
        .lines()
        .filter(|l| l.trim_start().starts_with("partition "))
    {
        let leader: usize = l
            .split("leader ")
            .nth(1)
            .and_then(|r| r.split(',').next())
            .and_then(|n| n.trim().parse().ok())
            .ok_or(format!("no leader in {l}"))?;
        if !(1..=3).contains(&leader) || !c.is_up(leader - 1) {
            return Err(format!("leader {leader} in {l}"));
        }
        per[leader - 1] += 1;
        counted += 1;
    }
    if counted != partitions {
        return Err(format!("{counted} partitions listed"));
    }
    Ok(per)
}

fn balanced(c: &Cluster, topic: &str) -> Result<(), String> {
    let per = leaders_per_node(c, topic, 30)?;
    if per.iter().all(|&n| (9..=11).contains(&n)) {
        Ok(())
    } else {
        Err(format!("leaders per node {per:?}"))
    }
}

#[test]
fn leaders_go_back_to_their_preferred_replicas() {
    let mut c = Cluster::start_with(
        3,
        "tcp",
        "replica_lag_time_max_ms = 3000\nleader_imbalance_check_interval_ms = 1000\n",
    );
    create(&c, "balance", 30, 3, &[]);
    wait_for(60, "leaders balanced after creation", || {
        balanced(&c, "balance")
    });
    // A restart: the stopping node hands its leaderships to its peers, which
    // give them back once it is in sync again.
    c.stop(1);
    let per = leaders_per_node(&c, "balance", 30).expect("leaders");
    assert_eq!(per[1], 0, "the stopped node leads nothing: {per:?}");
    c.launch(1);
    wait_for(60, "leaders balanced after a restart", || {
        balanced(&c, "balance")
    });
}

#[test]
fn admin_clients_add_partitions_elect_preferred_leaders_and_describe_the_cluster() {
    let mut c = Cluster::start_with(
        3,
        "tcp",
        "replica_lag_time_max_ms = 3000\nauto_leader_rebalance = false\n",
    );
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/cluster_admin.py");
    let bootstrap = c.all();
    let mut kcat_saw = String::new();
    let (ok, out) = common::run_with_cue(
        std::process::Command::new("python3")
            .arg(script)
            .args([bootstrap.as_str(), "grow", "3"]),
        || {
            kcat_saw = c.metadata(&c.all(), "grow");
            // After a restart (without the balancer) the restarted node leads
            // nothing, so its preferred partitions need an election.
            c.stop(0);
            c.launch(0);
            wait_fully_in_sync(&c, "grow", 5);
            "node 1 restarted".into()
        },
    );
    assert!(ok, "{out}");
    let listed = kcat_saw
        .lines()
        .filter(|l| l.trim_start().starts_with("partition "))
        .count();
    assert_eq!(listed, 5, "kcat sees the added partitions: {kcat_saw}");
    eprintln!("{out}");
}

#[test]
fn the_cli_shows_the_cluster_adds_partitions_and_balances_leaders() {
    let mut c = Cluster::start_with(
        3,
        "tcp",
        "replica_lag_time_max_ms = 2000\nauto_leader_rebalance = false\n",
    );
    let b = c.all();
    let (ok, out) = common::weir(&[
        "topics",
        "-b",
        &b,
        "create",
        "cli",
        "--partitions",
        "3",
        "--replication",
        "3",
    ]);
    assert!(ok, "{out}");
    let (ok, out) = common::weir(&[
        "topics",
        "-b",
        &b,
        "add-partitions",
        "cli",
        "--partitions",
        "6",
    ]);
    assert!(ok, "{out}");
    let (ok, out) = common::weir(&["topics", "-b", &b, "describe", "cli"]);
    assert!(ok && out.contains("6 partitions"), "{out}");
    let (ok, out) = common::weir(&[
        "topics",
        "-b",
        &b,
        "add-partitions",
        "cli",
        "--partitions",
        "2",
    ]);
    assert!(!ok && out.contains("only grow"), "{out}");
    wait_fully_in_sync(&c, "cli", 6);
    let (ok, out) = common::weir(&["cluster", "-b", &b, "status"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("3 brokers") && !out.contains("UNREACHABLE"),
        "{out}"
    );
    assert!(
        out.contains("every partition has all its replicas in sync"),
        "{out}"
    );
    // A node down: unreachable, its partitions under-replicated.
    c.kill9(2);
    let b2 = c.all();
    wait_for(30, "status shows the dead node", || {
        let (_, out) = common::weir(&["cluster", "-b", &b2, "status"]);
        if out.contains("broker 3")
            && out.contains("UNREACHABLE")
            && out.contains("under-replicated")
        {
            Ok(())
        } else {
            Err(out)
        }
    });
    c.launch(2);
    wait_fully_in_sync(&c, "cli", 6);
    let (ok, out) = common::weir(&["cluster", "-b", &c.all(), "balance"]);
    assert!(
        ok && out.contains("moved to their preferred leader"),
        "{out}"
    );
    wait_for(30, "every partition led by its preferred replica", || {
        for p in 0..6 {
            match partition(&c, &c.all(), "cli", p) {
                Some((l, r, _)) if r.first() == Some(&l) => {}
                other => return Err(format!("partition {p}: {other:?} after: {out}")),
            }
        }
        Ok(())
    });
}

#[test]
fn racks_are_reported_to_clients_and_replicas_spread_over_them() {
    let racks = ["east", "east", "west", "west"];
    let c = Cluster::start_with_args(
        "tcp",
        "",
        racks
            .iter()
            .map(|r| vec!["--rack".to_string(), (*r).to_string()])
            .collect(),
    );
    let want: Vec<String> = racks
        .iter()
        .enumerate()
        .map(|(i, r)| format!("{}={r}", i + 1))
        .collect();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/racks.py");
    common::run_client(
        "racks.py",
        std::process::Command::new("python3")
            .arg(script)
            .args([c.all(), want.join(",")]),
    );
}
