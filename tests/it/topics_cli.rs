//! `ferry topics` and `ferry configs` against a live broker, with effects checked through
//! librdkafka: create with configs, list, describe (offsets and size on disk from
//! DescribeLogDirs), alter, add partitions, delete; config sources and types as Kafka names
//! them; non-zero exits with clear messages when nothing happened.

use std::process::Command;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureProducer;

use crate::records::{produce_all, test_record};
use crate::support::Broker;

fn ferry(broker: &Broker, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .args(["--bootstrap", &broker.bootstrap])
        .output()
        .expect("run ferry");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn partition_count(broker: &Broker, topic: &str) -> Option<usize> {
    let consumer: BaseConsumer = broker.client_config().create().unwrap();
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let found = metadata.topics().iter().find(|t| t.name() == topic)?;
    (found.error().is_none()).then(|| found.partitions().len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_and_configs_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(
        dir.path(),
        &["--override", "auto.create.topics.enable=false"],
    );
    let (ok, out, err) = ferry(
        &broker,
        &[
            "topics",
            "create",
            "orders",
            "--partitions",
            "3",
            "--config",
            "retention.ms=3600000",
        ],
    );
    assert!(ok && out.contains("created"), "{out}{err}");
    assert_eq!(partition_count(&broker, "orders"), Some(3));
    let producer: FutureProducer = broker.client_config().create().unwrap();
    let records: Vec<_> = (0..10).map(|i| test_record("orders", i, 1_000)).collect();
    produce_all(&producer, "orders", &records).await;

    let (ok, list, _) = ferry(&broker, &["topics", "list", "--output", "json"]);
    assert!(
        ok && list.contains(r#"{"topic":"orders","partitions":3,"internal":"no"}"#),
        "{list}"
    );
    let (ok, json, err) = ferry(
        &broker,
        &["topics", "describe", "orders", "--output", "json"],
    );
    assert!(ok, "{err}");
    // Keyed test records spread over the partitions; their ends add up to 10, sizes are real.
    let ends: i64 = json
        .split("\"log_end_offset\":")
        .skip(1)
        .map(|s| s.split(',').next().unwrap().parse::<i64>().unwrap())
        .sum();
    assert_eq!(ends, 10, "{json}");
    assert!(
        json.contains(r#""size_bytes":"#) && !json.contains(r#""size_bytes":null"#),
        "{json}"
    );
    assert!(json.contains(r#"{"name":"retention.ms","value":"3600000","source":"DYNAMIC_TOPIC_CONFIG","type":"LONG","read_only":"no"}"#), "{json}");

    let (ok, _, err) = ferry(
        &broker,
        &[
            "topics",
            "alter",
            "orders",
            "--set",
            "segment.bytes=1048576",
            "--delete",
            "retention.ms",
        ],
    );
    assert!(ok, "{err}");
    let (ok, configs, _) = ferry(
        &broker,
        &[
            "configs", "describe", "--topic", "orders", "--output", "json",
        ],
    );
    assert!(ok);
    assert!(configs.contains(r#""name":"segment.bytes","value":"1048576","source":"DYNAMIC_TOPIC_CONFIG","type":"INT""#), "{configs}");
    assert!(
        configs.contains(r#""name":"retention.ms","value":"604800000","source":"DEFAULT_CONFIG""#),
        "{configs}"
    );
    let (ok, _, err) = ferry(
        &broker,
        &[
            "configs",
            "alter",
            "--topic",
            "orders",
            "--set",
            "cleanup.policy=compact",
        ],
    );
    assert!(ok, "{err}");
    let (ok, node, _) = ferry(
        &broker,
        &["configs", "describe", "--broker", "--output", "json"],
    );
    assert!(ok && node.contains(r#""name":"auto.create.topics.enable","value":"false","source":"STATIC_BROKER_CONFIG","type":"BOOLEAN","read_only":"yes""#), "{node}");
    let (ok, _, err) = ferry(
        &broker,
        &["configs", "alter", "--broker", "--set", "num.partitions=2"],
    );
    assert!(!ok && err.contains("static"), "{err}");

    let (ok, _, err) = ferry(
        &broker,
        &["topics", "add-partitions", "orders", "--count", "5"],
    );
    assert!(ok, "{err}");
    assert_eq!(partition_count(&broker, "orders"), Some(5));
    let (ok, _, err) = ferry(
        &broker,
        &["topics", "add-partitions", "orders", "--count", "2"],
    );
    assert!(!ok && err.contains("higher than or equal"), "{err}");

    let (ok, _, err) = ferry(&broker, &["topics", "create", "orders"]);
    assert!(!ok && err.contains("already exists"), "{err}");
    let (ok, _, err) = ferry(&broker, &["topics", "create", "bad", "--config", "nope=1"]);
    assert!(!ok && err.contains("nope"), "{err}");
    let (ok, _, err) = ferry(&broker, &["topics", "describe", "missing"]);
    assert!(!ok && err.contains("does not exist"), "{err}");
    let (ok, _, err) = ferry(&broker, &["topics", "delete", "orders"]);
    assert!(ok, "{err}");
    assert_eq!(partition_count(&broker, "orders"), None);
    let (ok, _, err) = ferry(&broker, &["topics", "delete", "orders"]);
    assert!(!ok && err.contains("does not exist"), "{err}");
}
