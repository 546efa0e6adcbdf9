//! `weir cluster`: the cluster as its brokers report it (status) and
//! preferred leader elections (balance), over the Kafka protocol.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::client::Client;

/// `weir cluster` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum ClusterCommand {
    /// Brokers (address, reachable or not, partitions led), the controller,
    /// and the partitions whose in-sync replicas are fewer than their replicas.
    Status,
    /// Move every partition's leadership to its preferred replica (its first)
    /// where that replica is in sync (ElectLeaders, PREFERRED).
    Balance,
    /// Add a node to the cluster (it becomes a learner of the metadata group,
    /// then a voter once caught up); start it with `weir serve` and the same
    /// id, without --peer. `weir serve --join` does this itself.
    AddNode {
        /// The new node's id.
        #[arg(long)]
        id: u64,
        /// Where its peers reach it (its peer_listen).
        #[arg(long)]
        peer: String,
        /// Admin addresses (admin_listen) of the cluster's nodes, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        admin: Vec<String>,
    },
    /// Remove a node from the cluster: its partition replicas move to the
    /// other brokers first (the node may be down for good), then it leaves.
    RemoveNode {
        /// The node's id.
        id: u64,
        /// Admin addresses (admin_listen) of the cluster's nodes, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        admin: Vec<String>,
    },
}

/// Runs a `weir cluster` subcommand against `bootstrap`.
///
/// # Errors
/// Connection and Kafka errors.
pub async fn cluster(bootstrap: String, command: ClusterCommand) -> anyhow::Result<()> {
    let mut c = Client::new(&bootstrap);
    match command {
        ClusterCommand::Status => status(&mut c).await,
        ClusterCommand::Balance => balance(&mut c).await,
        ClusterCommand::AddNode { id, peer, admin } => {
            let body = serde_json::json!({"id": id, "peer_addr": peer}).to_string();
            crate::membership::ask_members(&admin, "POST", "/v1/nodes", &body).await?;
            println!("node {id} added; it becomes a voter once caught up");
            Ok(())
        }
        ClusterCommand::RemoveNode { id, admin } => {
            // First every replica moves off the node (to the brokers holding
            // the fewest), then it leaves the metadata group.
            let drain = format!("/v1/nodes/{id}/drain");
            let deadline = tokio::time::Instant::now() + Duration::from_secs(3600);
            loop {
                let body = crate::membership::ask_members(&admin, "POST", &drain, "").await?;
                let held = serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["held"].as_u64())
                    .unwrap_or(0);
                if held == 0 {
                    break;
                }
                anyhow::ensure!(
                    tokio::time::Instant::now() < deadline,
                    "node {id} still holds replicas of {held} partitions after an hour"
                );
                println!("moving the replicas of {held} partitions off node {id}…");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            let path = format!("/v1/nodes/{id}");
            // The metadata leader hands over first when it is the one
            // removed: ask again, the new leader does it.
            let mut last = None;
            for _ in 0..3 {
                match crate::membership::ask_members(&admin, "DELETE", &path, "").await {
                    Ok(_) => {
                        println!("node {id} removed");
                        return Ok(());
                    }
                    Err(e) => last = Some(e),
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(last.unwrap_or_else(|| anyhow::anyhow!("removing node {id} failed")))
        }
    }
}

/// `weir cluster balance`: preferred leader elections for every partition;
/// those whose leader moved meanwhile, or had none (NOT_LEADER_OR_FOLLOWER,
/// REQUEST_TIMED_OUT), are asked again.
async fn balance(c: &mut Client) -> anyhow::Result<()> {
    let (mut moved, mut already) = (0, 0);
    let mut ask: Option<Vec<(String, Vec<i32>)>> = None;
    let mut failed = Vec::new();
    for round in 0..5 {
        if round > 0 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let results = c.elect_preferred_leaders(ask.clone(), 30_000).await?;
        failed.clear();
        let mut again: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for (topic, p, code, msg) in results {
            match code {
                0 => moved += 1,
                // ELECTION_NOT_NEEDED
                84 => already += 1,
                _ => {
                    if matches!(code, 6 | 7) {
                        again.entry(topic.clone()).or_default().push(p);
                    }
                    failed.push(format!(
                        "{topic}-{p}: error {code}{}",
                        msg.map(|m| format!(" ({m})")).unwrap_or_default()
                    ));
                }
            }
        }
        if again.is_empty() {
            break;
        }
        ask = Some(again.into_iter().collect());
    }
    println!("{moved} partitions moved to their preferred leader, {already} were there already");
    for f in &failed {
        println!("  not moved: {f}");
    }
    Ok(())
}

async fn status(c: &mut Client) -> anyhow::Result<()> {
    let (cluster_id, controller, brokers) = c.describe_cluster().await?;
    let (_, topics) = c.metadata(None).await?;
    let mut led: BTreeMap<i32, usize> = BTreeMap::new();
    let mut under = Vec::new();
    let mut partitions = 0;
    for t in &topics {
        for (p, leader, replicas, isr) in &t.partitions {
            partitions += 1;
            *led.entry(*leader).or_default() += 1;
            if isr.len() < replicas.len() {
                under.push(format!(
                    "{}-{p} (replicas {replicas:?}, in sync {isr:?})",
                    t.name
                ));
            }
        }
    }
    println!(
        "cluster {cluster_id}: {} brokers, controller {controller}, {} topics, {partitions} partitions",
        brokers.len(),
        topics.len()
    );
    for (id, host, port, rack) in &brokers {
        let addr = format!("{host}:{port}");
        let up = tokio::time::timeout(
            Duration::from_secs(3),
            tokio::net::TcpStream::connect(&addr),
        )
        .await
        .is_ok_and(|r| r.is_ok());
        let rack = rack
            .as_ref()
            .map_or(String::new(), |r| format!(" (rack {r})"));
        println!(
            "  broker {id} {addr}{rack}: {}, leads {} partitions",
            if up { "reachable" } else { "UNREACHABLE" },
            led.get(id).copied().unwrap_or(0)
        );
    }
    if let Some(n) = led.get(&-1) {
        println!("  {n} partitions have no leader");
    }
    if under.is_empty() {
        println!("every partition has all its replicas in sync");
    } else {
        println!("{} under-replicated partitions:", under.len());
        for u in under {
            println!("  {u}");
        }
    }
    Ok(())
}
