//! `ferry produce` and `ferry consume` over the wire, against any Kafka-protocol cluster:
//! lines in as records (keyed with a separator, partitioned as Kafka's default partitioner
//! does, compressed on request), records out (from the start, the end, an offset, or a
//! group's committed offsets, which it then commits as it goes; read_committed drops
//! aborted transactions as Kafka's consumers do).
//!
//! `consume --group` keeps its position in the group's committed offsets but does not join
//! the group (no rebalancing): it reads every partition (or the one asked for) itself, as a
//! consumer with a manual assignment does; committing is refused while the group has
//! active members.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use proto_kafka::messages::{
    ApiKey, BrokerId, GroupId, ListOffsetsRequest, ListOffsetsResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, ProduceRequest, ProduceResponse,
    TopicName,
};
use proto_kafka::protocol::StrBytes;

use crate::client::{check, ClientError, Cluster};
use crate::storage::batch::{BatchIter, Compression};
use crate::storage::producer_state::CONTROL_ABORT;
use crate::storage::recompress;
use crate::storage::records::{self, BatchSpec, NewRecord, Record};

/// Records per produce request (and per batch).
const RECORDS_PER_BATCH: usize = 500;
/// Bytes one Fetch asks per partition.
const FETCH_PARTITION_BYTES: i32 = 1 << 20;
/// Largest decompressed batch the consumer materialises.
const MAX_DECOMPRESSED_BYTES: usize = 64 << 20;

fn name(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

/// Kafka's murmur2 (the default partitioner's hash of a record key).
pub fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    let mut h = SEED ^ (data.len() as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        for (i, byte) in tail.iter().enumerate().rev() {
            h ^= u32::from(*byte) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^ (h >> 15)
}

/// The partition Kafka's default partitioner gives a key.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    let hash = murmur2(key) & 0x7fff_ffff;
    // Below `partitions`, an i32.
    (hash % partitions.max(1).unsigned_abs()) as i32
}

/// The partitions of `topic` and their leaders (`create`: let the broker auto-create it).
async fn leaders(
    cluster: &mut Cluster,
    topic: &str,
    create: bool,
) -> Result<BTreeMap<i32, i32>, ClientError> {
    let metadata = cluster
        .metadata_allowing_creation(Some(vec![topic.to_string()]), create)
        .await?;
    let found = metadata
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
        .ok_or_else(|| ClientError::NotFound(format!("topic '{topic}' does not exist")))?;
    if found.error_code == 3 {
        return Err(ClientError::NotFound(format!(
            "topic '{topic}' does not exist"
        )));
    }
    check(found.error_code, || format!("Metadata for {topic}"))?;
    Ok(found
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.leader_id.0))
        .collect())
}

/// What `produce` sends.
#[derive(Debug, Clone)]
pub struct ProduceOptions {
    pub topic: String,
    /// Every record to this partition; otherwise keyed records go where Kafka's default
    /// partitioner puts them and unkeyed ones to one partition per request, in turn.
    pub partition: Option<i32>,
    pub acks: i16,
    pub compression: Compression,
    /// Splits each line into key and value at its first occurrence.
    pub key_separator: Option<String>,
}

/// A record waiting to be sent: key (if any) and value.
type KeyedValue = (Option<Vec<u8>>, Vec<u8>);

/// A producer of lines; call [`LineProducer::send`] per line and [`LineProducer::flush`]
/// at the end.
pub struct LineProducer<'c> {
    cluster: &'c mut Cluster,
    options: ProduceOptions,
    leaders: BTreeMap<i32, i32>,
    pending: BTreeMap<i32, Vec<KeyedValue>>,
    next_partition: usize,
    pub records_sent: u64,
}

