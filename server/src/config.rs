//! `weir serve` configuration: a TOML file, overridden by command-line flags.
//!
//! ```toml
//! node_id = 1
//! data_dir = "./weir-data"
//! kafka_listen = "127.0.0.1:9092"
//! advertised_kafka = "127.0.0.1:9092"   # default: kafka_listen
//! engine = "segment"                      # segment | memory | rocksdb | redb
//! transport = "grpc"                      # grpc | tcp
//! cluster_id = "weir"
//! peer_listen = "127.0.0.1:9192"
//! peers = { 2 = "127.0.0.1:9193", 3 = "127.0.0.1:9194" }
//! auto_create_topics = true
//! default_partitions = 1
//! default_replication = 3                 # capped at the number of brokers
//!
//! [engine_segment]
//! segment_bytes = 67108864
//!
//! [engine_rocksdb]                        # read only when engine = "rocksdb"
//! block_cache_bytes = 67108864
//!
//! [engine_redb]                           # read only when engine = "redb"
//! cache_bytes = 268435456
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

mod validate;

/// The storage engines a config can name; each is compiled in only with its feature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// mmap'd segments and a Raft WAL (feature `engine-segment`, default).
    Segment,
    /// Everything in memory; data is lost on exit (always available).
    Memory,
    /// RocksDB (feature `engine-rocksdb`).
    Rocksdb,
    /// redb (feature `engine-redb`).
    Redb,
}

impl EngineKind {
    /// The name the engine registers under (as written in the config).
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Segment => "segment",
            EngineKind::Memory => "memory",
            EngineKind::Rocksdb => "rocksdb",
            EngineKind::Redb => "redb",
        }
    }

    /// The cargo feature that compiles this engine in.
    pub fn feature(self) -> &'static str {
        match self {
            EngineKind::Segment => "engine-segment",
            EngineKind::Memory => "(always built in)",
            EngineKind::Rocksdb => "engine-rocksdb",
            EngineKind::Redb => "engine-redb",
        }
    }
}

/// The peer transports a config can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    /// gRPC bidirectional streams (feature `transport-grpc`, default).
    Grpc,
    /// Length-prefixed frames over TCP (feature `transport-tcp`).
    Tcp,
}

impl TransportKind {
    /// The name the transport registers under (as written in the config).
    pub fn name(self) -> &'static str {
        match self {
            TransportKind::Grpc => "grpc",
            TransportKind::Tcp => "tcp",
        }
    }

    /// The cargo feature that compiles this transport in.
    pub fn feature(self) -> &'static str {
        match self {
            TransportKind::Grpc => "transport-grpc",
            TransportKind::Tcp => "transport-tcp",
        }
    }
}

