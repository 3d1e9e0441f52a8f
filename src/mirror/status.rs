//! What `ferry mirror status` shows: the link loops' live figures (not persisted; they
//! are rebuilt from the logs and the source after a restart).

use std::collections::BTreeMap;

use serde::Serialize;

/// One mirrored partition.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PartitionStatus {
    pub source_log_start_offset: i64,
    pub source_log_end_offset: i64,
    pub mirrored_log_end_offset: i64,
    /// Records the mirror still lacks.
    pub lag_records: i64,
    /// How long the mirror has been behind the source (0 when in sync).
    pub lag_ms: i64,
    /// When the mirror last had everything the source had.
    #[serde(skip)]
    pub in_sync_at_ms: i64,
    pub bytes_mirrored: u64,
    pub batches_mirrored: u64,
    /// Bytes per second over the last status interval.
    pub bytes_per_second: u64,
    #[serde(skip)]
    pub bytes_at_last_sample: u64,
    #[serde(skip)]
    pub last_sample_ms: i64,
}

/// One synced group.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GroupStatus {
    /// "source", "ferry" or "none": where the group has members.
    pub active_on: String,
    /// (topic, partition) -> offset committed on the source / on Ferry.
    pub offsets: Vec<GroupOffset>,
    /// The last problem syncing it, if any.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupOffset {
    pub topic: String,
    pub partition: i32,
    pub source_offset: i64,
    pub ferry_offset: i64,
}

/// One link's live status.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LinkStatus {
    /// The last error reaching the source (cleared when a round succeeds).
    pub error: Option<String>,
    /// topic -> partition -> status
    pub partitions: BTreeMap<String, BTreeMap<i32, PartitionStatus>>,
    pub groups: BTreeMap<String, GroupStatus>,
    /// The source's ACLs, or why they cannot be read (refreshed every few minutes).
    pub source_acls: Option<Result<Vec<super::source::SourceAcl>, String>>,
    /// When the ACLs were last read (ms since the epoch).
    #[serde(skip)]
    pub acls_read_at_ms: i64,
}

impl PartitionStatus {
    /// Records what a fetch or an offsets refresh learnt.
    pub fn observe(
        &mut self,
        source_start: Option<i64>,
        source_end: Option<i64>,
        mirrored_end: i64,
        now_ms: i64,
    ) {
        if let Some(start) = source_start.filter(|s| *s >= 0) {
            self.source_log_start_offset = start;
        }
        if let Some(end) = source_end.filter(|e| *e >= 0) {
            self.source_log_end_offset = end;
        }
        self.mirrored_log_end_offset = mirrored_end;
        self.lag_records = (self.source_log_end_offset - mirrored_end).max(0);
        if self.lag_records == 0 || self.in_sync_at_ms == 0 {
            self.in_sync_at_ms = now_ms;
        }
        self.lag_ms = if self.lag_records == 0 {
            0
        } else {
            now_ms.saturating_sub(self.in_sync_at_ms)
        };
    }

    /// Updates the throughput figure.
    pub fn sample_rate(&mut self, now_ms: i64) {
        let elapsed_ms = now_ms.saturating_sub(self.last_sample_ms);
        if self.last_sample_ms > 0 && elapsed_ms > 0 {
            let bytes = self
                .bytes_mirrored
                .saturating_sub(self.bytes_at_last_sample);
            self.bytes_per_second = bytes.saturating_mul(1_000) / elapsed_ms as u64;
        }
        self.bytes_at_last_sample = self.bytes_mirrored;
        self.last_sample_ms = now_ms;
    }
}
