//! How a node runs: [`NodeConfig`].

use std::time::Duration;

use crate::error::{Error, Result};
use crate::ids::NodeId;

/// How a node runs.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// This node's id (from 1).
    pub id: NodeId,
    /// Every voter of the metadata group at the cluster's first start (a
    /// static cluster), this node included; empty for a node that joins a
    /// running cluster (its metadata replica starts empty and waits to be
    /// added). After the first start the voters come from the group's Raft
    /// configuration.
    pub voters: Vec<NodeId>,
    /// Where this node's peers reach it, recorded in metadata (the address
    /// book other nodes' transports follow); `None` for a node without peers.
    pub peer_addr: Option<String>,
    /// The Kafka address clients should use to reach this node.
    pub kafka_addr: String,
    /// This node's rack (failure domain), if it has one: reported to
    /// clients, and new topics spread their replicas over racks.
    pub rack: Option<String>,
    /// The Raft tick.
    pub tick: Duration,
    /// Ticks without a leader before an election (randomised up to twice this).
    pub election_ticks: usize,
    /// Ticks between leader heartbeats.
    pub heartbeat_ticks: usize,
    /// Largest record batch a producer may send.
    pub max_batch_bytes: usize,
    /// Flush a partition log after this many bytes were applied…
    pub flush_bytes: u64,
    /// …or after this long.
    pub flush_interval: Duration,
    /// The leader of a partition proposes compacting the Raft log after this many
    /// bytes were flushed to the partition log since its last compaction…
    pub compact_bytes: u64,
    /// …or after this long. Compaction only reaches what every replica has and what
    /// is durable in the partition log, so a replica that is down holds it back.
    pub compact_interval: Duration,
    /// A partition group's Raft log stops waiting for replicas that are behind
    /// once it holds about this many bytes past its compaction point: it is
    /// compacted through what this leader has applied, and a replica that needs
    /// older entries is sent a snapshot (engines that install them only; the
    /// others always wait). Default 256 MiB.
    pub raft_log_max_bytes: u64,
    /// …or once the oldest batch in it past its compaction point was applied
    /// this long ago (a replica down for good does not hold a quiet
    /// partition's log forever). Default 1 hour.
    pub raft_log_max_age: Duration,
    /// Bytes per second this node serves of partition snapshots, over every
    /// replica catching up from it, so that its producers keep their latency
    /// (`None`: as fast as replicas ask).
    pub snapshot_bytes_per_sec: Option<u64>,
    /// Bytes per second this node serves of partition snapshots to replicas
    /// that reassignments add, over all of them, on top of
    /// `snapshot_bytes_per_sec` (`None`: no limit of its own).
    pub reassignment_bytes_per_sec: Option<u64>,
    /// Most partitions one topic may have.
    pub max_partitions_per_topic: i32,
    /// Most partitions in the cluster, over all topics (each is a Raft group with
    /// its files and memory on every replica).
    pub max_partitions: usize,
    /// Bytes of produce proposals not yet decided, over every group; producers wait
    /// for room before proposing (see [`Node::reserve_produce`](super::Node::reserve_produce)).
    pub max_pending_produce_bytes: usize,
    /// The most bytes a compressed batch's records may decompress to; more is
    /// refused as a decompression bomb.
    pub max_decompressed_batch_bytes: usize,
    /// Bytes of peer messages one group's mailbox holds; more are dropped (Raft
    /// resends) until the group catches up.
    pub max_queued_peer_bytes_per_group: usize,
    /// Bytes that must stay free on the data directory's file system: produce is
    /// refused with [`Error::StorageFull`] below it, so that the Raft log's own
    /// records can still be written. 0 turns the floor off (a write that finds
    /// the disk full still only waits; it never stops the node).
    pub min_free_bytes: u64,
    /// Partitions of the internal group-coordinator topic (`__consumer_offsets`),
    /// fixed when the cluster first creates it.
    pub group_partitions: i32,
    /// The longest metadata string an offset commit may carry.
    pub offset_metadata_max_bytes: usize,
    /// A group without members whose offsets were not committed for this long is
    /// dropped with them (Kafka's `offsets.retention.minutes`).
    pub offsets_retention: Duration,
    /// The shortest session timeout a group member may ask for.
    pub group_min_session_timeout: Duration,
    /// The longest.
    pub group_max_session_timeout: Duration,
    /// Most members one group may have.
    pub group_max_members: usize,
    /// How long the first rebalance of an empty group waits for more members
    /// (Kafka's `group.initial.rebalance.delay.ms`).
    pub group_initial_rebalance_delay: Duration,
    /// How often a consumer-protocol (KIP-848) member heartbeats while it holds
    /// its target assignment (Kafka's `group.consumer.heartbeat.interval.ms`;
    /// members on their way to a new assignment heartbeat at most every
    /// 50 ms). Members learn of a rebalance on their next heartbeat, so this
    /// bounds how long one takes.
    pub group_consumer_heartbeat_interval: Duration,
    /// A consumer-protocol member that has not heartbeated for this long leaves
    /// the group (Kafka's `group.consumer.session.timeout.ms`).
    pub group_consumer_session_timeout: Duration,
    /// The server-side assignor for members that name none (`uniform` or
    /// `range`).
    pub group_consumer_assignor: String,
    /// An idempotent producer idle this long (by its partition log's own
    /// timestamps) is forgotten by that partition (Kafka's
    /// `producer.id.expiration.ms`).
    pub producer_id_expiration: Duration,
    /// Broker default for topics without `retention.ms`: records older than this
    /// (by their timestamps) are deleted, whole segments at a time. `None`
    /// keeps them. Default 7 days, as Kafka's `log.retention.hours`.
    pub retention: Option<Duration>,
    /// Broker default for topics without `retention.bytes`: a partition's oldest
    /// segments are deleted while it holds more. `None` (the default) keeps any
    /// size.
    pub retention_bytes: Option<u64>,
    /// Broker default for topics without `segment.ms`: the segment being written
    /// is rolled once it took its first batch this long ago, so that time-based
    /// retention can release its records. Default 7 days, as Kafka's
    /// `log.roll.hours`; `None` rolls by size only.
    pub segment_ms: Option<Duration>,
    /// How often the leader of each partition checks its topic's retention
    /// (Kafka's `log.retention.check.interval.ms`). Default 5 minutes.
    pub retention_check_interval: Duration,
    /// Broker default for compacted topics without `delete.retention.ms`:
    /// tombstones older than this (by their timestamps) are removed by the
    /// cleaner. Default 1 day, as Kafka's `log.cleaner.delete.retention.ms`.
    pub delete_retention: Duration,
    /// Broker default for `min.cleanable.dirty.ratio`: a compacted partition
    /// is cleaned once the records appended since its last cleaning are this
    /// share of its cleanable bytes. Default 0.5, as Kafka's.
    pub min_cleanable_dirty_ratio: f64,
    /// Broker default for `min.compaction.lag.ms`: records younger than this
    /// are not cleaned. Default 0.
    pub min_compaction_lag: Duration,
    /// How often the cleaner looks for compacted partitions to clean (Kafka's
    /// `log.cleaner.backoff.ms`). Default 15 s.
    pub cleaner_check_interval: Duration,
    /// A replica stays in sync (in the ISR Metadata reports) while it was
    /// caught up with its leader's log at most this long ago and its leader
    /// hears from it (Kafka's `replica.lag.time.max.ms`). Default 30 s.
    pub replica_lag_max: Duration,
    /// Each leader hands leadership back to a partition's preferred replica
    /// (its first) when that replica is in sync and this node leads more than
    /// `leader_imbalance_percentage` percent of its partitions elsewhere than
    /// their preferred replica (Kafka's `auto.leader.rebalance.enable`).
    /// Default on.
    pub auto_leader_rebalance: bool,
    /// How often leaders check that (Kafka's
    /// `leader.imbalance.check.interval.seconds`). Default 30 s.
    pub leader_imbalance_check_interval: Duration,
    /// See `auto_leader_rebalance` (Kafka's
    /// `leader.imbalance.per.broker.percentage`). Default 10.
    pub leader_imbalance_percentage: u32,
    /// Bytes per second the cleaner reads and writes, over all partitions,
    /// so that producers keep their latency; `None` does not limit it.
    /// Default 64 MiB/s.
    pub cleaner_io_bytes_per_sec: Option<u64>,
    /// Memory for the cleaner's map of keys to their latest offsets; a pass
    /// over more keys cleans as far as the map reaches (Kafka's
    /// `log.cleaner.dedupe.buffer.size`). Default 64 MiB.
    pub cleaner_dedupe_buffer_bytes: usize,
    /// The metadata group checkpoints its state after this many applied entries
    /// and compacts its Raft log below the checkpoint (docs/snapshots.md), so
    /// that its log stays bounded. Default 1000.
    pub metadata_checkpoint_entries: u64,
    /// Entries of the metadata group's Raft log kept below its last checkpoint,
    /// for followers a little behind; one further behind gets a snapshot.
    /// Default 500.
    pub metadata_keep_entries: u64,
    /// The descriptors the node may open: the process's open-file limit less those
    /// already open when the node starts (inherited ones count against the limit
    /// too). The node keeps its partitions' files within half of it (the other
    /// half is for connections, peers and the Raft log): topics past that are
    /// refused, rather than failing to open files later, which would stop the
    /// node. `None`: not checked.
    pub open_file_limit: Option<u64>,
    /// **For negative-control tests only.** Skips the leadership check of the
    /// produce pipeline and the driver, so that followers propose (raft-rs forwards
    /// the proposal) and track it by their own (index, term) — which is wrong. The
    /// fault tests turn it on to show that their checker notices. Never set it in
    /// production; builds without the `negative-controls` feature do not have it.
    #[cfg(feature = "negative-controls")]
    pub unsafe_bypass_leader_check: bool,
    /// **For negative-control tests only.** The group coordinator keeps
    /// committed offsets in this node's memory instead of replicating them
    /// through its partition's Raft log, so that a coordinator failover loses
    /// them: the failover test turns it on to show that its checker notices.
    #[cfg(feature = "negative-controls")]
    pub unsafe_group_offsets_in_memory: bool,
    /// **For negative-control tests only.** Partitions append every batch of
    /// an idempotent producer, retries included, instead of storing a retried
    /// batch once: the idempotent failover test turns it on to show that its
    /// duplicate check notices.
    #[cfg(feature = "negative-controls")]
    pub unsafe_no_producer_dedup: bool,
}

