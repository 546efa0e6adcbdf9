//! weir-server: the `weir` broker.
//!
//! # Layout
//!
//! * [`config`] — the TOML configuration and its flags.
//! * [`kafka`] — the Kafka listener: connections, framing, dispatch, one handler
//!   file per API family.
//! * [`mod@bench`] — `weir bench`: produce and consume load with latency percentiles.
//! * [`client`] — a small Kafka client for the tools and benchmarks.
//! * [`tools`] — the `topics`, `produce` and `consume` commands, with record
//!   batches encoded and decoded by `kafka_protocol::records` (every codec).
//! * [`rlimit`] — the open-file limit, raised to the hard limit at start.
//! * [`stamp`] — the node and cluster a data directory belongs to, checked at start.
//! * [`registry`] — the plug-ins compiled in, one `#[cfg(feature)]` line each.
//! * [`run`] — start-up: open the configured engine and transport, start the node,
//!   serve Kafka until shutdown.
//!
//! Plug-ins are chosen at start from those compiled in; naming one that is not
//! compiled in is an error that names its cargo feature.

pub mod admin;
pub mod alloc;
pub mod bench;
pub mod client;
pub mod cluster_tools;
pub mod config;
pub mod fuzzing;
pub mod group_tools;
pub mod kafka;
pub mod membership;
pub mod metrics;
pub mod producer_tools;
pub mod recover;
pub mod rlimit;
pub mod stamp;
pub mod tools;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use weir_core::registry::{PluginConfig, Registry};
use weir_core::transport::{GroupMessage, Transport};
use weir_core::{Engine, Node, NodeConfig, NodeId};

use crate::config::Config;

/// Every plug-in compiled into this binary: one registration per cargo feature.
pub fn registry() -> Registry {
    let mut r = Registry::default();
    weir_core::memory::register(&mut r);
    #[cfg(feature = "engine-segment")]
    weir_engine_segment::register(&mut r);
    #[cfg(feature = "engine-rocksdb")]
    weir_engine_rocksdb::register(&mut r);
    #[cfg(feature = "engine-redb")]
    weir_engine_redb::register(&mut r);
    #[cfg(feature = "transport-grpc")]
    weir_transport_grpc::register(&mut r);
    #[cfg(feature = "transport-tcp")]
    weir_transport_tcp::register(&mut r);
    r
}

/// A TOML section as a plug-in reads it.
fn plugin_config(section: Option<&toml::Table>) -> anyhow::Result<PluginConfig> {
    match section {
        None => Ok(PluginConfig::Null),
        Some(t) => serde_json::to_value(t).context("reading a plug-in's config section"),
    }
}

/// Opens the configured engine.
///
/// # Errors
/// When the engine is not compiled in (naming its cargo feature) or fails to open.
pub fn open_engine(config: &Config) -> anyhow::Result<Arc<dyn Engine>> {
    let kind = config.engine;
    let open = registry().engine(kind.name()).with_context(|| {
        format!(
            "engine {:?} is not compiled into this binary; rebuild with `--features {}`",
            kind.name(),
            kind.feature()
        )
    })?;
    let section = plugin_config(config.engine_section())?;
    open(&config.data_dir, &section).with_context(|| {
        format!(
            "opening the {} engine in {}",
            kind.name(),
            config.data_dir.display()
        )
    })
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
    Option<membership::AddPeer>,
);

async fn open_transport(config: &Config) -> anyhow::Result<Opened> {
    // A node with no peers and no peer listener is a cluster of one for good;
    // one with a peer listener may grow (nodes join it) or join one.
    if config.peers.is_empty() && config.peer_listen.is_none() {
        return Ok((Arc::new(NoPeers), Box::new(|_| {}), None));
    }
    let kind = config.transport;
    let start = registry().transport(kind.name()).with_context(|| {
        format!(
            "transport {:?} is not compiled into this binary; rebuild with `--features {}`",
            kind.name(),
            kind.feature()
        )
    })?;
    let listen = config
        .peer_listen
        .context("peer_listen is required when peers are configured or the node joins a cluster")?;
    let identity = weir_core::transport::Identity {
        node: config.node_id,
        cluster_id: config.cluster_id.clone(),
        peers: config.peers.clone(),
    };
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen for peers on {listen}"))?;
    let section = plugin_config(Some(config.transport_section()))?;
    let t = start(listener, identity, &section)?;
    let reg = t.clone();
    let book = t.clone();
    Ok((
        t,
        Box::new(move |inbound| reg.register(inbound)),
        Some(Arc::new(move |id, addr: &str| book.add_peer(id, addr))),
    ))
}

