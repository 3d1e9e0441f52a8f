//! The metrics endpoint (`ferry serve --metrics-listen`), scraped over a plain socket during
//! a produce and consume run with librdkafka: the partition's counters and offsets move by
//! what was produced and consumed, the group's lag is what it did not commit, the request
//! and connection counts move; and the endpoint survives hostile requests.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::support::Broker;

const TOPIC: &str = "metered";
const GROUP: &str = "metered-group";
const FIRST_RECORDS: u64 = 200;
const MORE_RECORDS: u64 = 50;
const CONSUMED: i64 = 120;
const VALUE_BYTES: usize = 100;
const TIMEOUT: Duration = Duration::from_secs(30);

/// One scrape: each sample line's series (`name{labels}`) and value.
struct Scrape(HashMap<String, f64>);

impl Scrape {
    /// The value of `name` for the test's partition (labels `topic`, `partition` 0).
    fn partition(&self, name: &str) -> f64 {
        self.get(&format!(r#"{name}{{topic="{TOPIC}",partition="0"}}"#))
    }

    fn lag(&self) -> f64 {
        self.get(&format!(
            r#"ferry_consumergroup_lag{{group="{GROUP}",topic="{TOPIC}",partition="0"}}"#
        ))
    }

    fn requests(&self, api: &str) -> f64 {
        self.get(&format!(r#"ferry_request_total{{api="{api}"}}"#))
    }

    fn get(&self, series: &str) -> f64 {
        *self
            .0
            .get(series)
            .unwrap_or_else(|| panic!("no {series} in the scrape"))
    }
}

/// The metrics address the broker logged at startup.
pub(crate) fn metrics_address(broker: &Broker) -> String {
    broker
        .drain_log()
        .iter()
        .find_map(|line| {
            let rest = line.split("serving Prometheus metrics on http://").nth(1)?;
            Some(rest.split('/').next()?.to_string())
        })
        .expect("the broker logs its metrics address before it is ready")
}

/// Sends `request` on a new connection and returns everything the server answered.
pub(crate) fn exchange(address: &str, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(address).expect("connect to the metrics endpoint");
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.write_all(request).expect("send the request");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("read the answer");
    String::from_utf8(answer).expect("a text answer")
}

fn scrape(address: &str) -> Scrape {
    let answer = exchange(address, b"GET /metrics HTTP/1.1\r\nHost: ferry\r\n\r\n");
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    let samples = body
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("series and value");
            let value = value.parse().unwrap_or_else(|e| panic!("{line}: {e}"));
            (series.to_string(), value)
        })
        .collect();
    Scrape(samples)
}

/// Scrapes until `ready` holds (request counts are recorded just after the response is
/// written, so a client may see its answer a moment before the count moves).
fn scrape_until(address: &str, ready: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let scrape = scrape(address);
        if ready(&scrape) || Instant::now() > deadline {
            return scrape;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn produce(broker: &Broker, records: u64) {
    let producer: ThreadedProducer<DefaultProducerContext> = broker
        .client_config()
        .set("linger.ms", "1")
        .create()
        .unwrap();
    let value = vec![b'v'; VALUE_BYTES];
    for _ in 0..records {
        producer
            .send(BaseRecord::<(), _>::to(TOPIC).partition(0).payload(&value))
            .unwrap();
    }
    producer.flush(TIMEOUT).unwrap();
}

/// Reads `CONSUMED` records as `GROUP` and commits the offset after them.
fn consume_and_commit(broker: &Broker) -> BaseConsumer {
    let consumer: BaseConsumer = broker
        .client_config()
        .set("group.id", GROUP)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(TOPIC, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let deadline = Instant::now() + TIMEOUT;
    let mut read = 0;
    while read < CONSUMED && Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            assert_eq!(message.expect("a record").offset(), read);
            read += 1;
        }
    }
    assert_eq!(read, CONSUMED, "records read within {TIMEOUT:?}");
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset(TOPIC, 0, Offset::Offset(CONSUMED))
        .unwrap();
    consumer.commit(&offsets, CommitMode::Sync).unwrap();
    consumer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_offsets_and_lag_follow_a_produce_and_consume_run() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &["--metrics-listen", "127.0.0.1:0"]);
    let address = metrics_address(&broker);
    broker.create_topic(TOPIC, 1, &[]).await;
    let before = scrape(&address);
    assert_eq!(
        before.partition("ferry_topic_partition_records_in_total"),
        0.0
    );
    assert_eq!(before.partition("ferry_log_end_offset"), 0.0);

    produce(&broker, FIRST_RECORDS);
    let consumer = consume_and_commit(&broker);
    let first = scrape_until(&address, |s| s.requests("Fetch") > 0.0);
    let n = FIRST_RECORDS as f64;
    assert_eq!(first.partition("ferry_topic_partition_records_in_total"), n);
    let bytes_in = first.partition("ferry_topic_partition_bytes_in_total");
    assert!(bytes_in >= n * VALUE_BYTES as f64, "{bytes_in}");
    assert_eq!(
        bytes_in,
        first.partition("ferry_log_size_bytes"),
        "the log holds exactly the batches produced"
    );
    assert_eq!(first.partition("ferry_log_start_offset"), 0.0);
    assert_eq!(first.partition("ferry_log_end_offset"), n);
    assert_eq!(first.partition("ferry_partition_high_watermark"), n);
    let records_out = first.partition("ferry_topic_partition_records_out_total");
    assert!(records_out >= CONSUMED as f64, "{records_out}");
    assert!(first.partition("ferry_topic_partition_bytes_out_total") > 0.0);
    assert_eq!(first.lag(), n - CONSUMED as f64);
    assert!(first.requests("Produce") > 0.0);
    assert_eq!(
        first.get(r#"ferry_request_latency_seconds_count{api="Produce"}"#),
        first.requests("Produce")
    );
    assert!(first.get("ferry_connections_open") > 0.0);
    assert!(first.get("ferry_connections_accepted_total") > 0.0);
    assert!(first.get("ferry_fsyncs_total") >= 0.0);

    produce(&broker, MORE_RECORDS);
    let second = scrape_until(&address, |s| {
        s.requests("Produce") > first.requests("Produce")
    });
    let total = (FIRST_RECORDS + MORE_RECORDS) as f64;
    assert_eq!(
        second.partition("ferry_topic_partition_records_in_total"),
        total
    );
    assert!(second.partition("ferry_topic_partition_bytes_in_total") > bytes_in);
    assert_eq!(second.partition("ferry_log_end_offset"), total);
    assert_eq!(second.lag(), total - CONSUMED as f64);
    assert!(second.requests("Produce") > first.requests("Produce"));
    assert!(
        second.get("ferry_connections_accepted_total")
            > first.get("ferry_connections_accepted_total"),
        "the second producer connected"
    );
    drop(consumer);
    assert_eq!(broker.stop().code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_survives_garbage_and_an_oversized_head() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &["--metrics-listen", "127.0.0.1:0"]);
    let address = metrics_address(&broker);
    let garbage = exchange(&address, b"\x16\x03\x01\x00garbage\r\n\r\n");
    assert!(garbage.starts_with("HTTP/1.1 400 "), "{garbage}");
    let oversized = [
        b"GET /metrics HTTP/1.1\r\nCookie: ".to_vec(),
        vec![b'c'; 64 * 1024],
    ]
    .concat();
    let too_large = exchange(&address, &oversized);
    assert!(too_large.starts_with("HTTP/1.1 431 "), "{too_large}");
    let other_path = exchange(&address, b"GET /admin HTTP/1.1\r\n\r\n");
    assert!(other_path.starts_with("HTTP/1.1 404 "), "{other_path}");
    drop(TcpStream::connect(&address).unwrap());
    scrape(&address);
    broker.create_topic("still-serving", 1, &[]).await;
    assert_eq!(broker.stop().code(), Some(0));
}
