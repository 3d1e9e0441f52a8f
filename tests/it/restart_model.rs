//! Model-based restart test: random sequences of ordinary operations against the real
//! `ferry` binary (create a topic of 1-8 partitions, produce to some partitions and not
//! others, commit offsets, DeleteRecords, delete a topic and create it again, clean stop,
//! kill -9, restart), checked after every restart against a model of each partition's log
//! start offset, log end offset and records and of each group's committed offsets.
//!
//! Requests go over the wire through Ferry's own protocol client with Kafka's message
//! types (proto-kafka), one connection per broker run, so hundreds of sequences fit in CI.
//! Most `__consumer_offsets` partitions and small topics stay empty across restarts, which
//! is the case that once turned a partition's offsets into 2^63-1.
//!
//! A run is repeatable from its seed; a longer run:
//! `FERRY_MODEL_SEED=42 FERRY_MODEL_SEQUENCES=5000 cargo test --test it restart_model -- --nocapture`

use std::collections::BTreeMap;

use bytes::Bytes;
use ferry::client::Connection;
use ferry::storage::batch::BatchIter;
use ferry::storage::records::{self, BatchSpec, NewRecord};
use proto_kafka::messages::*;
use proto_kafka::protocol::StrBytes;

use crate::support::Broker;

/// Sequences a plain `cargo test` runs, and operations per sequence.
const DEFAULT_SEQUENCES: u64 = 300;
const OPERATIONS_PER_SEQUENCE: usize = 24;
/// Names are drawn from small pools so that topics are deleted and created again under
/// the same name and groups share `__consumer_offsets` partitions.
const TOPIC_NAMES: &[&str] = &["t0", "t1", "t2", "t3"];
const GROUP_NAMES: &[&str] = &["g0", "g1", "g2"];
const OFFSETS_PARTITIONS: &str = "offsets.topic.num.partitions=4";

