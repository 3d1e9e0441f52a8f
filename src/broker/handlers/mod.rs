//! One module per Kafka API. Each exposes
//! `handle(broker, ctx, request) -> Handled<Response>` and owns that API's semantics:
//! which fields exist in which version, which errors apply, what is returned.

pub mod alter_configs;
pub mod api_versions;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod fetch;
pub mod find_coordinator;
pub mod heartbeat;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod produce;
pub mod sync_group;

use proto_kafka::messages::TopicName;
use proto_kafka::protocol::StrBytes;

/// An owned string as the codec's string type.
pub(crate) fn str_bytes(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

/// A topic name as the codec's newtype.
pub(crate) fn topic_name(text: &str) -> TopicName {
    TopicName(str_bytes(text))
}
