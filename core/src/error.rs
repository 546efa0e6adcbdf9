//! The one public error type of weir.
//!
//! Plug-ins keep their own private error enums and convert into [`Error`]; the Kafka
//! protocol edge maps [`Error`] to Kafka error codes. Match on the variant to decide
//! what to do, and on [`Error::is_retriable`] to decide whether trying again can help.

use crate::ids::{GroupId, NodeId, Offset};

/// Shorthand for results whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where the leader of a group is believed to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaderHint {
    /// The node believed to lead the group.
    pub node: NodeId,
    /// The Raft term in which it leads (the Kafka leader epoch).
    pub term: u64,
}

/// Why a group coordinator refused a request, with Kafka's meaning (each maps to
/// the Kafka error code of the same name).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GroupError {
    /// No coordinator yet (the internal topic is being created, or its partition
    /// has no leader): retry FindCoordinator.
    #[error("the group coordinator is not available yet")]
    CoordinatorNotAvailable,
    /// This node does not coordinate the group (any more): find it again.
    #[error("this node is not the coordinator of the group")]
    NotCoordinator,
    /// The coordinator is still applying its partition's log: retry.
    #[error("the coordinator is loading the group's state")]
    LoadInProgress,
    /// The member is not (or no longer) in the group: rejoin.
    #[error("unknown member id {0:?}")]
    UnknownMemberId(String),
    /// The member's generation is not the group's: rejoin.
    #[error("illegal generation {0}")]
    IllegalGeneration(i32),
    /// The group is rebalancing: rejoin.
    #[error("the group is rebalancing")]
    RebalanceInProgress,
    /// A member joined without an id: join again with the one given (KIP-394).
    #[error("a member id is required")]
    MemberIdRequired(String),
    /// A newer instance of a static member took its place.
    #[error("static member {0:?} was fenced by a newer instance")]
    FencedInstanceId(String),
    /// The member's protocol type or protocols do not match the group's.
    #[error("the member's protocols do not match the group's")]
    InconsistentProtocol,
    /// The group has `group_max_members` members already.
    #[error("the group is full ({0} members)")]
    MaxSizeReached(usize),
    /// The session timeout is outside the coordinator's bounds.
    #[error("session timeout {0} ms is outside the coordinator's bounds")]
    InvalidSessionTimeout(i32),
    /// The group does not exist.
    #[error("group {0:?} does not exist")]
    GroupIdNotFound(String),
    /// The group has members, so it cannot be deleted (or its offsets).
    #[error("group {0:?} is not empty")]
    NonEmptyGroup(String),
    /// An empty or otherwise unusable group id.
    #[error("invalid group id {0:?}")]
    InvalidGroupId(String),
    /// An offset commit's metadata exceeds `offset_metadata_max_bytes`.
    #[error("offset metadata of {0} bytes is too large")]
    OffsetMetadataTooLarge(usize),
    /// The partition's offsets are in use by the group's current members.
    #[error("the group is subscribed to the topic")]
    GroupSubscribedToTopic,
    /// A consumer-protocol member's epoch is not its current one: it must give
    /// up its partitions and rejoin.
    #[error("member epoch {0} is fenced")]
    FencedMemberEpoch(i32),
    /// A commit with an epoch the member no longer has: retry after the next
    /// heartbeat.
    #[error("member epoch {0} is stale")]
    StaleMemberEpoch(i32),
    /// Another member of the same static instance has not left yet.
    #[error("instance {0:?} is still used by another member")]
    UnreleasedInstanceId(String),
    /// The server-side assignor asked for does not exist.
    #[error("unsupported assignor {0:?} (weir has uniform and range)")]
    UnsupportedAssignor(String),
    /// A malformed group request.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

