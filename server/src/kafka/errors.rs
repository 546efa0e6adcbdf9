//! The stable mapping from core errors to Kafka error codes, at the protocol edge.

use kafka_protocol::error::ResponseError;
use weir_core::{Error, GroupError};

/// The Kafka error code for a core error.
pub fn error_code(e: &Error) -> i16 {
    response_error(e).code()
}

/// The Kafka error for a core error.
pub fn response_error(e: &Error) -> ResponseError {
    match e {
        Error::NotLeader { hint: None, .. } => ResponseError::LeaderNotAvailable,
        Error::NotLeader { .. } => ResponseError::NotLeaderOrFollower,
        Error::NotFound(_) => ResponseError::UnknownTopicOrPartition,
        // KIP-207's answer; clients retry it in ListOffsets and OffsetForLeaderEpoch.
        Error::LeaderNotReady(_) => ResponseError::OffsetNotAvailable,
        Error::OutOfRange { .. } => ResponseError::OffsetOutOfRange,
        Error::Corrupt(_) => ResponseError::CorruptMessage,
        Error::TooLarge { .. } => ResponseError::MessageTooLarge,
        Error::Invalid(_) => ResponseError::InvalidRecord,
        Error::UnsupportedCompression(_) => ResponseError::UnsupportedCompressionType,
        Error::InvalidTopic(_) => ResponseError::InvalidTopicException,
        // A stopping node: the client retries, finding the partition's next leader.
        Error::Shutdown => ResponseError::NotLeaderOrFollower,
        Error::Unsupported(_) => ResponseError::UnsupportedVersion,
        Error::Config(_) => ResponseError::InvalidConfig,
        Error::Timeout(_) => ResponseError::RequestTimedOut,
        Error::FencedLeaderEpoch(_) => ResponseError::FencedLeaderEpoch,
        Error::InvalidTimestamp(_) => ResponseError::InvalidTimestamp,
        Error::OutOfOrderSequence(_) => ResponseError::OutOfOrderSequenceNumber,
        Error::InvalidProducerEpoch(_) => ResponseError::InvalidProducerEpoch,
        Error::UnknownLeaderEpoch(_) => ResponseError::UnknownLeaderEpoch,
        Error::AlreadyExists(_) => ResponseError::TopicAlreadyExists,
        Error::LimitExceeded(_) => ResponseError::PolicyViolation,
        Error::Io { .. } | Error::Poisoned(_) | Error::StorageFull(_) => {
            ResponseError::KafkaStorageError
        }
        Error::Group(g) => group_error(g),
        _ => ResponseError::UnknownServerError,
    }
}

fn group_error(e: &GroupError) -> ResponseError {
    match e {
        GroupError::CoordinatorNotAvailable => ResponseError::CoordinatorNotAvailable,
        GroupError::NotCoordinator => ResponseError::NotCoordinator,
        GroupError::LoadInProgress => ResponseError::CoordinatorLoadInProgress,
        GroupError::UnknownMemberId(_) => ResponseError::UnknownMemberId,
        GroupError::IllegalGeneration(_) => ResponseError::IllegalGeneration,
        GroupError::RebalanceInProgress => ResponseError::RebalanceInProgress,
        GroupError::MemberIdRequired(_) => ResponseError::MemberIdRequired,
        GroupError::FencedInstanceId(_) => ResponseError::FencedInstanceId,
        GroupError::InconsistentProtocol => ResponseError::InconsistentGroupProtocol,
        GroupError::MaxSizeReached(_) => ResponseError::GroupMaxSizeReached,
        GroupError::InvalidSessionTimeout(_) => ResponseError::InvalidSessionTimeout,
        GroupError::GroupIdNotFound(_) => ResponseError::GroupIdNotFound,
        GroupError::NonEmptyGroup(_) => ResponseError::NonEmptyGroup,
        GroupError::InvalidGroupId(_) => ResponseError::InvalidGroupId,
        GroupError::OffsetMetadataTooLarge(_) => ResponseError::OffsetMetadataTooLarge,
        GroupError::GroupSubscribedToTopic => ResponseError::GroupSubscribedToTopic,
        GroupError::FencedMemberEpoch(_) => ResponseError::FencedMemberEpoch,
        GroupError::StaleMemberEpoch(_) => ResponseError::StaleMemberEpoch,
        GroupError::UnreleasedInstanceId(_) => ResponseError::UnreleasedInstanceId,
        GroupError::UnsupportedAssignor(_) => ResponseError::UnsupportedAssignor,
        GroupError::InvalidRequest(_) => ResponseError::InvalidRequest,
        _ => ResponseError::UnknownServerError,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_kafkas() {
        let not_leader = Error::NotLeader {
            group: weir_core::GroupId(1),
            hint: Some(weir_core::LeaderHint { node: 2, term: 3 }),
        };
        assert_eq!(error_code(&not_leader), 6);
        assert_eq!(error_code(&Error::TooLarge { size: 2, limit: 1 }), 10);
        assert_eq!(error_code(&Error::NotFound("t".into())), 3);
        assert_eq!(error_code(&Error::Timeout("t".into())), 7);
        assert_eq!(error_code(&Error::Poisoned("x".into())), 56);
        assert_eq!(error_code(&Error::StorageFull("x".into())), 56);
        // A stopping node answers with a code clients retry (elsewhere), never -1.
        assert_eq!(error_code(&Error::Shutdown), 6);
        assert_eq!(error_code(&Error::UnsupportedCompression(7)), 76);
        assert_eq!(error_code(&Error::InvalidTopic("a/b".into())), 17);
    }
}
