//! The one place where Ferry's errors become Kafka error codes. Handlers call these
//! functions instead of picking codes themselves, so a given failure always reaches clients
//! as the same code.

pub use proto_kafka::ResponseError as KafkaError;

use super::topics::TopicError;
use crate::coordinator::group::GroupError;
use crate::coordinator::txn::TxnError;
use crate::storage::producer_state::SequenceError;
use crate::storage::StorageError;

/// Error code 0.
pub const NONE: i16 = 0;

/// The code for a Kafka error.
pub fn code(err: KafkaError) -> i16 {
    err.code()
}

/// Maps a storage failure to the code Kafka returns for the same situation.
pub fn from_storage(err: &StorageError) -> i16 {
    let kafka = match err {
        StorageError::Io { .. }
        | StorageError::LogOffline { .. }
        | StorageError::Inconsistent { .. } => KafkaError::KafkaStorageError,
        StorageError::CorruptBatch(_) | StorageError::Records(_) => KafkaError::CorruptMessage,
        StorageError::InvalidRecord { .. } | StorageError::InvalidRecords { .. } => {
            KafkaError::InvalidRecord
        }
        StorageError::RecordTooLarge { .. } => KafkaError::MessageTooLarge,
        StorageError::OffsetOutOfRange { .. } => KafkaError::OffsetOutOfRange,
        StorageError::OffsetsNotIncreasing { .. } => KafkaError::InvalidRecord,
        StorageError::Sequence(SequenceError::OutOfOrderSequence { .. }) => {
            KafkaError::OutOfOrderSequenceNumber
        }
        StorageError::Sequence(SequenceError::InvalidProducerEpoch { .. }) => {
            KafkaError::InvalidProducerEpoch
        }
    };
    kafka.code()
}

/// Maps a topic administration failure to its Kafka code.
pub fn from_topic(err: &TopicError) -> i16 {
    let kafka = match err {
        TopicError::AlreadyExists { .. } => KafkaError::TopicAlreadyExists,
        TopicError::InvalidName { .. } | TopicError::Collides { .. } => {
            KafkaError::InvalidTopicException
        }
        TopicError::InvalidPartitions { .. } => KafkaError::InvalidPartitions,
        TopicError::InvalidReplicationFactor { .. } => KafkaError::InvalidReplicationFactor,
        TopicError::InvalidReplicaAssignment { .. } => KafkaError::InvalidReplicaAssignment,
        TopicError::InvalidConfig(_) => KafkaError::InvalidConfig,
        TopicError::Unknown { .. } => KafkaError::UnknownTopicOrPartition,
        TopicError::Storage(err) => return from_storage(err),
    };
    kafka.code()
}

/// Maps a group coordinator answer to its Kafka code.
pub fn from_group(err: GroupError) -> i16 {
    let kafka = match err {
        GroupError::InvalidGroupId => KafkaError::InvalidGroupId,
        GroupError::UnknownMemberId => KafkaError::UnknownMemberId,
        GroupError::MemberIdRequired => KafkaError::MemberIdRequired,
        GroupError::IllegalGeneration => KafkaError::IllegalGeneration,
        GroupError::RebalanceInProgress => KafkaError::RebalanceInProgress,
        GroupError::FencedInstanceId => KafkaError::FencedInstanceId,
        GroupError::InconsistentGroupProtocol => KafkaError::InconsistentGroupProtocol,
        GroupError::InvalidSessionTimeout => KafkaError::InvalidSessionTimeout,
        GroupError::GroupMaxSizeReached => KafkaError::GroupMaxSizeReached,
        GroupError::CoordinatorNotAvailable => KafkaError::CoordinatorNotAvailable,
        GroupError::GroupIdNotFound => KafkaError::GroupIdNotFound,
        GroupError::NonEmptyGroup => KafkaError::NonEmptyGroup,
        GroupError::UnknownTopicOrPartition => KafkaError::UnknownTopicOrPartition,
        GroupError::OffsetMetadataTooLarge => KafkaError::OffsetMetadataTooLarge,
        GroupError::GroupSubscribedToTopic => KafkaError::GroupSubscribedToTopic,
        GroupError::StorageFailure => KafkaError::CoordinatorNotAvailable,
    };
    kafka.code()
}

/// The code for an optional group error (0 for none).
pub fn from_group_result(err: Option<GroupError>) -> i16 {
    err.map_or(NONE, from_group)
}

/// Maps a transaction coordinator error to its Kafka code. Before KIP-588 (InitProducerId
/// v4, AddPartitionsToTxn/AddOffsetsToTxn/EndTxn v2, TxnOffsetCommit v3) clients knew
/// PRODUCER_FENCED as INVALID_PRODUCER_EPOCH.
pub fn from_txn(err: TxnError, producer_fenced_known: bool) -> i16 {
    let kafka = match err {
        TxnError::InvalidTransactionTimeout => KafkaError::InvalidTransactionTimeout,
        TxnError::ConcurrentTransactions => KafkaError::ConcurrentTransactions,
        TxnError::InvalidProducerIdMapping => KafkaError::InvalidProducerIdMapping,
        TxnError::ProducerFenced if producer_fenced_known => KafkaError::ProducerFenced,
        TxnError::ProducerFenced => KafkaError::InvalidProducerEpoch,
        TxnError::InvalidTxnState => KafkaError::InvalidTxnState,
        TxnError::UnknownTopicOrPartition => KafkaError::UnknownTopicOrPartition,
        TxnError::OperationNotAttempted => KafkaError::OperationNotAttempted,
        TxnError::StorageFailure | TxnError::CoordinatorNotAvailable => {
            KafkaError::CoordinatorNotAvailable
        }
    };
    kafka.code()
}