/// Everything `weir serve` needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// This node's id (from 1).
    pub node_id: u64,
    /// Where the engine keeps its files.
    pub data_dir: PathBuf,
    /// Where Kafka clients connect.
    pub kafka_listen: SocketAddr,
    /// The address given to clients in metadata (default: `kafka_listen`).
    pub advertised_kafka: Option<String>,
    /// The storage engine.
    pub engine: EngineKind,
    /// The peer transport (used when `peers` is not empty).
    pub transport: TransportKind,
    /// The cluster's name: peers and data directories of other clusters are
    /// refused; Kafka clients are told it (Metadata, DescribeCluster).
    pub cluster_id: String,
    /// Where peers connect to this node.
    pub peer_listen: Option<SocketAddr>,
    /// The address peers are told to reach this node at (recorded in
    /// metadata; default: `peer_listen`).
    pub advertised_peer: Option<String>,
    /// Admin addresses (`admin_listen`) of nodes of a running cluster this
    /// node joins at its first start (`weir serve --join`), instead of a
    /// static `peers` list.
    pub join: Vec<String>,
    /// This node's rack (availability zone, failure domain), if it has one:
    /// reported to clients in Metadata and DescribeCluster, and new topics
    /// spread each partition's replicas over as many racks as they can
    /// (Kafka's `broker.rack`). Up to 255 printable ASCII characters.
    pub rack: Option<String>,
    /// Where the admin HTTP server listens (metrics, health, cluster view):
    /// an address, or `none`. Unset: 127.0.0.1:9644, and a node that cannot
    /// bind it (another broker on the same host has it) runs without one,
    /// with a warning; an address given here must be free.
    pub admin_listen: Option<String>,
    /// Partition groups above which metrics are aggregated per node instead
    /// of exported per partition (label cardinality). Default 1000.
    pub metrics_max_partitions: usize,
    /// The other voters of a static cluster: node id → peer address.
    pub peers: BTreeMap<u64, String>,
    /// Create unknown topics on Metadata and Produce requests.
    pub auto_create_topics: bool,
    /// Partitions of auto-created topics.
    pub default_partitions: i32,
    /// Replication factor of auto-created topics (capped at the broker count).
    pub default_replication: usize,
    /// Largest request accepted, in bytes.
    pub max_request_bytes: usize,
    /// Bytes of request frames buffered at once over every connection; at the limit
    /// the listener stops reading until answers free room.
    pub max_buffered_request_bytes: usize,
    /// Most Kafka client connections open at once; more wait to be accepted.
    pub max_connections: usize,
    /// Most Kafka connections from one client address; one more is closed at once.
    pub max_connections_per_ip: usize,
    /// Close a connection idle (nothing in flight, no request) this long (Kafka's
    /// `connections.max.idle.ms`).
    pub connections_max_idle_ms: u64,
    /// Close a connection whose request frame is still incomplete this long after
    /// its last complete request.
    pub request_read_timeout_ms: u64,
    /// Largest record batch accepted, in bytes.
    pub max_batch_bytes: usize,
    /// The most bytes a compressed batch's records may expand to; more is refused
    /// as a decompression bomb.
    pub max_decompressed_batch_bytes: usize,
    /// Bytes of produce proposals not yet decided, over every partition; produce
    /// requests wait for room before proposing.
    pub max_pending_produce_bytes: usize,
    /// Bytes that must stay free on the data directory's file system; produce is
    /// answered KAFKA_STORAGE_ERROR below it, so that the Raft log's own records
    /// still fit. 0 turns the floor off (a full disk then only makes writes wait).
    pub min_free_bytes: u64,
    /// Bytes of peer messages one partition's (or the metadata's) Raft group holds
    /// in its mailbox; more are dropped (Raft resends) until it catches up.
    pub max_queued_peer_bytes_per_group: usize,
    /// Partitions of `__consumer_offsets`, the internal topic whose partition
    /// leaders coordinate consumer groups; fixed when the cluster first creates
    /// it (on the first FindCoordinator).
    pub group_partitions: i32,
    /// The longest metadata string an offset commit may carry
    /// (OFFSET_METADATA_TOO_LARGE past it).
    pub offset_metadata_max_bytes: usize,
    /// A group without members whose offsets were not committed for this many
    /// minutes is dropped with its offsets (Kafka's `offsets.retention.minutes`).
    pub offsets_retention_minutes: u64,
    /// How long the first rebalance of an empty group waits for more members to
    /// join (Kafka's `group.initial.rebalance.delay.ms`).
    pub group_initial_rebalance_delay_ms: u64,
    /// The shortest session timeout a group member may ask for.
    pub group_min_session_timeout_ms: u64,
    /// The longest session timeout a group member may ask for.
    pub group_max_session_timeout_ms: u64,
    /// Most members one group may have (GROUP_MAX_SIZE_REACHED past it).
    pub group_max_members: usize,
    /// How often a consumer-protocol (KIP-848) member heartbeats while it holds
    /// its assignment (Kafka's `group.consumer.heartbeat.interval.ms`): members
    /// learn of a rebalance on their next heartbeat.
    pub group_consumer_heartbeat_interval_ms: u64,
    /// A consumer-protocol member silent for this long leaves its group
    /// (Kafka's `group.consumer.session.timeout.ms`).
    pub group_consumer_session_timeout_ms: u64,
    /// The server-side assignor for consumer-protocol members that name none:
    /// `uniform` or `range`.
    pub group_consumer_assignor: String,
    /// An idempotent producer idle this long, by its partition log's own
    /// timestamps, is forgotten by that partition (Kafka's
    /// `producer.id.expiration.ms`).
    pub producer_id_expiration_ms: u64,
    /// Most partitions one topic may have.
    pub max_partitions_per_topic: i32,
    /// Most partitions in the cluster, over all topics.
    pub max_partitions: usize,
    /// Most unknown topics one Metadata or Produce request may auto-create.
    pub max_auto_create_per_request: usize,
    /// The Raft tick in milliseconds.
    pub raft_tick_ms: u64,
    /// Flush a partition log after this many bytes were applied to it…
    pub flush_bytes: u64,
    /// …or this many milliseconds after the last flush. (The Raft log is the
    /// write-ahead log: after a crash, what was not flushed is replayed from it.)
    pub flush_interval_ms: u64,
    /// The partition leader proposes compacting the Raft log after this many bytes
    /// were flushed to the partition log…
    pub compact_bytes: u64,
    /// …or this many milliseconds after its last proposal.
    pub compact_interval_ms: u64,
    /// Broker default for topics without `retention.ms`: records older than this
    /// many milliseconds (by their timestamps) are deleted, whole segments at a
    /// time; -1 keeps them (Kafka's `log.retention.ms`; default 7 days).
    pub retention_ms: i64,
    /// Broker default for topics without `retention.bytes`: a partition's oldest
    /// segments are deleted while it holds more; -1 (the default) keeps any size
    /// (Kafka's `log.retention.bytes`).
    pub retention_bytes: i64,
    /// Broker default for topics without `segment.ms`: the segment being written
    /// is rolled once it took its first batch this many milliseconds ago, so that
    /// time-based retention can release it; -1 rolls by size only (Kafka's
    /// `log.roll.ms`; default 7 days).
    pub segment_ms: i64,
    /// Bytes per second this node serves of partition snapshots to replicas
    /// catching up, over all of them; 0 (the default) does not limit it.
    pub snapshot_bytes_per_sec: u64,
    /// Bytes per second this node serves of partition snapshots to the
    /// replicas that reassignments add (moving a partition to a new node),
    /// over all of them, so that a move does not take the disk and network
    /// from producers; 0 (the default) does not limit it beyond
    /// `snapshot_bytes_per_sec`.
    pub reassignment_bytes_per_sec: u64,
    /// Broker default for compacted topics without `delete.retention.ms`:
    /// tombstones older than this many milliseconds are removed by the cleaner
    /// (Kafka's `log.cleaner.delete.retention.ms`; default 1 day).
    pub delete_retention_ms: u64,
    /// Broker default for `min.cleanable.dirty.ratio`: a compacted partition is
    /// cleaned once what was appended since its last cleaning is this share of
    /// its cleanable bytes (Kafka's `log.cleaner.min.cleanable.ratio`; 0.5).
    pub min_cleanable_dirty_ratio: f64,
    /// Broker default for `min.compaction.lag.ms`: records younger than this
    /// many milliseconds are not cleaned (default 0).
    pub min_compaction_lag_ms: u64,
    /// How often the cleaner looks for compacted partitions to clean, in
    /// milliseconds (Kafka's `log.cleaner.backoff.ms`; default 15 s).
    pub cleaner_check_interval_ms: u64,
    /// Bytes per second the cleaner reads and writes, over all partitions;
    /// 0 does not limit it (default 64 MiB/s).
    pub cleaner_io_bytes_per_sec: u64,
    /// Memory for the cleaner's map of keys to their latest offsets (Kafka's
    /// `log.cleaner.dedupe.buffer.size`; default 64 MiB).
    pub cleaner_dedupe_buffer_bytes: u64,
    /// Milliseconds a replica may go without having caught up with its leader
    /// and stay in the ISR (Kafka's `replica.lag.time.max.ms`; default 30 s).
    pub replica_lag_time_max_ms: u64,
    /// Hand leadership back to each partition's preferred replica (its first)
    /// when it is in sync and a node leads too many partitions it is not
    /// preferred for (Kafka's `auto.leader.rebalance.enable`; default true).
    pub auto_leader_rebalance: bool,
    /// How often each node checks that, in milliseconds (default 30 s).
    pub leader_imbalance_check_interval_ms: u64,
    /// A node hands leadership back once more than this percentage of the
    /// partitions it leads prefer another leader (Kafka's
    /// `leader.imbalance.per.broker.percentage`; default 10).
    pub leader_imbalance_per_node_percentage: u32,
    /// On SIGTERM or SIGINT, how long the node may take to hand over the
    /// leadership of its groups and answer what is in flight before it stops
    /// regardless, in milliseconds (default 30 s). A second signal stops it at once.
    pub shutdown_timeout_ms: u64,
    /// The metadata group checkpoints its state every this many applied entries
    /// and compacts its Raft log below the checkpoint (docs/snapshots.md).
    pub metadata_checkpoint_entries: u64,
    /// Entries of the metadata group's log kept below its checkpoint, for peers
    /// a little behind; one further behind is sent a snapshot.
    pub metadata_keep_entries: u64,
    /// How often each partition leader checks its topic's retention, in
    /// milliseconds (Kafka's `log.retention.check.interval.ms`; default 5 minutes).
    pub retention_check_interval_ms: u64,
    /// A partition's Raft log stops waiting for replicas that are behind once it
    /// holds about this many bytes: it is compacted, and a replica that needs
    /// older entries is sent a snapshot (engines that install them; see
    /// docs/snapshots.md).
    pub raft_log_max_bytes: u64,
    /// …or once its oldest batch was applied this many milliseconds ago.
    pub raft_log_max_age_ms: u64,
    /// Segment engine tuning, checked by the engine when it is chosen (see
    /// `weir_engine_segment::Config`).
    pub engine_segment: toml::Table,
    /// RocksDB engine tuning, checked by the engine when it is compiled in and chosen
    /// (see `weir_engine_rocksdb::Config`).
    pub engine_rocksdb: toml::Table,
    /// redb engine tuning, checked by the engine when it is compiled in and chosen (see
    /// `weir_engine_redb::Config`).
    pub engine_redb: toml::Table,
    /// gRPC transport tuning, checked by the transport when it is chosen (see
    /// `weir_transport_grpc::Config`).
    pub transport_grpc: toml::Table,
    /// TCP transport tuning, checked by the transport when it is compiled in and
    /// chosen (see `weir_transport_tcp::Config`).
    pub transport_tcp: toml::Table,
    /// **Negative-control tests only**: skip the produce leadership check (see
    /// `weir_core::NodeConfig::unsafe_bypass_leader_check`). Logged loudly.
    #[cfg(feature = "negative-controls")]
    pub unsafe_bypass_leader_check: bool,
    /// **Negative-control tests only** (builds with the `negative-controls`
    /// feature): the group coordinator keeps committed offsets in its node's
    /// memory instead of replicating them (see
    /// `weir_core::NodeConfig::unsafe_group_offsets_in_memory`).
    #[cfg(feature = "negative-controls")]
    pub unsafe_group_offsets_in_memory: bool,
    /// **Negative-control tests only** (builds with the `negative-controls`
    /// feature): partitions store a retried idempotent batch again (see
    /// `weir_core::NodeConfig::unsafe_no_producer_dedup`).
    #[cfg(feature = "negative-controls")]
    pub unsafe_no_producer_dedup: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node_id: 1,
            data_dir: PathBuf::from("./weir-data"),
            kafka_listen: SocketAddr::from(([127, 0, 0, 1], 9092)),
            advertised_kafka: None,
            engine: EngineKind::Segment,
            transport: TransportKind::Grpc,
            cluster_id: "weir".to_string(),
            peer_listen: None,
            advertised_peer: None,
            join: Vec::new(),
            admin_listen: None,
            rack: None,
            metrics_max_partitions: 1000,
            peers: BTreeMap::new(),
            auto_create_topics: true,
            default_partitions: 1,
            default_replication: 3,
            max_request_bytes: 100 << 20,
            max_buffered_request_bytes: 256 << 20,
            max_connections: 10_000,
            max_connections_per_ip: 1_000,
            connections_max_idle_ms: 600_000,
            request_read_timeout_ms: 30_000,
            max_batch_bytes: 1 << 20,
            max_decompressed_batch_bytes: 64 << 20,
            max_pending_produce_bytes: 256 << 20,
            min_free_bytes: 256 << 20,
            max_queued_peer_bytes_per_group: 64 << 20,
            group_partitions: 16,
            offset_metadata_max_bytes: 4096,
            offsets_retention_minutes: 7 * 24 * 60,
            group_initial_rebalance_delay_ms: 3000,
            group_min_session_timeout_ms: 6000,
            group_max_session_timeout_ms: 1_800_000,
            group_max_members: 1000,
            group_consumer_heartbeat_interval_ms: 250,
            group_consumer_session_timeout_ms: 45_000,
            group_consumer_assignor: "uniform".to_string(),
            producer_id_expiration_ms: 86_400_000,
            max_partitions_per_topic: 1000,
            max_partitions: 10_000,
            max_auto_create_per_request: 16,
            raft_tick_ms: 100,
            flush_bytes: 4 << 20,
            flush_interval_ms: 1000,
            compact_bytes: 16 << 20,
            compact_interval_ms: 2000,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            segment_ms: 7 * 24 * 3600 * 1000,
            raft_log_max_bytes: 256 << 20,
            raft_log_max_age_ms: 3_600_000,
            metadata_checkpoint_entries: 1000,
            metadata_keep_entries: 500,
            retention_check_interval_ms: 300_000,
            snapshot_bytes_per_sec: 0,
            reassignment_bytes_per_sec: 0,
            delete_retention_ms: 24 * 3600 * 1000,
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
            cleaner_check_interval_ms: 15_000,
            cleaner_io_bytes_per_sec: 64 << 20,
            cleaner_dedupe_buffer_bytes: 64 << 20,
            replica_lag_time_max_ms: 30_000,
            auto_leader_rebalance: true,
            leader_imbalance_check_interval_ms: 30_000,
            leader_imbalance_per_node_percentage: 10,
            shutdown_timeout_ms: 30_000,
            engine_segment: toml::Table::new(),
            engine_rocksdb: toml::Table::new(),
            engine_redb: toml::Table::new(),
            transport_grpc: toml::Table::new(),
            transport_tcp: toml::Table::new(),
            #[cfg(feature = "negative-controls")]
            unsafe_bypass_leader_check: false,
            #[cfg(feature = "negative-controls")]
            unsafe_group_offsets_in_memory: false,
            #[cfg(feature = "negative-controls")]
            unsafe_no_producer_dedup: false,
        }
    }
}

