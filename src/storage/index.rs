//! The sparse `.index` and `.timeindex` of one segment, in Kafka's file formats.
//!
//! * `.index`: 8-byte entries `(relative_offset i32, position i32)`, big-endian. An entry
//!   says "the batch ending at `base + relative_offset` starts at or after `position`".
//! * `.timeindex`: 12-byte entries `(timestamp i64, relative_offset i32)`; timestamps are the
//!   maximum seen so far in the segment, so entries never decrease.
//!
//! Indexes are caches of the `.log`: they are kept in memory, written whole when a segment
//! rolls or the broker shuts down cleanly, checked when loaded, and rebuilt from the log
//! whenever they are missing, fail the checks, or cover data written after the last flush.

use std::fmt;

/// Bytes per `.index` entry.
pub const OFFSET_ENTRY_BYTES: usize = 8;
/// Bytes per `.timeindex` entry.
pub const TIME_ENTRY_BYTES: usize = 12;

/// Why an index file was rejected (the segment's index is then rebuilt from its log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexCorrupt {
    pub reason: &'static str,
}

impl fmt::Display for IndexCorrupt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "index is corrupt: {}", self.reason)
    }
}

/// `offset` relative to `base_offset`, if it fits the index formats' 32-bit field. Kafka
/// writes it as a signed int, so relative offsets stay at or below `i32::MAX`.
fn relative_to(base_offset: i64, offset: i64) -> Option<u32> {
    let relative = offset.checked_sub(base_offset)?;
    if relative > i64::from(i32::MAX) {
        return None;
    }
    u32::try_from(relative).ok()
}

/// The offset a relative offset read from a file names, if the entry is valid: at most
/// `i32::MAX` (the field is signed in Kafka's format) and not past `i64::MAX`. Every entry
/// kept in memory passed this or [`relative_to`], so `base + relative` never overflows.
fn absolute(base_offset: i64, relative_offset: u32) -> Option<i64> {
    if i64::from(relative_offset) > i64::from(i32::MAX) {
        return None;
    }
    base_offset.checked_add(i64::from(relative_offset))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OffsetEntry {
    relative_offset: u32,
    position: u32,
}

/// Sparse map from offsets to byte positions in the segment's `.log`.
#[derive(Debug, Clone)]
pub struct OffsetIndex {
    base_offset: i64,
    entries: Vec<OffsetEntry>,
}

impl OffsetIndex {
    pub fn new(base_offset: i64) -> Self {
        OffsetIndex {
            base_offset,
            entries: Vec::new(),
        }
    }

    /// Records that the batch ending at `last_offset` starts at `position`. Offsets and
    /// positions must increase and the offset must be expressible relative to the base;
    /// an entry that breaks either rule is not recorded (the index is a sparse cache: a
    /// missing entry only makes a lookup start scanning earlier). The segment rolls before
    /// its offsets leave the relative range, so this does not happen.
    pub fn append(&mut self, last_offset: i64, position: u32) {
        let Some(relative_offset) = relative_to(self.base_offset, last_offset) else {
            return;
        };
        let increases = self
            .entries
            .last()
            .is_none_or(|e| e.relative_offset < relative_offset && e.position < position);
        if increases {
            self.entries.push(OffsetEntry {
                relative_offset,
                position,
            });
        }
    }

    /// The last entry as `(absolute offset, position)`.
    pub fn last_entry(&self) -> Option<(i64, u32)> {
        self.entries
            .last()
            .map(|e| (self.base_offset + i64::from(e.relative_offset), e.position))
    }

    /// The position to start scanning from to find `target_offset`: the position of the
    /// greatest entry whose offset is at most the target, or 0.
    pub fn lookup(&self, target_offset: i64) -> u32 {
        if target_offset < self.base_offset {
            return 0;
        }
        // Beyond the relative range, every entry is at or below the target.
        let relative =
            u32::try_from(target_offset.saturating_sub(self.base_offset)).unwrap_or(u32::MAX);
        let count = self
            .entries
            .partition_point(|e| e.relative_offset <= relative);
        count.checked_sub(1).map_or(0, |i| self.entries[i].position)
    }

    /// Drops entries at or after `position` (used when the log is truncated there).
    pub fn truncate_to_position(&mut self, position: u32) {
        let keep = self.entries.partition_point(|e| e.position < position);
        self.entries.truncate(keep);
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * OFFSET_ENTRY_BYTES);
        for entry in &self.entries {
            out.extend_from_slice(&entry.relative_offset.to_be_bytes());
            out.extend_from_slice(&entry.position.to_be_bytes());
        }
        out
    }

    /// Parses an index file and checks it against the segment it belongs to.
    pub fn decode(
        bytes: &[u8],
        base_offset: i64,
        segment_bytes: u64,
    ) -> Result<Self, IndexCorrupt> {
        if !bytes.len().is_multiple_of(OFFSET_ENTRY_BYTES) {
            return Err(IndexCorrupt {
                reason: "size is not a multiple of 8",
            });
        }
        let mut index = OffsetIndex::new(base_offset);
        for chunk in bytes.chunks_exact(OFFSET_ENTRY_BYTES) {
            let relative_offset = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            let position = u32::from_be_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]);
            if absolute(base_offset, relative_offset).is_none() {
                return Err(IndexCorrupt {
                    reason: "relative offset outside the format's range",
                });
            }
            if let Some(last) = index.entries.last() {
                if relative_offset <= last.relative_offset || position <= last.position {
                    return Err(IndexCorrupt {
                        reason: "entries do not increase",
                    });
                }
            }
            if u64::from(position) >= segment_bytes {
                return Err(IndexCorrupt {
                    reason: "position beyond the end of the log",
                });
            }
            index.entries.push(OffsetEntry {
                relative_offset,
                position,
            });
        }
        Ok(index)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TimeEntry {
    timestamp: i64,
    relative_offset: u32,
}

