//! `__consumer_offsets` as the group coordinator's log: appends build an uncompressed batch
//! of `(key, value)` records (transactional, with the producer's id and epoch, for offsets
//! committed in a transaction) and go through the partition's leader append, so they follow
//! the topic's flush policy; replay reads each partition from its start to its high
//! watermark, reporting records and transaction markers in order.

use std::sync::Arc;

use crate::coordinator::group::{CoordinatorLog, DurableFuture, KeyValue, LogEvent, RecordVisitor};
use crate::storage::batch::BatchIter;
use crate::storage::log::marker_of;
use crate::storage::producer_state::CONTROL_COMMIT;
use crate::storage::records::{self, BatchSpec, NewRecord};

use super::now_ms;
use super::partition::{wait_for, Partition};

/// Bytes read per step while replaying.
const REPLAY_READ_BYTES: usize = 8 << 20;
/// Largest decompressed batch accepted while replaying (a mirrored offsets topic may hold
/// compressed batches).
const REPLAY_MAX_DECOMPRESSED_BYTES: usize = 64 << 20;
/// Longest wait for an fsync before a write to an internal topic is reported as failed.
const DURABLE_WAIT_SECONDS: u64 = 30;

/// A partition of an internal topic as a coordinator's log.
pub struct InternalTopicLog {
    partitions: Vec<Arc<Partition>>,
}

impl InternalTopicLog {
    pub fn new(partitions: Vec<Arc<Partition>>) -> InternalTopicLog {
        InternalTopicLog { partitions }
    }

    pub fn partition(&self, index: usize) -> Option<&Arc<Partition>> {
        self.partitions.get(index)
    }
}

/// A future resolving once `partition`'s high watermark passes `offset` (durable mode).
pub fn durable_future(partition: &Arc<Partition>, wait: Option<i64>) -> DurableFuture {
    let Some(offset) = wait else {
        return Box::pin(async { Ok(()) });
    };
    let partition = Arc::clone(partition);
    Box::pin(async move {
        let deadline =
            tokio::time::Instant::now() + std::time::Duration::from_secs(DURABLE_WAIT_SECONDS);
        let done = wait_for(std::slice::from_ref(&partition), deadline, || {
            partition.high_watermark() >= offset || partition.is_offline()
        })
        .await;
        if done && !partition.is_offline() {
            Ok(())
        } else {
            Err(format!(
                "{}-{} was not flushed",
                partition.topic(),
                partition.index()
            ))
        }
    })
}

impl CoordinatorLog for InternalTopicLog {
    fn partitions(&self) -> usize {
        self.partitions.len()
    }

    fn append(
        &self,
        partition: usize,
        records: &[KeyValue],
        transaction: Option<(i64, i16)>,
    ) -> Result<DurableFuture, String> {
        let target = self.partitions.get(partition).ok_or("no such partition")?;
        let now = now_ms();
        let new: Vec<NewRecord<'_>> = records
            .iter()
            .map(|(key, value)| NewRecord {
                key: Some(key),
                value: value.as_deref(),
                timestamp: now,
            })
            .collect();
        let spec = match transaction {
            None => BatchSpec::PLAIN,
            Some((producer_id, producer_epoch)) => BatchSpec {
                producer_id,
                producer_epoch,
                base_sequence: 0,
                transactional: true,
                control: false,
            },
        };
        let batch = records::build_batch(spec, &new);
        let (_, wait) = target
            .append_internal(&batch, now)
            .map_err(|e| e.to_string())?;
        Ok(durable_future(target, wait))
    }

    fn replay(&self, partition: usize, visit: &mut RecordVisitor<'_>) -> Result<(), String> {
        let source = self.partitions.get(partition).ok_or("no such partition")?;
        let mut offset = source.log_start_offset();
        while offset < source.high_watermark() {
            let read = source
                .read(offset, REPLAY_READ_BYTES, true, false)
                .map_err(|e| e.to_string())?;
            if read.records.is_empty() {
                break;
            }
            let records = read.records.load().map_err(|e| e.to_string())?;
            for item in BatchIter::new(&records) {
                let (position, header) = item.map_err(|e| e.to_string())?;
                offset = header.next_offset();
                let bytes = &records[position..position + header.total_bytes()];
                if header.is_control() {
                    if let Some((control_type, _)) = marker_of(bytes, &header) {
                        visit(LogEvent::Marker {
                            producer_id: header.producer_id,
                            commit: control_type == CONTROL_COMMIT,
                        });
                    }
                    continue;
                }
                let transactional_producer =
                    header.is_transactional().then_some(header.producer_id);
                let parsed = records::parse_records(bytes, &header, REPLAY_MAX_DECOMPRESSED_BYTES)
                    .map_err(|e| e.to_string())?;
                for record in parsed {
                    if let Some(key) = &record.key {
                        visit(LogEvent::Record {
                            key,
                            value: record.value.as_deref(),
                            transactional_producer,
                        });
                    }
                }
            }
        }
        Ok(())
    }
}
