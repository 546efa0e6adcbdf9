//! The command-line tools `weir topics`, `weir produce` and `weir consume`: thin
//! wrappers over [`crate::client`] that work against any Kafka-compatible broker.
//! Record batches are encoded and decoded with `kafka_protocol::records`, so
//! `weir consume` reads compressed batches and `weir produce --compression` writes
//! them.

use std::io::{BufRead as _, Write as _};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::records::{
    Compression, NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE, Record,
    RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use crate::client::Client;

/// `weir topics` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum TopicsCommand {
    /// Create a topic.
    Create {
        /// The topic.
        name: String,
        /// Partitions.
        #[arg(long, default_value_t = 1)]
        partitions: i32,
        /// Replicas of each partition (-1: the broker's default).
        #[arg(long, default_value_t = -1)]
        replication: i16,
        /// A topic config as KEY=VALUE (repeatable).
        #[arg(long = "config", value_parser = parse_kv)]
        configs: Vec<(String, String)>,
    },
    /// List topics.
    List,
    /// Show a topic's partitions, leaders, replicas and ISR.
    Describe {
        /// The topic.
        name: String,
    },
    /// Delete a topic.
    Delete {
        /// The topic.
        name: String,
    },
    /// Delete a partition's oldest records (DeleteRecords): its log start moves
    /// to `--before`, and consumers below it reset per `auto.offset.reset`.
    Trim {
        /// The topic.
        name: String,
        /// The partition.
        #[arg(long, short)]
        partition: i32,
        /// The first offset to keep; `end` deletes every record written so far.
        #[arg(long)]
        before: String,
    },
    /// Move a partition's replicas to other nodes (AlterPartitionReassignments):
    /// `--replicas 2,3,4` (the first preferred), or `--cancel` a move.
    Reassign {
        /// The topic.
        name: String,
        /// The partition.
        #[arg(long, short)]
        partition: i32,
        /// The node ids the partition moves to, comma-separated.
        #[arg(long, value_delimiter = ',', conflicts_with = "cancel")]
        replicas: Vec<i32>,
        /// Cancel the partition's move (it goes back to where it started).
        #[arg(long)]
        cancel: bool,
    },
    /// List the moves under way (ListPartitionReassignments).
    Reassignments,
    /// Grow a topic to more partitions (CreatePartitions); the new ones
    /// continue the topic's rotation over the brokers.
    AddPartitions {
        /// The topic.
        name: String,
        /// The partition count it grows to.
        #[arg(long)]
        partitions: i32,
    },
}

/// Codecs `weir produce --compression` can write.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default)]
pub enum Codec {
    /// No compression.
    #[default]
    None,
    /// gzip.
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4.
    Lz4,
    /// Zstandard.
    Zstd,
}

impl From<Codec> for Compression {
    fn from(c: Codec) -> Self {
        match c {
            Codec::None => Compression::None,
            Codec::Gzip => Compression::Gzip,
            Codec::Snappy => Compression::Snappy,
            Codec::Lz4 => Compression::Lz4,
            Codec::Zstd => Compression::Zstd,
        }
    }
}

/// `weir produce`: lines from standard input, one record each (acks=all).
#[derive(clap::Args, Debug)]
pub struct ProduceArgs {
    /// The topic.
    pub topic: String,
    /// A broker to start from.
    #[arg(long, short, default_value = "127.0.0.1:9092")]
    pub bootstrap: String,
    /// The partition.
    #[arg(long, short, default_value_t = 0)]
    pub partition: i32,
    /// Split each line into KEY and VALUE at the first occurrence of this.
    #[arg(long)]
    pub key_separator: Option<String>,
    /// Records per batch.
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
    /// Compress each batch with this codec.
    #[arg(long, value_enum, default_value_t = Codec::None)]
    pub compression: Codec,
}

/// `weir consume`: print the records of a partition.
#[derive(clap::Args, Debug)]
pub struct ConsumeArgs {
    /// The topic.
    pub topic: String,
    /// A broker to start from.
    #[arg(long, short, default_value = "127.0.0.1:9092")]
    pub bootstrap: String,
    /// The partition.
    #[arg(long, short, default_value_t = 0)]
    pub partition: i32,
    /// `beginning`, `end`, or an offset.
    #[arg(long, default_value = "beginning")]
    pub from: String,
    /// Stop after this many records.
    #[arg(long)]
    pub count: Option<u64>,
    /// Keep waiting for new records instead of stopping at the end.
    #[arg(long)]
    pub follow: bool,
    /// Print `offset key value` instead of only the value.
    #[arg(long)]
    pub verbose: bool,
    /// Consume as a member of this consumer group (the KIP-848 protocol: weir,
    /// Kafka 4): the coordinator assigns the topic's partitions among the
    /// group's members, each starts at the group's committed offset (else as
    /// `--from` says: `beginning` or `end`), and what is read is committed every
    /// second and on exit. `--partition` is ignored.
    #[arg(long)]
    pub group: Option<String>,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected KEY=VALUE"))?;
    Ok((k.to_string(), v.to_string()))
}