/// What [`prepare`] checked and opened: the data directory's stamp and the
/// engine.
pub struct Prepared {
    stamped: Option<stamp::Stamp>,
    engine: Arc<dyn weir_core::Engine>,
    descriptors_left: Option<u64>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("engine", &self.engine.name())
            .finish_non_exhaustive()
    }
}

/// Runs a broker: [`prepare`], then [`run_prepared`].
///
/// # Errors
/// Start-up failures, and the node's fatal error if it had one.
pub async fn run(
    config: Config,
    kafka: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let prepared = prepare(&config)?;
    run_prepared(config, prepared, kafka, shutdown).await
}

/// Checks the configuration and the data directory (its stamp: this node's,
/// this cluster's; an engine that lost its files) and opens the engine — all
/// that can refuse a start, so that a refusing node never opens its Kafka port
/// (`weir serve` binds it after this).
///
/// # Errors
/// A bad configuration, a directory of another node or cluster, an engine that
/// cannot open or lost its files.
pub fn prepare(config: &Config) -> anyhow::Result<Prepared> {
    config.validate()?;
    let stamped = if config.engine == config::EngineKind::Memory {
        None
    } else {
        Some(stamp::check_or_write(
            &config.data_dir,
            config.node_id,
            &config.cluster_id,
        )?)
    };
    // What is left of the open-file limit once the descriptors open now
    // (inherited ones) and the Kafka listener bound next are counted, before the
    // engine opens its partitions' files (the budget counts those itself);
    // RLIM_INFINITY: none.
    let descriptors_left = rlimit::descriptors_left().map(|n| n.saturating_sub(1));
    let engine = open_engine(config)?;
    if let Some(s) = &stamped {
        stamp::check_engine(&config.data_dir, s, engine.as_ref())?;
    }
    Ok(Prepared {
        stamped,
        engine,
        descriptors_left,
    })
}

/// The admin listener's address when none is configured.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9644";

/// Binds the admin listener `config` asks for (see
/// [`Config::admin_listen`](config::Config::admin_listen)).
///
/// # Errors
/// An address that was given and cannot be bound.
async fn bind_admin(config: &Config) -> anyhow::Result<Option<TcpListener>> {
    let (addr, given) = match config.admin_listen.as_deref() {
        Some("none") => return Ok(None),
        Some(a) => (a, true),
        None => (DEFAULT_ADMIN_LISTEN, false),
    };
    match TcpListener::bind(addr).await {
        Ok(l) => {
            // Before any request is answered: handles registered earlier
            // would go to no recorder.
            metrics::handle()?;
            tracing::info!(admin = %addr, "admin listener (metrics, health) bound");
            Ok(Some(l))
        }
        Err(e) if !given => {
            tracing::warn!(admin = %addr, error = %e, "the default admin listener cannot be bound; running without metrics and health endpoints (set admin_listen to an address of this node's own, or \"none\")");
            Ok(None)
        }
        Err(e) => Err(anyhow::anyhow!(
            "admin_listen {addr}: cannot listen there: {e} (give each node its own address, or \"none\")"
        )),
    }
}

