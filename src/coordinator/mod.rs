//! Coordinators: the group coordinator (consumer groups and committed offsets) and the
//! transaction coordinator. Both keep their state in Ferry's own internal topics and
//! are driven without sockets: requests in, answers (or parked answers) out.

pub mod group;
pub mod txn;

use std::future::Future;
use std::pin::Pin;

/// Resolves once written records are durable under the partition's flush policy.
pub type DurableFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// A record as the coordinator writes it: key and value (`None` = tombstone).
pub type KeyValue = (Vec<u8>, Option<Vec<u8>>);

/// What replaying `__consumer_offsets` yields, in log order.
#[derive(Debug, Clone, Copy)]
pub enum LogEvent<'a> {
    /// A record; `transactional_producer` is set for offsets committed in a transaction,
    /// which count only once a COMMIT marker for that producer follows.
    Record {
        key: &'a [u8],
        value: Option<&'a [u8]>,
        transactional_producer: Option<i64>,
    },
    /// A transaction marker for a producer.
    Marker { producer_id: i64, commit: bool },
}

/// Receives replayed log events.
pub type RecordVisitor<'a> = dyn FnMut(LogEvent<'_>) + 'a;

/// Where a coordinator keeps its records: the partitions of an internal topic
/// (`__consumer_offsets`, `__transaction_state`).
pub trait CoordinatorLog: Send + Sync {
    fn partitions(&self) -> usize;
    /// Appends `(key, value)` records (value `None` = tombstone) to one partition as one
    /// batch, returning a future for their durability.
    /// `transaction` is the producer `(id, epoch)` of offsets committed inside a
    /// transaction.
    fn append(
        &self,
        partition: usize,
        records: &[KeyValue],
        transaction: Option<(i64, i16)>,
    ) -> Result<DurableFuture, String>;
    /// Visits every record of one partition in log order.
    fn replay(&self, partition: usize, visit: &mut RecordVisitor<'_>) -> Result<(), String>;
}

/// Kafka's `String.hashCode` over UTF-16 code units.
pub fn java_string_hash(text: &str) -> i32 {
    text.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}

/// `Utils.abs(key.hashCode) % partitions`: the internal-topic partition of a group id or
/// transactional id, as Kafka's coordinators place them.
pub fn partition_for(key: &str, partitions: usize) -> usize {
    let hash = java_string_hash(key);
    // Kafka's Utils.abs maps i32::MIN to 0 rather than overflowing.
    let positive = if hash == i32::MIN { 0 } else { hash.abs() };
    positive as usize % partitions.max(1)
}
