//! DeleteRecords (key 21), v0-2: moves partitions' log start offsets forward (offset -1
//! means the high watermark) and drops whole segments below them.

use std::sync::Arc;

use proto_kafka::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use proto_kafka::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use tracing::warn;

use crate::broker::dispatch::{Handled, RequestContext};
use crate::broker::error_code::{self, code, KafkaError};
use crate::broker::Broker;

pub fn handle(
    broker: &Arc<Broker>,
    _ctx: &RequestContext,
    request: DeleteRecordsRequest,
) -> Handled<DeleteRecordsResponse> {
    let mut topics: Vec<DeleteRecordsTopicResult> = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let mut result = DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index)
                        .with_low_watermark(-1);
                    match broker
                        .topics
                        .partition(topic.name.0.as_str(), p.partition_index)
                    {
                        None => result.error_code = code(KafkaError::UnknownTopicOrPartition),
                        Some(partition) => match partition.delete_records_before(p.offset) {
                            Ok(start) => result.low_watermark = start,
                            Err(err) => result.error_code = error_code::from_storage(&err),
                        },
                    }
                    result
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    persist_log_starts(broker, &mut topics);
    Handled::Now(DeleteRecordsResponse::default().with_topics(topics))
}

/// Makes the new log start offsets durable (the log-start-offset checkpoint) before the
/// answer, so a crash right after cannot bring deleted records back; if that write fails,
/// the partitions that moved report KAFKA_STORAGE_ERROR (their start already moved in
/// memory and is written with the next checkpoint).
fn persist_log_starts(broker: &Broker, topics: &mut [DeleteRecordsTopicResult]) {
    let moved = |p: &DeleteRecordsPartitionResult| p.error_code == 0;
    if !topics.iter().any(|t| t.partitions.iter().any(moved)) {
        return;
    }
    if let Err(err) = broker.topics.write_checkpoints() {
        warn!("persisting log start offsets for DeleteRecords failed: {err}");
        for partition in topics.iter_mut().flat_map(|t| t.partitions.iter_mut()) {
            if moved(partition) {
                partition.error_code = code(KafkaError::KafkaStorageError);
                partition.low_watermark = -1;
            }
        }
    }
}
