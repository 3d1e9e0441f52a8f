//! The log cleaner with librdkafka: a seeded keyed workload (overwrites, tombstones,
//! transactions, some aborted) on a compacted topic reads back, after cleaning, as "the
//! latest value of every key", with increasing offsets and no aborted record for a
//! read_committed reader; a consumer that was in the middle of the log continues without
//! error; kill -9 during cleaning loses nothing; `__consumer_offsets` stays bounded under a
//! loop of commits and the group's offset survives a restart of its cleaned log.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::support::Broker;

const TIMEOUT: Duration = Duration::from_secs(60);
const TOPIC: &str = "compacted";
const KEYS: u64 = 40;

fn start(dir: &Path, extra: &[&str]) -> Broker {
    let mut args = vec![
        "--override",
        "log.cleaner.backoff.ms=100",
        "--override",
        "offsets.topic.num.partitions=1",
        "--override",
        "transaction.state.log.num.partitions=1",
        "--override",
        "group.initial.rebalance.delay.ms=0",
    ];
    args.extend_from_slice(extra);
    Broker::start(dir, &args)
}

async fn create_compacted(broker: &Broker, delete_retention_ms: &str) {
    broker
        .create_topic(
            TOPIC,
            1,
            &[
                ("cleanup.policy", "compact"),
                ("segment.bytes", "4096"),
                ("min.cleanable.dirty.ratio", "0.01"),
                ("delete.retention.ms", delete_retention_ms),
            ],
        )
        .await;
}

/// xorshift64*: the workload is the same for a seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// The latest value per key a read_committed reader of the whole log must end with.
type Model = BTreeMap<String, String>;

/// Writes `rounds` rounds of keyed records: plain ones (10% tombstones) and a transaction
/// per round, a third of them aborted. Returns how many records were written.
fn produce_workload(broker: &Broker, rng: &mut Rng, rounds: usize, model: &mut Model) -> usize {
    let plain: BaseProducer = broker
        .client_config()
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let txn: BaseProducer = broker
        .client_config()
        .set("transactional.id", "compaction-writer")
        .create()
        .unwrap();
    txn.init_transactions(TIMEOUT).unwrap();
    let mut written = 0;
    for round in 0..rounds {
        for i in 0..60 {
            let key = format!("key-{}", rng.next() % KEYS);
            if rng.next().is_multiple_of(10) {
                plain
                    .send(BaseRecord::<_, ()>::to(TOPIC).key(&key).partition(0))
                    .unwrap();
                model.remove(&key);
            } else {
                let value = format!("plain-{round}-{i}");
                plain
                    .send(BaseRecord::to(TOPIC).key(&key).payload(&value).partition(0))
                    .unwrap();
                model.insert(key, value);
            }
            written += 1;
        }
        plain.flush(TIMEOUT).unwrap();
        let commit = !rng.next().is_multiple_of(3);
        txn.begin_transaction().unwrap();
        let mut pending = Vec::new();
        for i in 0..5 {
            let key = format!("key-{}", rng.next() % KEYS);
            let value = if commit {
                format!("committed-{round}-{i}")
            } else {
                format!("aborted-{round}-{i}")
            };
            txn.send(BaseRecord::to(TOPIC).key(&key).payload(&value).partition(0))
                .unwrap();
            pending.push((key, value));
            written += 1;
        }
        txn.flush(TIMEOUT).unwrap();
        if commit {
            txn.commit_transaction(TIMEOUT).unwrap();
            model.extend(pending);
        } else {
            txn.abort_transaction(TIMEOUT).unwrap();
        }
    }
    written
}

fn reader(broker: &Broker, group: &str) -> BaseConsumer {
    broker
        .client_config()
        .set("group.id", group)
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap()
}

/// A read of the partition: (offset, key, value or None for a tombstone), in order.
type Records = Vec<(i64, String, Option<String>)>;

