//! Consumer groups with real librdkafka consumers in separate processes: members join,
//! leave, crash and restart statically while a keyed stream flows; every record is
//! processed, and only a crashed consumer's uncommitted records are processed twice.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::consumer_process::{ConsumerProcess, ConsumerSpec, Event};
use crate::support::Broker;

const PARTITIONS: i32 = 6;
const SESSION_TIMEOUT_MS: u32 = 6_000;

/// Produced records: (partition, offset) -> sequence number.
type Produced = Arc<Mutex<BTreeMap<(i32, i64), u64>>>;

/// A producer thread sending a keyed record every 2 ms until stopped.
struct Stream {
    stop: Arc<AtomicBool>,
    produced: Produced,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Stream {
    fn start(broker: &Broker, topic: &str) -> Stream {
        let stop = Arc::new(AtomicBool::new(false));
        let produced: Produced = Arc::default();
        let context = DeliveryLog(Arc::clone(&produced));
        let producer: ThreadedProducer<DeliveryLog> = broker
            .client_config()
            .set("linger.ms", "1")
            .create_with_context(context)
            .unwrap();
        let (topic, stop_flag) = (topic.to_string(), Arc::clone(&stop));
        let handle = std::thread::spawn(move || {
            let mut seq = 0u64;
            while !stop_flag.load(Ordering::Relaxed) {
                let key = format!("key-{}", seq % 31);
                let value = seq.to_string();
                let record = BaseRecord::with_opaque_to(&topic, Box::new(seq))
                    .key(&key)
                    .payload(&value);
                if producer.send(record).is_ok() {
                    seq += 1;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            producer.flush(Duration::from_secs(30)).unwrap();
        });
        Stream {
            stop,
            produced,
            handle: Some(handle),
        }
    }

    fn finish(mut self) -> BTreeMap<(i32, i64), u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().unwrap().join().unwrap();
        self.produced.lock().unwrap().clone()
    }
}

struct DeliveryLog(Produced);

impl rdkafka::ClientContext for DeliveryLog {}

impl rdkafka::producer::ProducerContext for DeliveryLog {
    type DeliveryOpaque = Box<u64>;
    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, seq: Box<u64>) {
        let message = result.as_ref().expect("delivery failed");
        self.0
            .lock()
            .unwrap()
            .insert((message.partition(), message.offset()), *seq);
    }
}

/// Tracks what each consumer process reported.
#[derive(Default)]
struct Observed {
    /// Current assignment per process label.
    assignment: HashMap<String, BTreeSet<i32>>,
    /// Every processing of a record: (partition, offset) -> labels in order.
    processed: BTreeMap<(i32, i64), Vec<String>>,
    /// Every rebalance event: (label, "assigned"/"revoked", partitions, when).
    rebalances: Vec<(String, String, BTreeSet<i32>, Instant)>,
    /// Records processed: (label, partition, when).
    timeline: Vec<(String, i32, Instant)>,
    /// Rebalances, errors, stderr and close lines with their arrival times, for failure
    /// messages.
    history: Vec<(Instant, String, String)>,
}

/// Most history lines a failure message quotes (the latest ones).
const MAX_QUOTED_HISTORY_LINES: usize = 60;

fn partitions_of(list: &str) -> BTreeSet<i32> {
    list.split(',')
        .filter(|s| !s.is_empty())
        .map(|tp| tp.rsplit_once(':').unwrap().1.parse().unwrap())
        .collect()
}

impl Observed {
    fn apply(&mut self, event: Event) {
        let mut words = event.line.splitn(2, ' ');
        let (kind, rest) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        if matches!(kind, "assigned" | "revoked" | "error" | "stderr" | "closed") {
            self.history
                .push((event.at, event.label.clone(), event.line.clone()));
        }
        match kind {
            "assigned" | "revoked" => {
                let parts = partitions_of(rest);
                let entry = self.assignment.entry(event.label.clone()).or_default();
                if kind == "assigned" {
                    entry.extend(&parts);
                } else {
                    entry.retain(|p| !parts.contains(p));
                }
                self.rebalances
                    .push((event.label, kind.to_string(), parts, event.at));
            }
            "processed" => {
                let fields: Vec<&str> = rest.split(' ').collect();
                let (partition, offset): (i32, i64) =
                    (fields[0].parse().unwrap(), fields[1].parse().unwrap());
                self.processed
                    .entry((partition, offset))
                    .or_default()
                    .push(event.label.clone());
                self.timeline.push((event.label, partition, event.at));
            }
            _ => {}
        }
    }

