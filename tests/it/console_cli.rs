//! `ferry produce` and `ferry consume` against a live broker, checked with librdkafka:
//! keyed lines land where Kafka's default partitioner puts them and read back intact,
//! compressed or not; consume reads from the start, an offset or a group's committed
//! position (and commits), hides aborted transactions under read_committed, prints JSON,
//! and exits non-zero for a topic that does not exist.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::records::partition_for_key;
use crate::support::Broker;

fn ferry(broker: &Broker, args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .args(["--bootstrap", &broker.bootstrap])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ferry");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// (partition, key, value) of everything in `topic`, read with librdkafka.
fn read_with_librdkafka(
    broker: &Broker,
    topic: &str,
    partitions: i32,
    total: usize,
) -> Vec<(i32, String, String)> {
    let consumer: BaseConsumer = broker
        .client_config()
        .set("group.id", "check")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while out.len() < total && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let text =
                |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or_default()).into_owned();
            out.push((m.partition(), text(m.key()), text(m.payload())));
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_and_consume_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &[]);
    broker.create_topic("lines", 4, &[]).await;
    let lines: String = (0..40).map(|i| format!("key-{i}|value {i}\n")).collect();
    for codec in ["none", "zstd"] {
        let (ok, _, err) = ferry(
            &broker,
            &[
                "produce",
                "lines",
                "--key-separator",
                "|",
                "--compression",
                codec,
            ],
            &lines,
        );
        assert!(ok, "{err}");
    }
    let read = read_with_librdkafka(&broker, "lines", 4, 80);
    assert_eq!(read.len(), 80);
    for (partition, key, value) in &read {
        assert_eq!(*partition, partition_for_key(key.as_bytes(), 4), "{key}");
        assert_eq!(value, &format!("value {}", &key[4..]));
    }

    // From the start as JSON; then a group that commits and resumes.
    let (ok, json, err) = ferry(
        &broker,
        &[
            "consume",
            "lines",
            "--partition",
            "0",
            "--from-beginning",
            "--exit-at-end",
            "--output",
            "json",
        ],
        "",
    );
    assert!(ok, "{err}");
    let in_partition_0 = read.iter().filter(|(p, _, _)| *p == 0).count();
    assert_eq!(json.lines().count(), in_partition_0);
    assert!(
        json.lines().all(|l| l.starts_with("{\"partition\":0,")),
        "{json}"
    );
    let (ok, first, _) = ferry(
        &broker,
        &[
            "consume",
            "lines",
            "--group",
            "cli",
            "--from-beginning",
            "--max-messages",
            "30",
        ],
        "",
    );
    assert!(ok);
    let (ok, rest, _) = ferry(
        &broker,
        &["consume", "lines", "--group", "cli", "--exit-at-end"],
        "",
    );
    assert!(ok);
    assert_eq!(
        first.lines().count() + rest.lines().count(),
        80,
        "{first}\n--\n{rest}"
    );
    let (ok, at, _) = ferry(
        &broker,
        &[
            "consume",
            "lines",
            "--partition",
            "1",
            "--offset",
            "2",
            "--max-messages",
            "1",
            "--print-offset",
        ],
        "",
    );
    assert!(ok && at.starts_with("1:2\t"), "{at}");

    // read_committed hides an aborted transaction.
    broker.create_topic("txn", 1, &[]).await;
    let producer: BaseProducer = broker
        .client_config()
        .set("transactional.id", "cli-txn")
        .create()
        .unwrap();
    producer.init_transactions(Duration::from_secs(30)).unwrap();
    for (value, commit) in [("kept", true), ("dropped", false), ("also kept", true)] {
        producer.begin_transaction().unwrap();
        producer
            .send(BaseRecord::<(), _>::to("txn").partition(0).payload(value))
            .unwrap();
        producer.flush(Duration::from_secs(30)).unwrap();
        if commit {
            producer
                .commit_transaction(Duration::from_secs(30))
                .unwrap();
        } else {
            producer.abort_transaction(Duration::from_secs(30)).unwrap();
        }
    }
    let (ok, committed, err) = ferry(
        &broker,
        &[
            "consume",
            "txn",
            "--from-beginning",
            "--exit-at-end",
            "--isolation-level",
            "read-committed",
        ],
        "",
    );
    assert!(ok, "{err}");
    assert_eq!(committed, "kept\nalso kept\n");
    let (ok, everything, _) = ferry(
        &broker,
        &["consume", "txn", "--from-beginning", "--exit-at-end"],
        "",
    );
    assert!(ok);
    assert_eq!(everything, "kept\ndropped\nalso kept\n");

    let (ok, _, err) = ferry(&broker, &["consume", "missing", "--exit-at-end"], "");
    assert!(!ok && err.contains("does not exist"), "{err}");
    let (ok, _, err) = ferry(&broker, &["produce", "lines", "--partition", "9"], "x\n");
    assert!(!ok && err.contains("no partition 9"), "{err}");
}
