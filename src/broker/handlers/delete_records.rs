//! DeleteRecords (key 21), v0-2: moves partitions' log start offsets forward (offset -1
//! means the high watermark) and drops whole segments below them.

use std::sync::Arc;

use proto_kafka::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use proto_kafka::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use crate::broker::dispatch::{Handled, RequestContext};
use crate::broker::error_code::{self, code, KafkaError};
use crate::broker::Broker;

pub fn handle(
    broker: &Arc<Broker>,
    _ctx: &RequestContext,
    request: DeleteRecordsRequest,
) -> Handled<DeleteRecordsResponse> {
    let topics = request
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
    Handled::Now(DeleteRecordsResponse::default().with_topics(topics))
}
