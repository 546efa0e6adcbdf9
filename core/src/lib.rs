//! weir-core: the heart of weir, a Kafka-compatible message broker built as a
//! framework.
//!
//! The core owns what does not vary between deployments — types, errors, the
//! contracts that storage engines and peer transports implement, replication and the
//! produce/fetch pipelines — and knows no plug-in by name.
//!
//! # Layout
//!
//! * [`ids`] — node, group, offset and topic-partition identifiers.
//! * [`error`] — the one public [`Error`] type, with kinds a caller can act on.
//! * [`batch`] — Kafka RecordBatch v2 read in place: header, CRC-32C, stamping.
//! * [`engine`] — the storage-engine contract: the Raft log, the partition log and
//!   state checkpoints.
//! * [`checkpoint`] — the frame of a state checkpoint: applied index, term, checksum.
//! * [`memory`] — the in-memory reference engine, which models durability.
//! * [`transport`] — the peer-transport contract. With the `testing` feature,
//!   `memnet` is the in-memory network used by tests and `faults` injects
//!   partitions and loss over any transport.
//! * [`registry`] — plug-ins by name: each engine and transport crate registers
//!   itself; the binary looks them up by the name its configuration gives.
//! * [`raft`] — the Raft driver: one task per group, async-ready persistence, group
//!   commit.
//! * [`entry`] — the payload format of proposed Raft entries (tags and encoders).
//! * [`metadata`] — group 0's state machine: brokers, topics, assignments, leaders.
//! * [`groups`] — consumer groups: coordinator placement, committed offsets.
//! * [`node`] — a node: hosting its groups, registering itself in metadata.
//! * [`pipeline`] — what a node offers: produce, fetch, offsets and topic admin.

pub mod batch;
pub mod checkpoint;
pub mod compaction;
pub mod crash;
pub mod engine;
pub mod entry;
pub mod error;
#[cfg(feature = "testing")]
pub mod faults;
pub mod groups;
pub mod ids;
#[cfg(feature = "testing")]
pub mod memnet;
pub mod memory;
pub mod metadata;
pub mod node;
mod partition;
pub mod pipeline;
pub mod producers;
pub mod raft;
pub mod registry;
pub mod retention;
mod snapshot;
pub mod staging;
mod stamping;
pub mod stats;
pub mod transport;

pub use compaction::CompactionStore;
pub use engine::{
    Appended, Capabilities, Engine, LogState, PartitionStore, RaftLogStore, RaftState, StateStore,
    StorageUsage,
};
pub use error::{Error, GroupError, LeaderHint, Result};
pub use ids::{GroupId, NodeId, Offset, TopicPartition};
pub use node::{ActiveProducer, Node, NodeConfig};
pub use pipeline::{
    Acks, EpochEnd, FetchPartition, Fetched, OffsetSpec, ProduceCredit, ProduceTicket,
    validate_topic_configs, validate_topic_name,
};
pub use raft::driver::{GroupStatus, Role};
pub use registry::Registry;
pub use staging::StagingStore;
pub use transport::{GroupMessage, Inbound, PeerTransport, Transport};

/// Raft's protobuf types used in the engine contract, re-exported so that plug-ins
/// use the same version as the core.
pub use ::raft::eraftpb;
