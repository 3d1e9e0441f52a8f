//! One module per Kafka API. Each exposes
//! `handle(broker, ctx, request) -> Handled<Response>` and owns that API's semantics:
//! which fields exist in which version, which errors apply, what is returned.

pub mod add_offsets_to_txn;
pub mod add_partitions_to_txn;
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
pub mod describe_log_dirs;
pub mod describe_producers;
pub mod describe_transactions;
pub mod end_txn;
pub mod fetch;
pub mod find_coordinator;
pub mod heartbeat;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod list_transactions;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod produce;
pub mod sasl;
pub mod scram_credentials;
pub mod sync_group;
pub mod txn_offset_commit;

use proto_kafka::messages::TopicName;

use crate::coordinator::DurableFuture;
use proto_kafka::protocol::StrBytes;

/// An owned string as the codec's string type.
pub(crate) fn str_bytes(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

/// A topic name as the codec's newtype.
pub(crate) fn topic_name(text: &str) -> TopicName {
    TopicName(str_bytes(text))
}

/// Kafka's message for a topic named more than once in one CreateTopics, DeleteTopics or
/// CreatePartitions request.
pub(crate) const DUPLICATE_TOPIC_NAME: &str = "Duplicate topic name.";

/// Splits an admin request's entries as Kafka's controller does (`ControllerApis`): the
/// entries whose name appears once, in request order, and the names that appear more than
/// once (each once, in order of first appearance). A duplicated name is left out of the
/// operation entirely and answered with one INVALID_REQUEST entry after the others.
pub(crate) fn split_duplicates<T>(
    entries: &[T],
    name: impl Fn(&T) -> &str,
) -> (Vec<&T>, Vec<String>) {
    let mut count: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for entry in entries {
        *count.entry(name(entry)).or_default() += 1;
    }
    let mut duplicated = Vec::new();
    let mut unique = Vec::new();
    for entry in entries {
        let n = name(entry);
        match count.get_mut(n) {
            Some(1) => unique.push(entry),
            // Reported once: the first occurrence marks the name done.
            Some(seen) if *seen > 1 => {
                *seen = 0;
                duplicated.push(n.to_string());
            }
            _ => {}
        }
    }
    (unique, duplicated)
}

/// Logs a refused admin operation on `resource`: at warn when the broker failed
/// (KAFKA_STORAGE_ERROR), at debug when the client asked for something invalid or already
/// done (a topic that exists: stream frameworks create their topics at every start). Client
/// text is escaped.
pub(crate) fn log_refusal(
    ctx: &crate::broker::dispatch::RequestContext,
    operation: &str,
    resource: &str,
    error_code: i16,
    message: &str,
) {
    use crate::logging::Escaped;
    let client = Escaped(ctx.client_id.as_deref().unwrap_or(""));
    let (resource, message) = (Escaped(resource), Escaped(message));
    let storage =
        crate::broker::error_code::code(crate::broker::error_code::KafkaError::KafkaStorageError);
    if error_code == storage {
        tracing::warn!(%resource, %client, "{operation} failed: {message}");
    } else {
        tracing::debug!(%resource, %client, "{operation} refused: {message}");
    }
}

/// Waits for every write to be durable; false if any failed.
pub(crate) async fn await_durable(waits: Vec<DurableFuture>) -> bool {
    let mut ok = true;
    for wait in waits {
        ok &= wait.await.is_ok();
    }
    ok
}
