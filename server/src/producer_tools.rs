//! `weir producers`: the idempotent producers each partition's leader holds
//! state for, like `kafka-transactions --describe-producers`.

use crate::client::Client;

/// `weir producers` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum ProducersCommand {
    /// Show each partition's idempotent producers: id, epoch, last sequence
    /// and last timestamp, as the partition's leader knows them.
    Describe {
        /// The topic.
        topic: String,
        /// Only this partition.
        #[arg(long, short)]
        partition: Option<i32>,
    },
}

/// Runs a `weir producers` command against `bootstrap`.
///
/// # Errors
/// An unknown topic or partition, a partition whose leader answered with an
/// error, connection and Kafka errors.
pub async fn producers(bootstrap: String, command: ProducersCommand) -> anyhow::Result<()> {
    let mut c = Client::new(&bootstrap);
    let ProducersCommand::Describe { topic, partition } = command;
    let listed = c.describe_producers(&topic, partition).await?;
    println!(
        "{:<10} {:>20} {:>6} {:>14} {:>15}",
        "PARTITION", "PRODUCER-ID", "EPOCH", "LAST-SEQUENCE", "LAST-TIMESTAMP"
    );
    let mut failed = Vec::new();
    for (p, producers) in listed {
        match producers {
            Ok(producers) => {
                for s in producers {
                    println!(
                        "{p:<10} {:>20} {:>6} {:>14} {:>15}",
                        s.producer_id, s.epoch, s.last_sequence, s.last_timestamp
                    );
                }
            }
            Err(e) => failed.push(format!("partition {p}: {e}")),
        }
    }
    anyhow::ensure!(failed.is_empty(), "{}", failed.join("; "));
    Ok(())
}
