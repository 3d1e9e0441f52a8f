//! Retention with librdkafka: records older than `retention.ms` go, the active segment of an
//! idle topic included (it is rolled first), a partition stays within `retention.bytes`,
//! the deleted segments' files disappear after `file.delete.delay.ms`, a consumer whose
//! position fell below the log start resets, and a restart keeps the new start.
//! `cleanup.policy=compact` alone is untouched; `compact,delete` is deleted too.

use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::support::Broker;

const TIMEOUT: Duration = Duration::from_secs(30);
const HOUR_MS: i64 = 3_600_000;

fn start(dir: &Path) -> Broker {
    Broker::start(
        dir,
        &[
            "--override",
            "log.retention.check.interval.ms=1000",
            "--override",
            "offsets.topic.num.partitions=3",
            "--override",
            "group.initial.rebalance.delay.ms=0",
        ],
    )
}

fn now_ms() -> i64 {
    ferry::broker::now_ms()
}

/// Produces `count` keyed records of about 100 bytes stamped `timestamp`, one at a time.
async fn produce(broker: &Broker, topic: &str, count: usize, timestamp: i64) {
    let producer: FutureProducer = broker
        .client_config()
        .set("linger.ms", "0")
        .create()
        .unwrap();
    let value = vec![b'v'; 100];
    for i in 0..count {
        let key = format!("key-{i}");
        producer
            .send(
                FutureRecord::to(topic)
                    .key(&key)
                    .payload(&value)
                    .partition(0)
                    .timestamp(timestamp),
                TIMEOUT,
            )
            .await
            .unwrap();
    }
}

fn watermarks(broker: &Broker, topic: &str) -> (i64, i64) {
    let consumer: BaseConsumer = broker.client_config().create().unwrap();
    consumer.fetch_watermarks(topic, 0, TIMEOUT).unwrap()
}

/// Waits until `done(low, high)` holds for the partition's watermarks.
fn wait_for(broker: &Broker, topic: &str, done: impl Fn(i64, i64) -> bool) -> (i64, i64) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let (low, high) = watermarks(broker, topic);
        if done(low, high) {
            return (low, high);
        }
        assert!(
            Instant::now() < deadline,
            "{topic} stayed at ({low}, {high})"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn files(dir: &Path, partition: &str, suffix: &str) -> usize {
    std::fs::read_dir(dir.join(partition))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(suffix)
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_records_go_even_from_an_idle_active_segment() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path());
    let configs = [
        ("retention.ms", "3600000"),
        ("segment.bytes", "2000"),
        ("file.delete.delay.ms", "1000"),
    ];
    broker.create_topic("aging", 1, &configs).await;
    // A group that read the first record, then the topic sits idle past retention.
    produce(&broker, "aging", 50, now_ms() - 2 * HOUR_MS).await;
    let reader: BaseConsumer = broker
        .client_config()
        .set("group.id", "slow-reader")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    let mut position = TopicPartitionList::new();
    position
        .add_partition_offset("aging", 0, Offset::Offset(1))
        .unwrap();
    reader.commit(&position, CommitMode::Sync).unwrap();
    drop(reader);
    let (low, high) = wait_for(&broker, "aging", |low, _| low > 0);
    assert_eq!(
        (low, high),
        (50, 50),
        "everything, the active segment's records too"
    );
    // The files go after file.delete.delay.ms; one empty active segment stays.
    let deadline = Instant::now() + TIMEOUT;
    while files(dir.path(), "aging-0", ".deleted") > 0 {
        assert!(Instant::now() < deadline, "deleted files stayed");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(files(dir.path(), "aging-0", ".log"), 1);
    // New records land after the old end; the group, below the start, resets to it.
    produce(&broker, "aging", 3, now_ms()).await;
    let reader: BaseConsumer = broker
        .client_config()
        .set("group.id", "slow-reader")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    reader.subscribe(&["aging"]).unwrap();
    let deadline = Instant::now() + TIMEOUT;
    let first = loop {
        assert!(Instant::now() < deadline, "the reader got nothing");
        if let Some(Ok(message)) = reader.poll(Duration::from_millis(200)) {
            break message.offset();
        }
    };
    assert_eq!(first, 50, "reset to the log start");
    drop(reader);
    // A restart keeps the new start.
    assert!(broker.stop().success());
    let broker = start(dir.path());
    assert_eq!(watermarks(&broker, "aging"), (50, 53));
    assert!(broker.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_retention_and_cleanup_policies() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path());
    let sized = [
        ("retention.bytes", "3000"),
        ("segment.bytes", "1000"),
        ("file.delete.delay.ms", "0"),
    ];
    broker.create_topic("sized", 1, &sized).await;
    let old = now_ms() - 2 * HOUR_MS;
    let compact = [("cleanup.policy", "compact"), ("retention.ms", "3600000")];
    broker.create_topic("compacted", 1, &compact).await;
    let both = [
        ("cleanup.policy", "compact,delete"),
        ("retention.ms", "3600000"),
        ("segment.bytes", "2000"),
    ];
    broker.create_topic("compact-delete", 1, &both).await;
    produce(&broker, "sized", 100, now_ms()).await;
    produce(&broker, "compacted", 20, old).await;
    produce(&broker, "compact-delete", 20, old).await;
    let (low, high) = wait_for(&broker, "sized", |low, _| low > 0);
    assert_eq!(high, 100);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let on_disk: u64 = std::fs::read_dir(dir.path().join("sized-0"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .map(|p| std::fs::metadata(p).unwrap().len())
            .sum();
        if on_disk <= 4_000 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{on_disk} bytes of .log stayed (start {low})"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_for(&broker, "compact-delete", |low, _| low == 20);
    std::thread::sleep(Duration::from_millis(1_500));
    assert_eq!(
        watermarks(&broker, "compacted"),
        (0, 20),
        "compact alone keeps them"
    );
    assert!(broker.stop().success());
}
