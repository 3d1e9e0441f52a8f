//! Fetch (key 1), v4-12, for consumers.
//!
//! Reads whole batches from each requested partition below its high watermark, within
//! `partition_max_bytes` per partition and `max_bytes` (capped by the broker's
//! `fetch.max.bytes`) in total, except that the first partition with data always returns at
//! least one whole batch (KIP-74). When fewer than `min_bytes` are available and no
//! partition has an error, the request waits up to `max_wait_ms` for appends (long poll).
//! Fetch sessions (KIP-227) are declined by answering session id 0. Records are never null.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use proto_kafka::messages::FetchRequest;

use crate::broker::dispatch::{Handled, RequestContext};
use crate::broker::error_code::{self, code, KafkaError, NONE};
use crate::broker::partition::{wait_for, Partition, LEADER_EPOCH};
use crate::broker::Broker;
use crate::protocol::fetch_encoder::{FetchResponseOut, PartitionOut, RecordsOut, TopicOut};

/// One requested partition.
struct Target {
    partition_index: i32,
    partition: Option<Arc<Partition>>,
    fetch_offset: i64,
    partition_max_bytes: usize,
    current_leader_epoch: i32,
}

struct TopicTargets {
    name: String,
    targets: Vec<Target>,
}

struct Request {
    version: i16,
    topics: Vec<TopicTargets>,
    max_bytes: usize,
    min_bytes: usize,
    read_committed: bool,
}

pub fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: FetchRequest,
) -> Handled<FetchResponseOut> {
    let topics = request
        .topics
        .iter()
        .map(|topic| TopicTargets {
            name: topic.topic.0.to_string(),
            targets: topic
                .partitions
                .iter()
                .map(|p| Target {
                    partition_index: p.partition,
                    partition: broker.topics.partition(topic.topic.0.as_str(), p.partition),
                    fetch_offset: p.fetch_offset,
                    partition_max_bytes: usize::try_from(p.partition_max_bytes).unwrap_or(0),
                    current_leader_epoch: p.current_leader_epoch,
                })
                .collect(),
        })
        .collect();
    let fetch = Request {
        version: ctx.api_version,
        topics,
        max_bytes: usize::try_from(request.max_bytes)
            .unwrap_or(0)
            .min(broker.config.fetch_max_bytes),
        min_bytes: usize::try_from(request.min_bytes).unwrap_or(0),
        read_committed: request.isolation_level == 1,
    };
    let first = read_all(&fetch);
    let wait_ms = u64::try_from(request.max_wait_ms).unwrap_or(0);
    if first.bytes >= fetch.min_bytes
        || wait_ms == 0
        || first.has_error
        || first.readable_partitions == 0
    {
        return Handled::Now(first.into_response());
    }
    let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms);
    Handled::Later(Box::pin(async move {
        let partitions: Vec<Arc<Partition>> = fetch
            .topics
            .iter()
            .flat_map(|t| t.targets.iter().filter_map(|p| p.partition.clone()))
            .collect();
        wait_for(&partitions, deadline, || enough_data(&fetch)).await;
        read_all(&fetch).into_response()
    }))
}

/// Whether a re-read would now satisfy `min_bytes` (cheap check first: no partition moved,
/// nothing to read).
fn enough_data(fetch: &Request) -> bool {
    let moved = fetch.topics.iter().flat_map(|t| &t.targets).any(|t| {
        t.partition.as_ref().is_some_and(|p| {
            // read_committed consumers can only move when the last stable offset does.
            let visible_end = if fetch.read_committed {
                p.last_stable_offset()
            } else {
                p.high_watermark()
            };
            visible_end > t.fetch_offset || p.is_offline()
        })
    });
    moved && (fetch.min_bytes <= 1 || read_all(fetch).bytes >= fetch.min_bytes)
}

