//! The cleaner's key map: for each key in the dirty part of a log, the offset of its
//! latest record. Like Kafka's `SkimpyOffsetMap`, it stores a 128-bit hash of each key
//! instead of the key (24 bytes per slot, whatever the key's size), in one flat table
//! allocated once per cleaning pass and probed linearly.
//!
//! The hash is SipHash-1-3 from the standard library run twice with two independent random
//! keys drawn per map, so two keys collide with probability about n²/2¹²⁹ for n keys, and
//! nobody producing to the topic can choose keys that collide (Kafka's MD5 has the first
//! property only). A collision would make the cleaner treat two keys as one.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

/// Bytes one slot takes: a 128-bit key hash and an 8-byte offset.
pub const SLOT_BYTES: usize = 24;

/// An empty slot's offset (no record has a negative offset).
const EMPTY: i64 = -1;

#[derive(Clone, Copy)]
struct Slot {
    hash: u128,
    offset: i64,
}

/// A map from key hash to latest offset whose table grows by doubling, up to a slot limit
/// derived from `log.cleaner.dedupe.buffer.size`, so a pass over few keys takes little
/// memory and a pass over many takes at most the configured buffer.
pub struct OffsetMap {
    slots: Vec<Slot>,
    /// The most slots the table may grow to.
    max_slots: usize,
    /// `log.cleaner.io.buffer.load.factor`: the share of slots that may be used.
    load_factor: f64,
    entries: usize,
    hashers: (RandomState, RandomState),
}

/// Slots a map starts with (and returns to when cleared): 24 KiB.
const INITIAL_SLOTS: usize = 1024;

/// Entries a table of `slots` slots accepts at `load_factor`, always leaving one slot
/// empty so that a probe ends.
fn capacity(slots: usize, load_factor: f64) -> usize {
    ((slots as f64 * load_factor) as usize).min(slots.saturating_sub(1))
}

fn empty_slots(count: usize) -> Vec<Slot> {
    vec![
        Slot {
            hash: 0,
            offset: EMPTY
        };
        count
    ]
}

impl OffsetMap {
    /// An empty map that may grow to `max_slots` slots (at least 2) filled to
    /// `load_factor` (clamped to (0, 1]).
    pub fn new(max_slots: usize, load_factor: f64) -> OffsetMap {
        let max_slots = max_slots.max(2);
        OffsetMap {
            slots: empty_slots(INITIAL_SLOTS.min(max_slots)),
            max_slots,
            load_factor: if load_factor > 0.0 {
                load_factor.min(1.0)
            } else {
                1.0
            },
            entries: 0,
            hashers: (RandomState::new(), RandomState::new()),
        }
    }

    /// Forgets every key and gives back the memory of a grown table (new hash keys too).
    pub fn clear(&mut self) {
        self.slots = empty_slots(INITIAL_SLOTS.min(self.max_slots));
        self.entries = 0;
        self.hashers = (RandomState::new(), RandomState::new());
    }

    /// Keys the map can still take, growing to its limit.
    pub fn room(&self) -> usize {
        capacity(self.max_slots, self.load_factor).saturating_sub(self.entries)
    }

    /// Keys stored.
    pub fn len(&self) -> usize {
        self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Bytes the table takes now.
    pub fn table_bytes(&self) -> usize {
        self.slots.len() * SLOT_BYTES
    }

    fn hash(&self, key: &[u8]) -> u128 {
        let mut first = self.hashers.0.build_hasher();
        first.write(key);
        let mut second = self.hashers.1.build_hasher();
        second.write(key);
        (u128::from(first.finish()) << 64) | u128::from(second.finish())
    }

    fn slot_in(slots: &[Slot], hash: u128) -> usize {
        let mut index = (hash as u64 % slots.len() as u64) as usize;
        loop {
            let slot = slots[index];
            if slot.offset == EMPTY || slot.hash == hash {
                return index;
            }
            index = (index + 1) % slots.len();
        }
    }

    /// Doubles the table (within the limit); false if it is at its limit.
    fn grow(&mut self) -> bool {
        let target = self.slots.len().saturating_mul(2).min(self.max_slots);
        if target <= self.slots.len() {
            return false;
        }
        let mut slots = empty_slots(target);
        for slot in self.slots.iter().filter(|s| s.offset != EMPTY) {
            let index = Self::slot_in(&slots, slot.hash);
            slots[index] = *slot;
        }
        self.slots = slots;
        true
    }

    /// Records `offset` as the latest for `key`; false (nothing stored) when the key is new
    /// and the map is full.
    pub fn put(&mut self, key: &[u8], offset: i64) -> bool {
        let hash = self.hash(key);
        let mut index = Self::slot_in(&self.slots, hash);
        if self.slots[index].offset == EMPTY {
            while self.entries >= capacity(self.slots.len(), self.load_factor) {
                if !self.grow() {
                    return false;
                }
                index = Self::slot_in(&self.slots, hash);
            }
            self.entries += 1;
            self.slots[index].hash = hash;
        }
        let slot = &mut self.slots[index];
        slot.offset = slot.offset.max(offset);
        true
    }

    /// The latest offset recorded for `key`, if any.
    pub fn get(&self, key: &[u8]) -> Option<i64> {
        let slot = self.slots[Self::slot_in(&self.slots, self.hash(key))];
        (slot.offset != EMPTY).then_some(slot.offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest_offset_per_key_and_stops_when_full() {
        let mut map = OffsetMap::new(16, 0.75);
        for offset in 0..10 {
            assert!(map.put(format!("k{}", offset % 4).as_bytes(), offset));
        }
        assert_eq!(map.len(), 4);
        assert_eq!(map.get(b"k1"), Some(9));
        assert_eq!(map.get(b"k3"), Some(7));
        assert_eq!(map.get(b"absent"), None);
        for i in 4..12 {
            assert!(map.put(format!("k{i}").as_bytes(), 100 + i));
        }
        assert_eq!(map.room(), 0);
        assert!(!map.put(b"one-too-many", 200), "a new key does not fit");
        assert!(map.put(b"k0", 300), "an existing key is still updated");
        assert_eq!(map.get(b"k0"), Some(300));
    }

    #[test]
    fn a_full_table_still_terminates_probes() {
        let mut map = OffsetMap::new(4, 1.0);
        assert_eq!(map.room(), 3);
        for i in 0..3 {
            assert!(map.put(&[i], i64::from(i)));
        }
        assert_eq!(map.get(&[9]), None);
    }

    #[test]
    fn grows_from_small_to_its_limit_and_shrinks_when_cleared() {
        let mut map = OffsetMap::new(1 << 14, 0.9);
        assert_eq!(map.table_bytes(), INITIAL_SLOTS * SLOT_BYTES);
        for i in 0..10_000i64 {
            assert!(map.put(&i.to_be_bytes(), i));
        }
        assert_eq!(map.table_bytes(), (1 << 14) * SLOT_BYTES);
        assert!((0..10_000i64).all(|i| map.get(&i.to_be_bytes()) == Some(i)));
        map.clear();
        assert_eq!(map.len(), 0);
        assert_eq!(map.table_bytes(), INITIAL_SLOTS * SLOT_BYTES);
        assert_eq!(map.get(&5i64.to_be_bytes()), None);
    }
}
