//! Exactly-once consume-transform-produce: a pipeline process (this test binary re-run with
//! `FERRY_TEST_PIPELINE` set) reads a keyed input topic in a group, and for each batch
//! produces transformed records and commits its input offsets in one transaction
//! (`send_offsets_to_transaction`). The test kills the pipeline with SIGKILL several
//! times and the broker once; the output must hold every input record exactly once, in
//! per-key order.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::support::Broker;

const ENV: &str = "FERRY_TEST_PIPELINE";
const INPUT_RECORDS: usize = 6_000;
/// Records per transaction, and how long each transaction stays open after producing, so
/// that the test's kills land inside transactions.
const BATCH_RECORDS: usize = 50;
const OPEN_TRANSACTION_MS: u64 = 40;
const PARTITIONS: i32 = 4;

fn start_pipeline(bootstrap: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "eos_pipeline::pipeline_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ENV, bootstrap)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the pipeline process")
}

/// The pipeline's body; a no-op in the normal test run.
#[test]
fn pipeline_child() {
    let Ok(bootstrap) = std::env::var(ENV) else {
        return;
    };
    let consumer: BaseConsumer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "pipeline")
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .create()
        .unwrap();
    let producer: BaseProducer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("transactional.id", "pipeline-txn")
        .set("linger.ms", "5")
        .create()
        .unwrap();
    producer.init_transactions(Duration::from_secs(60)).unwrap();
    consumer.subscribe(&["input"]).unwrap();
    loop {
        let mut batch = Vec::new();
        let started = Instant::now();
        while batch.len() < BATCH_RECORDS && started.elapsed() < Duration::from_millis(100) {
            if let Some(Ok(message)) = consumer.poll(Duration::from_millis(20)) {
                batch.push((
                    message.partition(),
                    message.offset(),
                    message.key().map(<[u8]>::to_vec),
                    message.payload().map(<[u8]>::to_vec),
                ));
            }
        }
        if batch.is_empty() {
            continue;
        }
        producer.begin_transaction().unwrap();
        let mut positions = TopicPartitionList::new();
        for (partition, offset, key, value) in &batch {
            let value = format!(
                "out:{}",
                String::from_utf8_lossy(value.as_deref().unwrap_or_default())
            );
            let key = key.clone().unwrap_or_default();
            producer
                .send(BaseRecord::to("output").key(&key).payload(&value))
                .unwrap();
            positions
                .add_partition_offset("input", *partition, Offset::Offset(offset + 1))
                .unwrap();
        }
        producer.flush(Duration::from_secs(30)).unwrap();
        std::thread::sleep(Duration::from_millis(OPEN_TRANSACTION_MS));
        let metadata = consumer.group_metadata().unwrap();
        producer
            .send_offsets_to_transaction(&positions, &metadata, Duration::from_secs(30))
            .unwrap();
        producer
            .commit_transaction(Duration::from_secs(30))
            .unwrap();
    }
}

fn read_output(
    broker: &Broker,
    isolation: &str,
    expected: usize,
    limit: Duration,
) -> Vec<(i32, i64, String, String)> {
    let consumer: BaseConsumer = broker
        .client_config()
        .set("isolation.level", isolation)
        .set("group.id", "verifier")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        assignment
            .add_partition_offset("output", p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + limit;
    while out.len() < expected && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
            let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
            out.push((m.partition(), m.offset(), key, value));
        }
    }
    // Read a little longer: a duplicate would show up as extra records.
    let settle = Instant::now() + Duration::from_secs(2);
    while Instant::now() < settle {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
            let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
            out.push((m.partition(), m.offset(), key, value));
        }
    }
    out
}

/// Sum of the output partitions' high watermarks: every record written, committed, open or
/// aborted, and the transaction markers.
fn output_end_offsets(broker: &Broker) -> i64 {
    let consumer: BaseConsumer = broker
        .client_config()
        .set("isolation.level", "read_uncommitted")
        .create()
        .unwrap();
    (0..PARTITIONS)
        .map(|p| {
            consumer
                .fetch_watermarks("output", p, Duration::from_secs(5))
                .map_or(0, |(_, high)| high)
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_input_record_reaches_the_output_exactly_once_across_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--override", "group.initial.rebalance.delay.ms=0"];
    let mut broker = Broker::start(dir.path(), &args);
    broker.create_topic("input", PARTITIONS, &[]).await;
    broker.create_topic("output", PARTITIONS, &[]).await;
    let producer: BaseProducer = broker
        .client_config()
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    for i in 0..INPUT_RECORDS {
        let (key, value) = (format!("k{}", i % 37), i.to_string());
        producer
            .send(BaseRecord::to("input").key(&key).payload(&value))
            .unwrap();
        if i % 500 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    drop(producer);

    // Crash the pipeline four times mid-stream, and the broker once. Each kill waits until
    // that pipeline has written output (on a loaded machine its group may take seconds to
    // form), then lands a little later, while transactions are being written.
    for round in 0..4 {
        let output_before = output_end_offsets(&broker);
        let mut pipeline = start_pipeline(&broker.bootstrap);
        let deadline = Instant::now() + Duration::from_secs(60);
        while output_end_offsets(&broker) == output_before && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(300 + 200 * round));
        pipeline.kill().unwrap();
        let _ = pipeline.wait();
        if round == 1 {
            broker.kill9();
            broker = Broker::start(dir.path(), &args);
        }
    }
    let mut pipeline = start_pipeline(&broker.bootstrap);
    let output = read_output(
        &broker,
        "read_committed",
        INPUT_RECORDS,
        Duration::from_secs(120),
    );
    pipeline.kill().unwrap();
    let _ = pipeline.wait();

    let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
    for (_, _, _, value) in &output {
        let n: usize = value.strip_prefix("out:").unwrap().parse().unwrap();
        *counts.entry(n).or_default() += 1;
    }
    let missing: Vec<usize> = (0..INPUT_RECORDS)
        .filter(|n| !counts.contains_key(n))
        .collect();
    let duplicated: Vec<(&usize, &usize)> = counts.iter().filter(|(_, c)| **c > 1).collect();
    assert!(
        missing.is_empty(),
        "{} records missing, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert!(
        duplicated.is_empty(),
        "records processed twice: {duplicated:?}"
    );
    // Per key, the output keeps the input order.
    let mut last: BTreeMap<String, usize> = BTreeMap::new();
    let mut ordered = output.clone();
    ordered.sort_by_key(|(p, o, _, _)| (*p, *o));
    for (_, _, key, value) in ordered {
        let n: usize = value.strip_prefix("out:").unwrap().parse().unwrap();
        if let Some(previous) = last.insert(key.clone(), n) {
            assert!(n > previous, "key {key}: {previous} then {n}");
        }
    }
    // The kills landed inside transactions: their aborted output is in the log.
    let everything = read_output(
        &broker,
        "read_uncommitted",
        INPUT_RECORDS + 1,
        Duration::from_secs(10),
    );
    assert!(
        everything.len() > INPUT_RECORDS,
        "no kill interrupted a transaction"
    );
    // The group's committed offsets cover the whole input.
    let consumer: BaseConsumer = broker
        .client_config()
        .set("group.id", "pipeline")
        .create()
        .unwrap();
    let mut wanted = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        wanted.add_partition("input", p);
    }
    let committed = consumer
        .committed_offsets(wanted, Duration::from_secs(10))
        .unwrap();
    let total: i64 = committed
        .elements()
        .iter()
        .map(|e| e.offset().to_raw().unwrap_or(0))
        .sum();
    assert_eq!(total, INPUT_RECORDS as i64);
}