impl NodeConfig {
    /// A configuration for node `id` of a static cluster of `voters`.
    pub fn new(id: NodeId, voters: Vec<NodeId>, kafka_addr: impl Into<String>) -> Self {
        NodeConfig {
            id,
            voters,
            peer_addr: None,
            kafka_addr: kafka_addr.into(),
            rack: None,
            tick: Duration::from_millis(100),
            election_ticks: 10,
            heartbeat_ticks: 2,
            max_batch_bytes: 1 << 20,
            flush_bytes: 4 << 20,
            flush_interval: Duration::from_secs(1),
            compact_bytes: 16 << 20,
            compact_interval: Duration::from_secs(2),
            raft_log_max_bytes: 256 << 20,
            raft_log_max_age: Duration::from_secs(3600),
            snapshot_bytes_per_sec: None,
            reassignment_bytes_per_sec: None,
            max_partitions_per_topic: 1000,
            max_partitions: 10_000,
            max_pending_produce_bytes: 256 << 20,
            max_decompressed_batch_bytes: 64 << 20,
            max_queued_peer_bytes_per_group: 64 << 20,
            min_free_bytes: 256 << 20,
            group_partitions: 16,
            offset_metadata_max_bytes: 4096,
            offsets_retention: Duration::from_secs(7 * 24 * 3600),
            group_min_session_timeout: Duration::from_secs(6),
            group_max_session_timeout: Duration::from_secs(30 * 60),
            group_max_members: 1000,
            group_initial_rebalance_delay: Duration::from_secs(3),
            group_consumer_heartbeat_interval: Duration::from_millis(250),
            group_consumer_session_timeout: Duration::from_secs(45),
            group_consumer_assignor: "uniform".to_string(),
            producer_id_expiration: Duration::from_secs(24 * 3600),
            retention: Some(Duration::from_secs(7 * 24 * 3600)),
            retention_bytes: None,
            segment_ms: Some(Duration::from_secs(7 * 24 * 3600)),
            retention_check_interval: Duration::from_secs(300),
            delete_retention: Duration::from_secs(24 * 3600),
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag: Duration::ZERO,
            cleaner_check_interval: Duration::from_secs(15),
            replica_lag_max: Duration::from_secs(30),
            auto_leader_rebalance: true,
            leader_imbalance_check_interval: Duration::from_secs(30),
            leader_imbalance_percentage: 10,
            cleaner_io_bytes_per_sec: Some(64 << 20),
            cleaner_dedupe_buffer_bytes: 64 << 20,
            metadata_checkpoint_entries: 1000,
            metadata_keep_entries: 500,
            open_file_limit: None,
            #[cfg(feature = "negative-controls")]
            unsafe_bypass_leader_check: false,
            #[cfg(feature = "negative-controls")]
            unsafe_group_offsets_in_memory: false,
            #[cfg(feature = "negative-controls")]
            unsafe_no_producer_dedup: false,
        }
    }

