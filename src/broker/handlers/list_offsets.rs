//! ListOffsets (key 2), v1-7: earliest (-2), latest (-1: the high watermark, or the last
//! stable offset for read_committed), max timestamp
//! (-3, v7+: the record with the largest timestamp) and by timestamp (the first record with
//! a timestamp at or after the target, found through the time index). A timestamp search
//! that finds nothing answers offset -1 and timestamp -1, as Kafka does.

use std::sync::Arc;

use proto_kafka::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use proto_kafka::messages::{ListOffsetsRequest, ListOffsetsResponse};
use tracing::warn;

use crate::broker::dispatch::{Handled, RequestContext};
use crate::broker::error_code::{self, code, KafkaError};
use crate::broker::partition::{Partition, LEADER_EPOCH};
use crate::broker::Broker;
use crate::storage::StorageError;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;

pub fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: ListOffsetsRequest,
) -> Handled<ListOffsetsResponse> {
    let version = ctx.api_version;
    let read_committed = version >= 2 && request.isolation_level == 1;
    // Kafka answers INVALID_REQUEST for partitions named more than once; this also bounds
    // the work one request can ask for (each timestamp lookup may decompress a batch).
    let mut seen = std::collections::HashMap::new();
    for topic in &request.topics {
        for p in &topic.partitions {
            *seen
                .entry((topic.name.0.as_str(), p.partition_index))
                .or_insert(0usize) += 1;
        }
    }
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let name = topic.name.0.as_str();
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let mut entry = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_timestamp(-1)
                        .with_offset(-1);
                    if seen[&(name, p.partition_index)] > 1 {
                        entry.error_code = code(KafkaError::InvalidRequest);
                        return entry;
                    }
                    let Some(partition) = broker.topics.partition(name, p.partition_index) else {
                        entry.error_code = code(KafkaError::UnknownTopicOrPartition);
                        return entry;
                    };
                    if version >= 4 && p.current_leader_epoch > LEADER_EPOCH {
                        entry.error_code = code(KafkaError::UnknownLeaderEpoch);
                        return entry;
                    }
                    let known_sentinel = matches!(p.timestamp, LATEST | EARLIEST)
                        || (p.timestamp == MAX_TIMESTAMP && version >= 7);
                    if p.timestamp < 0 && !known_sentinel {
                        entry.error_code = code(KafkaError::InvalidRequest);
                        return entry;
                    }
                    match lookup(&partition, p.timestamp, read_committed) {
                        Ok(Some((offset, timestamp))) => {
                            entry.offset = offset;
                            entry.timestamp = timestamp;
                            if version >= 4 {
                                entry.leader_epoch = LEADER_EPOCH;
                            }
                        }
                        Ok(None) => {}
                        Err(err) => {
                            warn!(
                                topic = name,
                                partition = p.partition_index,
                                "list offsets failed: {err}"
                            );
                            entry.error_code = error_code::from_storage(&err);
                        }
                    }
                    entry
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    Handled::Now(ListOffsetsResponse::default().with_topics(topics))
}

/// `(offset, timestamp)` for one query; `timestamp` is a known sentinel or non-negative.
fn lookup(
    partition: &Partition,
    timestamp: i64,
    read_committed: bool,
) -> Result<Option<(i64, i64)>, StorageError> {
    match timestamp {
        LATEST if read_committed => Ok(Some((partition.last_stable_offset(), -1))),
        LATEST => Ok(Some((partition.high_watermark(), -1))),
        EARLIEST => Ok(Some((partition.log_start_offset(), -1))),
        MAX_TIMESTAMP => partition.max_timestamp_offset(),
        _ => partition.offset_for_timestamp(timestamp),
    }
}