impl Config {
    /// The `[engine_<name>]` section of the chosen engine (`None` for the memory
    /// engine, which has none).
    pub fn engine_section(&self) -> Option<&toml::Table> {
        match self.engine {
            EngineKind::Segment => Some(&self.engine_segment),
            EngineKind::Rocksdb => Some(&self.engine_rocksdb),
            EngineKind::Redb => Some(&self.engine_redb),
            EngineKind::Memory => None,
        }
    }

    /// The `[transport_<name>]` section of the chosen transport.
    pub fn transport_section(&self) -> &toml::Table {
        match self.transport {
            TransportKind::Grpc => &self.transport_grpc,
            TransportKind::Tcp => &self.transport_tcp,
        }
    }

    /// Reads a TOML file; unknown keys are an error.
    ///
    /// # Errors
    /// A message naming the file and the problem.
    pub fn from_file(path: &std::path::Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read config file {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("config file {}: {e}", path.display()))
    }

    /// Settings in the section of an engine or transport that is not the chosen
    /// one would silently do nothing: refused, naming the section.
    fn check_plugin_sections(&self) -> anyhow::Result<()> {
        let engines = [
            (EngineKind::Segment, "engine_segment", &self.engine_segment),
            (EngineKind::Rocksdb, "engine_rocksdb", &self.engine_rocksdb),
            (EngineKind::Redb, "engine_redb", &self.engine_redb),
        ];
        for (kind, section, table) in engines {
            anyhow::ensure!(
                table.is_empty() || kind == self.engine,
                "[{section}] is set but engine = {:?}: remove the section or choose that engine",
                self.engine.name()
            );
        }
        let transports = [
            (TransportKind::Grpc, "transport_grpc", &self.transport_grpc),
            (TransportKind::Tcp, "transport_tcp", &self.transport_tcp),
        ];
        for (kind, section, table) in transports {
            anyhow::ensure!(
                table.is_empty() || kind == self.transport,
                "[{section}] is set but transport = {:?}: remove the section or choose that transport",
                self.transport.name()
            );
        }
        Ok(())
    }

