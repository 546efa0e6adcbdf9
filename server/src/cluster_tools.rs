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
}

/// Runs a `weir cluster` subcommand against `bootstrap`.
///
/// # Errors
/// Connection and Kafka errors.
pub async fn cluster(bootstrap: String, command: ClusterCommand) -> anyhow::Result<()> {
    let mut c = Client::new(&bootstrap);
    match command {
        ClusterCommand::Status => status(&mut c).await,
        ClusterCommand::Balance => {
            let results = c.elect_preferred_leaders(None, 30_000).await?;
            let (mut moved, mut already, mut failed) = (0, 0, Vec::new());
            for (topic, p, code, msg) in results {
                match code {
                    0 => moved += 1,
                    // ELECTION_NOT_NEEDED
                    84 => already += 1,
                    _ => failed.push(format!(
                        "{topic}-{p}: error {code}{}",
                        msg.map(|m| format!(" ({m})")).unwrap_or_default()
                    )),
                }
            }
            println!(
                "{moved} partitions moved to their preferred leader, {already} were there already"
            );
            for f in &failed {
                println!("  not moved: {f}");
            }
            Ok(())
        }
    }
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
    for (id, host, port) in &brokers {
        let addr = format!("{host}:{port}");
        let up = tokio::time::timeout(
            Duration::from_secs(3),
            tokio::net::TcpStream::connect(&addr),
        )
        .await
        .is_ok_and(|r| r.is_ok());
        println!(
            "  broker {id} {addr}: {}, leads {} partitions",
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