/// Sparse map from timestamps to offsets within a segment.
#[derive(Debug, Clone)]
pub struct TimeIndex {
    base_offset: i64,
    entries: Vec<TimeEntry>,
}

impl TimeIndex {
    pub fn new(base_offset: i64) -> Self {
        TimeIndex {
            base_offset,
            entries: Vec::new(),
        }
    }

    /// Adds `(timestamp, offset)` if the timestamp is greater than the last entry's; the
    /// index only grows in time. Like [`OffsetIndex::append`], an offset that does not
    /// increase or is not expressible relative to the base is not recorded.
    pub fn maybe_append(&mut self, timestamp: i64, offset: i64) {
        let Some(relative_offset) = relative_to(self.base_offset, offset) else {
            return;
        };
        let grows = self
            .entries
            .last()
            .is_none_or(|e| e.timestamp < timestamp && e.relative_offset <= relative_offset);
        if grows {
            self.entries.push(TimeEntry {
                timestamp,
                relative_offset,
            });
        }
    }

    /// The offset to start searching from for the first record with a timestamp at or
    /// after `timestamp`: the offset of the greatest entry whose timestamp is below or equal
    /// to it, or the segment's base offset.
    pub fn lookup(&self, timestamp: i64) -> i64 {
        let count = self.entries.partition_point(|e| e.timestamp <= timestamp);
        count.checked_sub(1).map_or(self.base_offset, |i| {
            self.base_offset + i64::from(self.entries[i].relative_offset)
        })
    }

    /// The last entry as `(timestamp, absolute offset)`.
    pub fn last_entry(&self) -> Option<(i64, i64)> {
        self.entries
            .last()
            .map(|e| (e.timestamp, self.base_offset + i64::from(e.relative_offset)))
    }

