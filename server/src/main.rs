//! `weir`: the broker binary. Thin: parses the command line and hands over to
//! [`weir_server`].

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use weir_server::config::{Config, EngineKind, TransportKind};

/// weir, a Kafka-compatible message broker with pluggable storage and transports.
#[derive(Parser, Debug)]
#[command(name = "weir", version, about)]
struct Cli {
    /// How log lines are written to standard error: `text` (for people) or
    /// `json` (one object per line, for log shippers). Filter them with
    /// RUST_LOG, e.g. `RUST_LOG=info,weir_core::snapshot=debug`.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// See [`Cli::log_format`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a broker.
    Serve(ServeArgs),
    /// Create, list, describe or delete topics on any Kafka-compatible broker.
    Topics {
        /// A broker to start from.
        #[arg(long, short, default_value = "127.0.0.1:9092")]
        bootstrap: String,
        #[command(subcommand)]
        command: weir_server::tools::TopicsCommand,
    },
    /// List, describe (with lag), reset or delete consumer groups on any
    /// Kafka-compatible broker.
    Groups {
        /// A broker to start from.
        #[arg(long, short, default_value = "127.0.0.1:9092")]
        bootstrap: String,
        #[command(subcommand)]
        command: weir_server::group_tools::GroupsCommand,
    },
    /// The cluster's brokers and leaders, and preferred leader elections.
    Cluster {
        /// A broker to start from.
        #[arg(long, short, default_value = "127.0.0.1:9092")]
        bootstrap: String,
        #[command(subcommand)]
        command: weir_server::cluster_tools::ClusterCommand,
    },
    /// Show the idempotent producers each partition's leader holds state for.
    Producers {
        /// A broker to start from.
        #[arg(long, short, default_value = "127.0.0.1:9092")]
        bootstrap: String,
        #[command(subcommand)]
        command: weir_server::producer_tools::ProducersCommand,
    },
    /// Produce lines from standard input, one record each (acks=all).
    Produce(weir_server::tools::ProduceArgs),
    /// Print the records of a partition.
    Consume(weir_server::tools::ConsumeArgs),
    /// Measure produce or consume throughput and latency against any broker.
    Bench(BenchCli),
    /// List the storage engines and transports compiled into this binary.
    Plugins,
    /// Repair a stopped node's data directory as a refusal at start says to.
    Recover(RecoverArgs),
}

/// What to recover; the node is named by the same config and flags as `serve`.
#[derive(clap::Args, Debug)]
struct RecoverArgs {
    /// Start these partition groups (as the refusal names them, e.g. g7) without
    /// the records the refusal says are gone. Those records are dropped for good.
    #[arg(long = "accept-loss", required = true, num_args = 1.., value_parser = weir_server::recover::parse_group)]
    accept_loss: Vec<weir_core::GroupId>,
    #[command(flatten)]
    node: ServeArgs,
}

#[derive(clap::Args, Debug)]
struct BenchCli {
    /// `produce`, `consume`, `e2e` (produce, then consume what was produced),
    /// `probe` (the latency of a latest-offset lookup on partition 0 of the topic,
    /// every `--linger-ms`, for `--duration` seconds, while other load runs), or
    /// `commit` (OffsetCommit throughput: `--producers` clients, each committing
    /// for its own group with `--in-flight` commits unanswered, for `--duration`
    /// seconds), or `rebalance` (`--rounds` times: the time from a fourth member
    /// joining a three-member consumer group until every partition is owned
    /// again, KIP-848 protocol), or `producer-ids` (`--producers` producers,
    /// each with its own id under `--idempotent`, produce one batch each,
    /// `--in-flight` at a time: many producers' state for a restart to restore).
    #[arg(value_parser = ["produce", "consume", "e2e", "probe", "commit", "rebalance", "producer-ids"])]
    mode: String,
    /// Brokers to start from (comma-separated).
    #[arg(long, short, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// The topic (created when missing).
    #[arg(long, default_value = "weir-bench")]
    topic: String,
    /// Partitions of the topic.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// Bytes per record value.
    #[arg(long, default_value_t = 1024)]
    record_size: usize,
    /// Records to produce in all.
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Records per batch.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Concurrent producers; producer i sends one batch to each partition p with
    /// p % producers == i per request.
    #[arg(long, default_value_t = 4)]
    producers: usize,
    /// Produce for this many seconds instead of `--records` records.
    #[arg(long)]
    duration: Option<f64>,
    /// Acknowledgement: `all` or `leader` (weir treats both as all replicas).
    #[arg(long, default_value = "all", value_parser = ["all", "leader"])]
    acks: String,
    /// Milliseconds of pause between a producer's requests (0: back to back).
    #[arg(long, default_value_t = 0)]
    linger_ms: u64,
    /// Requests each producer keeps in flight on its connection, as Kafka producers
    /// do (1: one at a time; above 1 `--linger-ms` is ignored and a producer's
    /// partitions must share a leader).
    #[arg(long, default_value_t = 1)]
    in_flight: usize,
    /// Concurrent consumers (splitting the partitions).
    #[arg(long, default_value_t = 1)]
    consumers: usize,
    /// Consume as members of this consumer group (the KIP-848 protocol; the
    /// coordinator assigns the partitions) instead of by assigning them.
    #[arg(long)]
    group: Option<String>,
    /// Rounds of `rebalance`.
    #[arg(long, default_value_t = 10)]
    rounds: usize,
    /// Produce as idempotent producers (InitProducerId, numbered batches).
    #[arg(long)]
    idempotent: bool,
    /// Give records keys `k0`…`k{N-1}` (record i of a batch gets key i mod N),
    /// as a compacted topic needs; 0 (the default) leaves them without keys.
    #[arg(long, default_value_t = 0)]
    keys: u64,
    /// Compression of produced batches: none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none", value_parser = ["none", "gzip", "snappy", "lz4", "zstd"])]
    compression: String,
    /// Print JSON instead of a summary line.
    #[arg(long)]
    json: bool,
}

