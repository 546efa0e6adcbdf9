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
//! * [`engine`] — the storage-engine contract: the Raft log and the partition log.
//! * [`memory`] — the in-memory reference engine, which models durability.

pub mod batch;
pub mod engine;
pub mod error;
pub mod ids;
pub mod memory;

pub use engine::{
    Appended, Capabilities, Engine, LogState, PartitionStore, RaftLogStore, RaftState,
};
pub use error::{Error, LeaderHint, Result};
pub use ids::{GroupId, NodeId, Offset, TopicPartition};

/// Raft's protobuf types used in the engine contract, re-exported so that plug-ins
/// use the same version as the core.
pub use raft::eraftpb;
