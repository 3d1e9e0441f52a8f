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
    assert!(
        !err.contains("protocol error"),
        "a refusal, not a protocol error: {err}"
    );
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

fn topic_names(broker: &Broker) -> Vec<String> {
    let consumer: BaseConsumer = broker.client_config().create().unwrap();
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .unwrap();
    metadata
        .topics()
        .iter()
        .map(|t| t.name().to_string())
        .collect()
}

/// What the tool says and how it exits when what was asked did not happen; and a tool
/// never creates a topic, not even for a typo.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tool_exits_non_zero_with_a_clear_message_when_nothing_happened() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &[]);
    broker.create_topic("real", 2, &[]).await;
    let committer = consumer(&broker, "tool-group");
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset("real", 0, Offset::Offset(0))
        .unwrap();
    offsets
        .add_partition_offset("real", 1, Offset::Offset(0))
        .unwrap();
    committer.commit(&offsets, CommitMode::Sync).unwrap();
    drop(committer);

    // A typo in --topic: refused, dry run or not, and no topic appears.
    for execute in [false, true] {
        let mut args = vec![
            "reset-offsets",
            "--group",
            "tool-group",
            "--topic",
            "reel",
            "--to-earliest",
        ];
        if execute {
            args.push("--execute");
        }
        let (ok, _, err) = ferry_groups(&broker, &args);
        assert!(!ok && err.contains("reel"), "execute={execute}: {err}");
    }
    assert!(!topic_names(&broker).contains(&"reel".to_string()));

    // A negative --to-offset gets a clear refusal, not an argument-parser error.
    let (ok, _, err) = ferry_groups(
        &broker,
        &[
            "reset-offsets",
            "--group",
            "tool-group",
            "--topic",
            "real",
            "--to-offset",
            "-5",
        ],
    );
    assert!(
        !ok && err.contains("--to-offset -5") && err.contains("--shift-by"),
        "{err}"
    );

    // Describing or deleting a group that does not exist fails and says so.
    let (ok, out, err) = ferry_groups(&broker, &["describe", "no-such-group"]);
    assert!(
        !ok && err.contains("does not exist") && !out.contains("Dead"),
        "{out}{err}"
    );
    let (ok, out, err) = ferry_groups(&broker, &["delete", "no-such-group"]);
    assert!(
        !ok && out.contains("GroupIdNotFound") && err.contains("not deleted"),
        "{out}{err}"
    );

    // delete-offsets takes a bare topic: every partition the group committed.
    let (ok, out, err) = ferry_groups(
        &broker,
        &[
            "delete-offsets",
            "--group",
            "tool-group",
            "--topic",
            "real",
            "--output",
            "json",
        ],
    );
    assert!(ok, "{out}{err}");
    assert!(
        out.contains(r#""partition":0"#) && out.contains(r#""partition":1"#),
        "{out}"
    );
    let (ok, _, err) = ferry_groups(
        &broker,
        &["delete-offsets", "--group", "tool-group", "--topic", "real"],
    );
    assert!(!ok && err.contains("no committed offsets"), "{err}");
    // The group has nothing left and can be deleted.
    let (ok, out, err) = ferry_groups(&broker, &["delete", "tool-group"]);
    assert!(ok, "{out}{err}");
}
