//! Read-ahead for catch-up reads: when a fetch stops at its byte budget with more data
//! behind it, the bytes the consumer will ask for next are read into the page cache in the
//! background while the consumer is still busy with this response, so its next
//! fetch is served from memory instead of waiting for the disk.
//!
//! Why not leave it to the kernel's read-ahead alone: a consumer fetches one partition-sized
//! piece of each partition per request, then takes a while to parse the response before
//! asking again. The kernel reads ahead within a file as reads arrive, but the disk idled
//! while the client worked. On the development VM, W5's cold catch-up (16 partitions read
//! from the start with a dropped page cache) went from 276-305 MiB/s and a fetch p50 of
//! 25-31 ms to 519-542 MiB/s and 10-11 ms, as fast as the warm read of the same data,
//! with hints reaching two reads ahead (the caller's choice, since raised to four for a
//! faster reader); one read ahead gave 312-324 MiB/s (docs/performance.md). An earlier attempt, `posix_fadvise(WILLNEED)` inline in
//! the fetch over the region being sent and as much again after it, made these reads
//! slower instead.
//!
//! The hints run on tokio's blocking threads, several at once. `readahead` normally
//! returns once the reads are queued (about 0.1 ms per MiB on the development VM), yet
//! one thread working through the hints in turn gained less (277-355 MiB/s against
//! 364-513 MiB/s with the hints overlapping, one read ahead, alternating runs under 11%
//! steal).
//!
//! Hints are only hints: at most `READ_AHEAD_MAX_IN_FLIGHT` run at once and others are
//! dropped, each covers at most `READ_AHEAD_MAX_BYTES`, and none is given outside the
//! runtime (startup, tests).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tracing::warn;

/// Hints being carried out at once; more are dropped.
const READ_AHEAD_MAX_IN_FLIGHT: usize = 32;
/// Most bytes one hint reads ahead.
const READ_AHEAD_MAX_BYTES: usize = 8 << 20;

/// Issues read-ahead hints for segment files.
pub struct ReadAhead {
    in_flight: AtomicUsize,
    max_in_flight: usize,
    warned: std::sync::atomic::AtomicBool,
}

impl ReadAhead {
    pub fn new() -> Arc<ReadAhead> {
        Arc::new(ReadAhead::with_limit(READ_AHEAD_MAX_IN_FLIGHT))
    }

    fn with_limit(max_in_flight: usize) -> ReadAhead {
        ReadAhead {
            in_flight: AtomicUsize::new(0),
            max_in_flight,
            warned: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Asks for up to `len` bytes of `file` from `position` (at most `READ_AHEAD_MAX_BYTES`,
    /// never past `end_position`) to be read into the page cache. False if the hint was
    /// dropped (too many in flight, no runtime) or covers nothing.
    pub fn hint(
        self: &Arc<Self>,
        file: &Arc<File>,
        position: u64,
        len: usize,
        end_position: u64,
    ) -> bool {
        let len = hint_len(position, len, end_position);
        let Ok(position) = libc::off64_t::try_from(position) else {
            return false;
        };
        if len == 0 || !self.try_reserve() {
            return false;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.release();
            return false;
        };
        let (this, file) = (Arc::clone(self), Arc::clone(file));
        runtime.spawn_blocking(move || {
            // SAFETY: readahead only reads its integer arguments; the descriptor stays
            // open while `file` is held.
            let rc = unsafe { libc::readahead(file.as_raw_fd(), position, len) };
            if rc != 0 && !this.warned.swap(true, Ordering::Relaxed) {
                warn!(
                    "read-ahead of segment data failed ({}); catch-up reads rely on the kernel's own read-ahead",
                    std::io::Error::last_os_error()
                );
            }
            this.release();
        });
        true
    }

    fn try_reserve(&self) -> bool {
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_in_flight).then_some(n + 1)
            })
            .is_ok()
    }

    fn release(&self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Bytes a hint covers: `len`, capped at `READ_AHEAD_MAX_BYTES` and at what lies below
/// `end_position`.
fn hint_len(position: u64, len: usize, end_position: u64) -> usize {
    let available = end_position.saturating_sub(position);
    len.min(READ_AHEAD_MAX_BYTES)
        .min(usize::try_from(available).unwrap_or(usize::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_beyond_the_in_flight_limit_are_dropped() {
        let read_ahead = ReadAhead::with_limit(2);
        assert!(read_ahead.try_reserve());
        assert!(read_ahead.try_reserve());
        assert!(!read_ahead.try_reserve());
        read_ahead.release();
        assert!(read_ahead.try_reserve());
    }

    #[test]
    fn a_hint_stays_within_the_data_and_the_size_cap() {
        assert_eq!(hint_len(0, 64 << 20, 1 << 40), READ_AHEAD_MAX_BYTES);
        assert_eq!(hint_len(1_000, 4_096, 1_500), 500);
        assert_eq!(hint_len(2_000, 4_096, 2_000), 0);
    }

    #[test]
    fn outside_a_runtime_no_hint_is_given_and_none_stays_reserved() {
        let read_ahead = Arc::new(ReadAhead::with_limit(1));
        let file = Arc::new(tempfile::tempfile().expect("temp file"));
        assert!(!read_ahead.hint(&file, 0, 4_096, 8_192));
        assert!(read_ahead.try_reserve());
    }

    #[tokio::test]
    async fn a_hint_runs_and_frees_its_slot() {
        let read_ahead = Arc::new(ReadAhead::with_limit(1));
        let file = Arc::new(tempfile::tempfile().expect("temp file"));
        file.set_len(8_192).expect("size the file");
        assert!(read_ahead.hint(&file, 0, 4_096, 8_192));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while read_ahead.in_flight.load(Ordering::Acquire) != 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the hint never finished"
            );
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        assert!(read_ahead.hint(&file, 4_096, 4_096, 8_192));
    }
}