/// Encodes `(key, value)` pairs as one RecordBatch v2 with offsets from 0 and
/// `timestamp` on every record.
///
/// # Errors
/// When the codec fails.
pub fn encode_batch(
    records: &[(Option<Bytes>, Option<Bytes>)],
    timestamp: i64,
    compression: Compression,
) -> anyhow::Result<Bytes> {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch wherever offset - sequence changes, and
            // writes the first record's sequence as the batch's base sequence: so
            // -1 (none, as for any producer without an id) for the first record,
            // counting up from there, keeps every record in one batch.
            sequence: NO_SEQUENCE.wrapping_add(i as i32),
            timestamp,
            key: key.clone(),
            value: value.clone(),
            headers: IndexMap::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options)
        .map_err(|e| anyhow::anyhow!("encoding a record batch: {e}"))?;
    Ok(buf.freeze())
}

/// Decodes the data records (control records left out) of the whole batches in a
/// fetched record set, in offset order; a partial batch at the end is ignored.
///
/// # Errors
/// A batch that fails its checks or does not decode (an unknown codec, say).
pub fn decode_records(records: &[u8]) -> anyhow::Result<Vec<Record>> {
    let mut out = Vec::new();
    for batch in weir_core::batch::iter_batches(records) {
        let (_, bytes) = batch?;
        let mut bytes = Bytes::copy_from_slice(bytes);
        let set = RecordBatchDecoder::decode(&mut bytes)
            .map_err(|e| anyhow::anyhow!("decoding a record batch: {e}"))?;
        out.extend(set.records.into_iter().filter(|r| !r.control));
    }
    Ok(out)
}

/// Runs a `weir topics` subcommand against `bootstrap`.
///
/// # Errors
/// Connection and Kafka errors.
pub async fn topics(bootstrap: String, command: TopicsCommand) -> anyhow::Result<()> {
    let mut c = Client::new(&bootstrap);
    match command {
        TopicsCommand::Create {
            name,
            partitions,
            replication,
            configs,
        } => {
            c.create_topic(&name, partitions, replication, &configs)
                .await?;
            println!("created {name}");
        }
        TopicsCommand::List => {
            let (_, topics) = c.metadata(None).await?;
            for t in topics {
                println!("{}", t.name);
            }
        }
        TopicsCommand::Describe { name } => {
            let (brokers, topics) = c.metadata(Some(&[&name])).await?;
            let t = topics
                .into_iter()
                .find(|t| t.name == name)
                .ok_or_else(|| anyhow::anyhow!("no topic {name}"))?;
            anyhow::ensure!(t.error == 0, "topic {name}: error {}", t.error);
            println!("topic {name}: {} partitions", t.partitions.len());
            for (p, leader, replicas, isr) in t.partitions {
                let addr = brokers.get(&leader).map_or("-", String::as_str);
                println!(
                    "  partition {p}: leader {leader} ({addr}) replicas {replicas:?} isr {isr:?}"
                );
            }
        }
        TopicsCommand::Delete { name } => {
            c.delete_topic(&name).await?;
            println!("deleted {name}");
        }
        TopicsCommand::Trim {
            name,
            partition,
            before,
        } => {
            let offset = match before.as_str() {
                "end" => -1,
                n => n.parse::<i64>().ok().filter(|o| *o >= 0).ok_or_else(|| {
                    anyhow::anyhow!("--before {n:?}: expected an offset (0 or more) or `end`")
                })?,
            };
            let start = c.delete_records(&name, partition, offset).await?;
            println!("{name}-{partition}: log starts at offset {start}");
        }
        TopicsCommand::Reassign {
            name,
            partition,
            replicas,
            cancel,
        } => {
            anyhow::ensure!(
                cancel || !replicas.is_empty(),
                "give --replicas N,N,… or --cancel"
            );
            c.reassign(&name, partition, (!cancel).then_some(replicas))
                .await?;
            println!(
                "{name}-{partition}: {}",
                if cancel {
                    "move cancelled"
                } else {
                    "move started (see `weir topics reassignments`)"
                }
            );
        }
        TopicsCommand::Reassignments => {
            let moves = c.reassignments().await?;
            if moves.is_empty() {
                println!("no partition is being moved");
            }
            for (t, p, replicas, adding, removing) in moves {
                println!(
                    "{t}-{p}: replicas {replicas:?}, adding {adding:?}, removing {removing:?}"
                );
            }
        }
        TopicsCommand::AddPartitions { name, partitions } => {
            c.create_partitions(&name, partitions).await?;
            println!("{name} has {partitions} partitions");
        }
    }
    Ok(())
}