/// Runs a broker on what [`prepare`] opened: opens the transport, starts the
/// node, serves Kafka on `kafka` until `shutdown` resolves or the node hits a
/// fatal error, then stops.
///
/// # Errors
/// Start-up failures, and the node's fatal error if it had one.
pub async fn run_prepared(
    config: Config,
    prepared: Prepared,
    kafka: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let Prepared {
        stamped,
        engine,
        descriptors_left,
    } = prepared;
    let (transport, register, add_peer) = open_transport(&config).await?;
    // A node that joins starts with no voters: it waits to be added.
    let voters: Vec<NodeId> = if config.join.is_empty() {
        let mut v: Vec<NodeId> = config.peers.keys().copied().collect();
        v.push(config.node_id);
        v.sort_unstable();
        v
    } else {
        Vec::new()
    };
    let mut node_cfg = NodeConfig::new(config.node_id, voters, config.advertised());
    node_cfg.peer_addr = add_peer.as_ref().and_then(|_| config.advertised_peer());
    node_cfg.rack = config.rack.clone();
    node_cfg.tick = Duration::from_millis(config.raft_tick_ms);
    node_cfg.max_batch_bytes = config.max_batch_bytes;
    node_cfg.flush_bytes = config.flush_bytes;
    node_cfg.flush_interval = Duration::from_millis(config.flush_interval_ms);
    node_cfg.compact_bytes = config.compact_bytes;
    node_cfg.compact_interval = Duration::from_millis(config.compact_interval_ms);
    node_cfg.max_partitions_per_topic = config.max_partitions_per_topic;
    node_cfg.max_partitions = config.max_partitions;
    node_cfg.max_pending_produce_bytes = config.max_pending_produce_bytes;
    node_cfg.min_free_bytes = config.min_free_bytes;
    node_cfg.max_decompressed_batch_bytes = config.max_decompressed_batch_bytes;
    node_cfg.max_queued_peer_bytes_per_group = config.max_queued_peer_bytes_per_group;
    node_cfg.open_file_limit = descriptors_left;
    node_cfg.group_partitions = config.group_partitions;
    node_cfg.offset_metadata_max_bytes = config.offset_metadata_max_bytes;
    node_cfg.offsets_retention = Duration::from_secs(config.offsets_retention_minutes * 60);
    node_cfg.group_initial_rebalance_delay =
        Duration::from_millis(config.group_initial_rebalance_delay_ms);
    node_cfg.group_min_session_timeout = Duration::from_millis(config.group_min_session_timeout_ms);
    node_cfg.group_max_session_timeout = Duration::from_millis(config.group_max_session_timeout_ms);
    node_cfg.group_max_members = config.group_max_members;
    node_cfg.group_consumer_heartbeat_interval =
        Duration::from_millis(config.group_consumer_heartbeat_interval_ms);
    node_cfg.group_consumer_session_timeout =
        Duration::from_millis(config.group_consumer_session_timeout_ms);
    node_cfg.group_consumer_assignor = config.group_consumer_assignor.clone();
    node_cfg.producer_id_expiration = Duration::from_millis(config.producer_id_expiration_ms);
    // -1 (validated: the only negative value) is "none".
    let optional_ms = |ms: i64| u64::try_from(ms).ok().map(Duration::from_millis);
    node_cfg.retention = optional_ms(config.retention_ms);
    node_cfg.retention_bytes = u64::try_from(config.retention_bytes).ok();
    node_cfg.raft_log_max_bytes = config.raft_log_max_bytes;
    node_cfg.raft_log_max_age = Duration::from_millis(config.raft_log_max_age_ms);
    node_cfg.metadata_checkpoint_entries = config.metadata_checkpoint_entries;
    node_cfg.metadata_keep_entries = config.metadata_keep_entries;
    node_cfg.segment_ms = optional_ms(config.segment_ms);
    node_cfg.retention_check_interval = Duration::from_millis(config.retention_check_interval_ms);
    node_cfg.snapshot_bytes_per_sec =
        (config.snapshot_bytes_per_sec > 0).then_some(config.snapshot_bytes_per_sec);
    node_cfg.reassignment_bytes_per_sec =
        (config.reassignment_bytes_per_sec > 0).then_some(config.reassignment_bytes_per_sec);
    node_cfg.delete_retention = Duration::from_millis(config.delete_retention_ms);
    node_cfg.min_cleanable_dirty_ratio = config.min_cleanable_dirty_ratio;
    node_cfg.min_compaction_lag = Duration::from_millis(config.min_compaction_lag_ms);
    node_cfg.cleaner_check_interval = Duration::from_millis(config.cleaner_check_interval_ms);
    node_cfg.replica_lag_max = Duration::from_millis(config.replica_lag_time_max_ms);
    node_cfg.auto_leader_rebalance = config.auto_leader_rebalance;
    node_cfg.leader_imbalance_check_interval =
        Duration::from_millis(config.leader_imbalance_check_interval_ms);
    node_cfg.leader_imbalance_percentage = config.leader_imbalance_per_node_percentage;
    node_cfg.cleaner_io_bytes_per_sec =
        (config.cleaner_io_bytes_per_sec > 0).then_some(config.cleaner_io_bytes_per_sec);
    node_cfg.cleaner_dedupe_buffer_bytes =
        usize::try_from(config.cleaner_dedupe_buffer_bytes).unwrap_or(usize::MAX);
    #[cfg(feature = "negative-controls")]
    {
        node_cfg.unsafe_bypass_leader_check = config.unsafe_bypass_leader_check;
        node_cfg.unsafe_group_offsets_in_memory = config.unsafe_group_offsets_in_memory;
        node_cfg.unsafe_no_producer_dedup = config.unsafe_no_producer_dedup;
        if config.unsafe_no_producer_dedup {
            tracing::error!(
                "unsafe_no_producer_dedup is on: retried batches are stored twice (negative-control tests only)"
            );
        }
        if config.unsafe_group_offsets_in_memory {
            tracing::error!(
                "unsafe_group_offsets_in_memory is on: committed offsets are NOT replicated (negative-control tests only)"
            );
        }
        if config.unsafe_bypass_leader_check {
            tracing::error!(
                "unsafe_bypass_leader_check is on: acknowledgements are NOT trustworthy (negative-control tests only)"
            );
        }
    }
    let admin = bind_admin(&config).await?;
    if admin.is_some() {
        weir_core::stats::register(engine.name());
    }
    let node = Node::start(node_cfg, engine.clone(), transport)?;
    register(node.inbound());
    // Tasks that hold the node, ended before it stops.
    let mut side_tasks = Vec::new();
    if let Some(add_peer) = add_peer {
        side_tasks.push(tokio::spawn(membership::follow_peers(
            node.clone(),
            add_peer.clone(),
        )));
        if let (false, Some(peer)) = (config.join.is_empty(), config.advertised_peer())
            && !membership::was_member(engine.as_ref(), config.node_id)
        {
            side_tasks.push(tokio::spawn(membership::join(
                node.clone(),
                config.join.clone(),
                peer,
                add_peer,
            )));
        }
    }
    if let Some(s) = stamped.filter(|s| !s.holds_raft_state) {
        tokio::spawn(mark_holding(config.data_dir.clone(), s, engine));
    }
    tracing::info!(
        node = config.node_id,
        kafka = %kafka.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        engine = ?config.engine,
        data_dir = %config.data_dir.display(),
        "weir is serving"
    );
    let ctx = Arc::new(kafka::Context {
        node: node.clone(),
        cluster_id: config.cluster_id.clone(),
        auto_create: config.auto_create_topics,
        default_partitions: config.default_partitions,
        default_replication: config.default_replication,
        max_request_bytes: config.max_request_bytes,
        max_connections: config.max_connections,
        max_connections_per_ip: config.max_connections_per_ip,
        max_partitions_per_topic: config.max_partitions_per_topic,
        max_auto_create_per_request: config.max_auto_create_per_request,
        connections_max_idle: Duration::from_millis(config.connections_max_idle_ms),
        request_read_timeout: Duration::from_millis(config.request_read_timeout_ms),
        stats: kafka::ListenerStats::default(),
        request_memory: kafka::RequestMemory::new(config.max_buffered_request_bytes),
    });
    let admin_stop = tokio_util::sync::CancellationToken::new();
    let admin_task = admin.map(|listener| {
        let stopped = admin_stop.clone();
        tokio::spawn(admin::serve(
            listener,
            node.clone(),
            ctx.clone(),
            config.metrics_max_partitions,
            async move { stopped.cancelled().await },
        ))
    });
    let fatal_node = node.clone();
    let shutdown_timeout = Duration::from_millis(config.shutdown_timeout_ms);
    // Dropped when this function returns: tells the shutdown watchdog the stop ended.
    let (stopped_tx, stopped_rx) = std::sync::mpsc::channel::<()>();
    let stop = async move {
        tokio::select! {
            () = shutdown => graceful_stop(&fatal_node, shutdown_timeout, stopped_rx).await,
            why = fatal_node.wait_fatal() => tracing::error!(error = %why, "stopping after a fatal error"),
        }
    };
    // Clients are answered once this node is registered in metadata: before, it
    // knows no brokers, and CreateTopics would be refused for want of any.
    // Connections wait in the listen queue meanwhile.
    tokio::pin!(stop);
    tokio::select! {
        () = node.registered() => kafka::serve(kafka, ctx, &mut stop).await,
        () = &mut stop => {}
    }
    let fatal = node.fatal_error();
    admin_stop.cancel();
    if let Some(t) = admin_task {
        match t.await {
            Ok(Err(e)) => tracing::warn!(error = %e, "the admin listener failed"),
            Err(e) => tracing::warn!(error = %e, "the admin listener's task failed"),
            Ok(Ok(())) => {}
        }
    }
    for t in side_tasks {
        t.abort();
    }
    node.shutdown().await;
    drop(stopped_tx);
    match fatal {
        Some(why) => anyhow::bail!("fatal error: {why}"),
        None => {
            tracing::info!("weir stopped");
            Ok(())
        }
    }
}

