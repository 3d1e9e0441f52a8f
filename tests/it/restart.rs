//! Clean restarts of partitions that were empty when the broker stopped, as a new user
//! meets them: a topic created and left empty, then `__consumer_offsets` and
//! `__transaction_state` partitions that only receive their first record after a restart.
//! Every stop must exit 0, every start must succeed, and offsets must continue from 0
//! (a regression: an empty partition used to come back at offset 2^63-1, and the next
//! stop and every later start then failed).

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, FutureProducer, Producer};
use rdkafka::{Offset, TopicPartitionList};

use crate::records::{produce_all, read_all, test_record, Acked};
use crate::support::Broker;

const TIMEOUT: Duration = Duration::from_secs(30);

/// Partitions of the internal topics in these tests (small, so every restart is quick;
/// most of them stay empty, which is the case under test).
const INTERNAL_PARTITIONS: &[&str] = &[
    "--override",
    "offsets.topic.num.partitions=5",
    "--override",
    "transaction.state.log.num.partitions=3",
];

fn start(dir: &std::path::Path) -> Broker {
    Broker::start(dir, INTERNAL_PARTITIONS)
}

fn stop_cleanly(broker: Broker) {
    let status = broker.stop();
    assert!(status.success(), "a clean stop must exit 0, got {status}");
}

/// `(low, high)` watermarks of every partition of `topic`.
fn watermarks(broker: &Broker, topic: &str, partitions: i32) -> Vec<(i64, i64)> {
    let consumer: BaseConsumer = broker.client_config().create().unwrap();
    (0..partitions)
        .map(|p| consumer.fetch_watermarks(topic, p, TIMEOUT).unwrap())
        .collect()
}

