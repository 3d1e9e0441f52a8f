//! Broker-wide counters that no single partition owns: what retention deleted and the
//! durable-mode journal's fdatasyncs. One struct of relaxed atomic counters, added to where
//! the work happens and read by the metrics endpoint at scrape time. A new background task
//! (a log cleaner, say) adds its counters here and one line each to the metrics collector.

use std::sync::atomic::{AtomicU64, Ordering};

/// A count that only grows, since the broker started. Relaxed: no reader needs it ordered
/// with other memory.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The broker's background work, counted.
#[derive(Debug, Default)]
pub struct Activity {
    /// Segments retention took out of their logs (`retention.ms`, `retention.bytes`).
    pub retention_segments_deleted: Counter,
    /// Bytes of those segments' log files.
    pub retention_bytes_deleted: Counter,
    /// fdatasyncs of the durable-mode journal, failed ones included (each acknowledges a
    /// round of durable appends across partitions).
    pub journal_fdatasyncs: Counter,
}