impl<'c> LineProducer<'c> {
    pub async fn new(
        cluster: &'c mut Cluster,
        options: ProduceOptions,
    ) -> Result<LineProducer<'c>, ClientError> {
        let leaders = leaders(cluster, &options.topic, true).await?;
        if let Some(p) = options.partition.filter(|p| !leaders.contains_key(p)) {
            return Err(ClientError::NotFound(format!(
                "topic '{}' has no partition {p}",
                options.topic
            )));
        }
        Ok(LineProducer {
            cluster,
            options,
            leaders,
            pending: BTreeMap::new(),
            next_partition: 0,
            records_sent: 0,
        })
    }

    /// Queues one line; sends a partition's records once `RECORDS_PER_BATCH` wait.
    pub async fn send(&mut self, line: &str) -> Result<(), ClientError> {
        let (key, value) = match &self.options.key_separator {
            Some(sep) => match line.split_once(sep.as_str()) {
                Some((k, v)) => (Some(k.as_bytes().to_vec()), v.as_bytes().to_vec()),
                None => (None, line.as_bytes().to_vec()),
            },
            None => (None, line.as_bytes().to_vec()),
        };
        let count = i32::try_from(self.leaders.len()).unwrap_or(i32::MAX);
        let partition = match (self.options.partition, &key) {
            (Some(p), _) => p,
            (None, Some(key)) => partition_for_key(key, count),
            (None, None) => {
                let index = self.next_partition % self.leaders.len().max(1);
                self.leaders.keys().nth(index).copied().unwrap_or(0)
            }
        };
        let queue = self.pending.entry(partition).or_default();
        queue.push((key, value));
        if queue.len() >= RECORDS_PER_BATCH {
            self.send_partition(partition).await?;
        }
        Ok(())
    }

    /// Sends everything queued.
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        let partitions: Vec<i32> = self.pending.keys().copied().collect();
        for partition in partitions {
            self.send_partition(partition).await?;
        }
        Ok(())
    }

    async fn send_partition(&mut self, partition: i32) -> Result<(), ClientError> {
        use proto_kafka::messages::produce_request::{PartitionProduceData, TopicProduceData};
        let Some(queued) = self.pending.remove(&partition).filter(|q| !q.is_empty()) else {
            return Ok(());
        };
        self.next_partition += 1;
        let now = crate::broker::now_ms();
        let new: Vec<NewRecord<'_>> = queued
            .iter()
            .map(|(key, value)| NewRecord {
                key: key.as_deref(),
                value: Some(value),
                timestamp: now,
            })
            .collect();
        let mut batch = records::build_batch(BatchSpec::PLAIN, &new);
        if self.options.compression != Compression::None {
            let header = crate::storage::batch::validate(&batch)
                .map_err(|e| ClientError::Protocol(e.to_string()))?;
            let mut compressed = Vec::new();
            recompress::recompress_into(
                &batch,
                &header,
                (self.options.compression, 3),
                usize::MAX,
                &mut compressed,
            )
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
            batch = compressed;
        }
        let request = ProduceRequest::default()
            .with_acks(self.options.acks)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(name(&self.options.topic)))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(Bytes::from(batch)))])]);
        let leader = self.leaders.get(&partition).copied().unwrap_or(-1);
        let connection = self.cluster.broker(leader).await?;
        if self.options.acks == 0 {
            connection.send_only(ApiKey::Produce, 9, &request).await?;
        } else {
            let (_, response): (i16, ProduceResponse) =
                connection.call(ApiKey::Produce, 9, &request).await?;
            for topic in &response.responses {
                for p in &topic.partition_responses {
                    check(p.error_code, || {
                        // Produce v8+ says why (a mirror topic names its link).
                        let why = p
                            .error_message
                            .as_ref()
                            .map(|m| format!(" ({})", crate::logging::Escaped(m.as_str())))
                            .unwrap_or_default();
                        format!("Produce to {}-{}{why}", self.options.topic, p.index)
                    })?;
                }
            }
        }
        self.records_sent += queued.len() as u64;
        Ok(())
    }
}

/// Where `consume` starts in each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Earliest,
    Latest,
    Offset(i64),
}

/// What `consume` reads.
#[derive(Debug, Clone)]
pub struct ConsumeOptions {
    pub topic: String,
    pub partition: Option<i32>,
    /// Where to start where the group has no committed offset (or without a group).
    pub start: Start,
    pub group: Option<String>,
    pub max_messages: Option<u64>,
    /// 1 = read_committed.
    pub isolation_level: i8,
    /// Stop once every partition has been read up to the end it had when reading began.
    pub exit_at_end: bool,
}

