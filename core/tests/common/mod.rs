//! Helpers the node-level tests share: a transport to nobody, a started
//! single-node cluster, and the memory engine with hooks to break or slow it.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use weir_core::batch::BatchBuilder;
use weir_core::eraftpb::{ConfState, Entry, HardState, SnapshotMetadata};
use weir_core::memory::MemoryEngine;
use weir_core::{
    Acks, Appended, Capabilities, Engine, GroupId, GroupMessage, LogState, Node, NodeConfig,
    NodeId, PartitionStore, RaftLogStore, RaftState, Result, StateStore, Transport,
};

/// A transport for a single node: there is nobody to send to.
pub struct Nobody;

impl Transport for Nobody {
    fn send(&self, _to: NodeId, _msgs: Vec<GroupMessage>) {}
}

/// Node 1 alone on `engine` (10 ms ticks, `adjust`ed), registered and leading its
/// metadata group.
pub async fn single_node(engine: Arc<dyn Engine>, adjust: impl FnOnce(&mut NodeConfig)) -> Node {
    let mut cfg = NodeConfig::new(1, vec![1], "127.0.0.1:9092");
    cfg.tick = Duration::from_millis(10);
    adjust(&mut cfg);
    let node = Node::start(cfg, engine, Arc::new(Nobody)).expect("node starts");
    node.wait_leader(GroupId::METADATA, Duration::from_secs(10))
        .await
        .expect("metadata leader");
    while node.metadata().brokers.is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    node
}

/// Produces one record to partition 0 of `topic`, retrying while leadership
/// settles; its offset.
pub async fn produce_eventually(node: &Node, topic: &str) -> std::result::Result<i64, String> {
    let batch = BatchBuilder::new(0).record(None, Some(b"v")).build();
    let mut last = String::new();
    for _ in 0..500 {
        match node
            .produce(topic, 0, &batch, Acks::All, Duration::from_secs(2))
            .await
        {
            Ok(Some(a)) => return Ok(a.base_offset),
            Ok(None) => return Err("no offsets for acks=all".into()),
            Err(e) => last = e.to_string(),
        }
        if let Some(why) = node.fatal_error() {
            return Err(format!("node stopped: {why}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(format!("no produce succeeded: {last}"))
}

/// A hook run before an engine call on `group`: an error is returned in the
/// call's place; it may also wait, to slow the call down.
pub type Hook = Box<dyn Fn(GroupId) -> Result<()> + Send + Sync>;

/// The memory engine with hooks before some calls: how a test breaks or slows
/// one part of an engine (a damaged term, a slow Raft-log write).
pub struct Hooked {
    /// The engine everything is delegated to.
    pub inner: MemoryEngine,
    /// Run before each `raft_term`.
    pub before_raft_term: Hook,
    /// Run before each `raft_append`.
    pub before_raft_append: Hook,
    /// Run before each `raft_sync` (the writer thread's).
    pub before_raft_sync: Box<dyn Fn() -> Result<()> + Send + Sync>,
}

impl Hooked {
    /// `inner` with hooks that do nothing.
    pub fn new(inner: MemoryEngine) -> Hooked {
        Hooked {
            inner,
            before_raft_term: Box::new(|_| Ok(())),
            before_raft_append: Box::new(|_| Ok(())),
            before_raft_sync: Box::new(|| Ok(())),
        }
    }
}

impl RaftLogStore for Hooked {
    fn raft_groups(&self) -> Result<Vec<GroupId>> {
        self.inner.raft_groups()
    }
    fn raft_state(&self, group: GroupId) -> Result<RaftState> {
        self.inner.raft_state(group)
    }
    fn raft_first_index(&self, group: GroupId) -> Result<u64> {
        self.inner.raft_first_index(group)
    }
    fn raft_last_index(&self, group: GroupId) -> Result<u64> {
        self.inner.raft_last_index(group)
    }
    fn raft_term(&self, group: GroupId, index: u64) -> Result<u64> {
        (self.before_raft_term)(group)?;
        self.inner.raft_term(group, index)
    }
    fn raft_entries(&self, g: GroupId, lo: u64, hi: u64, max: Option<u64>) -> Result<Vec<Entry>> {
        self.inner.raft_entries(g, lo, hi, max)
    }
    fn raft_append(&self, group: GroupId, entries: &[Entry]) -> Result<()> {
        (self.before_raft_append)(group)?;
        self.inner.raft_append(group, entries)
    }
    fn raft_set_hard_state(&self, group: GroupId, hs: &HardState) -> Result<()> {
        self.inner.raft_set_hard_state(group, hs)
    }
    fn raft_set_conf_state(&self, group: GroupId, cs: &ConfState) -> Result<()> {
        self.inner.raft_set_conf_state(group, cs)
    }
    fn raft_compact(&self, group: GroupId, index: u64) -> Result<()> {
        self.inner.raft_compact(group, index)
    }
    fn raft_apply_snapshot(&self, group: GroupId, meta: &SnapshotMetadata) -> Result<()> {
        self.inner.raft_apply_snapshot(group, meta)
    }
    fn raft_remove_group(&self, group: GroupId) -> Result<()> {
        self.inner.raft_remove_group(group)
    }
    fn raft_sync(&self) -> Result<()> {
        (self.before_raft_sync)()?;
        self.inner.raft_sync()
    }
}

impl PartitionStore for Hooked {
    fn log_groups(&self) -> Result<Vec<GroupId>> {
        self.inner.log_groups()
    }
    fn log_state(&self, group: GroupId) -> Result<LogState> {
        self.inner.log_state(group)
    }
    fn log_append(&self, g: GroupId, index: u64, epoch: i32, batch: &[u8]) -> Result<Appended> {
        self.inner.log_append(g, index, epoch, batch)
    }
    fn log_mark_applied(&self, group: GroupId, raft_index: u64) -> Result<()> {
        self.inner.log_mark_applied(group, raft_index)
    }
    fn log_read(&self, group: GroupId, offset: i64, max_bytes: usize) -> Result<Bytes> {
        self.inner.log_read(group, offset, max_bytes)
    }
    fn log_offset_for_timestamp(&self, group: GroupId, ts: i64) -> Result<Option<i64>> {
        self.inner.log_offset_for_timestamp(group, ts)
    }
    fn log_delete_prefix(&self, group: GroupId, offset: i64) -> Result<()> {
        self.inner.log_delete_prefix(group, offset)
    }
    fn log_remove(&self, group: GroupId) -> Result<()> {
        self.inner.log_remove(group)
    }
    fn log_flush(&self, group: GroupId) -> Result<()> {
        self.inner.log_flush(group)
    }
}

impl StateStore for Hooked {
    fn state_put(&self, group: GroupId, blob: &[u8]) -> Result<()> {
        self.inner.state_put(group, blob)
    }
    fn state_get(&self, group: GroupId) -> Result<Option<Bytes>> {
        self.inner.state_get(group)
    }
    fn state_remove(&self, group: GroupId) -> Result<()> {
        self.inner.state_remove(group)
    }
}

impl weir_core::StagingStore for Hooked {}
impl weir_core::CompactionStore for Hooked {}

impl Engine for Hooked {
    fn name(&self) -> &'static str {
        "hooked-memory"
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
}