/// Flags override the config file.
#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// A TOML config file (see README.md for the keys).
    #[arg(long)]
    config: Option<PathBuf>,
    /// This node's id.
    #[arg(long)]
    node_id: Option<u64>,
    /// Where data is kept.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Where Kafka clients connect, e.g. 127.0.0.1:9092.
    #[arg(long)]
    kafka_listen: Option<std::net::SocketAddr>,
    /// The Kafka address given to clients (default: --kafka-listen).
    #[arg(long)]
    advertised_kafka: Option<String>,
    /// Where peers connect.
    #[arg(long)]
    peer_listen: Option<std::net::SocketAddr>,
    /// Where the admin HTTP server (metrics, health, cluster view) listens,
    /// e.g. 127.0.0.1:9644; `none` disables it.
    #[arg(long)]
    admin_listen: Option<String>,
    /// Another voter of a static cluster, as ID=HOST:PORT (repeatable).
    #[arg(long = "peer", value_parser = parse_peer)]
    peers: Vec<(u64, String)>,
    /// Join a running cluster at the first start, asking the nodes whose
    /// admin addresses are given (comma-separated) to add this one (no --peer).
    #[arg(long, value_delimiter = ',')]
    join: Vec<String>,
    /// This node's rack (`rack`): reported to clients, and new topics spread
    /// their replicas over racks.
    #[arg(long)]
    rack: Option<String>,
    /// The storage engine.
    #[arg(long, value_enum)]
    engine: Option<EngineKind>,
    /// The peer transport.
    #[arg(long, value_enum)]
    transport: Option<TransportKind>,
}

fn parse_peer(s: &str) -> Result<(u64, String), String> {
    let (id, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("--peer {s:?}: expected ID=HOST:PORT"))?;
    let id = id
        .parse()
        .map_err(|_| format!("--peer {s:?}: {id:?} is not a node id"))?;
    Ok((id, addr.to_string()))
}

impl ServeArgs {
    fn config(self) -> anyhow::Result<Config> {
        let mut c = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if let Some(v) = self.node_id {
            c.node_id = v;
        }
        if let Some(v) = self.data_dir {
            c.data_dir = v;
        }
        if let Some(v) = self.kafka_listen {
            c.kafka_listen = v;
        }
        if let Some(v) = self.advertised_kafka {
            c.advertised_kafka = Some(v);
        }
        if let Some(v) = self.admin_listen {
            c.admin_listen = Some(v);
        }
        if let Some(v) = self.rack {
            c.rack = Some(v);
        }
        if let Some(v) = self.peer_listen {
            c.peer_listen = Some(v);
        }
        if !self.peers.is_empty() {
            c.peers = self.peers.into_iter().collect();
        }
        if !self.join.is_empty() {
            c.join = self.join;
        }
        if let Some(v) = self.engine {
            c.engine = v;
        }
        if let Some(v) = self.transport {
            c.transport = v;
        }
        c.validate()?;
        Ok(c)
    }
}

/// Resolves at the first SIGINT or SIGTERM, starting a graceful stop; a second
/// one ends the process at once (safe: everything acknowledged is durable;
/// only the leadership handover and the answers in flight are skipped).
async fn shutdown_signal() {
    first_signal().await;
    tracing::info!("shutting down (a second signal stops at once)");
    tokio::spawn(async {
        first_signal().await;
        tracing::warn!("second signal: stopping at once");
        std::process::exit(130);
    });
}

