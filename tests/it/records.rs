//! Producing and reading back records with librdkafka, keeping what was acknowledged so
//! that tests can check every acknowledged record byte for byte.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::support::Broker;

/// What a record looked like when produced (or read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordData {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub timestamp: i64,
}

impl RecordData {
    fn from_message(message: &BorrowedMessage<'_>) -> RecordData {
        let headers = message
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default();
        RecordData {
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            headers,
            timestamp: message.timestamp().to_millis().unwrap_or(-1),
        }
    }
}

/// Acknowledged records by (partition, offset).
pub type Acked = BTreeMap<(i32, i64), RecordData>;

/// The keyed test record number `seq` of stream `stream`: a key from a small set (so keys
/// repeat), a value naming the stream and sequence, repeated header keys and a null header.
pub fn test_record(stream: &str, seq: u64, base_timestamp: i64) -> RecordData {
    RecordData {
        key: Some(format!("key-{}", seq % 97).into_bytes()),
        value: Some(format!("{stream}:{seq:08}:{}", "x".repeat((seq % 50) as usize)).into_bytes()),
        headers: vec![
            ("seq".to_string(), Some(seq.to_string().into_bytes())),
            ("dup".to_string(), Some(b"first".to_vec())),
            ("dup".to_string(), Some(b"second".to_vec())),
            ("null".to_string(), None),
        ],
        timestamp: base_timestamp + seq as i64,
    }
}

/// Produces `records` to `topic` and returns where each landed, failing on any error.
pub async fn produce_all(producer: &FutureProducer, topic: &str, records: &[RecordData]) -> Acked {
    let mut pending = Vec::with_capacity(records.len());
    for record in records {
        let mut headers = OwnedHeaders::new();
        for (key, value) in &record.headers {
            headers = headers.insert(Header {
                key,
                value: value.as_deref(),
            });
        }
        let mut future_record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic)
            .headers(headers)
            .timestamp(record.timestamp);
        if let Some(key) = &record.key {
            future_record = future_record.key(key.as_slice());
        }
        if let Some(value) = &record.value {
            future_record = future_record.payload(value.as_slice());
        }
        let delivery = loop {
            match producer.send_result(future_record) {
                Ok(delivery) => break delivery,
                Err((KafkaError::MessageProduction(_), returned)) => {
                    future_record = returned;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((err, _)) => panic!("enqueue failed: {err}"),
            }
        };
        pending.push((record.clone(), delivery));
    }
    let mut acked = Acked::new();
    for (record, delivery) in pending {
        let delivered = delivery.await.expect("delivery future dropped");
        let (partition, offset) = match delivered {
            Ok(d) => (d.partition, d.offset),
            Err((err, _)) => panic!("delivery failed: {err}"),
        };
        assert!(
            acked.insert((partition, offset), record).is_none(),
            "offset reused"
        );
    }
    acked
}

/// Reads every partition of `topic` from its start up to `end_offsets` (exclusive).
pub fn read_all(broker: &Broker, topic: &str, end_offsets: &BTreeMap<i32, i64>) -> Acked {
    let consumer: BaseConsumer = broker
        .client_config()
        .set("group.id", "ferry-it-reader")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    for &partition in end_offsets.keys() {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .expect("add partition");
    }
    consumer.assign(&assignment).expect("assign");
    let total: i64 = end_offsets.values().sum();
    let mut read = Acked::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while (read.len() as i64) < total {
        assert!(
            Instant::now() < deadline,
            "read {} of {total} records before timing out",
            read.len()
        );
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                let position = (message.partition(), message.offset());
                if message.offset() < end_offsets[&message.partition()] {
                    read.insert(position, RecordData::from_message(&message));
                }
            }
            Some(Err(err)) => panic!("consume error: {err}"),
            None => {}
        }
    }
    read
}

/// The highest acknowledged offset plus one, per partition (partitions without
/// acknowledged records are absent).
pub fn end_offsets<V>(acked: &BTreeMap<(i32, i64), V>) -> BTreeMap<i32, i64> {
    let mut ends = BTreeMap::new();
    for &(partition, offset) in acked.keys() {
        let end = ends.entry(partition).or_insert(0);
        *end = (*end).max(offset + 1);
    }
    ends
}

/// Kafka's murmur2 hash (`org.apache.kafka.common.utils.Utils.murmur2`), which the Java
/// client and librdkafka's `murmur2_random` partitioner use to place keyed records.
pub fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    let mut h = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

/// The partition Kafka's default partitioner picks for a key.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    ((murmur2(key) & 0x7fff_ffff) % partitions as u32) as i32
}

/// Checks that each partition's offsets run from 0 without gaps and that, per partition,
/// the sequence numbers of each stream increase with the offset.
pub fn assert_dense_and_ordered(acked: &Acked) {
    let mut next_offset: BTreeMap<i32, i64> = BTreeMap::new();
    let mut last_seq: BTreeMap<(i32, String), u64> = BTreeMap::new();
    for (&(partition, offset), record) in acked {
        let expected = next_offset.entry(partition).or_insert(0);
        assert_eq!(offset, *expected, "gap in partition {partition}");
        *expected += 1;
        let value = String::from_utf8(record.value.clone().unwrap_or_default()).unwrap();
        let mut parts = value.split(':');
        let stream = parts.next().unwrap().to_string();
        let seq: u64 = parts.next().unwrap().parse().unwrap();
        if let Some(previous) = last_seq.insert((partition, stream.clone()), seq) {
            assert!(
                seq > previous,
                "{stream} out of order in partition {partition}: {previous} then {seq}"
            );
        }
    }
}
