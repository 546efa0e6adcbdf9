//! weir-server: the `weir` broker.
//!
//! # Layout
//!
//! * [`config`] — the TOML configuration and its flags.
//! * [`kafka`] — the Kafka listener: framing, dispatch, one handler per API.
//! * [`mod@bench`] — `weir bench`: produce and consume load with latency percentiles.
//! * [`client`] — a small Kafka client for the `topics`, `produce` and `consume`
//!   commands.
//! * [`run`] — start-up: open the configured engine and transport, start the node,
//!   serve Kafka until shutdown.
//!
//! Plug-ins are chosen at start from those compiled in; naming one that is not
//! compiled in is an error that names its cargo feature.

pub mod alloc;
pub mod bench;
pub mod client;
pub mod config;
pub mod fuzzing;
pub mod kafka;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use weir_core::transport::{GroupMessage, Transport};
use weir_core::{Engine, Node, NodeConfig, NodeId};

use crate::config::{Config, EngineKind};

/// The engines compiled into this binary, by configuration name.
pub fn compiled_engines() -> Vec<&'static str> {
    #[allow(unused_mut)] // with no optional engine compiled in
    let mut v = vec![weir_core::memory::NAME];
    #[cfg(feature = "engine-segment")]
    v.push(weir_engine_segment::NAME);
    #[cfg(feature = "engine-rocksdb")]
    v.push(weir_engine_rocksdb::NAME);
    #[cfg(feature = "engine-redb")]
    v.push(weir_engine_redb::NAME);
    v
}

/// Reads an engine's `[engine_<name>]` section into its own config type, which
/// rejects unknown keys.
#[cfg(any(feature = "engine-rocksdb", feature = "engine-redb"))]
fn engine_section<T: serde::de::DeserializeOwned>(
    name: &str,
    table: &toml::Table,
) -> anyhow::Result<T> {
    toml::Value::Table(table.clone())
        .try_into()
        .map_err(|e| anyhow::anyhow!("config section [engine_{name}]: {e}"))
}

/// The transports compiled into this binary, by configuration name.
pub fn compiled_transports() -> Vec<&'static str> {
    [
        #[cfg(feature = "transport-grpc")]
        weir_transport_grpc::NAME,
        #[cfg(feature = "transport-tcp")]
        weir_transport_tcp::NAME,
    ]
    .to_vec()
}

/// Opens the configured engine.
///
/// # Errors
/// When the engine is not compiled in (naming its cargo feature) or fails to open.
pub fn open_engine(config: &Config) -> anyhow::Result<Arc<dyn Engine>> {
    match config.engine {
        EngineKind::Memory => Ok(Arc::new(weir_core::memory::MemoryEngine::new())),
        #[cfg(feature = "engine-segment")]
        EngineKind::Segment => {
            let s = &config.engine_segment;
            let c = weir_engine_segment::Config {
                segment_bytes: s.segment_bytes,
                index_interval_bytes: s.index_interval_bytes,
                wal_file_bytes: s.wal_file_bytes,
            };
            let e = weir_engine_segment::SegmentEngine::open(&config.data_dir, c).with_context(
                || {
                    format!(
                        "opening the segment engine in {}",
                        config.data_dir.display()
                    )
                },
            )?;
            Ok(Arc::new(e))
        }
        #[cfg(feature = "engine-rocksdb")]
        EngineKind::Rocksdb => {
            let c = engine_section("rocksdb", &config.engine_rocksdb)?;
            let e = weir_engine_rocksdb::open(&config.data_dir, &c).with_context(|| {
                format!(
                    "opening the rocksdb engine in {}",
                    config.data_dir.display()
                )
            })?;
            Ok(Arc::new(e))
        }
        #[cfg(feature = "engine-redb")]
        EngineKind::Redb => {
            let c = engine_section("redb", &config.engine_redb)?;
            let e = weir_engine_redb::open(&config.data_dir, &c).with_context(|| {
                format!("opening the redb engine in {}", config.data_dir.display())
            })?;
            Ok(Arc::new(e))
        }
        #[allow(unreachable_patterns)]
        other => anyhow::bail!(
            "engine {:?} is not compiled into this binary; rebuild with `--features {}`",
            other,
            other.feature()
        ),
    }
}

/// A transport for a single-node cluster: there is nobody to send to.
#[derive(Debug)]
pub struct NoPeers;