    fn assigned(&self, label: &str) -> BTreeSet<i32> {
        self.assignment.get(label).cloned().unwrap_or_default()
    }

    /// What the consumers reported, for a failure message: the current assignment, the
    /// records each processed, and the latest non-record lines with their times.
    fn describe(&self) -> String {
        let start = self.history.first().map(|h| h.0);
        let mut text = format!("assignment now: {:?}\n", self.assignment);
        let mut processed: BTreeMap<&str, usize> = BTreeMap::new();
        for (label, _, _) in &self.timeline {
            *processed.entry(label).or_default() += 1;
        }
        text += &format!("records processed per consumer: {processed:?}\n");
        let skip = self.history.len().saturating_sub(MAX_QUOTED_HISTORY_LINES);
        for (at, label, line) in &self.history[skip..] {
            let ms = start.map_or(0, |s| at.duration_since(s).as_millis());
            text += &format!("  +{ms} ms {label}: {line}\n");
        }
        text
    }
}

/// Consumes events until `done` holds, failing after `limit`.
fn wait_until(
    events: &mpsc::Receiver<Event>,
    observed: &mut Observed,
    limit: Duration,
    what: &str,
    mut done: impl FnMut(&Observed) -> bool,
) {
    let deadline = Instant::now() + limit;
    while !done(observed) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "timed out waiting for {what}\n{}",
            observed.describe()
        );
        if let Ok(event) = events.recv_timeout(left.min(Duration::from_millis(200))) {
            observed.apply(event);
        }
    }
}

/// Consumes events until no rebalance event has arrived for `quiet` (cooperative
/// rebalancing takes two rounds, so coverage alone does not mean the group is settled).
fn settle(events: &mpsc::Receiver<Event>, observed: &mut Observed, quiet: Duration) {
    let limit = Instant::now() + Duration::from_secs(60);
    let mut last_rebalance = Instant::now();
    while last_rebalance.elapsed() < quiet {
        assert!(
            Instant::now() < limit,
            "the group never settled\n{}",
            observed.describe()
        );
        if let Ok(event) = events.recv_timeout(Duration::from_millis(100)) {
            if event.line.starts_with("assigned") || event.line.starts_with("revoked") {
                last_rebalance = Instant::now();
            }
            observed.apply(event);
        }
    }
}

fn spec(
    broker: &Broker,
    topic: &str,
    group: &str,
    assignor: &str,
    instance: Option<&str>,
) -> ConsumerSpec {
    ConsumerSpec {
        bootstrap: broker.bootstrap.clone(),
        topic: topic.into(),
        group: group.into(),
        assignor: assignor.into(),
        instance_id: instance.map(str::to_string),
        session_timeout_ms: SESSION_TIMEOUT_MS,
    }
}

fn covers_all(observed: &Observed, labels: &[&str]) -> bool {
    let union: BTreeSet<i32> = labels.iter().flat_map(|l| observed.assigned(l)).collect();
    union.len() == PARTITIONS as usize && labels.iter().all(|l| !observed.assigned(l).is_empty())
}

