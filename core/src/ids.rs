//! Identifiers shared by every layer.

use std::fmt;

/// A broker's node id, as configured (`node_id`), and the Raft peer id of its replicas.
///
/// Raft reserves id 0 for "no node", so valid node ids start at 1.
pub type NodeId = u64;

/// A Kafka offset: the position of a record within a partition, from 0.
pub type Offset = i64;

/// Identifies one Raft group. Group 0 is the metadata group; every partition has its
/// own group whose number is assigned by (and stored in) the metadata group.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct GroupId(pub u64);

impl GroupId {
    /// The metadata group, which runs on every node.
    pub const METADATA: GroupId = GroupId(0);
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "g{}", self.0)
    }
}

/// A topic name and partition index, as Kafka clients name a partition.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    /// The topic's name.
    pub topic: String,
    /// The partition index, from 0.
    pub partition: i32,
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}
