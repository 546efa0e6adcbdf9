//! Checks of a [`Config`]'s values that serde cannot make.

use super::Config;

impl Config {
    /// Checks values that serde cannot.
    ///
    /// # Errors
    /// A message naming the key and what is allowed.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.node_id >= 1, "node_id must be at least 1");
        anyhow::ensure!(
            !self.peers.contains_key(&self.node_id),
            "peers must not contain this node's own id {}",
            self.node_id
        );
        anyhow::ensure!(
            self.peers.is_empty() || self.peer_listen.is_some(),
            "peer_listen is required when peers are configured"
        );
        anyhow::ensure!(
            self.join.is_empty() || (self.peers.is_empty() && self.peer_listen.is_some()),
            "join (a node joining a running cluster) needs peer_listen and no peers: the cluster tells it its peers"
        );
        let id = &self.cluster_id;
        anyhow::ensure!(
            !id.is_empty() && id.len() <= 255 && id.bytes().all(|b| b.is_ascii_graphic()),
            "cluster_id {id:?} must be 1 to 255 printable ASCII characters without spaces"
        );
        if let Some(rack) = &self.rack {
            anyhow::ensure!(
                !rack.is_empty() && rack.len() <= 255 && rack.bytes().all(|b| b.is_ascii_graphic()),
                "rack {rack:?} must be 1 to 255 printable ASCII characters without spaces"
            );
        }
        anyhow::ensure!(
            self.default_partitions >= 1,
            "default_partitions must be at least 1"
        );
        anyhow::ensure!(
            (1..=1000).contains(&self.group_partitions),
            "group_partitions ({}) must be 1 to 1000",
            self.group_partitions
        );
        anyhow::ensure!(
            self.offsets_retention_minutes >= 1,
            "offsets_retention_minutes must be at least 1"
        );
        anyhow::ensure!(
            self.group_min_session_timeout_ms <= self.group_max_session_timeout_ms,
            "group_min_session_timeout_ms ({}) must not exceed group_max_session_timeout_ms ({})",
            self.group_min_session_timeout_ms,
            self.group_max_session_timeout_ms
        );
        anyhow::ensure!(
            self.group_max_members >= 1,
            "group_max_members must be at least 1"
        );
        anyhow::ensure!(
            (10..=60_000).contains(&self.group_consumer_heartbeat_interval_ms),
            "group_consumer_heartbeat_interval_ms must be 10..=60000, not {}",
            self.group_consumer_heartbeat_interval_ms
        );
        anyhow::ensure!(
            self.group_consumer_session_timeout_ms > self.group_consumer_heartbeat_interval_ms,
            "group_consumer_session_timeout_ms ({}) must exceed group_consumer_heartbeat_interval_ms ({})",
            self.group_consumer_session_timeout_ms,
            self.group_consumer_heartbeat_interval_ms
        );
        anyhow::ensure!(
            self.producer_id_expiration_ms >= 1000,
            "producer_id_expiration_ms must be at least 1000, not {}",
            self.producer_id_expiration_ms
        );
        anyhow::ensure!(
            weir_core::groups::consumer::ASSIGNORS.contains(&self.group_consumer_assignor.as_str()),
            "group_consumer_assignor must be one of {:?}, not {:?}",
            weir_core::groups::consumer::ASSIGNORS,
            self.group_consumer_assignor
        );
        anyhow::ensure!(
            self.retention_ms >= -1 && self.retention_bytes >= -1,
            "retention_ms ({}) and retention_bytes ({}) must be -1 (no limit) or non-negative",
            self.retention_ms,
            self.retention_bytes
        );
        anyhow::ensure!(
            self.segment_ms == -1 || self.segment_ms >= 1,
            "segment_ms ({}) must be -1 (roll by size only) or positive",
            self.segment_ms
        );
        anyhow::ensure!(
            self.metadata_checkpoint_entries >= 1,
            "metadata_checkpoint_entries must be at least 1"
        );
        anyhow::ensure!(
            self.retention_check_interval_ms >= 1,
            "retention_check_interval_ms must be at least 1"
        );
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.min_cleanable_dirty_ratio),
            "min_cleanable_dirty_ratio ({}) must be within 0 and 1",
            self.min_cleanable_dirty_ratio
        );
        if let Some(a) = &self.admin_listen {
            anyhow::ensure!(
                a == "none" || a.parse::<std::net::SocketAddr>().is_ok(),
                "admin_listen = {a:?} must be an address such as 127.0.0.1:9644, or \"none\""
            );
        }
        for (name, v) in [
            ("replica_lag_time_max_ms", self.replica_lag_time_max_ms),
            (
                "leader_imbalance_check_interval_ms",
                self.leader_imbalance_check_interval_ms,
            ),
            ("shutdown_timeout_ms", self.shutdown_timeout_ms),
        ] {
            anyhow::ensure!(v >= 1, "{name} must be at least 1 (got {v})");
        }
        anyhow::ensure!(
            self.leader_imbalance_per_node_percentage <= 100,
            "leader_imbalance_per_node_percentage is a percentage: 0 to 100 (got {})",
            self.leader_imbalance_per_node_percentage
        );
        anyhow::ensure!(
            self.cleaner_check_interval_ms >= 1,
            "cleaner_check_interval_ms must be at least 1"
        );
        anyhow::ensure!(
            self.cleaner_dedupe_buffer_bytes >= 1 << 20,
            "cleaner_dedupe_buffer_bytes ({}) must be at least 1 MiB",
            self.cleaner_dedupe_buffer_bytes
        );
        anyhow::ensure!(
            self.default_replication >= 1,
            "default_replication must be at least 1"
        );
        anyhow::ensure!(
            self.max_request_bytes >= 1024,
            "max_request_bytes must be at least 1024"
        );
        anyhow::ensure!(
            self.max_buffered_request_bytes >= self.max_request_bytes
                && self.max_buffered_request_bytes < 1 << 32,
            "max_buffered_request_bytes ({}) must be at least max_request_bytes ({}) and below 4 GiB",
            self.max_buffered_request_bytes,
            self.max_request_bytes
        );
        anyhow::ensure!(
            self.max_decompressed_batch_bytes >= self.max_batch_bytes,
            "max_decompressed_batch_bytes ({}) must be at least max_batch_bytes ({})",
            self.max_decompressed_batch_bytes,
            self.max_batch_bytes
        );
        anyhow::ensure!(
            self.max_pending_produce_bytes >= self.max_batch_bytes
                && self.max_pending_produce_bytes < 1 << 32,
            "max_pending_produce_bytes ({}) must be at least max_batch_bytes ({}) and below 4 GiB",
            self.max_pending_produce_bytes,
            self.max_batch_bytes
        );
        anyhow::ensure!(
            self.max_queued_peer_bytes_per_group >= 2 << 20,
            "max_queued_peer_bytes_per_group must be at least 2 MiB (a Raft message carries up to 1 MiB of entries)"
        );
        anyhow::ensure!(
            self.max_connections >= 1 && self.max_connections_per_ip >= 1,
            "max_connections and max_connections_per_ip must be at least 1"
        );
        anyhow::ensure!(
            self.connections_max_idle_ms >= 1 && self.request_read_timeout_ms >= 1,
            "connections_max_idle_ms and request_read_timeout_ms must be at least 1"
        );
        anyhow::ensure!(
            self.max_partitions_per_topic >= 1 && self.max_partitions >= 1,
            "max_partitions_per_topic and max_partitions must be at least 1"
        );
        anyhow::ensure!(
            self.default_partitions <= self.max_partitions_per_topic,
            "default_partitions ({}) must not exceed max_partitions_per_topic ({})",
            self.default_partitions,
            self.max_partitions_per_topic
        );
        anyhow::ensure!(self.raft_tick_ms >= 1, "raft_tick_ms must be at least 1");
        anyhow::ensure!(
            self.max_batch_bytes >= weir_core::batch::HEADER_LEN,
            "max_batch_bytes ({}) must be at least {} (one record batch header)",
            self.max_batch_bytes,
            weir_core::batch::HEADER_LEN
        );
        anyhow::ensure!(
            self.max_batch_bytes <= self.max_request_bytes,
            "max_batch_bytes ({}) must not exceed max_request_bytes ({}): no request could carry such a batch",
            self.max_batch_bytes,
            self.max_request_bytes
        );
        for (id, addr) in &self.peers {
            check_peer_address(*id, addr)?;
        }
        self.check_plugin_sections()?;
        anyhow::ensure!(
            self.flush_interval_ms >= 1 && self.compact_interval_ms >= 1,
            "flush_interval_ms and compact_interval_ms must be at least 1"
        );
        Ok(())
    }
}

/// A peer address must be HOST:PORT with a port other than 0, and resolve.
fn check_peer_address(id: u64, addr: &str) -> anyhow::Result<()> {
    let Some((host, port)) = addr.rsplit_once(':') else {
        anyhow::bail!("peer {id}: {addr:?} is not HOST:PORT");
    };
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| anyhow::anyhow!("peer {id}: {addr:?} has no valid port (1-65535)"))?;
    anyhow::ensure!(!host.is_empty(), "peer {id}: {addr:?} has no host");
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let resolved = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .map(|mut a| a.next().is_some())
        .unwrap_or(false);
    anyhow::ensure!(
        resolved,
        "peer {id}: {addr:?} does not resolve to an address"
    );
    Ok(())
}
