//! `ferry groups` against a live broker: describe reports the right lag, reset-offsets
//! moves a group (and the next consumer starts there), and refuses while members are active.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::support::Broker;

fn ferry_groups(broker: &Broker, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["groups", "--bootstrap", &broker.bootstrap])
        .args(args)
        .output()
        .expect("run ferry groups");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn consumer(broker: &Broker, group: &str) -> BaseConsumer {
    broker
        .client_config()
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap()
}

/// First offset consumed per partition by a fresh group member.
fn first_offsets(consumer: &BaseConsumer, topic: &str, partitions: usize) -> BTreeMap<i32, i64> {
    consumer.subscribe(&[topic]).unwrap();
    let mut first = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while first.len() < partitions && Instant::now() < deadline {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
            first.entry(message.partition()).or_insert(message.offset());
        }
    }
    first
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_shows_lag_and_reset_moves_the_group() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(
        dir.path(),
        &["--override", "group.initial.rebalance.delay.ms=0"],
    );
    let topic = "cli-topic";
    broker.create_topic(topic, 2, &[]).await;
    let producer: ThreadedProducer<DefaultProducerContext> =
        broker.client_config().create().unwrap();
    for (partition, count) in [(0, 30), (1, 20)] {
        for i in 0..count {
            let value = format!("{partition}-{i}");
            producer
                .send(
                    BaseRecord::<(), _>::to(topic)
                        .partition(partition)
                        .payload(&value),
                )
                .unwrap();
        }
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    let committer = consumer(&broker, "cli-group");
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset(topic, 0, Offset::Offset(10))
        .unwrap();
    offsets
        .add_partition_offset(topic, 1, Offset::Offset(5))
        .unwrap();
    committer.commit(&offsets, CommitMode::Sync).unwrap();
    drop(committer);

    let (ok, json, err) = ferry_groups(&broker, &["describe", "cli-group", "--output", "json"]);
    assert!(ok, "{err}");
    assert!(
        json.contains(r#""partition":0,"current_offset":10,"log_end_offset":30,"lag":20"#),
        "{json}"
    );
    assert!(
        json.contains(r#""partition":1,"current_offset":5,"log_end_offset":20,"lag":15"#),
        "{json}"
    );
    let (ok, table, _) = ferry_groups(&broker, &["describe", "cli-group"]);
    assert!(
        ok && table.contains("LAG") && table.contains("cli-topic"),
        "{table}"
    );

    // A dry run changes nothing; --execute moves partition 0 only.
    let (ok, plan, _) = ferry_groups(
        &broker,
        &[
            "reset-offsets",
            "--group",
            "cli-group",
            "--topic",
            "cli-topic:0",
            "--to-earliest",
        ],
    );
    assert!(ok && plan.contains("cli-topic"), "{plan}");
    let (ok, _, err) = ferry_groups(
        &broker,
        &[
            "reset-offsets",
            "--group",
            "cli-group",
            "--topic",
            "cli-topic:0",
            "--to-offset",
            "25",
            "--execute",
        ],
    );
    assert!(ok, "{err}");
    let member = consumer(&broker, "cli-group");
    assert_eq!(
        first_offsets(&member, topic, 2),
        BTreeMap::from([(0, 25), (1, 5)])
    );

    // While the group has an active member, a reset is refused.
    let (ok, _, err) = ferry_groups(
        &broker,
        &[
            "reset-offsets",
            "--group",
            "cli-group",
            "--all-topics",
            "--to-latest",
            "--execute",
        ],
    );
    assert!(!ok && err.contains("inactive"), "{err}");
    drop(member);

    // A group that never existed is created at the chosen position.
    let (ok, _, err) = ferry_groups(
        &broker,
        &[
            "reset-offsets",
            "--group",
            "fresh-group",
            "--topic",
            "cli-topic",
            "--shift-by",
            "-3",
            "--execute",
        ],
    );
    assert!(ok, "{err}");
    let (ok, listed, _) = ferry_groups(&broker, &["list", "--output", "json"]);
    assert!(
        ok && listed.contains(r#""group":"fresh-group""#),
        "{listed}"
    );
    let member = consumer(&broker, "fresh-group");
    assert_eq!(
        first_offsets(&member, topic, 2),
        BTreeMap::from([(0, 0), (1, 0)]),
        "shift below the start clamps to it"
    );
}
