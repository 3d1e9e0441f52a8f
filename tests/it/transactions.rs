//! Transactions with librdkafka: read_committed consumers see committed records only and
//! stop at the last stable offset; read_uncommitted consumers see everything; a broker
//! restart during an open transaction ends with that transaction aborted by its timeout.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::support::Broker;

fn transactional_producer(broker: &Broker, id: &str, timeout_ms: u32) -> BaseProducer {
    let producer: BaseProducer = broker
        .client_config()
        .set("transactional.id", id)
        .set("transaction.timeout.ms", timeout_ms.to_string())
        .create()
        .unwrap();
    producer.init_transactions(Duration::from_secs(30)).unwrap();
    producer
}

fn send(producer: &BaseProducer, topic: &str, values: &[&str]) {
    for value in values {
        producer
            .send(BaseRecord::<(), _>::to(topic).partition(0).payload(*value))
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

fn consumer(broker: &Broker, isolation: &str) -> BaseConsumer {
    broker
        .client_config()
        .set("group.id", format!("reader-{isolation}"))
        .set("isolation.level", isolation)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap()
}

/// Reads partition 0 from the start until the end the consumer can see; returns values.
fn read_visible(consumer: &BaseConsumer, topic: &str) -> Vec<String> {
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let mut values = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            Instant::now() < deadline,
            "did not reach the end of {topic}"
        );
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => values
                .push(String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned()),
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => return values,
            Some(Err(err)) => panic!("consume error: {err}"),
            None => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_committed_sees_only_committed_and_stops_at_the_lso() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &[]);
    let topic = "txn-visibility";
    broker.create_topic(topic, 1, &[]).await;
    let producer = transactional_producer(&broker, "visibility", 60_000);
    producer.begin_transaction().unwrap();
    send(&producer, topic, &["c1", "c2", "c3"]);
    producer
        .commit_transaction(Duration::from_secs(30))
        .unwrap();
    producer.begin_transaction().unwrap();
    send(&producer, topic, &["a1", "a2"]);
    producer.abort_transaction(Duration::from_secs(30)).unwrap();
    producer.begin_transaction().unwrap();
    send(&producer, topic, &["o1", "o2"]);

    // Offsets: c1-c3 0-2, commit marker 3, a1-a2 4-5, abort marker 6, o1-o2 7-8.
    let committed = consumer(&broker, "read_committed");
    assert_eq!(read_visible(&committed, topic), vec!["c1", "c2", "c3"]);
    let (_, lso) = committed
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .unwrap();
    assert_eq!(
        lso, 7,
        "read_committed's end is the first offset of the open transaction"
    );
    let uncommitted = consumer(&broker, "read_uncommitted");
    assert_eq!(
        read_visible(&uncommitted, topic),
        vec!["c1", "c2", "c3", "a1", "a2", "o1", "o2"]
    );
    let (_, high_watermark) = uncommitted
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .unwrap();
    assert_eq!(high_watermark, 9);

    producer
        .commit_transaction(Duration::from_secs(30))
        .unwrap();
    let committed = consumer(&broker, "read_committed");
    assert_eq!(
        read_visible(&committed, topic),
        vec!["c1", "c2", "c3", "o1", "o2"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_open_across_a_broker_restart_is_aborted_by_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &[]);
    let topic = "txn-restart";
    broker.create_topic(topic, 1, &[]).await;
    let producer = transactional_producer(&broker, "restart", 4_000);
    producer.begin_transaction().unwrap();
    send(&producer, topic, &["before-1", "before-2"]);
    drop(producer);
    broker.kill9();

    let broker = Broker::start(dir.path(), &[]);
    let reader = consumer(&broker, "read_committed");
    let (_, lso) = reader
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .unwrap();
    assert_eq!(
        lso, 0,
        "the open transaction still holds read_committed readers back"
    );
    // The coordinator aborts the transaction once its 4 s timeout has passed.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, lso) = reader
            .fetch_watermarks(topic, 0, Duration::from_secs(10))
            .unwrap();
        if lso == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the transaction was never aborted (lso {lso})"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        read_visible(&reader, topic).is_empty(),
        "aborted records stay invisible"
    );
    // A new producer with the same transactional id works normally.
    let producer = transactional_producer(&broker, "restart", 4_000);
    producer.begin_transaction().unwrap();
    send(&producer, topic, &["after"]);
    producer
        .commit_transaction(Duration::from_secs(30))
        .unwrap();
    let reader = consumer(&broker, "read_committed");
    assert_eq!(read_visible(&reader, topic), vec!["after"]);
}
