//! Failed authentications per client address: each address may fail
//! `MAX_FAILURES_PER_WINDOW` times per `WINDOW_MS` at full speed; beyond that every
//! further attempt from it waits before its password is checked, longer with each
//! failure (`DELAY_STEP_MS` more, up to `MAX_DELAY_MS`), until the window moves on. A
//! guesser gets one try per few seconds per connection, while a client with the right
//! password from the same address (clients behind one NAT) is slowed, never locked out.
//! The first delay of a window is logged. The table holds at most
//! `MAX_TRACKED_ADDRESSES` addresses; when full, the stalest windows are dropped first.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed authentications one address may make per window at full speed.
pub const MAX_FAILURES_PER_WINDOW: u32 = 10;
/// The window's length.
pub const WINDOW_MS: u64 = 60_000;
/// Added wait per failure beyond the budget.
pub const DELAY_STEP_MS: u64 = 500;
/// Longest wait before an attempt is checked.
pub const MAX_DELAY_MS: u64 = 5_000;
/// Addresses tracked at once.
pub const MAX_TRACKED_ADDRESSES: usize = 65_536;

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
    delay_logged: bool,
}

/// What to do with an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Check,
    /// Check after waiting `delay_ms`; `first` is true once per window (log it then).
    Delay {
        delay_ms: u64,
        first: bool,
    },
}

#[derive(Debug, Default)]
pub struct FailedAuthLimiter {
    windows: Mutex<HashMap<IpAddr, Window>>,
}

fn current(window: &Window, now: Instant) -> bool {
    now.duration_since(window.started) < Duration::from_millis(WINDOW_MS)
}

impl FailedAuthLimiter {
    /// How an attempt from `address` is to be checked.
    pub fn admit(&self, address: IpAddr, now: Instant) -> Admission {
        let mut windows = crate::sync::lock(&self.windows, "failed authentications");
        match windows.get_mut(&address) {
            Some(w) if current(w, now) && w.failures >= MAX_FAILURES_PER_WINDOW => {
                let first = !w.delay_logged;
                w.delay_logged = true;
                let over = u64::from(w.failures - MAX_FAILURES_PER_WINDOW) + 1;
                let delay_ms = over.saturating_mul(DELAY_STEP_MS).min(MAX_DELAY_MS);
                Admission::Delay { delay_ms, first }
            }
            _ => Admission::Check,
        }
    }

    /// Counts a failed attempt from `address`.
    pub fn failed(&self, address: IpAddr, now: Instant) {
        let mut windows = crate::sync::lock(&self.windows, "failed authentications");
        if windows.len() >= MAX_TRACKED_ADDRESSES && !windows.contains_key(&address) {
            windows.retain(|_, w| current(w, now));
            if windows.len() >= MAX_TRACKED_ADDRESSES {
                let stalest = windows
                    .iter()
                    .min_by_key(|(_, w)| w.started)
                    .map(|(a, _)| *a);
                if let Some(stalest) = stalest {
                    windows.remove(&stalest);
                }
            }
        }
        let fresh = Window {
            started: now,
            failures: 0,
            delay_logged: false,
        };
        let window = windows.entry(address).or_insert(fresh);
        if !current(window, now) {
            *window = fresh;
        }
        window.failures = window.failures.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_slowed_after_its_failures_until_the_window_passes() {
        let limiter = FailedAuthLimiter::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let start = Instant::now();
        for _ in 0..MAX_FAILURES_PER_WINDOW {
            assert_eq!(limiter.admit(a, start), Admission::Check);
            limiter.failed(a, start);
        }
        let first = Admission::Delay {
            delay_ms: DELAY_STEP_MS,
            first: true,
        };
        assert_eq!(limiter.admit(a, start), first);
        for _ in 0..100 {
            limiter.failed(a, start);
        }
        let capped = Admission::Delay {
            delay_ms: MAX_DELAY_MS,
            first: false,
        };
        assert_eq!(limiter.admit(a, start), capped);
        assert_eq!(
            limiter.admit(b, start),
            Admission::Check,
            "other addresses are not affected"
        );
        let later = start + Duration::from_millis(WINDOW_MS);
        assert_eq!(limiter.admit(a, later), Admission::Check);
        limiter.failed(a, later);
        assert_eq!(
            limiter.admit(a, later),
            Admission::Check,
            "a new window starts at one"
        );
    }

    #[test]
    fn the_table_is_bounded() {
        let limiter = FailedAuthLimiter::default();
        let now = Instant::now();
        for i in 0..(MAX_TRACKED_ADDRESSES as u32 + 10) {
            limiter.failed(IpAddr::from(i.to_be_bytes()), now);
        }
        assert!(limiter.windows.lock().unwrap().len() <= MAX_TRACKED_ADDRESSES);
    }
}