/// Everything that can go wrong in weir, grouped by what a caller can do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// This replica is not the leader of the group; retry on the hinted leader.
    #[error("not the leader of group {group}{}", hint_text(hint))]
    NotLeader {
        /// The group the request was for.
        group: GroupId,
        /// The leader, when known.
        hint: Option<LeaderHint>,
    },
    /// This replica leads the group but has not applied an entry of its own term
    /// yet ([`GroupStatus::caught_up`](crate::GroupStatus::caught_up)), so it
    /// cannot tell the high watermark: retry shortly (Kafka's
    /// OFFSET_NOT_AVAILABLE, KIP-207).
    #[error("{0}: the new leader has not caught up with its log yet")]
    LeaderNotReady(String),
    /// The thing asked for (topic, partition, group) does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The thing to create (a topic) exists already.
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// An offset outside `[start, end]` of a partition log.
    #[error("offset {requested} is out of range [{start}, {end}]")]
    OutOfRange {
        /// The offset that was asked for.
        requested: Offset,
        /// The log start offset.
        start: Offset,
        /// The log end offset (next offset to be written).
        end: Offset,
    },
    /// Raft log entries at or below this index were compacted away.
    #[error("raft log compacted through index {0}")]
    Compacted(u64),
    /// Raft log entries at this index do not exist (yet).
    #[error("raft log index {0} is not available")]
    Unavailable(u64),
    /// Stored data failed a checksum or a structural check. Never served; never retried.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// The caller passed something malformed (a bad batch, an out-of-order index).
    #[error("invalid input: {0}")]
    Invalid(String),
    /// A topic name that cannot exist (Kafka's INVALID_TOPIC_EXCEPTION).
    #[error("invalid topic: {0}")]
    InvalidTopic(String),
    /// A record batch uses a compression codec weir does not know (Kafka's
    /// UNSUPPORTED_COMPRESSION_TYPE).
    #[error("record batch compression codec {0} is not supported (none, gzip, snappy, lz4, zstd)")]
    UnsupportedCompression(u8),
    /// A record batch is larger than the configured limit (Kafka's MESSAGE_TOO_LARGE).
    #[error("record batch of {size} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// The batch's size in bytes.
        size: usize,
        /// The largest batch accepted.
        limit: usize,
    },
    /// A configured limit refuses the request (too many partitions, say); the
    /// message names the limit.
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),
    /// The operation is not offered by this engine, transport or protocol version.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The configuration is wrong; the message says what to change.
    #[error("configuration error: {0}")]
    Config(String),
    /// An operating-system I/O error.
    #[error("I/O error while {context}: {source}")]
    Io {
        /// What weir was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An earlier failure (typically a failed fsync) made the store refuse all writes.
    /// The process must stop; restarting recovers from what is durable.
    #[error("storage is poisoned by an earlier failure and accepts no writes: {0}")]
    Poisoned(String),
    /// The disk holding the data is full (ENOSPC, EDQUOT) or below the free-space
    /// floor (`min_free_bytes`). Nothing was written; unlike
    /// [`Error::Poisoned`], the store stays usable, and writes succeed again once
    /// space is freed (Kafka's KAFKA_STORAGE_ERROR, which clients retry).
    #[error("the disk is full: {0}")]
    StorageFull(String),
    /// A record's timestamp is outside the topic's bounds
    /// (`message.timestamp.before.max.ms`, `after.max.ms`; Kafka's
    /// INVALID_TIMESTAMP).
    #[error("invalid timestamp: {0}")]
    InvalidTimestamp(String),
    /// An idempotent producer's batch does not continue its sequence (Kafka's
    /// OUT_OF_ORDER_SEQUENCE_NUMBER).
    #[error("out of order sequence: {0}")]
    OutOfOrderSequence(String),
    /// An idempotent producer's epoch is older than its current one (Kafka's
    /// INVALID_PRODUCER_EPOCH): a newer instance took its place.
    #[error("invalid producer epoch: {0}")]
    InvalidProducerEpoch(String),
    /// The caller's leader epoch is older than the leader's (Kafka's
    /// FENCED_LEADER_EPOCH): it should refresh its metadata.
    #[error("fenced leader epoch: {0}")]
    FencedLeaderEpoch(String),
    /// The caller's leader epoch is newer than this leader knows (Kafka's
    /// UNKNOWN_LEADER_EPOCH): this node lags; retry.
    #[error("unknown leader epoch: {0}")]
    UnknownLeaderEpoch(String),
    /// A consumer-group request the coordinator refuses (see [`GroupError`]).
    #[error("{0}")]
    Group(#[from] GroupError),
    /// The request did not complete in time; it may or may not have taken effect.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The component is shutting down.
    #[error("shutting down")]
    Shutdown,
}

fn hint_text(hint: &Option<LeaderHint>) -> String {
    match hint {
        Some(h) => format!(" (leader is node {} in term {})", h.node, h.term),
        None => " (leader unknown)".to_string(),
    }
}

impl Error {
    /// Builds an [`Error::Io`] with a description of what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// Whether the same request may succeed if tried again later (possibly elsewhere).
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            Error::NotLeader { .. }
                | Error::LeaderNotReady(_)
                | Error::Timeout(_)
                | Error::Unavailable(_)
                | Error::StorageFull(_)
                | Error::FencedLeaderEpoch(_)
                | Error::UnknownLeaderEpoch(_)
        )
    }
}

/// Whether an I/O error says the file system is out of space (ENOSPC) or quota
/// (EDQUOT): what an engine turns into [`Error::StorageFull`] once it has undone
/// the partial write.
pub fn is_out_of_space(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull || e.kind() == std::io::ErrorKind::QuotaExceeded
}

impl From<Error> for raft::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Compacted(_) => raft::Error::Store(raft::StorageError::Compacted),
            Error::Unavailable(_) => raft::Error::Store(raft::StorageError::Unavailable),
            other => raft::Error::Store(raft::StorageError::Other(Box::new(other))),
        }
    }
}