/// splitmix64: a small, well-mixed generator whose whole state is the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// A value in `[low, high]`.
    fn between(&mut self, low: i64, high: i64) -> i64 {
        low + self.below((high - low + 1) as u64) as i64
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct PartitionModel {
    log_start: i64,
    /// Every value ever appended, at its offset (those below `log_start` are gone).
    values: Vec<String>,
}

impl PartitionModel {
    fn log_end(&self) -> i64 {
        self.values.len() as i64
    }
}

#[derive(Debug, Default)]
struct Model {
    topics: BTreeMap<String, Vec<PartitionModel>>,
    /// group -> (topic, partition) -> committed offset.
    groups: BTreeMap<String, BTreeMap<(String, i32), i64>>,
}

#[derive(Debug, Clone)]
enum Op {
    Create {
        topic: String,
        partitions: i32,
        segment_bytes: u32,
    },
    Produce {
        topic: String,
        partition: i32,
        count: usize,
    },
    Commit {
        group: String,
        topic: String,
        partition: i32,
        offset: i64,
    },
    DeleteRecords {
        topic: String,
        partition: i32,
        offset: i64,
    },
    DeleteTopic {
        topic: String,
    },
    CleanRestart,
    Kill9Restart,
}

/// The next operation, valid for the model's current state.
fn next_op(rng: &mut Rng, model: &Model) -> Op {
    let existing: Vec<&String> = model.topics.keys().collect();
    let some_partition = |rng: &mut Rng| {
        let topic = (*rng.pick(&existing)).clone();
        let partitions = model.topics[&topic].len() as u64;
        let partition = rng.below(partitions) as i32;
        (topic, partition)
    };
    let roll = rng.below(100);
    match roll {
        _ if existing.is_empty() || roll < 12 => {
            let topic = rng.pick(TOPIC_NAMES).to_string();
            if model.topics.contains_key(&topic) {
                return Op::DeleteTopic { topic };
            }
            Op::Create {
                topic,
                partitions: rng.between(1, 8) as i32,
                // Tiny segments roll every few batches; large ones never do.
                segment_bytes: *rng.pick(&[600, 1 << 20]),
            }
        }
        12..=49 => {
            let (topic, partition) = some_partition(rng);
            Op::Produce {
                topic,
                partition,
                count: rng.between(1, 5) as usize,
            }
        }
        50..=64 => {
            let (topic, partition) = some_partition(rng);
            let end = model.topics[&topic][partition as usize].log_end();
            Op::Commit {
                group: rng.pick(GROUP_NAMES).to_string(),
                topic,
                partition,
                offset: rng.between(0, end),
            }
        }
        65..=74 => {
            let (topic, partition) = some_partition(rng);
            let p = &model.topics[&topic][partition as usize];
            Op::DeleteRecords {
                topic,
                partition,
                offset: rng.between(p.log_start, p.log_end()),
            }
        }
        75..=79 => Op::DeleteTopic {
            topic: (*rng.pick(&existing)).clone(),
        },
        80..=89 => Op::CleanRestart,
        _ => Op::Kill9Restart,
    }
}

fn name(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

/// One broker run and its connection.
struct Run {
    broker: Broker,
    wire: Connection,
}

impl Run {
    async fn start(dir: &std::path::Path, durable: bool) -> Run {
        let mut args = vec![
            "--override",
            OFFSETS_PARTITIONS,
            "--override",
            "transaction.state.log.num.partitions=1",
        ];
        if durable {
            args.push("--durable");
        }
        let broker = Broker::start(dir, &args);
        let wire = Connection::connect(&broker.bootstrap, "restart-model")
            .await
            .expect("connect");
        Run { broker, wire }
    }

    async fn create(&mut self, topic: &str, partitions: i32, segment_bytes: u32) {
        use create_topics_request::{CreatableTopic, CreatableTopicConfig};
        let request = CreateTopicsRequest::default()
            .with_timeout_ms(10_000)
            .with_topics(vec![CreatableTopic::default()
                .with_name(TopicName(name(topic)))
                .with_num_partitions(partitions)
                .with_replication_factor(1)
                .with_configs(vec![CreatableTopicConfig::default()
                    .with_name(name("segment.bytes"))
                    .with_value(Some(name(&segment_bytes.to_string())))])]);
        let (_, response): (i16, CreateTopicsResponse) = self
            .wire
            .call(ApiKey::CreateTopics, 7, &request)
            .await
            .unwrap();
        assert_eq!(response.topics[0].error_code, 0, "create {topic}");
    }

    /// Produces `values` as one batch; returns its base offset.
    async fn produce(&mut self, topic: &str, partition: i32, values: &[String]) -> i64 {
        use produce_request::{PartitionProduceData, TopicProduceData};
        let now = 1_700_000_000_000;
        let new: Vec<NewRecord<'_>> = values
            .iter()
            .map(|v| NewRecord {
                key: None,
                value: Some(v.as_bytes()),
                timestamp: now,
            })
            .collect();
        let batch = records::build_batch(BatchSpec::PLAIN, &new);
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(10_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(name(topic)))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(Bytes::from(batch)))])]);
        let (_, response): (i16, ProduceResponse) =
            self.wire.call(ApiKey::Produce, 9, &request).await.unwrap();
        let answer = &response.responses[0].partition_responses[0];
        assert_eq!(answer.error_code, 0, "produce to {topic}-{partition}");
        answer.base_offset
    }

    async fn commit(&mut self, group: &str, topic: &str, partition: i32, offset: i64) {
        use offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(name(group)))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(name(topic)))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(partition)
                    .with_committed_offset(offset)
                    .with_committed_metadata(Some(name("")))])]);
        let (_, response): (i16, OffsetCommitResponse) = self
            .wire
            .call(ApiKey::OffsetCommit, 8, &request)
            .await
            .unwrap();
        let code = response.topics[0].partitions[0].error_code;
        assert_eq!(code, 0, "commit {group} {topic}-{partition}");
    }

    async fn delete_records(&mut self, topic: &str, partition: i32, offset: i64) -> i64 {
        use delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
        let request = DeleteRecordsRequest::default()
            .with_timeout_ms(10_000)
            .with_topics(vec![DeleteRecordsTopic::default()
                .with_name(TopicName(name(topic)))
                .with_partitions(vec![DeleteRecordsPartition::default()
                    .with_partition_index(partition)
                    .with_offset(offset)])]);
        let (_, response): (i16, DeleteRecordsResponse) = self
            .wire
            .call(ApiKey::DeleteRecords, 2, &request)
            .await
            .unwrap();
        let answer = &response.topics[0].partitions[0];
        assert_eq!(answer.error_code, 0, "delete records {topic}-{partition}");
        answer.low_watermark
    }

    async fn delete_topic(&mut self, topic: &str) {
        let request = DeleteTopicsRequest::default()
            .with_timeout_ms(10_000)
            .with_topic_names(vec![TopicName(name(topic))]);
        let (_, response): (i16, DeleteTopicsResponse) = self
            .wire
            .call(ApiKey::DeleteTopics, 5, &request)
            .await
            .unwrap();
        assert_eq!(response.responses[0].error_code, 0, "delete {topic}");
    }

    /// Non-internal topics and their partition counts.
    async fn topics(&mut self) -> BTreeMap<String, usize> {
        let request = MetadataRequest::default().with_topics(None);
        let (_, response): (i16, MetadataResponse) = self
            .wire
            .call(ApiKey::Metadata, 12, &request)
            .await
            .unwrap();
        response
            .topics
            .iter()
            .filter(|t| !t.is_internal)
            .map(|t| {
                let topic = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
                (topic, t.partitions.len())
            })
            .collect()
    }

    async fn list_offset(&mut self, topic: &str, partition: i32, timestamp: i64) -> i64 {
        use list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
        let request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(TopicName(name(topic)))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(partition)
                    .with_timestamp(timestamp)])]);
        let (_, response): (i16, ListOffsetsResponse) = self
            .wire
            .call(ApiKey::ListOffsets, 7, &request)
            .await
            .unwrap();
        let answer = &response.topics[0].partitions[0];
        assert_eq!(answer.error_code, 0, "list offsets {topic}-{partition}");
        answer.offset
    }

    /// Every value from `from` up to `end`, by offset.
    async fn read(&mut self, topic: &str, partition: i32, from: i64, end: i64) -> Vec<String> {
        use fetch_request::{FetchPartition, FetchTopic};
        let mut values = Vec::new();
        let mut offset = from;
        while offset < end {
            let request = FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms(0)
                .with_max_bytes(1 << 20)
                .with_session_epoch(-1)
                .with_topics(vec![FetchTopic::default()
                    .with_topic(TopicName(name(topic)))
                    .with_partitions(vec![FetchPartition::default()
                        .with_partition(partition)
                        .with_fetch_offset(offset)
                        .with_log_start_offset(-1)
                        .with_partition_max_bytes(1 << 20)])]);
            let (_, response): (i16, FetchResponse) =
                self.wire.call(ApiKey::Fetch, 12, &request).await.unwrap();
            let data = &response.responses[0].partitions[0];
            assert_eq!(data.error_code, 0, "fetch {topic}-{partition} at {offset}");
            let bytes = data.records.clone().unwrap_or_default();
            assert!(
                !bytes.is_empty(),
                "no records at {topic}-{partition} {offset}"
            );
            for item in BatchIter::new(&bytes) {
                let (position, header) = item.expect("valid batch");
                let batch = &bytes[position..position + header.total_bytes()];
                for record in records::parse_records(batch, &header, 1 << 20).unwrap() {
                    if record.offset >= offset && record.offset < end {
                        let value = String::from_utf8(record.value.unwrap_or_default());
                        values.push(value.unwrap());
                    }
                }
                offset = header.next_offset();
            }
        }
        values
    }

    /// Committed offsets of `group` (all partitions it has any for).
    async fn committed(&mut self, group: &str) -> BTreeMap<(String, i32), i64> {
        let request = OffsetFetchRequest::default()
            .with_group_id(GroupId(name(group)))
            .with_topics(None);
        let (_, response): (i16, OffsetFetchResponse) = self
            .wire
            .call(ApiKey::OffsetFetch, 7, &request)
            .await
            .unwrap();
        assert_eq!(response.error_code, 0, "offset fetch {group}");
        let mut out = BTreeMap::new();
        for topic in &response.topics {
            for p in &topic.partitions {
                if p.committed_offset >= 0 {
                    out.insert(
                        (topic.name.0.to_string(), p.partition_index),
                        p.committed_offset,
                    );
                }
            }
        }
        out
    }

    /// Checks everything the broker serves against the model.
    async fn check(&mut self, model: &Model, context: &str) {
        let served = self.topics().await;
        let expected: BTreeMap<String, usize> = model
            .topics
            .iter()
            .map(|(t, ps)| (t.clone(), ps.len()))
            .collect();
        assert_eq!(served, expected, "topics {context}");
        for (topic, partitions) in &model.topics {
            for (index, p) in partitions.iter().enumerate() {
                let index = index as i32;
                let at = format!("{topic}-{index} {context}");
                let earliest = self.list_offset(topic, index, -2).await;
                let latest = self.list_offset(topic, index, -1).await;
                assert_eq!(
                    (earliest, latest),
                    (p.log_start, p.log_end()),
                    "offsets of {at}"
                );
                let values = self.read(topic, index, p.log_start, p.log_end()).await;
                assert!(
                    values[..] == p.values[p.log_start as usize..],
                    "records of {at}: {values:?} != {:?}",
                    &p.values[p.log_start as usize..]
                );
            }
        }
        for group in GROUP_NAMES {
            let expected = model.groups.get(*group).cloned().unwrap_or_default();
            assert_eq!(
                self.committed(group).await,
                expected,
                "group {group} {context}"
            );
        }
    }
}

