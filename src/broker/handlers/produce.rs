//! Produce (key 0), v3-11 (v0 advertised for old librdkafka, rejected like Kafka 4).
//!
//! Each partition's records must be exactly one v2 batch; it is validated (CRC, lengths,
//! counts, `max.message.bytes`) and appended with fresh offsets. acks=0 gets no response,
//! and a failed acks=0 request closes the connection, as in Kafka. In durable mode the
//! response waits until an fsync covers the batch (or `timeout_ms`).

use std::sync::Arc;
use std::time::Duration;

use proto_kafka::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use proto_kafka::messages::{ProduceRequest, ProduceResponse};
use tracing::debug;

use crate::logging::Escaped;

use super::{str_bytes, topic_name};
use crate::broker::dispatch::{Handled, RequestContext};
use crate::broker::error_code::{self, code, KafkaError};
use crate::broker::partition::{wait_for, Partition};
use crate::broker::{now_ms, Broker};
use crate::storage::StorageError;

/// A partition whose acknowledgement waits for the high watermark to reach `offset`.
struct DurableWait {
    topic_index: usize,
    partition_index: usize,
    partition: Arc<Partition>,
    offset: i64,
}

pub fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: ProduceRequest,
) -> Handled<ProduceResponse> {
    let acks = request.acks;
    let valid_acks = matches!(acks, -1..=1);
    let now = now_ms();
    let mut waits = Vec::new();
    let mut any_error = false;
    let mut responses = Vec::with_capacity(request.topic_data.len());
    for (topic_index, topic) in request.topic_data.iter().enumerate() {
        let name = topic.name.0.as_str();
        let mut partitions = Vec::with_capacity(topic.partition_data.len());
        for (partition_index, data) in topic.partition_data.iter().enumerate() {
            let mut response = PartitionProduceResponse::default()
                .with_index(data.index)
                .with_base_offset(-1)
                .with_log_append_time_ms(-1);
            let outcome = if valid_acks {
                append(broker, ctx, name, data.index, data.records.as_deref(), now)
            } else {
                Err(Rejection::new(
                    code(KafkaError::InvalidRequiredAcks),
                    format!("acks={acks} is not -1, 0 or 1"),
                ))
            };
            match outcome {
                Ok((partition, info, wait_offset)) => {
                    response.base_offset = info.first_offset;
                    response.log_append_time_ms = info.log_append_time_ms;
                    if ctx.api_version >= 5 {
                        response.log_start_offset = partition.log_start_offset();
                    }
                    if let Some(offset) = wait_offset {
                        waits.push(DurableWait {
                            topic_index,
                            partition_index,
                            partition,
                            offset,
                        });
                    }
                }
                Err(rejection) => {
                    any_error = true;
                    response.error_code = rejection.error_code;
                    if ctx.api_version >= 8 {
                        response.error_message = Some(str_bytes(&rejection.message));
                        response.record_errors = rejection
                            .record_indexes
                            .iter()
                            .map(|&i| {
                                BatchIndexAndErrorMessage::default()
                                    .with_batch_index(i)
                                    .with_batch_index_error_message(Some(str_bytes(
                                        &rejection.message,
                                    )))
                            })
                            .collect();
                    }
                }
            }
            partitions.push(response);
        }
        responses.push(
            TopicProduceResponse::default()
                // A copy: the decoded name is a slice of the request frame, and a response
                // that waits for durability would keep the whole frame (records included)
                // alive after its queued.max.request.bytes reservation is released.
                .with_name(topic_name(name))
                .with_partition_responses(partitions),
        );
    }
    if acks == 0 {
        return if any_error {
            Handled::Close("an acks=0 produce request failed".to_string())
        } else {
            Handled::NoResponse
        };
    }
    let response = ProduceResponse::default().with_responses(responses);
    if waits.is_empty() {
        return Handled::Now(response);
    }
    let timeout = Duration::from_millis(u64::try_from(request.timeout_ms).unwrap_or(0));
    Handled::Later(Box::pin(await_durability(response, waits, timeout)))
}

type Appended = (Arc<Partition>, crate::storage::log::AppendInfo, Option<i64>);

/// Why a partition's batch was not appended.
struct Rejection {
    error_code: i16,
    message: String,
    /// Indexes of the offending records within the batch (Produce v8+ `record_errors`).
    record_indexes: Vec<i32>,
}

impl Rejection {
    fn new(error_code: i16, message: String) -> Rejection {
        Rejection {
            error_code,
            message,
            record_indexes: Vec::new(),
        }
    }
}

fn append(
    broker: &Broker,
    ctx: &RequestContext,
    topic: &str,
    index: i32,
    records: Option<&[u8]>,
    now: i64,
) -> Result<Appended, Rejection> {
    let Some(partition) = broker.topics.partition(topic, index) else {
        return Err(Rejection::new(
            code(KafkaError::UnknownTopicOrPartition),
            format!("topic-partition {topic}-{index} does not exist"),
        ));
    };
    if crate::broker::topics::INTERNAL_TOPICS.contains(&topic) {
        return Err(Rejection::new(
            code(KafkaError::InvalidTopicException),
            format!("Cannot append to internal topic {topic}"),
        ));
    }
    if let Some(reason) = broker.topics.read_only.reason(topic) {
        return Err(Rejection::new(
            code(KafkaError::InvalidTopicException),
            reason,
        ));
    }
    let Some(records) = records else {
        return Err(Rejection::new(
            code(KafkaError::InvalidRecord),
            "records are null".to_string(),
        ));
    };
    match partition.append_as_leader(records, now) {
        Ok((info, wait)) => Ok((partition, info, wait)),
        Err(err) => {
            // A storage failure was logged by the partition; the rest are the client's
            // mistakes (corrupt or oversized batches, sequence errors): debug, escaped.
            debug!(
                topic = %Escaped(topic), partition = index,
                client = %Escaped(ctx.client_id.as_deref().unwrap_or("")), peer = %ctx.peer,
                "rejected produce: {err}"
            );
            let record_indexes = match &err {
                StorageError::InvalidRecords { record_indexes, .. } => record_indexes.clone(),
                _ => Vec::new(),
            };
            Err(Rejection {
                error_code: error_code::from_storage(&err),
                message: err.to_string(),
                record_indexes,
            })
        }
    }
}

async fn await_durability(
    mut response: ProduceResponse,
    waits: Vec<DurableWait>,
    timeout: Duration,
) -> ProduceResponse {
    let deadline = tokio::time::Instant::now() + timeout;
    let partitions: Vec<_> = waits.iter().map(|w| Arc::clone(&w.partition)).collect();
    wait_for(&partitions, deadline, || {
        waits
            .iter()
            .all(|w| w.partition.high_watermark() >= w.offset || w.partition.is_offline())
    })
    .await;
    for wait in &waits {
        if wait.partition.high_watermark() >= wait.offset {
            continue;
        }
        let error = if wait.partition.is_offline() {
            KafkaError::KafkaStorageError
        } else {
            KafkaError::RequestTimedOut
        };
        let entry =
            &mut response.responses[wait.topic_index].partition_responses[wait.partition_index];
        entry.error_code = code(error);
        entry.base_offset = -1;
    }
    response
}