/// The first steps of a graceful stop, while Kafka requests are still
/// answered: every leadership this node holds goes to an in-sync peer, so
/// that clients are redirected (NOT_LEADER_OR_FOLLOWER, which they retry)
/// rather than left without a leader for an election timeout. A watchdog ends
/// the process if the whole stop takes longer than `timeout`.
async fn graceful_stop(node: &Node, timeout: Duration, stopped: std::sync::mpsc::Receiver<()>) {
    let began = std::time::Instant::now();
    let watchdog = std::thread::Builder::new()
        .name("weir-shutdown-watchdog".into())
        .spawn(move || {
            if stopped.recv_timeout(timeout) != Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
                return;
            }
            tracing::error!(
                timeout_ms = timeout.as_millis() as u64,
                "the graceful stop took longer than shutdown_timeout_ms: stopping now (everything acknowledged is durable)"
            );
            std::process::exit(1);
        });
    if let Err(e) = watchdog {
        tracing::warn!(error = %e, "could not start the shutdown watchdog");
    }
    let still_led = node.hand_over_leadership(timeout / 2).await;
    if still_led > 0 {
        tracing::warn!(
            groups = still_led,
            "stopping while leading groups no in-sync peer took over; they elect a leader after an election timeout"
        );
    }
    tracing::info!(
        took_ms = began.elapsed().as_millis() as u64,
        "leadership handed over; closing client connections"
    );
}

