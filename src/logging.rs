//! What the broker's log may contain about clients: client-supplied text escaped, and
//! warnings about misbehaving connections limited per peer address.
//!
//! A client controls topic names, config keys, client ids and every malformed byte it
//! sends. Logged raw, such text can hold NUL bytes, terminal escapes or fake log lines; and
//! one warning per malformed connection lets a hostile peer write the disk full (200,000
//! bad connections made 17 MB of log). Client mistakes that are not malformed (a topic
//! that already exists) are not warnings at all: handlers log them at debug.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Longest client text written to the log, in characters; the rest is elided.
const MAX_LOGGED_CHARS: usize = 200;

/// Client-supplied text for a log line: control characters, NUL, quotes and backslashes
/// escaped as in Rust string literals, and cut after `MAX_LOGGED_CHARS` characters.
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut chars = self.0.chars();
        for c in chars.by_ref().take(MAX_LOGGED_CHARS) {
            write!(f, "{}", c.escape_debug())?;
        }
        let rest = chars.count();
        if rest > 0 {
            write!(f, "…({rest} more characters)")?;
        }
        Ok(())
    }
}

/// Warnings per peer address allowed in each window before they are suppressed, unless
/// `ferry.connection.warnings.per.peer.per.minute` says otherwise.
const DEFAULT_WARNINGS_PER_WINDOW: u32 = 10;
/// Length of a rate-limiting window.
const WINDOW: Duration = Duration::from_secs(60);
/// Peer addresses tracked at once; beyond this the oldest windows are forgotten first.
const MAX_TRACKED_PEERS: usize = 4_096;

/// What the limiter says about one more warning from a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Log it; `suppressed` earlier warnings from this peer were dropped since the last
    /// one logged (say so in the line).
    Log { suppressed: u64 },
    /// Drop it.
    Suppress,
}

struct PeerWindow {
    started: Instant,
    logged: u32,
    suppressed: u64,
}

/// Limits connection-level warnings to `per_window` per peer address (IP, not port:
/// every new connection has a new port) per `WINDOW`.
pub struct PeerWarnings {
    per_window: u32,
    peers: Mutex<HashMap<IpAddr, PeerWindow>>,
}

impl PeerWarnings {
    pub fn new(per_window: u32) -> PeerWarnings {
        PeerWarnings {
            per_window,
            peers: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a warning about `peer` may be logged now.
    pub fn check(&self, peer: IpAddr, now: Instant) -> Verdict {
        let mut peers = crate::sync::lock(&self.peers, "peer warning limiter");
        if peers.len() >= MAX_TRACKED_PEERS && !peers.contains_key(&peer) {
            peers.retain(|_, w| now.duration_since(w.started) < WINDOW);
            if peers.len() >= MAX_TRACKED_PEERS {
                // Every tracked peer is active: forget the one whose window is oldest.
                let oldest = peers
                    .iter()
                    .min_by_key(|(_, w)| w.started)
                    .map(|(ip, _)| *ip);
                if let Some(ip) = oldest {
                    peers.remove(&ip);
                }
            }
        }
        let window = peers.entry(peer).or_insert(PeerWindow {
            started: now,
            logged: 0,
            suppressed: 0,
        });
        if now.duration_since(window.started) >= WINDOW {
            window.started = now;
            window.logged = 0;
        }
        if window.logged >= self.per_window {
            window.suppressed += 1;
            return Verdict::Suppress;
        }
        window.logged += 1;
        let suppressed = std::mem::take(&mut window.suppressed);
        Verdict::Log { suppressed }
    }
}

static LIMITER: std::sync::OnceLock<PeerWarnings> = std::sync::OnceLock::new();

/// Sets the broker-wide limit (`ferry.connection.warnings.per.peer.per.minute`); called
/// once at startup, before connections are accepted.
pub fn limit_peer_warnings(per_minute: u32) {
    let _ = LIMITER.set(PeerWarnings::new(per_minute));
}

/// The broker-wide limiter for connection warnings.
pub fn peer_warnings() -> &'static PeerWarnings {
    LIMITER.get_or_init(|| PeerWarnings::new(DEFAULT_WARNINGS_PER_WINDOW))
}

/// Logs a warning about a connection from `$peer` (a `SocketAddr`) unless that peer
/// address has had its share of warnings in the current window.
#[macro_export]
macro_rules! warn_peer {
    ($peer:expr, $($arg:tt)+) => {{
        let peer: std::net::SocketAddr = $peer;
        match $crate::logging::peer_warnings().check(peer.ip(), std::time::Instant::now()) {
            $crate::logging::Verdict::Log { suppressed: 0 } => {
                tracing::warn!(%peer, $($arg)+)
            }
            $crate::logging::Verdict::Log { suppressed } => {
                tracing::warn!(%peer, suppressed_similar_warnings = suppressed, $($arg)+)
            }
            $crate::logging::Verdict::Suppress => {}
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_text_is_escaped_and_cut() {
        let text = "bad\0name\n\u{1b}[31m\"quoted\"";
        assert_eq!(
            Escaped(text).to_string(),
            "bad\\0name\\n\\u{1b}[31m\\\"quoted\\\""
        );
        let long = "x".repeat(MAX_LOGGED_CHARS + 7);
        let shown = Escaped(&long).to_string();
        assert!(shown.starts_with(&"x".repeat(MAX_LOGGED_CHARS)));
        assert!(shown.ends_with("…(7 more characters)"));
    }

    #[test]
    fn warnings_are_limited_per_peer_address_and_window() {
        let limiter = PeerWarnings::new(DEFAULT_WARNINGS_PER_WINDOW);
        let start = Instant::now();
        let hostile: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..DEFAULT_WARNINGS_PER_WINDOW {
            assert_eq!(
                limiter.check(hostile, start),
                Verdict::Log { suppressed: 0 }
            );
        }
        for _ in 0..1_000 {
            assert_eq!(limiter.check(hostile, start), Verdict::Suppress);
        }
        // Another peer is not affected.
        assert_eq!(limiter.check(other, start), Verdict::Log { suppressed: 0 });
        // The next window logs again and reports what was dropped.
        let later = start + WINDOW;
        assert_eq!(
            limiter.check(hostile, later),
            Verdict::Log { suppressed: 1_000 }
        );
    }

    #[test]
    fn the_limiter_tracks_a_bounded_number_of_peers() {
        let limiter = PeerWarnings::new(1);
        let now = Instant::now();
        for i in 0..(MAX_TRACKED_PEERS as u32 + 100) {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(i));
            limiter.check(ip, now);
        }
        assert!(crate::sync::lock(&limiter.peers, "test").len() <= MAX_TRACKED_PEERS);
    }
}