struct ReadOutcome {
    response: FetchResponseOut,
    bytes: usize,
    has_error: bool,
    /// Partitions that exist and could return data (zero means waiting is pointless).
    readable_partitions: usize,
    /// Partitions that returned records: `(partition, bytes, records)`.
    served: Vec<(Arc<Partition>, usize, u64)>,
}

impl ReadOutcome {
    /// The response to send, counting what it carries in the partitions' traffic (only
    /// here: a long poll's reads that are not sent do not count).
    fn into_response(self) -> FetchResponseOut {
        for (partition, bytes, records) in self.served {
            partition.traffic().served(bytes, records);
        }
        self.response
    }
}

fn read_all(fetch: &Request) -> ReadOutcome {
    let mut remaining = fetch.max_bytes;
    let mut total = 0usize;
    let mut has_error = false;
    let mut readable = 0usize;
    let mut served = Vec::new();
    let mut topics = Vec::with_capacity(fetch.topics.len());
    for topic in &fetch.topics {
        let mut partitions = Vec::with_capacity(topic.targets.len());
        for target in &topic.targets {
            let (entry, records) = read_one(fetch, target, remaining, total == 0);
            if entry.error_code != NONE {
                has_error = true;
            } else {
                readable += 1;
            }
            let size = entry.records.len();
            if let (Some(partition), true) = (&target.partition, size > 0) {
                served.push((Arc::clone(partition), size, records));
            }
            total += size;
            remaining = remaining.saturating_sub(size);
            partitions.push(entry);
        }
        topics.push(TopicOut {
            name: topic.name.clone(),
            partitions,
        });
    }
    let response = FetchResponseOut {
        topics,
        ..FetchResponseOut::default()
    };
    ReadOutcome {
        response,
        bytes: total,
        has_error,
        readable_partitions: readable,
        served,
    }
}

/// One partition's part of the response, and the records it carries.
fn read_one(
    fetch: &Request,
    target: &Target,
    remaining: usize,
    min_one_batch: bool,
) -> (PartitionOut, u64) {
    let mut entry = PartitionOut {
        partition_index: target.partition_index,
        error_code: NONE,
        high_watermark: -1,
        last_stable_offset: -1,
        log_start_offset: -1,
        // read_uncommitted answers null, read_committed a (possibly empty) list.
        aborted_transactions: fetch.read_committed.then(Vec::new),
        preferred_read_replica: -1,
        records: RecordsOut::Bytes(Bytes::new()),
    };
    let Some(partition) = &target.partition else {
        entry.error_code = code(KafkaError::UnknownTopicOrPartition);
        return (entry, 0);
    };
    if fetch.version >= 9
        && target.current_leader_epoch >= 0
        && target.current_leader_epoch != LEADER_EPOCH
    {
        entry.error_code = code(if target.current_leader_epoch > LEADER_EPOCH {
            KafkaError::UnknownLeaderEpoch
        } else {
            KafkaError::FencedLeaderEpoch
        });
        return (entry, 0);
    }
    let max_bytes = target.partition_max_bytes.min(remaining);
    let mut records = 0;
    match partition.read(
        target.fetch_offset,
        max_bytes,
        min_one_batch,
        fetch.read_committed,
    ) {
        Ok(read) => {
            entry.high_watermark = read.high_watermark;
            entry.last_stable_offset = read.last_stable_offset;
            entry.log_start_offset = read.log_start_offset;
            if fetch.read_committed {
                entry.aborted_transactions = Some(
                    read.aborted
                        .iter()
                        .map(|a| (a.producer_id, a.first_offset))
                        .collect(),
                );
            }
            entry.records = read.records;
            records = read.record_count;
        }
        Err(err) => {
            entry.error_code = error_code::from_storage(&err);
            entry.high_watermark = partition.high_watermark();
            entry.last_stable_offset = partition.last_stable_offset();
            entry.log_start_offset = partition.log_start_offset();
        }
    }
    (entry, records)
}