/// Runs one sequence; panics with the seed and the operations so far on a mismatch.
/// Returns how many restarts it checked.
async fn run_sequence(seed: u64) -> usize {
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let durable = seed % 4 == 3;
    let mut run = Run::start(dir.path(), durable).await;
    let mut model = Model::default();
    let mut history: Vec<Op> = Vec::new();
    let mut next_value = 0u64;
    for _ in 0..OPERATIONS_PER_SEQUENCE {
        let op = next_op(&mut rng, &model);
        history.push(op.clone());
        let context = format!("(seed {seed}, durable {durable}, after {history:?})");
        match op {
            Op::Create {
                topic,
                partitions,
                segment_bytes,
            } => {
                run.create(&topic, partitions, segment_bytes).await;
                let fresh = vec![PartitionModel::default(); partitions as usize];
                model.topics.insert(topic, fresh);
            }
            Op::Produce {
                topic,
                partition,
                count,
            } => {
                let values: Vec<String> = (0..count)
                    .map(|i| format!("{seed}-{}", next_value + i as u64))
                    .collect();
                next_value += count as u64;
                let base = run.produce(&topic, partition, &values).await;
                let p = &mut model.topics.get_mut(&topic).unwrap()[partition as usize];
                assert_eq!(base, p.log_end(), "base offset {context}");
                p.values.extend(values);
            }
            Op::Commit {
                group,
                topic,
                partition,
                offset,
            } => {
                run.commit(&group, &topic, partition, offset).await;
                let offsets = model.groups.entry(group).or_default();
                offsets.insert((topic, partition), offset);
            }
            Op::DeleteRecords {
                topic,
                partition,
                offset,
            } => {
                let low = run.delete_records(&topic, partition, offset).await;
                let p = &mut model.topics.get_mut(&topic).unwrap()[partition as usize];
                p.log_start = p.log_start.max(offset);
                assert_eq!(low, p.log_start, "low watermark {context}");
            }
            Op::DeleteTopic { topic } => {
                run.delete_topic(&topic).await;
                model.topics.remove(&topic);
                for offsets in model.groups.values_mut() {
                    offsets.retain(|(t, _), _| *t != topic);
                }
            }
            Op::CleanRestart => {
                let Run { broker, wire } = run;
                drop(wire);
                let status = broker.stop();
                assert!(status.success(), "clean stop exited {status} {context}");
                run = Run::start(dir.path(), durable).await;
                run.check(&model, &context).await;
            }
            Op::Kill9Restart => {
                run.broker.kill9();
                run = Run::start(dir.path(), durable).await;
                run.check(&model, &context).await;
            }
        }
    }
    run.check(&model, &format!("(seed {seed}, end, after {history:?})"))
        .await;
    drop(run.wire);
    assert!(run.broker.stop().success(), "final stop (seed {seed})");
    history
        .iter()
        .filter(|op| matches!(op, Op::CleanRestart | Op::Kill9Restart))
        .count()
}

fn env_u64(key: &str) -> Option<u64> {
    std::env::var(key).ok().and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_model_random_sequences_match_the_model() {
    let first_seed = env_u64("FERRY_MODEL_SEED").unwrap_or(1);
    let sequences = env_u64("FERRY_MODEL_SEQUENCES").unwrap_or(DEFAULT_SEQUENCES);
    let mut restarts = 0;
    for seed in first_seed..first_seed + sequences {
        restarts += run_sequence(seed).await;
    }
    eprintln!(
        "restart model: {sequences} sequences from seed {first_seed} ({restarts} restarts) \
         matched the model"
    );
}
