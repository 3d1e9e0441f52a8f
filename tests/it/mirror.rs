//! Migration with `ferry mirror`, the source being a second Ferry process: keyed records
//! with headers, an idempotent producer and a transactional producer with an aborted
//! transaction are mirrored at their source offsets (kill -9 of the mirroring Ferry during
//! catch-up included); read_committed readers see the same records on both sides; verify
//! finds equal digests; a group's source offsets arrive exactly and its consumers resume
//! there on Ferry; produce to the mirror is refused until promotion and continues the
//! offsets after it; a source topic deleted and re-created stops its mirror with a reason.

use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::Value;

use crate::support::Broker;

const TOPIC: &str = "orders";
const PARTITIONS: i32 = 3;

fn ferry(bootstrap: &str, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .args(["--bootstrap", bootstrap])
        .output()
        .expect("run ferry");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn status(mirror: &Broker) -> Value {
    let (ok, out, err) = ferry(
        &mirror.bootstrap,
        &["mirror", "status", "east", "--output", "json"],
    );
    assert!(ok, "status failed: {err}");
    serde_json::from_str(&out).unwrap()
}

fn topic_status<'a>(status: &'a Value, topic: &str) -> &'a Value {
    status["links"][0]["topics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["topic"] == topic)
        .unwrap()
}

/// Waits until every partition of `topic` is mirrored up to `ends`.
fn wait_in_sync(mirror: &Broker, topic: &str, ends: &[i64]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = status(mirror);
        let t = topic_status(&s, topic);
        let mirrored: Vec<i64> = t["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["mirrored_log_end_offset"].as_i64().unwrap())
            .collect();
        if mirrored == ends {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "mirror of {topic} stuck at {mirrored:?}, want {ends:?}: {s}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn produce_keyed(broker: &Broker, from: usize, count: usize) {
    let producer: BaseProducer = broker
        .client_config()
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .unwrap();
    for i in from..from + count {
        let key = format!("key-{}", i % 97);
        let value = format!("value-{i}");
        let headers = OwnedHeaders::new().insert(Header {
            key: "trace",
            value: Some(format!("t{i}").as_bytes()),
        });
        loop {
            let record = BaseRecord::to(TOPIC)
                .key(&key)
                .payload(&value)
                .headers(headers.clone());
            match producer.send(record) {
                Ok(()) => break,
                Err((_, _)) => producer.poll(Duration::from_millis(10)),
            };
        }
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

fn produce_transactions(broker: &Broker) {
    let producer: BaseProducer = broker
        .client_config()
        .set("transactional.id", "mirror-txn")
        .create()
        .unwrap();
    producer.init_transactions(Duration::from_secs(30)).unwrap();
    for (round, commit) in [(0, true), (1, false), (2, true)] {
        producer.begin_transaction().unwrap();
        for i in 0..10 {
            let value = format!("txn-{round}-{i}");
            producer
                .send(
                    BaseRecord::to(TOPIC)
                        .key("txn")
                        .payload(&value)
                        .partition(i % PARTITIONS),
                )
                .unwrap();
        }
        if commit {
            producer
                .commit_transaction(Duration::from_secs(30))
                .unwrap();
        } else {
            producer.flush(Duration::from_secs(30)).unwrap();
            producer.abort_transaction(Duration::from_secs(30)).unwrap();
        }
    }
}

/// (partition, offset, key, value, headers) of everything a read_committed reader sees.
fn read_committed(
    broker: &Broker,
    topic: &str,
    ends: &[i64],
) -> Vec<(i32, i64, String, String, String)> {
    let consumer: BaseConsumer = broker
        .client_config()
        .set("group.id", "reader")
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            Instant::now() < deadline,
            "reading {topic} to {ends:?} took too long"
        );
        match consumer.poll(Duration::from_millis(300)) {
            Some(message) => {
                let m = message.unwrap();
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|x| format!("{}={:?}", x.key, x.value))
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .unwrap_or_default();
                out.push((
                    m.partition(),
                    m.offset(),
                    String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                    String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
                    headers,
                ));
            }
            None => {
                let position = consumer.position().unwrap();
                let at_end = (0..PARTITIONS).all(|p| {
                    matches!(position.find_partition(topic, p).map(|e| e.offset()),
                        Some(Offset::Offset(o)) if o >= ends[p as usize])
                });
                if at_end {
                    break;
                }
            }
        }
    }
    out.sort();
    out
}

fn end_offsets(broker: &Broker, topic: &str) -> Vec<i64> {
    let consumer: BaseConsumer = broker.client_config().create().unwrap();
    (0..PARTITIONS)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .unwrap()
                .1
        })
        .collect()
}

