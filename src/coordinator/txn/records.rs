//! Records of the `__transaction_state` topic in Kafka's formats
//! (`transaction-coordinator/src/main/resources/common/message/TransactionLog*.json`):
//!
//! ```text
//! key   v0  TransactionLogKey   { transactional_id str }
//! value v0  TransactionLogValue { producer_id i64, producer_epoch i16, timeout_ms i32,
//!                                 status i8, partitions [{topic str, partitions [i32]}]?,
//!                                 last_update_ms i64, start_ms i64 }
//! ```
//! Strings are i16-length-prefixed, arrays i32-count-prefixed (the partition list may be
//! null, -1). A null value is a tombstone (an expired transactional id).

use std::collections::BTreeSet;

/// Transaction states (Kafka's `TransactionState` ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnState {
    Empty = 0,
    Ongoing = 1,
    PrepareCommit = 2,
    PrepareAbort = 3,
    CompleteCommit = 4,
    CompleteAbort = 5,
    Dead = 6,
    PrepareEpochFence = 7,
}

impl TxnState {
    /// Between Prepare and Complete: the markers still have to be written.
    pub fn is_prepared(self) -> bool {
        matches!(
            self,
            TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::PrepareEpochFence
        )
    }

    pub fn from_id(id: i8) -> Option<TxnState> {
        Some(match id {
            0 => TxnState::Empty,
            1 => TxnState::Ongoing,
            2 => TxnState::PrepareCommit,
            3 => TxnState::PrepareAbort,
            4 => TxnState::CompleteCommit,
            5 => TxnState::CompleteAbort,
            6 => TxnState::Dead,
            7 => TxnState::PrepareEpochFence,
            _ => return None,
        })
    }

    /// The name DescribeTransactions and ListTransactions use.
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }
}

/// A transactional id's persisted state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnValue {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    pub partitions: BTreeSet<(String, i32)>,
    pub last_update_ms: i64,
    pub start_ms: i64,
}

fn put_str(out: &mut Vec<u8>, text: &str) {
    let len = i16::try_from(text.len()).unwrap_or(i16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&text.as_bytes()[..len as usize]);
}

pub fn key(transactional_id: &str) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0i16.to_be_bytes());
    put_str(&mut out, transactional_id);
    out
}

pub fn value(v: &TxnValue) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0i16.to_be_bytes());
    out.extend_from_slice(&v.producer_id.to_be_bytes());
    out.extend_from_slice(&v.producer_epoch.to_be_bytes());
    out.extend_from_slice(&v.timeout_ms.to_be_bytes());
    out.push(v.state as u8);
    let mut by_topic: Vec<(&str, Vec<i32>)> = Vec::new();
    for (topic, partition) in &v.partitions {
        match by_topic.last_mut() {
            Some((t, ps)) if *t == topic.as_str() => ps.push(*partition),
            _ => by_topic.push((topic, vec![*partition])),
        }
    }
    out.extend_from_slice(&(by_topic.len() as i32).to_be_bytes());
    for (topic, partitions) in by_topic {
        put_str(&mut out, topic);
        out.extend_from_slice(&(partitions.len() as i32).to_be_bytes());
        for p in partitions {
            out.extend_from_slice(&p.to_be_bytes());
        }
    }
    out.extend_from_slice(&v.last_update_ms.to_be_bytes());
    out.extend_from_slice(&v.start_ms.to_be_bytes());
    out
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn i8(&mut self) -> Option<i8> {
        self.take(1).map(|b| b[0] as i8)
    }
    fn i16(&mut self) -> Option<i16> {
        self.take(2).map(|b| i16::from_be_bytes([b[0], b[1]]))
    }
    fn i32(&mut self) -> Option<i32> {
        self.take(4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn i64(&mut self) -> Option<i64> {
        self.take(8)
            .and_then(|b| b.try_into().ok())
            .map(i64::from_be_bytes)
    }
    fn string(&mut self) -> Option<String> {
        let len = usize::try_from(self.i16()?).ok()?;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }
    /// An array count checked against the bytes left.
    fn count(&mut self, min_element_bytes: usize) -> Option<Option<usize>> {
        let n = self.i32()?;
        if n < 0 {
            return Some(None);
        }
        let n = n as usize;
        (n.saturating_mul(min_element_bytes) <= self.0.len()).then_some(Some(n))
    }
}

/// Decodes a key into its transactional id (`None` for other key versions or garbage).
pub fn decode_key(bytes: &[u8]) -> Option<String> {
    let mut r = Reader(bytes);
    (r.i16()? == 0).then_some(())?;
    r.string()
}

/// Decodes a value; `None` if malformed.
pub fn decode_value(bytes: &[u8]) -> Option<TxnValue> {
    let mut r = Reader(bytes);
    r.i16()?;
    let producer_id = r.i64()?;
    let producer_epoch = r.i16()?;
    let timeout_ms = r.i32()?;
    let state = TxnState::from_id(r.i8()?)?;
    let mut partitions = BTreeSet::new();
    if let Some(topics) = r.count(6)? {
        for _ in 0..topics {
            let topic = r.string()?;
            let n = r.count(4)?.unwrap_or(0);
            for _ in 0..n {
                partitions.insert((topic.clone(), r.i32()?));
            }
        }
    }
    let last_update_ms = r.i64()?;
    let start_ms = r.i64()?;
    Some(TxnValue {
        producer_id,
        producer_epoch,
        timeout_ms,
        state,
        partitions,
        last_update_ms,
        start_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let value_in = TxnValue {
            producer_id: 42,
            producer_epoch: 3,
            timeout_ms: 60_000,
            state: TxnState::Ongoing,
            partitions: [
                ("a".to_string(), 0),
                ("a".to_string(), 2),
                ("b".to_string(), 1),
            ]
            .into(),
            last_update_ms: 5,
            start_ms: 4,
        };
        assert_eq!(decode_value(&value(&value_in)), Some(value_in));
        assert_eq!(decode_key(&key("txn-1")).as_deref(), Some("txn-1"));
        assert_eq!(decode_value(&[0, 0, 1]), None);
        let mut hostile = value(&TxnValue {
            producer_id: 1,
            producer_epoch: 0,
            timeout_ms: 1,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            last_update_ms: 0,
            start_ms: 0,
        });
        hostile[17..21].copy_from_slice(&i32::MAX.to_be_bytes());
        assert_eq!(decode_value(&hostile), None);
    }
}