async fn first_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Keeps malformed requests that claim huge arrays from aborting the process (see
/// `weir_server::alloc`).
#[global_allocator]
static ALLOC: weir_server::alloc::GuardedAlloc = weir_server::alloc::GuardedAlloc;

fn main() -> std::process::ExitCode {
    // First, before any thread or large buffer exists (see its docs: half of
    // `weir bench`'s and much of the broker's CPU went to page faults without it).
    let malloc_tuned = weir_server::alloc::tune_malloc();
    let cli = Cli::parse();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,raft=warn".into()),
        )
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    let result = match cli.command {
        Command::Plugins => {
            let plugins = weir_server::registry();
            println!("engines: {}", plugins.engine_names().join(", "));
            let t = plugins.transport_names();
            println!(
                "transports: {}",
                if t.is_empty() {
                    "(none)".to_string()
                } else {
                    t.join(", ")
                }
            );
            Ok(())
        }
        Command::Serve(args) => serve(args, malloc_tuned),
        Command::Recover(args) => recover(args),
        Command::Topics { bootstrap, command } => {
            tokio_main(weir_server::tools::topics(bootstrap, command))
        }
        Command::Cluster { bootstrap, command } => {
            tokio_main(weir_server::cluster_tools::cluster(bootstrap, command))
        }
        Command::Groups { bootstrap, command } => {
            tokio_main(weir_server::group_tools::groups(bootstrap, command))
        }
        Command::Producers { bootstrap, command } => {
            tokio_main(weir_server::producer_tools::producers(bootstrap, command))
        }
        Command::Produce(args) => tokio_main(weir_server::tools::produce(args)),
        Command::Consume(args) => tokio_main(weir_server::tools::consume(args)),
        Command::Bench(args) => tokio::runtime::Runtime::new()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(bench(args))),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weir: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs, malloc_tuned: bool) -> anyhow::Result<()> {
    weir_server::alloc::check_overcommit();
    if malloc_tuned {
        tracing::info!(
            mmap_threshold = weir_server::alloc::MMAP_THRESHOLD,
            trim_threshold = weir_server::alloc::TRIM_THRESHOLD,
            "malloc keeps large buffers for reuse"
        );
    } else {
        tracing::info!("malloc thresholds left as they are (set by the environment, or not glibc)");
    }
    match weir_server::rlimit::raise_open_files() {
        Ok(n) => tracing::info!(open_files = n, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open-file limit"),
    }
    let config = args.config()?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        // Everything that can refuse to start, before the port is opened.
        let prepared = weir_server::prepare(&config)?;
        let listener = tokio::net::TcpListener::bind(config.kafka_listen)
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot listen for Kafka clients on {}: {e}",
                    config.kafka_listen
                )
            })?;
        weir_server::run_prepared(config, prepared, listener, shutdown_signal()).await
    })
}

fn recover(args: RecoverArgs) -> anyhow::Result<()> {
    let config = args.node.config()?;
    for (group, loss) in weir_server::recover::accept_losses(&config, &args.accept_loss)? {
        match loss {
            Some(loss) => println!("{loss}"),
            None => println!("{group}: nothing is missing; left unchanged"),
        }
    }
    Ok(())
}

fn tokio_main(f: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f)
}

async fn bench(cli: BenchCli) -> anyhow::Result<()> {
    let args = weir_server::bench::BenchArgs {
        bootstrap: cli.bootstrap,
        topic: cli.topic,
        partitions: cli.partitions,
        record_size: cli.record_size,
        records: cli.records,
        batch: cli.batch,
        producers: cli.producers,
        duration: cli
            .duration
            .filter(|d| d.is_finite() && *d > 0.0)
            .map(std::time::Duration::from_secs_f64),
        acks: if cli.acks == "leader" { 1 } else { -1 },
        linger: std::time::Duration::from_millis(cli.linger_ms),
        in_flight: cli.in_flight,
        consumers: cli.consumers,
        compression: match cli.compression.as_str() {
            "gzip" => kafka_protocol::records::Compression::Gzip,
            "snappy" => kafka_protocol::records::Compression::Snappy,
            "lz4" => kafka_protocol::records::Compression::Lz4,
            "zstd" => kafka_protocol::records::Compression::Zstd,
            _ => kafka_protocol::records::Compression::None,
        },
        group: cli.group,
        idempotent: cli.idempotent,
        keys: cli.keys,
    };
    let mut reports = Vec::new();
    if cli.mode == "probe" {
        reports.push(weir_server::bench::probe(&args).await?);
    } else if cli.mode == "commit" {
        reports.push(weir_server::bench::commit(&args).await?);
    } else if cli.mode == "producer-ids" {
        reports.push(weir_server::bench::producers::producer_ids(&args, cli.json).await?);
    } else if cli.mode == "rebalance" {
        reports.push(weir_server::bench::groups::rebalance(&args, cli.rounds).await?);
    } else if cli.mode != "consume" {
        reports.push(weir_server::bench::produce(&args, cli.json).await?);
    }
    if cli.mode == "consume" || cli.mode == "e2e" {
        reports.push(weir_server::bench::consume(&args, cli.json).await?);
    }
    for r in reports {
        if cli.json {
            println!("{}", serde_json::to_string(&r)?);
        } else {
            println!("{r}");
        }
    }
    Ok(())
}