/// Reads records and hands each to `out` with its partition, until `max_messages` or the
/// end (with `exit_at_end`); returns how many were read.
pub async fn consume(
    cluster: &mut Cluster,
    options: &ConsumeOptions,
    mut out: impl FnMut(i32, &Record),
) -> Result<u64, ClientError> {
    let leaders = leaders(cluster, &options.topic, false).await?;
    let partitions: BTreeSet<i32> = match options.partition {
        Some(p) if leaders.contains_key(&p) => BTreeSet::from([p]),
        Some(p) => {
            return Err(ClientError::NotFound(format!(
                "topic '{}' has no partition {p}",
                options.topic
            )))
        }
        None => leaders.keys().copied().collect(),
    };
    let mut positions = start_positions(cluster, options, &leaders, &partitions).await?;
    let ends = list_offsets(cluster, &options.topic, &leaders, &partitions, -1).await?;
    let mut read = 0u64;
    loop {
        let done_at_end = options.exit_at_end
            && positions
                .iter()
                .all(|(p, at)| *at >= ends.get(p).copied().unwrap_or(0));
        if done_at_end || options.max_messages.is_some_and(|max| read >= max) {
            break;
        }
        let mut by_leader: BTreeMap<i32, Vec<(i32, i64)>> = BTreeMap::new();
        for (partition, at) in &positions {
            let leader = leaders.get(partition).copied().unwrap_or(-1);
            by_leader.entry(leader).or_default().push((*partition, *at));
        }
        for (leader, wanted) in by_leader {
            let fetched = fetch(cluster, options, leader, &wanted).await?;
            for (partition, next, records) in fetched {
                for record in &records {
                    if options.max_messages.is_some_and(|max| read >= max) {
                        break;
                    }
                    out(partition, record);
                    read += 1;
                    positions.insert(partition, record.offset + 1);
                }
                if options.max_messages.is_none_or(|max| read < max) {
                    let at = positions.entry(partition).or_insert(next);
                    *at = (*at).max(next);
                }
            }
        }
        if let Some(group) = &options.group {
            commit(cluster, group, &options.topic, &positions).await?;
        }
    }
    Ok(read)
}

async fn start_positions(
    cluster: &mut Cluster,
    options: &ConsumeOptions,
    leaders: &BTreeMap<i32, i32>,
    partitions: &BTreeSet<i32>,
) -> Result<BTreeMap<i32, i64>, ClientError> {
    let committed = match &options.group {
        Some(group) => committed(cluster, group, &options.topic).await?,
        None => BTreeMap::new(),
    };
    let fallback = match options.start {
        Start::Offset(n) => partitions.iter().map(|p| (*p, n)).collect(),
        Start::Earliest => list_offsets(cluster, &options.topic, leaders, partitions, -2).await?,
        Start::Latest => list_offsets(cluster, &options.topic, leaders, partitions, -1).await?,
    };
    Ok(partitions
        .iter()
        .map(|p| {
            let at = committed.get(p).or(fallback.get(p)).copied().unwrap_or(0);
            (*p, at)
        })
        .collect())
}

async fn list_offsets(
    cluster: &mut Cluster,
    topic: &str,
    leaders: &BTreeMap<i32, i32>,
    partitions: &BTreeSet<i32>,
    timestamp: i64,
) -> Result<BTreeMap<i32, i64>, ClientError> {
    use proto_kafka::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    let mut out = BTreeMap::new();
    for partition in partitions {
        let request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(TopicName(name(topic)))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(*partition)
                    .with_timestamp(timestamp)])]);
        let leader = leaders.get(partition).copied().unwrap_or(-1);
        let (_, response): (i16, ListOffsetsResponse) = cluster
            .broker(leader)
            .await?
            .call(ApiKey::ListOffsets, 7, &request)
            .await?;
        for p in response.topics.iter().flat_map(|t| &t.partitions) {
            check(p.error_code, || {
                format!("ListOffsets for {topic}-{partition}")
            })?;
            out.insert(p.partition_index, p.offset);
        }
    }
    Ok(out)
}

