//! `__consumer_offsets` as the group coordinator's log: appends build an uncompressed batch
//! of `(key, value)` records and go through the partition's leader append (so they follow
//! the topic's flush policy), and replay reads each partition from its start to its high
//! watermark.

use std::sync::Arc;

use crate::coordinator::group::{DurableFuture, GroupLog, KeyValue, RecordVisitor};
use crate::storage::batch::BatchIter;
use crate::storage::records::{self, BatchSpec, NewRecord};

use super::now_ms;
use super::partition::{wait_for, Partition};

/// Bytes read per step while replaying.
const REPLAY_READ_BYTES: usize = 8 << 20;
/// Largest decompressed batch accepted while replaying (a mirrored offsets topic may hold
/// compressed batches).
const REPLAY_MAX_DECOMPRESSED_BYTES: usize = 64 << 20;

pub struct OffsetsTopicLog {
    partitions: Vec<Arc<Partition>>,
}

impl OffsetsTopicLog {
    pub fn new(partitions: Vec<Arc<Partition>>) -> OffsetsTopicLog {
        OffsetsTopicLog { partitions }
    }
}

impl GroupLog for OffsetsTopicLog {
    fn partitions(&self) -> usize {
        self.partitions.len()
    }

    fn append(&self, partition: usize, records: &[KeyValue]) -> Result<DurableFuture, String> {
        let target = self
            .partitions
            .get(partition)
            .ok_or("no such offsets partition")?;
        let now = now_ms();
        let new: Vec<NewRecord<'_>> = records
            .iter()
            .map(|(key, value)| NewRecord {
                key: Some(key),
                value: value.as_deref(),
                timestamp: now,
            })
            .collect();
        let batch = records::build_batch(BatchSpec::PLAIN, &new);
        let (_, wait) = target
            .append_as_leader(&batch, now)
            .map_err(|e| e.to_string())?;
        let Some(offset) = wait else {
            return Ok(Box::pin(async { Ok(()) }));
        };
        let partition = Arc::clone(target);
        Ok(Box::pin(async move {
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
            let done = wait_for(std::slice::from_ref(&partition), deadline, || {
                partition.high_watermark() >= offset || partition.is_offline()
            })
            .await;
            if done && !partition.is_offline() {
                Ok(())
            } else {
                Err("offsets were not flushed".to_string())
            }
        }))
    }

    fn replay(&self, partition: usize, visit: &mut RecordVisitor<'_>) -> Result<(), String> {
        let source = self
            .partitions
            .get(partition)
            .ok_or("no such offsets partition")?;
        let mut offset = source.log_start_offset();
        while offset < source.high_watermark() {
            let read = source
                .read(offset, REPLAY_READ_BYTES, true)
                .map_err(|e| e.to_string())?;
            if read.records.is_empty() {
                break;
            }
            for item in BatchIter::new(&read.records) {
                let (position, header) = item.map_err(|e| e.to_string())?;
                offset = header.next_offset();
                if header.is_control() {
                    continue;
                }
                let bytes = &read.records[position..position + header.total_bytes()];
                let parsed = records::parse_records(bytes, &header, REPLAY_MAX_DECOMPRESSED_BYTES)
                    .map_err(|e| e.to_string())?;
                for record in parsed {
                    if let Some(key) = &record.key {
                        visit(key, record.value.as_deref());
                    }
                }
            }
        }
        Ok(())
    }
}