    /// The address advertised to peers: `advertised_peer`, else `peer_listen`.
    pub fn advertised_peer(&self) -> Option<String> {
        self.advertised_peer
            .clone()
            .or_else(|| self.peer_listen.map(|a| a.to_string()))
    }

    /// The Kafka address advertised to clients.
    pub fn advertised(&self) -> String {
        self.advertised_kafka
            .clone()
            .unwrap_or_else(|| self.kafka_listen.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_rejected() {
        let e = toml::from_str::<Config>("node_id = 1\nbogus = 2\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn defaults_and_partial_files() {
        let c: Config =
            toml::from_str("engine = \"segment\"\n[engine_segment]\nsegment_bytes = 1048576\n")
                .unwrap();
        assert_eq!(c.engine, EngineKind::Segment);
        assert_eq!(
            c.engine_segment.get("segment_bytes"),
            Some(&toml::Value::Integer(1 << 20))
        );
        assert_eq!(c.kafka_listen.to_string(), "127.0.0.1:9092");
        c.validate().unwrap();
    }

    #[test]
    fn flush_and_compaction_settings() {
        let c: Config = toml::from_str("flush_interval_ms = 250\ncompact_bytes = 1024\n").unwrap();
        assert_eq!((c.flush_interval_ms, c.compact_bytes), (250, 1024));
        assert_eq!(c.flush_bytes, 4 << 20);
        c.validate().unwrap();
        let c: Config = toml::from_str("flush_interval_ms = 0\n").unwrap();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("flush_interval_ms")
        );
    }

    /// The negative-control switch is out of an operator's reach: a binary built
    /// without the `negative-controls` feature refuses the key (scripts/test runs
    /// this without CI's features).
    #[cfg(not(feature = "negative-controls"))]
    #[test]
    fn the_leader_check_bypass_is_not_a_config_key() {
        let e = toml::from_str::<Config>("unsafe_bypass_leader_check = true\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unsafe_bypass_leader_check"), "{e}");
    }

    fn refusal(toml_text: &str) -> String {
        let c: Config = toml::from_str(toml_text).unwrap();
        c.validate()
            .expect_err(&format!("accepted: {toml_text}"))
            .to_string()
    }

    #[test]
    fn config_that_cannot_work_is_refused() {
        let peers = "peer_listen = \"127.0.0.1:9093\"\n[peers]\n";
        let e = refusal(&format!("{peers}2 = \"notanaddr\"\n"));
        assert!(e.contains("peer 2") && e.contains("notanaddr"), "{e}");
        let e = refusal(&format!("{peers}2 = \"127.0.0.1:0\"\n"));
        assert!(e.contains("peer 2"), "{e}");
        let ok: Config = toml::from_str(&format!("{peers}2 = \"localhost:9093\"\n")).unwrap();
        ok.validate().unwrap();

        assert!(refusal("max_batch_bytes = 0\n").contains("max_batch_bytes"));
        assert!(refusal("rack = \"\"\n").contains("rack"));
        assert!(refusal("cluster_id = \"\"\n").contains("cluster_id"));
        assert!(refusal("cluster_id = \"a b\"\n").contains("cluster_id"));
        assert!(refusal("rack = \"eu west\"\n").contains("rack"));
        let ok: Config = toml::from_str("rack = \"eu-west-1a\"\n").unwrap();
        ok.validate().unwrap();
        assert!(refusal("max_batch_bytes = 200000000\n").contains("max_batch_bytes"));

        // Settings for a plug-in that is not the one chosen are a mistake, not a no-op.
        let e = refusal("engine = \"segment\"\n[engine_redb]\ncache_bytes = 1\n");
        assert!(e.contains("[engine_redb]") && e.contains("segment"), "{e}");
        let e = refusal("engine = \"memory\"\n[engine_segment]\nsegment_bytes = 1\n");
        assert!(e.contains("[engine_segment]"), "{e}");
        let e = refusal("transport = \"grpc\"\n[transport_tcp]\nqueue_batches = 1\n");
        assert!(e.contains("[transport_tcp]"), "{e}");
    }

    #[test]
    fn peers_need_a_listen_address() {
        let c: Config = toml::from_str("[peers]\n2 = \"127.0.0.1:1\"\n").unwrap();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("peer_listen")
        );
    }
}