/// Records in the data directory's stamp, once group 0's state is durable, that
/// the engine holds Raft state (see [`stamp::check_engine`]).
async fn mark_holding(dir: std::path::PathBuf, stamped: stamp::Stamp, engine: Arc<dyn Engine>) {
    for _ in 0..600 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (dir, s, e) = (dir.clone(), stamped.clone(), engine.clone());
        match tokio::task::spawn_blocking(move || stamp::mark_holding(&dir, &s, e.as_ref())).await {
            Ok(Ok(true)) => return,
            Ok(Ok(false)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not record in the stamp that the engine holds Raft state");
                return;
            }
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EngineKind;

    fn table(text: &str) -> toml::Table {
        toml::from_str(text).unwrap()
    }

    #[cfg(feature = "engine-segment")]
    #[test]
    fn engine_sections_reach_the_engine() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Config {
            engine: EngineKind::Segment,
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        c.engine_segment = table("bogus = 1");
        let e = format!("{:#}", open_engine(&c).err().unwrap());
        assert!(e.contains("[engine_segment]") && e.contains("bogus"), "{e}");
        c.engine_segment = table("segment_bytes = 1");
        let e = format!("{:#}", open_engine(&c).err().unwrap());
        assert!(e.contains("segment_bytes"), "{e}");
        c.engine_segment = table("segment_bytes = 1048576");
        assert!(open_engine(&c).is_ok());
    }

    #[cfg(feature = "transport-tcp")]
    #[tokio::test]
    async fn transport_sections_reach_the_transport() {
        use crate::config::TransportKind;
        let mut c = Config {
            transport: TransportKind::Tcp,
            peer_listen: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
            peers: [(2, "127.0.0.1:1".to_string())].into(),
            ..Config::default()
        };
        c.transport_tcp = table("max_frame_bytes = 10");
        let e = format!("{:#}", open_transport(&c).await.err().unwrap());
        assert!(e.contains("max_frame_bytes"), "{e}");
        c.transport_tcp = table("nope = true");
        let e = format!("{:#}", open_transport(&c).await.err().unwrap());
        assert!(e.contains("[transport_tcp]") && e.contains("nope"), "{e}");
        c.transport_tcp = table("max_frame_bytes = 4096");
        assert!(open_transport(&c).await.is_ok());
    }
}
