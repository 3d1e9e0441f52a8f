//! `log.cleaner.io.max.bytes.per.second`: one rate limit shared by every cleaner thread,
//! counting the bytes they read and write. As Kafka's `Throttler`, it measures the rate
//! over periods of at least `CHECK_INTERVAL_MS` and, when a period went faster than the
//! limit, sleeps for as long as the bytes should have taken.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Shortest period over which the rate is measured.
const CHECK_INTERVAL_MS: u64 = 300;

struct Period {
    started: Instant,
    bytes: u64,
}

/// A shared byte-rate limit.
pub struct Throttler {
    max_bytes_per_second: f64,
    period: Mutex<Period>,
}

impl Throttler {
    /// A limit of `max_bytes_per_second` (infinite or non-positive: no limit).
    pub fn new(max_bytes_per_second: f64) -> Throttler {
        Throttler {
            max_bytes_per_second,
            period: Mutex::new(Period {
                started: Instant::now(),
                bytes: 0,
            }),
        }
    }

    fn unlimited(&self) -> bool {
        !self.max_bytes_per_second.is_finite() || self.max_bytes_per_second <= 0.0
    }

    /// Counts `bytes` of cleaner I/O and sleeps the calling thread if the period's rate
    /// went above the limit. Returns how long it slept.
    pub fn maybe_throttle(&self, bytes: u64) -> Duration {
        if self.unlimited() {
            return Duration::ZERO;
        }
        let sleep = {
            let mut period = crate::sync::lock(&self.period, "cleaner throttle");
            period.bytes = period.bytes.saturating_add(bytes);
            let elapsed = period.started.elapsed();
            if elapsed < Duration::from_millis(CHECK_INTERVAL_MS) {
                return Duration::ZERO;
            }
            let allowed_secs = period.bytes as f64 / self.max_bytes_per_second;
            let sleep = Duration::from_secs_f64(allowed_secs).saturating_sub(elapsed);
            period.started = Instant::now() + sleep;
            period.bytes = 0;
            sleep
        };
        if !sleep.is_zero() {
            std::thread::sleep(sleep);
        }
        sleep
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fast_period_sleeps_for_what_the_bytes_should_have_taken() {
        let throttle = Throttler::new(1_000_000.0);
        let start = Instant::now();
        let mut slept = Duration::ZERO;
        while start.elapsed() < Duration::from_millis(CHECK_INTERVAL_MS + 50) {
            slept += throttle.maybe_throttle(20_000);
            std::thread::sleep(Duration::from_millis(10));
        }
        // About 2 MB/s asked for at 1 MB/s: the first period's ~0.6 MB should take ~0.6 s,
        // so about 0.3 s is slept.
        assert!(
            slept >= Duration::from_millis(150) && slept <= Duration::from_millis(1_000),
            "slept {slept:?}"
        );
        assert!(Throttler::new(f64::MAX).maybe_throttle(u64::MAX).is_zero());
    }
}
