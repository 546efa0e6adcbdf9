//! `weir`: the broker binary. Thin: parses the command line and hands over to
//! [`weir_server`].

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use weir_server::config::{Config, EngineKind, TransportKind};

/// weir, a Kafka-compatible message broker with pluggable storage and transports.
#[derive(Parser, Debug)]
#[command(name = "weir", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a broker.
    Serve(ServeArgs),
    /// List the storage engines and transports compiled into this binary.
    Plugins,
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
    /// Another voter of a static cluster, as ID=HOST:PORT (repeatable).
    #[arg(long = "peer", value_parser = parse_peer)]
    peers: Vec<(u64, String)>,
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
        if let Some(v) = self.peer_listen {
            c.peer_listen = Some(v);
        }
        if !self.peers.is_empty() {
            c.peers = self.peers.into_iter().collect();
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

async fn shutdown_signal() {
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
    tracing::info!("shutting down");
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,raft=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Plugins => {
            println!("engines: {}", weir_server::compiled_engines().join(", "));
            let t = weir_server::compiled_transports();
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
        Command::Serve(args) => serve(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weir: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.kafka_listen)
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot listen for Kafka clients on {}: {e}",
                    config.kafka_listen
                )
            })?;
        weir_server::run(config, listener, shutdown_signal()).await
    })
}