/// Polls until end of partition (or `limit` records); panics on any consume error.
fn read_until_eof(consumer: &BaseConsumer, limit: usize) -> Records {
    let mut records = Vec::new();
    let deadline = Instant::now() + TIMEOUT;
    while records.len() < limit {
        assert!(Instant::now() < deadline, "no end of partition in time");
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
                let value = message
                    .payload()
                    .map(|v| String::from_utf8_lossy(v).into_owned());
                records.push((message.offset(), key, value));
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => break,
            Some(Err(err)) => panic!("consume error: {err}"),
            None => {}
        }
    }
    records
}

fn read_all(broker: &Broker) -> Records {
    let consumer = reader(broker, "full-reader");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(TOPIC, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    read_until_eof(&consumer, usize::MAX)
}

/// Applies records in order: the latest value per key.
fn latest(records: &Records) -> Model {
    let mut view = Model::new();
    for (_, key, value) in records {
        match value {
            Some(value) => view.insert(key.clone(), value.clone()),
            None => view.remove(key),
        };
    }
    view
}

/// Checks what every read must satisfy: offsets increase, no aborted record.
fn check_read(records: &Records) {
    for pair in records.windows(2) {
        assert!(
            pair[0].0 < pair[1].0,
            "offsets go {} then {}",
            pair[0].0,
            pair[1].0
        );
    }
    if let Some((offset, _, value)) = records
        .iter()
        .find(|(_, _, v)| v.as_deref().is_some_and(|v| v.starts_with("aborted-")))
    {
        panic!("read_committed saw {value:?} at {offset}");
    }
}

/// Waits until a full read holds at most `max_records` records (the cleaner ran).
fn wait_for_cleaning(broker: &Broker, max_records: usize) -> Records {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let records = read_all(broker);
        check_read(&records);
        if records.len() <= max_records {
            return records;
        }
        assert!(
            Instant::now() < deadline,
            "still {} records after cleaning time",
            records.len()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cleaned_topic_reads_as_the_latest_value_of_every_key() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), &[]);
    // Long enough for the mid-log reader to see every tombstone it passes.
    create_compacted(&broker, "60000").await;
    let mut rng = Rng(0x5eed_0001);
    let mut model = Model::new();
    let first = produce_workload(&broker, &mut rng, 10, &mut model);

    // A reader a third of the way in, before most cleaning.
    let mid = reader(&broker, "mid-reader");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(TOPIC, 0, Offset::Beginning)
        .unwrap();
    mid.assign(&assignment).unwrap();
    let mut mid_records = read_until_eof(&mid, first / 3);

    let second = produce_workload(&broker, &mut rng, 10, &mut model);
    let records = wait_for_cleaning(&broker, (first + second) / 3);
    assert_eq!(latest(&records), model, "a full read is the model");

    mid_records.extend(read_until_eof(&mid, usize::MAX));
    check_read(&mid_records);
    assert_eq!(
        latest(&mid_records),
        model,
        "the mid-log reader ends at the model"
    );

    // The same after a restart of the broker (cleaned segments reopen).
    assert!(broker.stop().success());
    let broker = start(dir.path(), &[]);
    let again = read_all(&broker);
    check_read(&again);
    assert_eq!(latest(&again), model);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tombstones_go_after_delete_retention() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), &[]);
    create_compacted(&broker, "500").await;
    // One record per batch, so that the records spread over many small segments.
    let producer: BaseProducer = broker
        .client_config()
        .set("batch.num.messages", "1")
        .create()
        .unwrap();
    for round in 0..40 {
        for key in 0..10 {
            let key = format!("key-{key}");
            let value = format!("value-{round}");
            producer
                .send(BaseRecord::to(TOPIC).key(&key).payload(&value).partition(0))
                .unwrap();
        }
    }
    for key in 0..5 {
        producer
            .send(
                BaseRecord::<_, ()>::to(TOPIC)
                    .key(&format!("key-{key}"))
                    .partition(0),
            )
            .unwrap();
    }
    // Enough later writes of other keys to close the segments holding the tombstones.
    for i in 0..300 {
        let key = format!("other-{}", i % 10);
        producer
            .send(
                BaseRecord::to(TOPIC)
                    .key(&key)
                    .payload("filler")
                    .partition(0),
            )
            .unwrap();
    }
    producer.flush(TIMEOUT).unwrap();
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let records = read_all(&broker);
        check_read(&records);
        let tombstones = records.iter().filter(|(_, _, v)| v.is_none()).count();
        let old_keys = records
            .iter()
            .filter(|(_, k, _)| k.starts_with("key-"))
            .count();
        if tombstones == 0 && old_keys == 5 {
            let view = latest(&records);
            assert!((5..10).all(|k| view[&format!("key-{k}")] == "value-39"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{tombstones} tombstones and {old_keys} records of the deleted keys remain"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_cleaning_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // A slow cleaner, so that the kills land inside passes and swaps.
    let slow = ["--override", "log.cleaner.io.max.bytes.per.second=200000"];
    let broker = start(dir.path(), &slow);
    create_compacted(&broker, "60000").await;
    let mut rng = Rng(0x5eed_0002);
    let mut model = Model::new();
    let mut broker = broker;
    let mut written = 0;
    for cycle in 0..4u64 {
        written += produce_workload(&broker, &mut rng, 8, &mut model);
        std::thread::sleep(Duration::from_millis(150 + (rng.next() % 600)));
        broker.kill9();
        broker = start(dir.path(), &slow);
        let records = read_all(&broker);
        check_read(&records);
        assert_eq!(latest(&records), model, "cycle {cycle}");
    }
    let cleaned = wait_for_cleaning(&broker, written / 4);
    assert_eq!(latest(&cleaned), model);
}

/// Bytes of the `.log` files in a partition directory (a file the cleaner renames while
/// this looks is skipped).
fn log_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_offsets_stay_bounded_under_a_loop_of_commits() {
    let dir = tempfile::tempdir().unwrap();
    let extra = ["--override", "offsets.topic.segment.bytes=16384"];
    let broker = start(dir.path(), &extra);
    broker.create_topic("events", 1, &[]).await;
    let offsets_dir = dir.path().join("__consumer_offsets-0");
    let consumer: BaseConsumer = broker
        .client_config()
        .set("group.id", "committer")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let commits = 3_000i64;
    let mut peak = 0;
    for i in 1..=commits {
        let mut offsets = TopicPartitionList::new();
        offsets
            .add_partition_offset("events", 0, Offset::Offset(i))
            .unwrap();
        consumer.commit(&offsets, CommitMode::Sync).unwrap();
        peak = peak.max(log_bytes(&offsets_dir));
    }
    // The log went above the bound asserted below (the cleaner may already work while
    // the commits run, so how far above depends on the machine's speed).
    assert!(
        peak > 3 * 16_384,
        "{commits} commits took only {peak} bytes"
    );
    let deadline = Instant::now() + TIMEOUT;
    let bounded = loop {
        let now = log_bytes(&offsets_dir);
        if now < 3 * 16_384 {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "__consumer_offsets still {now} bytes"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    eprintln!("__consumer_offsets-0: {peak} bytes at most during {commits} commits, {bounded} after cleaning");
    drop(consumer);
    assert!(broker.stop().success());
    let broker = start(dir.path(), &extra);
    let consumer: BaseConsumer = broker
        .client_config()
        .set("group.id", "committer")
        .create()
        .unwrap();
    let mut wanted = TopicPartitionList::new();
    wanted.add_partition("events", 0);
    let committed = consumer.committed_offsets(wanted, TIMEOUT).unwrap();
    let offset = committed.find_partition("events", 0).unwrap().offset();
    assert_eq!(
        offset,
        Offset::Offset(commits),
        "the last commit survives cleaning and a restart"
    );
}