    /// Whether the negative-control switch is on (never without the
    /// `negative-controls` feature).
    pub(crate) fn bypass_leader_check(&self) -> bool {
        #[cfg(feature = "negative-controls")]
        return self.unsafe_bypass_leader_check;
        #[cfg(not(feature = "negative-controls"))]
        false
    }

    /// Whether the negative-control switch that turns producer dedup off is
    /// on (never without the `negative-controls` feature).
    pub(crate) fn no_producer_dedup(&self) -> bool {
        #[cfg(feature = "negative-controls")]
        return self.unsafe_no_producer_dedup;
        #[cfg(not(feature = "negative-controls"))]
        false
    }

    pub(super) fn validate(&self) -> Result<()> {
        if self.id == 0 {
            return Err(Error::Config("node id must be at least 1".into()));
        }
        if !self.voters.is_empty() && !self.voters.contains(&self.id) {
            return Err(Error::Config(format!(
                "node {} is not among the voters {:?}",
                self.id, self.voters
            )));
        }
        if self.group_partitions < 1 {
            return Err(Error::Config(format!(
                "group_partitions = {} must be at least 1",
                self.group_partitions
            )));
        }
        if self.metadata_checkpoint_entries == 0 {
            return Err(Error::Config(
                "metadata_checkpoint_entries must be at least 1".into(),
            ));
        }
        if self.replica_lag_max.is_zero() || self.leader_imbalance_check_interval.is_zero() {
            return Err(Error::Config(
                "replica_lag_max and leader_imbalance_check_interval must be positive".into(),
            ));
        }
        if self.cleaner_check_interval.is_zero() || self.cleaner_io_bytes_per_sec == Some(0) {
            return Err(Error::Config(
                "cleaner_check_interval and cleaner_io_bytes_per_sec must be positive".into(),
            ));
        }
        if !(0.0..=1.0).contains(&self.min_cleanable_dirty_ratio) {
            return Err(Error::Config(format!(
                "min_cleanable_dirty_ratio = {} must be within 0 and 1",
                self.min_cleanable_dirty_ratio
            )));
        }
        if self.retention_check_interval.is_zero() {
            return Err(Error::Config(
                "retention_check_interval must be positive".into(),
            ));
        }
        if self.heartbeat_ticks == 0 || self.election_ticks <= self.heartbeat_ticks {
            return Err(Error::Config(
                "election_ticks must exceed heartbeat_ticks, which must be positive".into(),
            ));
        }
        Ok(())
    }
}