fn commit_on(broker: &Broker, group: &str, offsets: &[(i32, i64)]) {
    let consumer: BaseConsumer = broker
        .client_config()
        .set("group.id", group)
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    for (p, o) in offsets {
        list.add_partition_offset(TOPIC, *p, Offset::Offset(*o))
            .unwrap();
    }
    consumer.commit(&list, CommitMode::Sync).unwrap();
}

fn committed_on(broker: &Broker, group: &str) -> Vec<i64> {
    let consumer: BaseConsumer = broker
        .client_config()
        .set("group.id", group)
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        list.add_partition(TOPIC, p);
    }
    let committed = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .unwrap();
    (0..PARTITIONS)
        .map(
            |p| match committed.find_partition(TOPIC, p).unwrap().offset() {
                Offset::Offset(o) => o,
                _ => -1,
            },
        )
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_migration_keeps_offsets_records_and_group_positions() {
    let source_dir = tempfile::tempdir().unwrap();
    let mirror_dir = tempfile::tempdir().unwrap();
    let source = Broker::start(source_dir.path(), &[]);
    source.create_topic(TOPIC, PARTITIONS, &[]).await;
    source
        .create_topic("state", 1, &[("cleanup.policy", "compact")])
        .await;
    produce_keyed(&source, 0, 3_000);
    produce_transactions(&source);
    commit_on(&source, "billing", &[(0, 100), (1, 200), (2, 0)]);

    let mut mirror = Broker::start(mirror_dir.path(), &[]);
    let (ok, _, err) = ferry(
        &mirror.bootstrap,
        &["mirror", "create", "east", "--source", &source.bootstrap],
    );
    assert!(ok, "create: {err}");
    let (ok, _, err) = ferry(
        &mirror.bootstrap,
        &[
            "mirror",
            "add",
            "east",
            "--topics",
            "orders,state",
            "--groups",
            "billing",
        ],
    );
    assert!(ok, "add: {err}");
    let (ok, _, err) = ferry(&mirror.bootstrap, &["mirror", "add", "east", "--sync-acls"]);
    assert!(ok, "add --sync-acls: {err}");
    // Crash the mirroring Ferry twice while it catches up, with the source still written.
    for round in 0..2 {
        std::thread::sleep(Duration::from_millis(300));
        mirror.kill9();
        produce_keyed(&source, 3_000 + round * 500, 500);
        mirror = Broker::start(mirror_dir.path(), &[]);
    }
    let ends = end_offsets(&source, TOPIC);
    wait_in_sync(&mirror, TOPIC, &ends);

    // Same records at the same offsets, aborted ones invisible on both.
    let on_source = read_committed(&source, TOPIC, &ends);
    let on_mirror = read_committed(&mirror, TOPIC, &ends);
    assert_eq!(on_source.len(), 4_000 + 20);
    assert!(on_mirror.iter().all(|r| !r.3.starts_with("txn-1-")));
    assert_eq!(on_source, on_mirror);
    let (ok, out, err) = ferry(
        &mirror.bootstrap,
        &["mirror", "verify", "east", "--topic", TOPIC],
    );
    assert!(ok, "verify: {out}{err}");
    assert!(!out.contains("DIVERGED"), "{out}");
    // The source's ACLs are listed when it can describe them (this one cannot), and
    // their sync waits for Ferry's authorizer.
    let link = &status(&mirror)["links"][0];
    assert!(
        link["acl_sync"].as_str().unwrap().starts_with("pending"),
        "{link}"
    );
    assert!(
        link["source_acls"]["unavailable"]
            .as_str()
            .is_some_and(|why| why.contains("DescribeAcls")),
        "{link}"
    );

    // The group's source offsets arrive verbatim; its consumers resume there on Ferry.
    let deadline = Instant::now() + Duration::from_secs(30);
    while committed_on(&mirror, "billing") != vec![100, 200, 0] {
        assert!(
            Instant::now() < deadline,
            "group offsets not synced: {}",
            status(&mirror)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let consumer: BaseConsumer = mirror
        .client_config()
        .set("group.id", "billing")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(TOPIC, 0, Offset::Stored)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let first = loop {
        if let Some(m) = consumer.poll(Duration::from_secs(1)) {
            break m.unwrap().offset();
        }
    };
    assert_eq!(first, 100);
    drop(consumer);

    // Read-only until promoted; promotion continues the source's offsets.
    let producer: BaseProducer = mirror
        .client_config()
        .set("message.send.max.retries", "0")
        .create()
        .unwrap();
    producer
        .send(
            BaseRecord::to(TOPIC)
                .key("k")
                .payload("before promotion")
                .partition(0),
        )
        .unwrap();
    producer.flush(Duration::from_secs(10)).unwrap();
    assert_eq!(
        end_offsets(&mirror, TOPIC),
        ends,
        "produce to a mirror topic was accepted"
    );
    // `ferry produce` says why, naming the link.
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["produce", TOPIC, "--bootstrap", &mirror.bootstrap])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"refused\n").unwrap();
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("is a mirror of link east"), "{stderr}");
    drop(producer);
    let (ok, out, err) = ferry(
        &mirror.bootstrap,
        &["mirror", "promote", "east", "--topic", TOPIC],
    );
    assert!(ok, "promote: {out}{err}");
    // A producer moved over (idempotent, so it gets a producer id from Ferry, which must
    // not be one of the source's whose sequences the mirror carries).
    let producer: BaseProducer = mirror
        .client_config()
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    for i in 0..10 {
        let value = format!("after-{i}");
        producer
            .send(
                BaseRecord::to(TOPIC)
                    .key("after")
                    .payload(&value)
                    .partition(0),
            )
            .unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    let ends_after = end_offsets(&mirror, TOPIC);
    assert_eq!(ends_after[0], ends[0] + 10);
    let after = read_committed(&mirror, TOPIC, &ends_after);
    assert_eq!(
        after.len(),
        on_mirror.len() + 10,
        "records produced after promotion are missing"
    );

    // A source topic deleted and re-created: its mirror stops with the reason.
    wait_in_sync_one(&mirror, "state");
    let (ok, _, err) = ferry(&source.bootstrap, &["topics", "delete", "state"]);
    assert!(ok, "{err}");
    source
        .create_topic("state", 1, &[("cleanup.policy", "compact")])
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = status(&mirror);
        let t = topic_status(&s, "state");
        if t["state"] == "failed" {
            let reason = t["reason"].as_str().unwrap();
            assert!(
                reason.contains("re-created") || reason.contains("does not exist"),
                "{reason}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "re-created source topic not detected: {s}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn wait_in_sync_one(mirror: &Broker, topic: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while topic_status(&status(mirror), topic)["partitions"]
        .as_array()
        .is_none_or(|p| p.is_empty())
    {
        assert!(Instant::now() < deadline, "{topic} never mirrored");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The committed offset of `group` on `topic`-0, read as a consumer would.
fn committed_p0(broker: &Broker, group: &str, topic: &str) -> i64 {
    let consumer: BaseConsumer = broker
        .client_config()
        .set("group.id", group)
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    list.add_partition(topic, 0);
    let committed = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .unwrap();
    match committed.find_partition(topic, 0).unwrap().offset() {
        Offset::Offset(o) => o,
        _ => -1,
    }
}

fn produce_plain(broker: &Broker, topic: &str, count: usize, bytes: usize) {
    let producer: BaseProducer = broker.client_config().create().unwrap();
    let value = vec![b'x'; bytes];
    for _ in 0..count {
        loop {
            match producer.send(BaseRecord::<(), _>::to(topic).payload(&value).partition(0)) {
                Ok(()) => break,
                Err(_) => {
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_move_back_exactly_and_retention_overtaking_a_paused_mirror_stops_it() {
    let source_dir = tempfile::tempdir().unwrap();
    let mirror_dir = tempfile::tempdir().unwrap();
    let source = Broker::start(
        source_dir.path(),
        &["--override", "log.retention.check.interval.ms=300"],
    );
    source.create_topic("events", 1, &[]).await;
    source
        .create_topic(
            "short",
            1,
            &[("segment.bytes", "2000"), ("retention.bytes", "4000")],
        )
        .await;
    produce_plain(&source, "events", 300, 100);
    produce_plain(&source, "short", 10, 100);
    let mirror = Broker::start(mirror_dir.path(), &["--metrics-listen", "127.0.0.1:0"]);
    let metrics = crate::metrics::metrics_address(&mirror);
    let run = |args: &[&str]| {
        let (ok, out, err) = ferry(&mirror.bootstrap, args);
        assert!(ok, "{args:?}: {out}{err}");
    };
    run(&["mirror", "create", "east", "--source", &source.bootstrap]);
    run(&[
        "mirror",
        "add",
        "east",
        "--topics",
        "events,short",
        "--groups",
        "app",
    ]);
    wait_in_sync_one(&mirror, "short");
    wait_for("events mirrored", || {
        end_offsets_of(&mirror, "events") == 300
    });
    // The same figures on the metrics endpoint.
    let labels = r#"{link="east",topic="events",partition="0"}"#;
    wait_for("the mirror's gauges", || {
        let text = crate::metrics::exchange(&metrics, b"GET /metrics HTTP/1.1\r\n\r\n");
        text.contains(&format!("ferry_mirror_log_end_offset{labels} 300"))
            && text.contains(&format!("ferry_mirror_source_log_end_offset{labels} 300"))
            && text.contains(&format!("ferry_mirror_lag_records{labels} 0"))
            && text.contains(
                r#"ferry_mirror_topic_state{link="east",topic="events",state="mirroring"} 1"#,
            )
    });
    // The mirror follows the source topic's config changes and partition increases.
    let on_source = |args: &[&str]| {
        let (ok, out, err) = ferry(&source.bootstrap, args);
        assert!(ok, "{args:?}: {out}{err}");
    };
    on_source(&[
        "configs",
        "alter",
        "--topic",
        "events",
        "--set",
        "retention.ms=86400000",
    ]);
    on_source(&["topics", "add-partitions", "events", "--count", "2"]);
    wait_for("the mirror to follow the source topic", || {
        let (ok, out, _) = ferry(
            &mirror.bootstrap,
            &[
                "configs", "describe", "--topic", "events", "--output", "json",
            ],
        );
        let consumer: BaseConsumer = mirror.client_config().create().unwrap();
        ok && out.contains("86400000")
            && consumer
                .fetch_watermarks("events", 1, Duration::from_secs(2))
                .is_ok()
    });

    // Consumers first: the group reads on Ferry, commits, stops; its commit goes back
    // to the source, where a consumer of the group resumes exactly there.
    let consumer: BaseConsumer = mirror
        .client_config()
        .set("group.id", "app")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&["events"]).unwrap();
    let mut read = 0;
    while read < 120 {
        if let Some(m) = consumer.poll(Duration::from_secs(1)) {
            m.unwrap();
            read += 1;
        }
    }
    let mut position = TopicPartitionList::new();
    position
        .add_partition_offset("events", 0, Offset::Offset(120))
        .unwrap();
    consumer.commit(&position, CommitMode::Sync).unwrap();
    consumer.unsubscribe();
    drop(consumer);
    wait_for("the write-back of the group's offset", || {
        committed_p0(&source, "app", "events") == 120
    });
    let back: BaseConsumer = source
        .client_config()
        .set("group.id", "app")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    back.subscribe(&["events"]).unwrap();
    let first = loop {
        if let Some(m) = back.poll(Duration::from_secs(1)) {
            break m.unwrap().offset();
        }
    };
    assert_eq!(
        first, 120,
        "the group did not resume where it stopped on Ferry"
    );
    // While the group consumes on the source, promotion refuses unless told the group
    // stays there (producers first).
    let (ok, out, err) = ferry(
        &mirror.bootstrap,
        &["mirror", "promote", "east", "--topic", "events"],
    );
    assert!(!ok, "promoted while a group consumes on the source: {out}");
    assert!(err.contains("still consume events on the source"), "{err}");
    run(&[
        "mirror",
        "promote",
        "east",
        "--topic",
        "events",
        "--keep-groups-on-source",
    ]);
    drop(back);

    // A paused mirror overtaken by the source's retention fails instead of skipping.
    run(&["mirror", "pause", "east", "--topic", "short"]);
    let paused_end = end_offsets_of(&mirror, "short");
    for _ in 0..60 {
        produce_plain(&source, "short", 1, 100);
    }
    let source_start = || {
        let consumer: BaseConsumer = source.client_config().create().unwrap();
        consumer
            .fetch_watermarks("short", 0, Duration::from_secs(5))
            .unwrap()
            .0
    };
    wait_for("source retention to pass the mirror", || {
        source_start() > paused_end
    });
    run(&["mirror", "resume", "east", "--topic", "short"]);
    wait_for("the overtaken mirror to fail", || {
        let s = status(&mirror);
        let t = topic_status(&s, "short");
        t["state"] == "failed"
            && t["reason"]
                .as_str()
                .is_some_and(|r| r.contains("source retention deleted offsets"))
    });
    assert_eq!(
        end_offsets_of(&mirror, "short"),
        paused_end,
        "nothing may be skipped"
    );
    let (ok, out, _) = ferry(&mirror.bootstrap, &["mirror", "status", "east"]);
    assert!(ok);
    assert!(
        out.contains("ferry mirror resume east --topic short"),
        "{out}"
    );
}

fn end_offsets_of(broker: &Broker, topic: &str) -> i64 {
    let consumer: BaseConsumer = broker.client_config().create().unwrap();
    consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .map_or(-1, |w| w.1)
}
