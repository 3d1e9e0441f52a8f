//! The group coordinator's requests, answers, errors and settings, free of wire types so
//! the coordinator can be driven directly in tests.

use std::fmt;

use bytes::Bytes;

pub use crate::coordinator::{CoordinatorLog, DurableFuture, KeyValue, LogEvent, RecordVisitor};

/// Group coordinator settings (Kafka's `group.*` and `offsets.*` broker keys).
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// `group.min.session.timeout.ms`.
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`.
    pub max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms`: how long the first rebalance of an empty group
    /// waits for more members.
    pub initial_rebalance_delay_ms: i64,
    /// `group.max.size`: members per group.
    pub max_size: usize,
    /// `offset.metadata.max.bytes`.
    pub offset_metadata_max_bytes: usize,
    /// `offsets.retention.minutes` in milliseconds: how long offsets of an empty group live.
    pub offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms`.
    pub offsets_retention_check_interval_ms: i64,
    /// `offsets.topic.num.partitions`.
    pub offsets_topic_partitions: i32,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            max_size: i32::MAX as usize,
            offset_metadata_max_bytes: 4_096,
            offsets_retention_ms: 7 * 24 * 3_600_000,
            offsets_retention_check_interval_ms: 600_000,
            offsets_topic_partitions: 50,
        }
    }
}

/// Errors the coordinator answers with; `broker::error_code` maps them to Kafka codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupError {
    InvalidGroupId,
    UnknownMemberId,
    MemberIdRequired,
    IllegalGeneration,
    RebalanceInProgress,
    FencedInstanceId,
    InconsistentGroupProtocol,
    InvalidSessionTimeout,
    GroupMaxSizeReached,
    CoordinatorNotAvailable,
    GroupIdNotFound,
    NonEmptyGroup,
    UnknownTopicOrPartition,
    OffsetMetadataTooLarge,
    GroupSubscribedToTopic,
    /// Writing to `__consumer_offsets` failed.
    StorageFailure,
}

impl fmt::Display for GroupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A member as JoinGroup describes it to the leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: Bytes,
}

#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub group_id: String,
    /// Empty for a member joining for the first time.
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    /// `(name, metadata)` in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a new member first gets MEMBER_ID_REQUIRED and a member id (KIP-394).
    pub require_known_member_id: bool,
    /// JoinGroup v9+ (KIP-814).
    pub supports_skip_assignment: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResponse {
    pub error: Option<GroupError>,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader_id: String,
    pub skip_assignment: bool,
    pub member_id: String,
    /// Filled for the leader only.
    pub members: Vec<JoinedMember>,
}

impl JoinResponse {
    pub fn error(error: GroupError, member_id: &str) -> JoinResponse {
        JoinResponse {
            error: Some(error),
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader_id: String::new(),
            skip_assignment: false,
            member_id: member_id.to_string(),
            members: Vec::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SyncRequest {
    pub group_id: String,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub generation_id: i32,
    /// SyncGroup v5+: must match the group's if present.
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    /// The leader's assignment: `(member id, assignment)`.
    pub assignments: Vec<(String, Bytes)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResponse {
    pub error: Option<GroupError>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResponse {
    pub fn error(error: GroupError) -> SyncResponse {
        SyncResponse {
            error: Some(error),
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

/// An answer that is either ready or arrives when the rebalance gets there.
pub enum Reply<T> {
    Now(T),
    Wait(tokio::sync::oneshot::Receiver<T>),
}

/// A member to remove in LeaveGroup.
#[derive(Debug, Clone)]
pub struct LeavingMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

/// One partition's offset to commit.
#[derive(Debug, Clone)]
pub struct OffsetToCommit {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

#[derive(Debug, Clone)]
pub struct CommitRequest {
    pub group_id: String,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    /// -1 for commits from outside the group protocol (simple consumers, admin tools).
    pub generation_id: i32,
    /// OffsetCommit v9+ answers GROUP_ID_NOT_FOUND instead of ILLEGAL_GENERATION for
    /// unknown groups.
    pub unknown_group_is_not_found: bool,
    pub offsets: Vec<OffsetToCommit>,
}

/// TxnOffsetCommit: offsets committed inside a producer's transaction.
#[derive(Debug, Clone)]
pub struct TxnCommitRequest {
    pub group_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// KIP-447 fencing (v3+): empty, -1 and `None` when the client did not send them.
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub generation_id: i32,
    pub offsets: Vec<OffsetToCommit>,
}

/// Result of a commit: per-partition outcomes and the wait before answering.
pub struct CommitOutcome {
    pub results: Vec<(String, i32, Option<GroupError>)>,
    pub durable: Option<DurableFuture>,
}

/// A committed offset as OffsetFetch returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedOffset {
    pub topic: String,
    pub partition: i32,
    /// -1 when nothing is committed.
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    /// A transaction has an uncommitted offset for this partition (OffsetFetch with
    /// require_stable answers UNSTABLE_OFFSET_COMMIT, KIP-447).
    pub unstable: bool,
}

/// A member in DescribeGroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// Only in the Stable state, as in Kafka.
    pub metadata: Bytes,
    pub assignment: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group_id: String,
    /// Empty, PreparingRebalance, CompletingRebalance, Stable or Dead.
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberDescription>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    pub group_id: String,
    pub protocol_type: String,
    pub state: &'static str,
}

/// A group's committed offsets, for the metrics endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupOffsets {
    pub group_id: String,
    /// `(topic, partition, committed offset)`, in topic and partition order.
    pub offsets: Vec<(String, i32, i64)>,
}

/// The committed offsets of a bounded number of groups (`GroupCoordinator::committed_offsets`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommittedOffsets {
    pub groups: Vec<GroupOffsets>,
    /// Groups with committed offsets that were left out to stay within the bound.
    pub groups_left_out: usize,
}