/// Runs `weir produce`: standard input's lines as records, in batches.
///
/// # Errors
/// Reading standard input, encoding, connection and Kafka errors.
pub async fn produce(args: ProduceArgs) -> anyhow::Result<()> {
    let mut c = Client::new(&args.bootstrap);
    let mut lines = std::io::stdin().lock().lines();
    let mut total = 0usize;
    loop {
        let mut batch = Vec::new();
        for line in lines.by_ref() {
            let line = line?;
            let split = args
                .key_separator
                .as_deref()
                .and_then(|sep| line.split_once(sep));
            batch.push(match split {
                Some((k, v)) => (Some(Bytes::from(k.to_string())), v.to_string()),
                None => (None, line.clone()),
            });
            if batch.len() == args.batch.max(1) {
                break;
            }
        }
        if batch.is_empty() {
            break;
        }
        let records: Vec<(Option<Bytes>, Option<Bytes>)> = batch
            .into_iter()
            .map(|(k, v)| (k, Some(Bytes::from(v))))
            .collect();
        let encoded = encode_batch(
            &records,
            weir_core::batch::now_ms(),
            args.compression.into(),
        )?;
        c.produce(&args.topic, args.partition, encoded).await?;
        total += records.len();
    }
    eprintln!(
        "produced {total} records to {}-{}",
        args.topic, args.partition
    );
    Ok(())
}

/// Runs `weir consume`: prints a partition's records from an offset.
///
/// # Errors
/// Connection, Kafka and decoding errors.
pub async fn consume(args: ConsumeArgs) -> anyhow::Result<()> {
    if let Some(group) = &args.group {
        return crate::group_tools::consume_group(&args, group).await;
    }
    let mut c = Client::new(&args.bootstrap);
    let mut offset = match args.from.as_str() {
        "beginning" => c.list_offset(&args.topic, args.partition, -2).await?,
        "end" => c.list_offset(&args.topic, args.partition, -1).await?,
        o => o
            .parse()
            .map_err(|_| anyhow::anyhow!("--from {o:?}: expected beginning, end or an offset"))?,
    };
    let mut printed = 0u64;
    let mut out = std::io::stdout().lock();
    let wait = if args.follow {
        Duration::from_secs(1)
    } else {
        Duration::ZERO
    };
    loop {
        let (records, high) = c.fetch(&args.topic, args.partition, offset, wait).await?;
        for r in decode_records(&records)? {
            if r.offset < offset {
                continue;
            }
            let value = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default());
            if args.verbose {
                let key = String::from_utf8_lossy(r.key.as_deref().unwrap_or_default());
                writeln!(out, "{} {key} {value}", r.offset)?;
            } else {
                writeln!(out, "{value}")?;
            }
            offset = r.offset + 1;
            printed += 1;
            if args.count.is_some_and(|n| printed >= n) {
                return Ok(());
            }
        }
        if offset >= high && !args.follow {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_round_trip_with_every_codec() {
        let records = vec![
            (
                Some(Bytes::from_static(b"k")),
                Some(Bytes::from_static(b"v1")),
            ),
            (None, Some(Bytes::from(vec![7u8; 4000]))),
        ];
        for codec in [
            Codec::None,
            Codec::Gzip,
            Codec::Snappy,
            Codec::Lz4,
            Codec::Zstd,
        ] {
            let b = encode_batch(&records, 1_000, codec.into()).unwrap();
            let h = weir_core::batch::verify_produced(&b).unwrap();
            assert_eq!(h.compression(), Compression::from(codec) as u8);
            let back = decode_records(&b).unwrap();
            assert_eq!(back.len(), 2, "{codec:?}");
            assert_eq!(back[0].key, records[0].0);
            assert_eq!(back[1].value, records[1].1);
            assert_eq!((back[0].offset, back[1].offset), (0, 1));
        }
    }
}
