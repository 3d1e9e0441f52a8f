//! Failed authentications per client address: each address may fail
//! `MAX_FAILURES_PER_WINDOW` times per `WINDOW_MS`; beyond that its attempts are refused
//! without checking the password until the window moves on, so guessing passwords from
//! one address runs at a few attempts per minute. Refusals are logged once per window.
//! The table holds at most `MAX_TRACKED_ADDRESSES` addresses; when full, the stalest
//! windows are dropped first.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed authentications one address may make per window.
pub const MAX_FAILURES_PER_WINDOW: u32 = 10;
/// The window's length.
pub const WINDOW_MS: u64 = 60_000;
/// Addresses tracked at once.
pub const MAX_TRACKED_ADDRESSES: usize = 65_536;

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
    refusal_logged: bool,
}

/// What to do with an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Check,
    /// Refused without a check; `first` is true once per window (log it then).
    Refuse {
        first: bool,
    },
}

#[derive(Debug, Default)]
pub struct FailedAuthLimiter {
    windows: Mutex<HashMap<IpAddr, Window>>,
}

impl FailedAuthLimiter {
    fn current(window: &Window, now: Instant) -> bool {
        now.duration_since(window.started) < Duration::from_millis(WINDOW_MS)
    }

    /// Whether an attempt from `address` is checked at all.
    pub fn admit(&self, address: IpAddr, now: Instant) -> Admission {
        let mut windows = crate::sync::lock(&self.windows, "failed authentications");
        match windows.get_mut(&address) {
            Some(w) if Self::current(w, now) && w.failures >= MAX_FAILURES_PER_WINDOW => {
                let first = !w.refusal_logged;
                w.refusal_logged = true;
                Admission::Refuse { first }
            }
            _ => Admission::Check,
        }
    }

    /// Counts a failed attempt from `address`.
    pub fn failed(&self, address: IpAddr, now: Instant) {
        let mut windows = crate::sync::lock(&self.windows, "failed authentications");
        if windows.len() >= MAX_TRACKED_ADDRESSES && !windows.contains_key(&address) {
            windows.retain(|_, w| Self::current(w, now));
            if windows.len() >= MAX_TRACKED_ADDRESSES {
                if let Some(stalest) = windows
                    .iter()
                    .min_by_key(|(_, w)| w.started)
                    .map(|(a, _)| *a)
                {
                    windows.remove(&stalest);
                }
            }
        }
        let window = windows.entry(address).or_insert(Window {
            started: now,
            failures: 0,
            refusal_logged: false,
        });
        if !Self::current(window, now) {
            *window = Window {
                started: now,
                failures: 0,
                refusal_logged: false,
            };
        }
        window.failures = window.failures.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_refused_after_its_failures_until_the_window_passes() {
        let limiter = FailedAuthLimiter::default();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let start = Instant::now();
        for _ in 0..MAX_FAILURES_PER_WINDOW {
            assert_eq!(limiter.admit(a, start), Admission::Check);
            limiter.failed(a, start);
        }
        assert_eq!(limiter.admit(a, start), Admission::Refuse { first: true });
        assert_eq!(limiter.admit(a, start), Admission::Refuse { first: false });
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
