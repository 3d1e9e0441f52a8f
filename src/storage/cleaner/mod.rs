//! The log cleaner's storage side (Kafka's `LogCleaner` minus its threads): for logs of
//! `cleanup.policy=compact` topics, a pass ([`pass`]) keeps the latest record per key in
//! the log's closed segments, with its offset, and removes tombstones and transaction
//! markers once they are safe to remove. It reads segments without the partition lock and
//! swaps cleaned segments in through `storage::log::cleaning`. The broker's
//! `broker::log_cleaner` owns the threads, the choice of log, and the checkpoint file.
//!
//! Bounded: the key map's table takes at most `log.cleaner.dedupe.buffer.size` divided
//! among the threads ([`offset_map`]), reads go through one buffer per pass
//! (`log.cleaner.io.buffer.size`, grown only to fit one batch), and all threads share
//! `log.cleaner.io.max.bytes.per.second` ([`throttle`]).

pub mod offset_map;
pub mod pass;
pub mod rewrite;
pub mod source;
pub mod throttle;
pub mod txn;

#[cfg(test)]
mod tests;

/// The cleaner's broker-level settings (Kafka's `log.cleaner.*` keys).
#[derive(Debug, Clone, PartialEq)]
pub struct CleanerConfig {
    /// `log.cleaner.enable`.
    pub enable: bool,
    /// `log.cleaner.threads`.
    pub threads: usize,
    /// `log.cleaner.dedupe.buffer.size`: bytes of key map, shared by all threads.
    pub dedupe_buffer_bytes: u64,
    /// `log.cleaner.io.buffer.size`: bytes of read buffer per pass.
    pub io_buffer_bytes: usize,
    /// `log.cleaner.io.buffer.load.factor`: how full the key map's table may get.
    pub io_buffer_load_factor: f64,
    /// `log.cleaner.io.max.bytes.per.second`: read plus write rate of all threads.
    pub io_max_bytes_per_second: f64,
    /// `log.cleaner.backoff.ms`: the wait when no log needs cleaning.
    pub backoff_ms: u64,
}

impl Default for CleanerConfig {
    fn default() -> Self {
        CleanerConfig {
            enable: true,
            threads: 1,
            dedupe_buffer_bytes: 128 << 20,
            io_buffer_bytes: 512 << 10,
            io_buffer_load_factor: 0.9,
            io_max_bytes_per_second: f64::MAX,
            backoff_ms: 15_000,
        }
    }
}

impl CleanerConfig {
    /// Slots of key map each thread may grow its table to.
    pub fn map_slots_per_thread(&self) -> usize {
        let per_thread = self.dedupe_buffer_bytes / self.threads.max(1) as u64;
        usize::try_from(per_thread / offset_map::SLOT_BYTES as u64).unwrap_or(usize::MAX)
    }
}