/// Join, leave, crash and static restart with one assignor; checks every record is
/// processed and duplicates come only from crashed consumers.
async fn membership_changes_lose_nothing(assignor: &str) {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(
        dir.path(),
        &["--override", "group.initial.rebalance.delay.ms=0"],
    );
    let topic = "stream";
    broker.create_topic(topic, PARTITIONS, &[]).await;
    let group = format!("group-{assignor}");
    let (events_tx, events) = mpsc::channel();
    let mut observed = Observed::default();
    let stream = Stream::start(&broker, topic);
    let a = ConsumerProcess::start(
        "a",
        &spec(&broker, topic, &group, assignor, Some("static-a")),
        &events_tx,
    );
    let b = ConsumerProcess::start(
        "b",
        &spec(&broker, topic, &group, assignor, None),
        &events_tx,
    );
    let c = ConsumerProcess::start(
        "c",
        &spec(&broker, topic, &group, assignor, None),
        &events_tx,
    );
    wait_until(
        &events,
        &mut observed,
        Duration::from_secs(60),
        "three members sharing",
        |o| covers_all(o, &["a", "b", "c"]),
    );

    // C leaves cleanly: A and B take over its partitions.
    c.close();
    observed.assignment.remove("c");
    wait_until(
        &events,
        &mut observed,
        Duration::from_secs(60),
        "two members after a leave",
        |o| covers_all(o, &["a", "b"]),
    );

    // A (static) restarts within its session timeout: it gets its partitions back and B
    // sees no rebalance.
    settle(&events, &mut observed, Duration::from_secs(2));
    let a_partitions = observed.assigned("a");
    let b_rebalances_before = observed.rebalances.iter().filter(|r| r.0 == "b").count();
    a.kill9();
    let a2 = ConsumerProcess::start(
        "a2",
        &spec(&broker, topic, &group, assignor, Some("static-a")),
        &events_tx,
    );
    wait_until(
        &events,
        &mut observed,
        Duration::from_secs(30),
        "the static member back",
        |o| o.assigned("a2") == a_partitions && o.timeline.iter().any(|t| t.0 == "a2"),
    );
    settle(&events, &mut observed, Duration::from_secs(2));
    let b_rebalances_after = observed.rebalances.iter().filter(|r| r.0 == "b").count();
    assert_eq!(
        b_rebalances_before,
        b_rebalances_after,
        "a static restart must not rebalance the others\n{}",
        observed.describe()
    );

    // B crashes: after its session times out, A2 owns everything.
    b.kill9();
    wait_until(
        &events,
        &mut observed,
        Duration::from_secs(60),
        "the survivor owning all",
        |o| o.assigned("a2").len() == PARTITIONS as usize,
    );

    let produced = stream.finish();
    wait_until(
        &events,
        &mut observed,
        Duration::from_secs(60),
        "every record processed",
        |o| produced.keys().all(|k| o.processed.contains_key(k)),
    );
    a2.close();
    let crashed = ["a", "b"];
    for (position, labels) in &observed.processed {
        if labels.len() > 1 {
            assert!(
                crashed.contains(&labels[0].as_str()),
                "{position:?} processed twice ({labels:?}) without a crash of its first consumer\n{}",
                observed.describe()
            );
        }
    }
    assert!(
        produced.len() > 500,
        "the stream kept flowing ({} records)",
        produced.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_assignor_members_join_leave_crash_and_restart() {
    membership_changes_lose_nothing("range").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roundrobin_assignor_members_join_leave_crash_and_restart() {
    membership_changes_lose_nothing("roundrobin").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_sticky_members_join_leave_crash_and_restart() {
    membership_changes_lose_nothing("cooperative-sticky").await;
}

/// With cooperative-sticky, a joining member takes partitions without the others stopping:
/// the first member only ever gives up partitions the newcomer ends up with, and keeps
/// processing the partitions it keeps while the rebalance runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_rebalancing_keeps_consuming_partitions_that_stay() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(
        dir.path(),
        &["--override", "group.initial.rebalance.delay.ms=0"],
    );
    let topic = "incremental";
    broker.create_topic(topic, PARTITIONS, &[]).await;
    let (events_tx, events) = mpsc::channel();
    let mut observed = Observed::default();
    let stream = Stream::start(&broker, topic);
    let spec = |_: &str| {
        spec(
            &broker,
            topic,
            "incremental-group",
            "cooperative-sticky",
            None,
        )
    };
    let a = ConsumerProcess::start("a", &spec("a"), &events_tx);
    wait_until(
        &events,
        &mut observed,
        Duration::from_secs(30),
        "a owning everything",
        |o| o.assigned("a").len() == PARTITIONS as usize && o.timeline.iter().any(|t| t.0 == "a"),
    );
    let joined_at = Instant::now();
    let b = ConsumerProcess::start("b", &spec("b"), &events_tx);
    wait_until(
        &events,
        &mut observed,
        Duration::from_secs(30),
        "b taking its share",
        |o| !o.assigned("b").is_empty() && covers_all(o, &["a", "b"]),
    );
    let b_assigned_at = observed
        .rebalances
        .iter()
        .find(|r| r.0 == "b" && r.1 == "assigned" && !r.2.is_empty())
        .map(|r| r.3)
        .unwrap();
    let kept = observed.assigned("a");
    let moved = observed.assigned("b");
    for (label, kind, parts, at) in &observed.rebalances {
        if label == "a" && kind == "revoked" && *at >= joined_at {
            assert!(
                parts.is_subset(&moved),
                "a gave up {parts:?}, but only {moved:?} moved"
            );
        }
    }
    let kept_while_rebalancing = observed
        .timeline
        .iter()
        .filter(|(label, partition, at)| {
            label == "a" && kept.contains(partition) && *at > joined_at && *at < b_assigned_at
        })
        .count();
    assert!(
        kept_while_rebalancing > 0,
        "a kept consuming {kept:?} while b joined"
    );
    let _ = stream.finish();
    b.close();
    a.close();
}

/// Committed offsets survive a broker crash, and a consumer resumes exactly there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_survive_a_broker_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &[]);
    let topic = "committed";
    broker.create_topic(topic, 2, &[]).await;
    let producer: ThreadedProducer<rdkafka::producer::DefaultProducerContext> =
        broker.client_config().create().unwrap();
    for i in 0..40 {
        let value = i.to_string();
        producer
            .send(
                BaseRecord::<(), _>::to(topic)
                    .partition(i % 2)
                    .payload(&value),
            )
            .unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    let consumer: BaseConsumer = broker
        .client_config()
        .set("group.id", "survivor")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset(topic, 0, Offset::Offset(7))
        .unwrap();
    offsets
        .add_partition_offset(topic, 1, Offset::Offset(13))
        .unwrap();
    consumer.commit(&offsets, CommitMode::Sync).unwrap();
    drop(consumer);
    broker.kill9();

    let broker = Broker::start(dir.path(), &[]);
    let consumer: BaseConsumer = broker
        .client_config()
        .set("group.id", "survivor")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut wanted = TopicPartitionList::new();
    wanted.add_partition(topic, 0);
    wanted.add_partition(topic, 1);
    let committed = consumer
        .committed_offsets(wanted, Duration::from_secs(10))
        .unwrap();
    let found: Vec<(i32, Offset)> = committed
        .elements()
        .iter()
        .map(|e| (e.partition(), e.offset()))
        .collect();
    assert_eq!(found, vec![(0, Offset::Offset(7)), (1, Offset::Offset(13))]);
    consumer.subscribe(&[topic]).unwrap();
    let mut first: BTreeMap<i32, i64> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while first.len() < 2 && Instant::now() < deadline {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
            first.entry(message.partition()).or_insert(message.offset());
        }
    }
    assert_eq!(
        first,
        BTreeMap::from([(0, 7), (1, 13)]),
        "the group resumes at its committed offsets"
    );
}
