//! Fail-stop: a panic in a task that owns node state stops the node with the cause,
//! instead of leaving it running without the task (DESIGN.md §10).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use weir_core::eraftpb::{ConfState, Entry, HardState, SnapshotMetadata};
use weir_core::memory::MemoryEngine;
use weir_core::{
    Appended, Capabilities, Engine, Error, GroupId, GroupMessage, LogState, Node, NodeConfig,
    NodeId, PartitionStore, RaftLogStore, RaftState, Result, Transport,
};

/// The memory engine, except that reading a term of any partition group's Raft log
/// reports corruption — what raft-rs cannot handle but by panicking.
struct CorruptPartitionTerms(MemoryEngine);

fn corrupt(group: GroupId) -> Result<()> {
    if group == GroupId::METADATA {
        Ok(())
    } else {
        Err(Error::Corrupt(format!("{group}: a damaged Raft log")))
    }
}

impl RaftLogStore for CorruptPartitionTerms {
    fn raft_groups(&self) -> Result<Vec<GroupId>> {
        self.0.raft_groups()
    }
    fn raft_state(&self, group: GroupId) -> Result<RaftState> {
        self.0.raft_state(group)
    }
    fn raft_first_index(&self, group: GroupId) -> Result<u64> {
        self.0.raft_first_index(group)
    }
    fn raft_last_index(&self, group: GroupId) -> Result<u64> {
        self.0.raft_last_index(group)
    }
    fn raft_term(&self, group: GroupId, index: u64) -> Result<u64> {
        corrupt(group)?;
        self.0.raft_term(group, index)
    }
    fn raft_entries(&self, g: GroupId, lo: u64, hi: u64, max: Option<u64>) -> Result<Vec<Entry>> {
        self.0.raft_entries(g, lo, hi, max)
    }
    fn raft_append(&self, group: GroupId, entries: &[Entry]) -> Result<()> {
        self.0.raft_append(group, entries)
    }
    fn raft_set_hard_state(&self, group: GroupId, hs: &HardState) -> Result<()> {
        self.0.raft_set_hard_state(group, hs)
    }
    fn raft_set_conf_state(&self, group: GroupId, cs: &ConfState) -> Result<()> {
        self.0.raft_set_conf_state(group, cs)
    }
    fn raft_compact(&self, group: GroupId, index: u64) -> Result<()> {
        self.0.raft_compact(group, index)
    }
    fn raft_apply_snapshot(&self, group: GroupId, meta: &SnapshotMetadata) -> Result<()> {
        self.0.raft_apply_snapshot(group, meta)
    }
    fn raft_remove_group(&self, group: GroupId) -> Result<()> {
        self.0.raft_remove_group(group)
    }
    fn raft_sync(&self) -> Result<()> {
        self.0.raft_sync()
    }
}

impl PartitionStore for CorruptPartitionTerms {
    fn log_groups(&self) -> Result<Vec<GroupId>> {
        self.0.log_groups()
    }
    fn log_state(&self, group: GroupId) -> Result<LogState> {
        self.0.log_state(group)
    }
    fn log_append(&self, g: GroupId, index: u64, epoch: i32, batch: &[u8]) -> Result<Appended> {
        self.0.log_append(g, index, epoch, batch)
    }
    fn log_mark_applied(&self, group: GroupId, raft_index: u64) -> Result<()> {
        self.0.log_mark_applied(group, raft_index)
    }
    fn log_read(&self, group: GroupId, offset: i64, max_bytes: usize) -> Result<Bytes> {
        self.0.log_read(group, offset, max_bytes)
    }
    fn log_offset_for_timestamp(&self, group: GroupId, ts: i64) -> Result<Option<i64>> {
        self.0.log_offset_for_timestamp(group, ts)
    }
    fn log_delete_prefix(&self, group: GroupId, offset: i64) -> Result<()> {
        self.0.log_delete_prefix(group, offset)
    }
    fn log_remove(&self, group: GroupId) -> Result<()> {
        self.0.log_remove(group)
    }
    fn log_flush(&self, group: GroupId) -> Result<()> {
        self.0.log_flush(group)
    }
}

impl Engine for CorruptPartitionTerms {
    fn name(&self) -> &'static str {
        "corrupt-partition-terms"
    }
    fn capabilities(&self) -> Capabilities {
        self.0.capabilities()
    }
}

struct Nobody;

impl Transport for Nobody {
    fn send(&self, _to: NodeId, _msgs: Vec<GroupMessage>) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_starting_a_group_stops_the_node_with_its_cause() {
    let mut cfg = NodeConfig::new(1, vec![1], "127.0.0.1:9092");
    cfg.tick = Duration::from_millis(10);
    let engine = Arc::new(CorruptPartitionTerms(MemoryEngine::new()));
    let node = Node::start(cfg, engine, Arc::new(Nobody)).expect("node starts");
    node.wait_leader(GroupId::METADATA, Duration::from_secs(10))
        .await
        .expect("metadata leader");
    while node.metadata().brokers.is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Hosting the new partition makes raft-rs read a term, which fails: it panics.
    let _ = node
        .create_topic("t", 1, 1, Default::default(), Duration::from_secs(10))
        .await;
    let why = tokio::time::timeout(Duration::from_secs(10), node.wait_fatal())
        .await
        .expect("the node stopped within 10 s");
    assert!(why.contains("panicked"), "{why}");
    assert!(
        why.contains("damaged Raft log"),
        "the cause is named: {why}"
    );
    node.shutdown().await;
}
