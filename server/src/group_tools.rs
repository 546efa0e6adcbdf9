//! `weir groups`: list, describe (with lag), reset and delete consumer groups on
//! any Kafka-compatible broker, like `kafka-consumer-groups`.

use std::io::Write as _;
use std::time::{Duration, Instant};

use crate::client::Client;
use crate::client::member::Reset;
use crate::tools::{ConsumeArgs, decode_records};

/// How often `weir consume --group` commits what it read.
const AUTO_COMMIT: Duration = Duration::from_secs(1);

/// `weir consume TOPIC --group G`: consumes the partitions the group's
/// coordinator assigns this member, printing records as `weir consume` does,
/// until `--count` records, the end of its partitions (without `--follow`), or
/// Ctrl-C; commits every second and when it stops, then leaves the group.
///
/// # Errors
/// A bad `--from`, connection and Kafka errors.
pub async fn consume_group(args: &ConsumeArgs, group: &str) -> anyhow::Result<()> {
    let reset = match args.from.as_str() {
        "beginning" => Reset::Earliest,
        "end" => Reset::Latest,
        o => anyhow::bail!("--from {o:?}: with --group, expected beginning or end"),
    };
    let mut c = Client::new(&args.bootstrap);
    let mut member = c.join(group, &[args.topic.as_str()], reset).await?;
    let mut out = std::io::stdout().lock();
    let (mut printed, mut last_commit) = (0u64, Instant::now());
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    'run: loop {
        member.heartbeat_if_due(&mut c).await?;
        let mut behind = false;
        let owned: Vec<((String, i32), i64)> = member
            .assignment()
            .iter()
            .map(|(k, o)| (k.clone(), *o))
            .collect();
        for ((topic, partition), at) in owned {
            let (records, high) = c.fetch(&topic, partition, at, Duration::ZERO).await?;
            for r in decode_records(&records)? {
                if r.offset < at {
                    continue;
                }
                let value = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default());
                if args.verbose {
                    let key = String::from_utf8_lossy(r.key.as_deref().unwrap_or_default());
                    writeln!(out, "{partition} {} {key} {value}", r.offset)?;
                } else {
                    writeln!(out, "{value}")?;
                }
                member.advance(&topic, partition, r.offset + 1);
                printed += 1;
                if args.count.is_some_and(|n| printed >= n) {
                    break 'run;
                }
            }
            let next = member
                .assignment()
                .get(&(topic, partition))
                .copied()
                .unwrap_or(high);
            behind |= next < high;
        }
        if last_commit.elapsed() >= AUTO_COMMIT {
            member.commit(&mut c).await?;
            last_commit = Instant::now();
        }
        let assigned = !member.assignment().is_empty();
        if !behind && assigned && !args.follow {
            break;
        }
        if !behind {
            tokio::select! {
                _ = &mut stop => break,
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    }
    out.flush()?;
    member.leave(&mut c).await
}

/// `weir groups` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum GroupsCommand {
    /// List every group, with its state.
    List,
    /// Show a group's members and, per partition, the committed offset, the log
    /// end offset and the lag.
    Describe {
        /// The group.
        group: String,
    },
    /// Set a group's committed offsets for a topic (the group must have no
    /// members).
    Reset {
        /// The group.
        group: String,
        /// The topic.
        #[arg(long)]
        topic: String,
        /// `earliest`, `latest`, or an offset.
        #[arg(long)]
        to: String,
    },
    /// Delete a group and its committed offsets (it must have no members).
    Delete {
        /// The group.
        group: String,
    },
}

/// Runs a `weir groups` command, printing to standard output.
///
/// # Errors
/// Connection and Kafka errors, and a bad `--to`.
pub async fn groups(bootstrap: String, command: GroupsCommand) -> anyhow::Result<()> {
    let mut c = Client::new(&bootstrap);
    match command {
        GroupsCommand::List => {
            println!("{:<40} {:<20} PROTOCOL-TYPE", "GROUP", "STATE");
            for g in c.list_groups().await? {
                println!("{:<40} {:<20} {}", g.group, g.state, g.protocol_type);
            }
        }
        GroupsCommand::Describe { group } => {
            let d = c.describe_group(&group).await?;
            println!(
                "group {group}: {}, {} member(s), assignor {}",
                d.state,
                d.members.len(),
                if d.protocol.is_empty() {
                    "-"
                } else {
                    &d.protocol
                }
            );
            let owner = |t: &str, p: i32| {
                d.members
                    .iter()
                    .find(|m| m.assignment.iter().any(|(mt, mp)| mt == t && *mp == p))
            };
            let mut rows: Vec<(String, i32, i64)> = c.committed_offsets(&group).await?;
            for m in &d.members {
                for (t, p) in &m.assignment {
                    if !rows.iter().any(|(rt, rp, _)| rt == t && rp == p) {
                        rows.push((t.clone(), *p, -1));
                    }
                }
            }
            rows.sort();
            println!(
                "{:<30} {:>9} {:>14} {:>14} {:>10}  {:<50} {:<16} CLIENT-ID",
                "TOPIC",
                "PARTITION",
                "CURRENT-OFFSET",
                "LOG-END-OFFSET",
                "LAG",
                "CONSUMER-ID",
                "HOST"
            );
            for (t, p, committed) in rows {
                let end = c.list_offset(&t, p, -1).await?;
                let (current, lag) = if committed < 0 {
                    ("-".to_string(), "-".to_string())
                } else {
                    (committed.to_string(), (end - committed).max(0).to_string())
                };
                let (id, host, client) = owner(&t, p).map_or(("-", "-", "-"), |m| {
                    (m.member_id.as_str(), m.host.as_str(), m.client_id.as_str())
                });
                println!(
                    "{t:<30} {p:>9} {current:>14} {end:>14} {lag:>10}  {id:<50} {host:<16} {client}"
                );
            }
        }
        GroupsCommand::Reset { group, topic, to } => {
            let (_, topics) = c.metadata(Some(&[topic.as_str()])).await?;
            let parts: Vec<i32> = topics
                .iter()
                .find(|t| t.name == topic && t.error == 0)
                .map(|t| t.partitions.iter().map(|p| p.0).collect())
                .ok_or_else(|| anyhow::anyhow!("topic {topic} does not exist"))?;
            let mut offsets = Vec::with_capacity(parts.len());
            for p in parts {
                let o = match to.as_str() {
                    "earliest" => c.list_offset(&topic, p, -2).await?,
                    "latest" => c.list_offset(&topic, p, -1).await?,
                    n => n.parse::<i64>().map_err(|_| {
                        anyhow::anyhow!("--to {n:?}: want earliest, latest or an offset")
                    })?,
                };
                offsets.push((topic.clone(), p, o));
            }
            c.commit_offsets(&group, &offsets).await?;
            for (t, p, o) in offsets {
                println!("{group}: {t}-{p} -> {o}");
            }
        }
        GroupsCommand::Delete { group } => {
            c.delete_group(&group).await?;
            println!("deleted group {group}");
        }
    }
    Ok(())
}