/// One Fetch from a leader: per partition, the next offset to ask for and the records.
async fn fetch(
    cluster: &mut Cluster,
    options: &ConsumeOptions,
    leader: i32,
    wanted: &[(i32, i64)],
) -> Result<Vec<(i32, i64, Vec<Record>)>, ClientError> {
    let wanted_full: Vec<(String, i32, i64)> = wanted
        .iter()
        .map(|(partition, at)| (options.topic.clone(), *partition, *at))
        .collect();
    let limits = crate::mirror::source::FetchLimits {
        max_wait_ms: crate::mirror::source::FETCH_WAIT_MS,
        min_bytes: 1,
        max_bytes: 64 << 20,
        partition_max_bytes: FETCH_PARTITION_BYTES,
        isolation_level: options.isolation_level,
    };
    let fetched = crate::mirror::source::fetch(cluster, leader, &wanted_full, limits).await?;
    let mut out = Vec::new();
    for data in fetched {
        let partition = data.partition;
        let at = wanted
            .iter()
            .find(|(p, _)| *p == partition)
            .map_or(0, |(_, at)| *at);
        check(data.error_code, || {
            format!("Fetch {}-{partition} at offset {at}", options.topic)
        })?;
        let aborted = data.aborted;
        let (next, records) = visible_records(&data.records, at, &aborted)?;
        out.push((partition, next, records));
    }
    Ok(out)
}

/// The records of a fetched chunk at or after `from`, without control records and, for
/// read_committed, without the records of aborted transactions (`aborted`: producer id and
/// first offset, as the Fetch response lists them); and the offset after the last batch.
fn visible_records(
    bytes: &[u8],
    from: i64,
    aborted: &[(i64, i64)],
) -> Result<(i64, Vec<Record>), ClientError> {
    let mut next = from;
    let mut records = Vec::new();
    let mut pending: Vec<(i64, i64)> = aborted.to_vec();
    pending.sort_by_key(|(_, first)| *first);
    let mut aborting: BTreeSet<i64> = BTreeSet::new();
    for item in BatchIter::new(bytes) {
        // A partial batch at the end of a response is normal: the next fetch gets it.
        let Ok((position, header)) = item else { break };
        let batch = &bytes[position..position + header.total_bytes()];
        while pending
            .first()
            .is_some_and(|(_, first)| *first <= header.last_offset())
        {
            aborting.insert(pending.remove(0).0);
        }
        next = next.max(header.next_offset());
        if header.is_control() {
            let marker = crate::storage::log::marker_of(batch, &header);
            if marker.is_some_and(|(kind, _)| kind == CONTROL_ABORT) {
                aborting.remove(&header.producer_id);
            }
            continue;
        }
        if header.is_transactional() && aborting.contains(&header.producer_id) {
            continue;
        }
        let parsed = records::parse_records(batch, &header, MAX_DECOMPRESSED_BYTES)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        records.extend(parsed.into_iter().filter(|r| r.offset >= from));
    }
    Ok((next, records))
}

async fn committed(
    cluster: &mut Cluster,
    group: &str,
    topic: &str,
) -> Result<BTreeMap<i32, i64>, ClientError> {
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(name(group)))
        .with_topics(None);
    let (_, response): (i16, OffsetFetchResponse) = cluster
        .group_coordinator(group)
        .await?
        .call(ApiKey::OffsetFetch, 7, &request)
        .await?;
    check(response.error_code, || format!("OffsetFetch for {group}"))?;
    Ok(response
        .topics
        .iter()
        .filter(|t| t.name.0.as_str() == topic)
        .flat_map(|t| &t.partitions)
        .filter(|p| p.error_code == 0 && p.committed_offset >= 0)
        .map(|p| (p.partition_index, p.committed_offset))
        .collect())
}

async fn commit(
    cluster: &mut Cluster,
    group: &str,
    topic: &str,
    positions: &BTreeMap<i32, i64>,
) -> Result<(), ClientError> {
    use proto_kafka::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(name(group)))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(name(topic)))
            .with_partitions(
                positions
                    .iter()
                    .map(|(p, at)| {
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(*p)
                            .with_committed_offset(*at)
                            .with_committed_metadata(Some(name("")))
                    })
                    .collect(),
            )]);
    let (_, response): (i16, OffsetCommitResponse) = cluster
        .group_coordinator(group)
        .await?
        .call(ApiKey::OffsetCommit, 8, &request)
        .await?;
    for p in response.topics.iter().flat_map(|t| &t.partitions) {
        check(p.error_code, || {
            format!("OffsetCommit for {group} {topic}-{}", p.partition_index)
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_land_where_kafkas_default_partitioner_puts_them() {
        // Kafka's UtilsTest.testMurmur2 cases.
        for (key, expected) in [
            (&b"21"[..], -973_932_308i32),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ] {
            assert_eq!(
                murmur2(key) as i32,
                expected,
                "{}",
                String::from_utf8_lossy(key)
            );
        }
    }
}