impl Transport for NoPeers {
    fn send(&self, to: NodeId, msgs: Vec<GroupMessage>) {
        tracing::warn!(
            to,
            count = msgs.len(),
            "dropping Raft messages: no peers are configured"
        );
    }
}

/// The transport, and how to hand it the node's inbound once the node exists.
type Opened = (
    Arc<dyn Transport>,
    Box<dyn FnOnce(Arc<dyn weir_core::Inbound>) + Send>,
);

async fn open_transport(config: &Config) -> anyhow::Result<Opened> {
    if config.peers.is_empty() {
        return Ok((Arc::new(NoPeers), Box::new(|_| {})));
    }
    let listen = config
        .peer_listen
        .context("peer_listen is required when peers are configured")?;
    #[allow(unused_variables)] // with no transport compiled in
    let id = weir_core::transport::Identity {
        node: config.node_id,
        cluster_id: config.cluster_id.clone(),
        peers: config.peers.clone(),
    };
    #[allow(unused_variables)]
    let bind = || async {
        TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen for peers on {listen}"))
    };
    match config.transport {
        #[cfg(feature = "transport-tcp")]
        crate::config::TransportKind::Tcp => {
            let t = weir_transport_tcp::TcpTransport::start(
                bind().await?,
                id,
                weir_transport_tcp::Config::default(),
            )?;
            let reg = t.clone();
            Ok((t, Box::new(move |inbound| reg.register(inbound))))
        }
        #[cfg(feature = "transport-grpc")]
        crate::config::TransportKind::Grpc => {
            let t = weir_transport_grpc::GrpcTransport::start(
                bind().await?,
                id,
                weir_transport_grpc::Config::default(),
            )?;
            let reg = t.clone();
            Ok((t, Box::new(move |inbound| reg.register(inbound))))
        }
        #[allow(unreachable_patterns)]
        other => anyhow::bail!(
            "transport {:?} is not compiled into this binary; rebuild with `--features {}`",
            other,
            other.feature()
        ),
    }
}

/// Runs a broker: opens the engine and transport, starts the node, serves Kafka on
/// `kafka` until `shutdown` resolves or the node hits a fatal error, then stops.
///
/// # Errors
/// Start-up failures, and the node's fatal error if it had one.
pub async fn run(
    config: Config,
    kafka: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    config.validate()?;
    let engine = open_engine(&config)?;
    let (transport, register) = open_transport(&config).await?;
    let mut voters: Vec<NodeId> = config.peers.keys().copied().collect();
    voters.push(config.node_id);
    voters.sort_unstable();
    let mut node_cfg = NodeConfig::new(config.node_id, voters, config.advertised());
    node_cfg.tick = Duration::from_millis(config.raft_tick_ms);
    node_cfg.max_batch_bytes = config.max_batch_bytes;
    node_cfg.flush_bytes = config.flush_bytes;
    node_cfg.flush_interval = Duration::from_millis(config.flush_interval_ms);
    node_cfg.compact_bytes = config.compact_bytes;
    node_cfg.compact_interval = Duration::from_millis(config.compact_interval_ms);
    node_cfg.unsafe_bypass_leader_check = config.unsafe_bypass_leader_check;
    if config.unsafe_bypass_leader_check {
        tracing::error!(
            "unsafe_bypass_leader_check is on: acknowledgements are NOT trustworthy (negative-control tests only)"
        );
    }
    let node = Node::start(node_cfg, engine, transport)?;
    register(node.inbound());
    tracing::info!(
        node = config.node_id,
        kafka = %kafka.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        engine = ?config.engine,
        data_dir = %config.data_dir.display(),
        "weir is serving"
    );
    let ctx = Arc::new(kafka::Context {
        node: node.clone(),
        auto_create: config.auto_create_topics,
        default_partitions: config.default_partitions,
        default_replication: config.default_replication,
        max_request_bytes: config.max_request_bytes,
        max_connections: config.max_connections,
        stats: kafka::ListenerStats::default(),
    });
    let fatal_node = node.clone();
    let stop = async move {
        tokio::select! {
            () = shutdown => {}
            why = fatal_node.wait_fatal() => tracing::error!(error = %why, "stopping after a fatal error"),
        }
    };
    kafka::serve(kafka, ctx, stop).await;
    let fatal = node.fatal_error();
    node.shutdown().await;
    match fatal {
        Some(why) => anyhow::bail!("fatal error: {why}"),
        None => {
            tracing::info!("weir stopped");
            Ok(())
        }
    }
}