async fn produce_one(broker: &Broker, topic: &str, seq: u64) -> Acked {
    let producer: FutureProducer = broker.client_config().create().unwrap();
    produce_all(&producer, topic, &[test_record(topic, seq, 1_000)]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_topic_survives_clean_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let topic = "empty1";
    let broker = start(dir.path());
    broker.create_topic(topic, 1, &[]).await;
    stop_cleanly(broker);

    let broker = start(dir.path());
    assert_eq!(watermarks(&broker, topic, 1), vec![(0, 0)]);
    let mut acked = produce_one(&broker, topic, 0).await;
    assert_eq!(
        acked.keys().next(),
        Some(&(0, 0)),
        "the first record is at offset 0"
    );
    assert_eq!(watermarks(&broker, topic, 1), vec![(0, 1)]);
    stop_cleanly(broker);

    let broker = start(dir.path());
    assert_eq!(watermarks(&broker, topic, 1), vec![(0, 1)]);
    acked.extend(produce_one(&broker, topic, 1).await);
    assert_eq!(acked.keys().last(), Some(&(0, 1)));
    assert!(read_all(&broker, topic, &[(0, 2)].into()) == acked);
    stop_cleanly(broker);

    let broker = start(dir.path());
    assert_eq!(watermarks(&broker, topic, 1), vec![(0, 2)]);
    stop_cleanly(broker);
}

fn commit(broker: &Broker, group: &str, topic: &str, offset: i64) {
    let consumer: BaseConsumer = broker
        .client_config()
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset(topic, 0, Offset::Offset(offset))
        .unwrap();
    consumer.commit(&offsets, CommitMode::Sync).unwrap();
}

fn committed(broker: &Broker, group: &str, topic: &str) -> Offset {
    let consumer: BaseConsumer = broker
        .client_config()
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut wanted = TopicPartitionList::new();
    wanted.add_partition(topic, 0);
    let found = consumer.committed_offsets(wanted, TIMEOUT).unwrap();
    found.elements()[0].offset()
}

fn commit_transaction(broker: &Broker, transactional_id: &str, topic: &str) {
    let producer: BaseProducer = broker
        .client_config()
        .set("transactional.id", transactional_id)
        .create()
        .unwrap();
    producer.init_transactions(TIMEOUT).unwrap();
    producer.begin_transaction().unwrap();
    producer
        .send(
            BaseRecord::<(), _>::to(topic)
                .partition(0)
                .payload("in a transaction"),
        )
        .unwrap();
    producer.commit_transaction(TIMEOUT).unwrap();
}

/// No internal partition may jump: each holds at most a handful of records here.
fn assert_internal_offsets_small(broker: &Broker) {
    for (topic, partitions) in [("__consumer_offsets", 5), ("__transaction_state", 3)] {
        for (p, (low, high)) in watermarks(broker, topic, partitions)
            .into_iter()
            .enumerate()
        {
            assert!(
                low == 0 && (0..100).contains(&high),
                "{topic}-{p} has watermarks ({low}, {high})"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_partitions_that_were_empty_survive_clean_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let topic = "orders";
    let broker = start(dir.path());
    broker.create_topic(topic, 1, &[]).await;
    produce_one(&broker, topic, 0).await;
    commit(&broker, "first-group", topic, 1);
    stop_cleanly(broker);

    // The other groups' and every transactional id's partitions were empty at the stop.
    let broker = start(dir.path());
    assert_eq!(committed(&broker, "first-group", topic), Offset::Offset(1));
    for i in 0..10 {
        commit(&broker, &format!("group-{i}"), topic, i);
    }
    commit_transaction(&broker, "txn-a", topic);
    assert_internal_offsets_small(&broker);
    stop_cleanly(broker);

    let broker = start(dir.path());
    assert_internal_offsets_small(&broker);
    assert_eq!(committed(&broker, "first-group", topic), Offset::Offset(1));
    for i in 0..10 {
        assert_eq!(
            committed(&broker, &format!("group-{i}"), topic),
            Offset::Offset(i)
        );
    }
    commit_transaction(&broker, "txn-a", topic);
    commit_transaction(&broker, "txn-b", topic);
    stop_cleanly(broker);

    let broker = start(dir.path());
    assert_internal_offsets_small(&broker);
    commit_transaction(&broker, "txn-b", topic);
    let (_, high) = watermarks(&broker, topic, 1)[0];
    // One plain record and four committed transactions of one record and a COMMIT marker.
    assert_eq!(high, 9);
    stop_cleanly(broker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_that_cannot_be_opened_goes_offline_alone() {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path());
    broker.create_topic("healthy", 1, &[]).await;
    broker.create_topic("damaged", 1, &[]).await;
    let mut healthy = produce_one(&broker, "healthy", 0).await;
    let damaged = produce_one(&broker, "damaged", 0).await;
    commit(&broker, "survivor", "healthy", 1);
    stop_cleanly(broker);

    // The partition's directory is replaced by a file: its log cannot be listed.
    let partition_dir = dir.path().join("damaged-0");
    let moved = dir.path().join("damaged-0.saved");
    std::fs::rename(&partition_dir, &moved).unwrap();
    std::fs::write(&partition_dir, b"not a directory").unwrap();
    let broker = start(dir.path());
    let log = broker.drain_log();
    assert!(
        log.iter()
            .any(|l| l.contains("cannot open the partition's log") && l.contains("damaged-0")),
        "one error line names the partition: {log:?}"
    );
    let producer: FutureProducer = broker
        .client_config()
        .set("message.send.max.retries", "0")
        .set("message.timeout.ms", "5000")
        .create()
        .unwrap();
    let refused = producer
        .send(
            rdkafka::producer::FutureRecord::<(), _>::to("damaged")
                .partition(0)
                .payload("x"),
            TIMEOUT,
        )
        .await;
    match refused {
        Err((KafkaError::MessageProduction(RDKafkaErrorCode::KafkaStorageError), _)) => {}
        other => panic!("expected KAFKA_STORAGE_ERROR, got {other:?}"),
    }
    // Everything else serves.
    healthy.extend(produce_one(&broker, "healthy", 1).await);
    assert!(read_all(&broker, "healthy", &[(0, 2)].into()) == healthy);
    assert_eq!(committed(&broker, "survivor", "healthy"), Offset::Offset(1));
    // The stop is clean for the operator, and leaves the damaged directory untouched.
    stop_cleanly(broker);
    assert!(partition_dir.is_file());

    std::fs::remove_file(&partition_dir).unwrap();
    std::fs::rename(&moved, &partition_dir).unwrap();
    let broker = start(dir.path());
    assert!(read_all(&broker, "damaged", &[(0, 1)].into()) == damaged);
    stop_cleanly(broker);
}

/// A stop sent while the broker is still opening its logs (as a supervisor may) waits for
/// the start to finish and is a clean shutdown, not death by the signal's default action
/// (which, sent a moment too early, also hit a stop right after the ready line).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_during_startup_is_a_clean_shutdown() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    // Enough partitions that opening them takes a while.
    let broker = start(dir.path());
    broker.create_topic("many", 3_000, &[]).await;
    stop_cleanly(broker);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args(INTERNAL_PARTITIONS)
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = lines_tx.send(line);
        }
    });
    let mut log = Vec::new();
    let deadline = std::time::Instant::now() + TIMEOUT;
    while !log
        .iter()
        .any(|l: &String| l.contains("opening the data directory"))
    {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => log.push(line),
            Err(_) => {
                let _ = child.kill();
                panic!("the broker did not say it was opening its data directory: {log:?}");
            }
        }
    }
    // SAFETY: kill only sends a signal to the child's process id.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let status = child.wait().unwrap();
    log.extend(lines.iter());
    assert!(status.success(), "{status}: {log:?}");
    assert!(
        log.iter().any(|l| l.contains("received SIGTERM")),
        "{log:?}"
    );
    assert!(
        log.iter().any(|l| l.contains("shutdown complete")),
        "{log:?}"
    );
}