    /// Drops entries that point at or after `offset`.
    pub fn truncate_to_offset(&mut self, offset: i64) {
        let keep = self
            .entries
            .partition_point(|e| self.base_offset + i64::from(e.relative_offset) < offset);
        self.entries.truncate(keep);
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * TIME_ENTRY_BYTES);
        for entry in &self.entries {
            out.extend_from_slice(&entry.timestamp.to_be_bytes());
            out.extend_from_slice(&entry.relative_offset.to_be_bytes());
        }
        out
    }

    /// Parses a time index file; `next_offset` is one past the segment's last offset.
    pub fn decode(bytes: &[u8], base_offset: i64, next_offset: i64) -> Result<Self, IndexCorrupt> {
        if !bytes.len().is_multiple_of(TIME_ENTRY_BYTES) {
            return Err(IndexCorrupt {
                reason: "size is not a multiple of 12",
            });
        }
        let mut index = TimeIndex::new(base_offset);
        for chunk in bytes.chunks_exact(TIME_ENTRY_BYTES) {
            let mut ts = [0u8; 8];
            ts.copy_from_slice(&chunk[..8]);
            let timestamp = i64::from_be_bytes(ts);
            let relative_offset = u32::from_be_bytes([chunk[8], chunk[9], chunk[10], chunk[11]]);
            if let Some(last) = index.entries.last() {
                if timestamp < last.timestamp || relative_offset < last.relative_offset {
                    return Err(IndexCorrupt {
                        reason: "entries go backwards",
                    });
                }
            }
            let beyond_end = absolute(base_offset, relative_offset)
                .is_none_or(|offset| offset >= next_offset.max(base_offset.saturating_add(1)));
            if beyond_end {
                return Err(IndexCorrupt {
                    reason: "offset beyond the end of the log",
                });
            }
            index.entries.push(TimeEntry {
                timestamp,
                relative_offset,
            });
        }
        Ok(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_lookup_is_a_floor_search() {
        let mut index = OffsetIndex::new(100);
        index.append(110, 4096);
        index.append(120, 8192);
        assert_eq!(index.lookup(99), 0);
        assert_eq!(index.lookup(105), 0);
        assert_eq!(index.lookup(110), 4096);
        assert_eq!(index.lookup(119), 4096);
        assert_eq!(index.lookup(500), 8192);
    }

    #[test]
    fn offset_index_round_trips_and_rejects_corruption() {
        let mut index = OffsetIndex::new(1_000);
        index.append(1_010, 100);
        index.append(1_020, 200);
        let bytes = index.encode();
        assert_eq!(bytes.len(), 16);
        let back = OffsetIndex::decode(&bytes, 1_000, 300).unwrap();
        assert_eq!(back.lookup(1_015), 100);
        assert!(OffsetIndex::decode(&bytes[..15], 1_000, 300).is_err());
        assert!(OffsetIndex::decode(&bytes, 1_000, 150).is_err());
        let mut swapped = bytes[8..].to_vec();
        swapped.extend_from_slice(&bytes[..8]);
        assert!(OffsetIndex::decode(&swapped, 1_000, 300).is_err());
    }

    #[test]
    fn truncation_drops_entries_past_the_cut() {
        let mut index = OffsetIndex::new(0);
        index.append(10, 100);
        index.append(20, 200);
        index.truncate_to_position(200);
        assert_eq!(index.encode().len(), OFFSET_ENTRY_BYTES);
        let mut time = TimeIndex::new(0);
        time.maybe_append(5, 10);
        time.maybe_append(9, 20);
        time.truncate_to_offset(20);
        assert_eq!(time.lookup(100), 10);
    }

    #[test]
    fn time_index_only_grows_and_looks_up_floor() {
        let mut index = TimeIndex::new(0);
        index.maybe_append(1_000, 10);
        index.maybe_append(900, 20); // ignored: earlier than the last entry
        index.maybe_append(2_000, 30);
        assert_eq!(index.lookup(500), 0);
        assert_eq!(index.lookup(1_500), 10);
        assert_eq!(index.lookup(2_000), 30);
        let back = TimeIndex::decode(&index.encode(), 0, 31).unwrap();
        assert_eq!(back.lookup(1_999), 10);
        assert!(TimeIndex::decode(&index.encode(), 0, 25).is_err());
    }
}
