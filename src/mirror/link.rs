//! One link's loop: connect to the source, keep each mirror topic's local topic in shape
//! (partitions, mirrored configs), check where each partition resumes, fetch from each
//! source leader and append the batches verbatim at their source offsets, refresh
//! offsets and sync groups every `STATUS_INTERVAL`. A lost connection or a source error
//! ends the session; the loop reconnects with a growing backoff. A problem that needs the
//! operator (divergence, source retention ahead of the mirror, a re-created source topic,
//! batches Ferry cannot store) fails that topic alone, with the reason and the recovery
//! command, and never skips or rewrites data.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::{info, warn};

use super::source::{self, Fetched};
use super::store::{LinkRecord, TopicState};
use super::Mirror;
use crate::broker::now_ms;
use crate::broker::partition::Partition;
use crate::broker::topics::TopicSpec;
use crate::client::{ClientError, Cluster};
use crate::storage::batch::BatchHeader;

/// How often offsets, metadata, configs and groups are refreshed.
pub const STATUS_INTERVAL: Duration = Duration::from_secs(2);
/// Bytes one Fetch may return (`ferry mirror` per-link limit on bytes in flight: one
/// fetch per source broker at a time, appended before the next is sent).
pub const FETCH_MAX_BYTES: i32 = 16 << 20;
/// Bytes one Fetch may return per partition.
pub const FETCH_PARTITION_MAX_BYTES: i32 = 1 << 20;
/// The mirror's fetches while the source is quiet: read_uncommitted, so markers and
/// aborted data come across; the source holds them until a byte arrives.
const MIRROR_FETCH: source::FetchLimits = source::FetchLimits {
    max_wait_ms: source::FETCH_WAIT_MS,
    min_bytes: 1,
    max_bytes: FETCH_MAX_BYTES,
    partition_max_bytes: FETCH_PARTITION_MAX_BYTES,
    isolation_level: 0,
};
/// The mirror's fetches while data flows: the source gathers up to `BUSY_FETCH_MIN_BYTES`
/// for at most `BUSY_FETCH_WAIT_MS`, so a busy link makes a few hundred fetches a second
/// instead of one per produced batch (the CPU cost of W8's steady phase), for at most that
/// much more lag.
const BUSY_FETCH: source::FetchLimits = source::FetchLimits {
    max_wait_ms: BUSY_FETCH_WAIT_MS,
    min_bytes: BUSY_FETCH_MIN_BYTES,
    ..MIRROR_FETCH
};
const BUSY_FETCH_WAIT_MS: i32 = 5;
const BUSY_FETCH_MIN_BYTES: i32 = 64 * 1024;
/// How often the source's ACLs are read for `status`.
const ACL_READ_INTERVAL_MS: i64 = 300_000;
/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Kafka error codes the loop tells apart.
mod codes {
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const LEADER_NOT_AVAILABLE: i16 = 5;
    pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    pub const FENCED_LEADER_EPOCH: i16 = 74;
    pub const UNKNOWN_LEADER_EPOCH: i16 = 75;
    pub const UNKNOWN_TOPIC_ID: i16 = 100;
}

/// Why a session ended.
#[derive(Debug)]
enum SessionEnd {
    Stopped,
    Source(ClientError),
}

impl From<ClientError> for SessionEnd {
    fn from(err: ClientError) -> Self {
        SessionEnd::Source(err)
    }
}

/// A partition being copied in this session.
struct PartSync {
    partition: Arc<Partition>,
    leader: i32,
    /// The next source offset to fetch (the local log end once resumed).
    next_offset: i64,
    /// Resume checked (tail compared with the source, or the start placed).
    resumed: bool,
    /// The source's log start to apply after the first append (a new mirror starting
    /// inside the source's first batch).
    pending_log_start: Option<i64>,
}

/// Runs a link until `stop` fires.
pub async fn run(mirror: Arc<Mirror>, link: String, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let session = Session::new(Arc::clone(&mirror), link.clone());
        let ended = tokio::select! {
            end = session.run() => end,
            _ = stop.changed() => SessionEnd::Stopped,
        };
        match ended {
            SessionEnd::Stopped => return,
            SessionEnd::Source(err) => {
                warn!(link = %link, "mirror link lost its source: {err}; retrying in {backoff:?}");
                mirror.with_status(&link, |s| s.error = Some(err.to_string()));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

struct Session {
    mirror: Arc<Mirror>,
    link: String,
    parts: BTreeMap<(String, i32), PartSync>,
    /// Whether the last fetch brought data (then the next one gathers: `BUSY_FETCH`).
    busy: bool,
    /// The link's bandwidth limit (`--max-bytes-per-second`); appending waits on it, and
    /// the next fetch waits for the append, so the source is read no faster.
    pacer: Pacer,
}

/// Paces a byte stream to a rate: each chunk moves the earliest time the next may go by
/// the chunk's share of a second, so the average never exceeds the rate, and a fetch is
/// capped to one second's worth of bytes (`Pacer::fetch_limits`), so neither does a burst.
struct Pacer {
    bytes_per_second: Option<u64>,
    ready_at: Instant,
}

impl Pacer {
    fn new(bytes_per_second: Option<u64>) -> Pacer {
        Pacer {
            bytes_per_second: bytes_per_second.filter(|b| *b > 0),
            ready_at: Instant::now(),
        }
    }

    /// How long to wait after sending `bytes`.
    fn after(&mut self, bytes: usize) -> Duration {
        let Some(rate) = self.bytes_per_second else {
            return Duration::ZERO;
        };
        let now = Instant::now();
        let share = Duration::from_secs_f64(bytes as f64 / rate as f64);
        self.ready_at = self.ready_at.max(now) + share;
        self.ready_at.saturating_duration_since(now)
    }

    /// `limits` with fetch sizes of at most one second's worth (at least 16 KiB, so one
    /// batch of that size still comes).
    fn fetch_limits(&self, limits: source::FetchLimits) -> source::FetchLimits {
        let Some(rate) = self.bytes_per_second else {
            return limits;
        };
        let second = i32::try_from(rate).unwrap_or(i32::MAX).max(16 * 1024);
        source::FetchLimits {
            max_bytes: limits.max_bytes.min(second),
            partition_max_bytes: limits.partition_max_bytes.min(second),
            ..limits
        }
    }
}

impl Session {
    fn new(mirror: Arc<Mirror>, link: String) -> Session {
        Session {
            mirror,
            link,
            parts: BTreeMap::new(),
            busy: false,
            pacer: Pacer::new(None),
        }
    }

    async fn run(mut self) -> SessionEnd {
        let Some(record) = self.mirror.link(&self.link) else {
            return SessionEnd::Stopped;
        };
        self.pacer = Pacer::new(record.max_bytes_per_second);
        let mut cluster = match source::connect(&record.source, &record.source_config).await {
            Ok(cluster) => cluster,
            Err(err) => return SessionEnd::Source(err),
        };
        let wake = self.mirror.wake_handle(&self.link);
        let mut refreshed_at: Option<Instant> = None;
        loop {
            let due = refreshed_at.is_none_or(|at| at.elapsed() >= STATUS_INTERVAL)
                || self.mirror.take_changed(&self.link);
            if due {
                if let Err(err) = self.refresh(&mut cluster).await {
                    return SessionEnd::Source(err);
                }
                refreshed_at = Some(Instant::now());
            }
            let fetched = match self.fetch_round(&mut cluster).await {
                Ok(any) => any,
                Err(err) => return SessionEnd::Source(err),
            };
            // A fetch that found nothing already waited `FETCH_WAIT_MS` on the source; only
            // a link with nothing to fetch waits here (for a change or the next refresh).
            if !fetched {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = wake.notified() => {}
                }
            }
        }
    }

    /// Metadata, local topics, resume checks, offsets and groups.
    async fn refresh(&mut self, cluster: &mut Cluster) -> Result<(), ClientError> {
        let Some(record) = self.mirror.link(&self.link) else {
            return Ok(());
        };
        let active: Vec<String> = record
            .topics
            .iter()
            .filter(|(_, t)| t.state == TopicState::Mirroring)
            .map(|(name, _)| name.clone())
            .collect();
        self.parts.retain(|(topic, _), _| active.contains(topic));
        if !active.is_empty() {
            let described = source::topics(cluster, &active).await?;
            for topic in described {
                self.shape_topic(cluster, &record, &topic).await?;
            }
        }
        let keys: BTreeSet<(String, i32)> = self.parts.keys().cloned().collect();
        if !keys.is_empty() {
            let starts = source::offsets(cluster, &keys, -2).await?;
            let ends = source::offsets(cluster, &keys, -1).await?;
            self.resume_and_observe(cluster, &starts, &ends).await?;
        }
        super::groups::sync(&self.mirror, &self.link, &record, cluster).await;
        self.read_acls_if_due(cluster).await;
        self.mirror.with_status(&self.link, |s| {
            s.error = None;
            let now = now_ms();
            for partitions in s.partitions.values_mut() {
                for p in partitions.values_mut() {
                    p.sample_rate(now);
                }
            }
        });
        Ok(())
    }

    /// Reads the source's ACLs for `status` every `ACL_READ_INTERVAL_MS`.
    async fn read_acls_if_due(&self, cluster: &mut Cluster) {
        let now = now_ms();
        let due = self.mirror.with_status(&self.link, |s| {
            now.saturating_sub(s.acls_read_at_ms) >= ACL_READ_INTERVAL_MS
        });
        if due {
            let acls = source::acls(cluster).await;
            self.mirror.with_status(&self.link, |s| {
                s.source_acls = Some(acls);
                s.acls_read_at_ms = now;
            });
        }
    }

    /// Makes the local topic match the source topic (exists, partitions, configs) and
    /// registers its partitions; fails the topic on what needs the operator.
    async fn shape_topic(
        &mut self,
        cluster: &mut Cluster,
        record: &LinkRecord,
        topic: &source::SourceTopic,
    ) -> Result<(), ClientError> {
        let name = &topic.name;
        if topic.error_code == codes::UNKNOWN_TOPIC_OR_PARTITION {
            self.fail(
                name,
                format!("the source topic '{name}' does not exist (deleted?)"),
            );
            return Ok(());
        }
        if topic.error_code != 0 {
            return Ok(()); // transient (leader election, ...): next refresh
        }
        let known_id = record
            .topics
            .get(name)
            .and_then(|t| t.source_topic_id.clone());
        match (&known_id, &topic.topic_id) {
            (Some(known), Some(seen)) if known != seen => {
                self.fail(
                    name,
                    format!(
                        "the source topic '{name}' was deleted and re-created (topic id {known} \
                         is now {seen}); mirroring stopped so the two are not mixed"
                    ),
                );
                return Ok(());
            }
            (None, Some(seen)) => self.mirror.set_source_topic_id(&self.link, name, seen),
            _ => {}
        }
        let configs = source::mirrored_configs(cluster, name).await?;
        let count = i32::try_from(topic.leaders.len()).unwrap_or(i32::MAX);
        if let Err(reason) = self.ensure_local_topic(name, count, configs) {
            self.fail(name, reason);
            return Ok(());
        }
        for (&index, &leader) in &topic.leaders {
            let Some(partition) = self.mirror.broker.topics.partition(name, index) else {
                continue;
            };
            self.parts
                .entry((name.clone(), index))
                .and_modify(|p| p.leader = leader)
                .or_insert_with(|| PartSync {
                    next_offset: partition.log_end_offset(),
                    partition,
                    leader,
                    resumed: false,
                    pending_log_start: None,
                });
        }
        Ok(())
    }

    fn ensure_local_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
    ) -> Result<(), String> {
        let topics = &self.mirror.broker.topics;
        let Some(local) = topics.get(name) else {
            let spec = TopicSpec {
                name: name.to_string(),
                partitions: partitions.max(1),
                replication_factor: 1,
                configs,
            };
            topics
                .create(&spec, false)
                .map_err(|e| format!("creating the mirror topic failed: {e}"))?;
            info!(link = %self.link, topic = name, partitions, "created mirror topic");
            return Ok(());
        };
        let have = i32::try_from(local.partitions.len()).unwrap_or(i32::MAX);
        if partitions > have {
            topics
                .add_partitions(name, partitions, false)
                .map_err(|e| format!("adding partitions to the mirror topic failed: {e}"))?;
            info!(link = %self.link, topic = name, partitions, "followed the source's partition increase");
        }
        let mut wanted = local.configs.clone();
        wanted.retain(|k, _| !source::MIRRORED_CONFIGS.contains(&k.as_str()));
        wanted.extend(configs);
        if wanted != local.configs {
            topics
                .alter_configs(name, wanted, false)
                .map_err(|e| format!("following the source topic's configs failed: {e}"))?;
        }
        Ok(())
    }

    /// Places or checks each new partition's resume point and records offsets.
    async fn resume_and_observe(
        &mut self,
        cluster: &mut Cluster,
        starts: &BTreeMap<(String, i32), i64>,
        ends: &BTreeMap<(String, i32), i64>,
    ) -> Result<(), ClientError> {
        let keys: Vec<(String, i32)> = self.parts.keys().cloned().collect();
        for key in keys {
            let (Some(&start), Some(&end)) = (starts.get(&key), ends.get(&key)) else {
                continue;
            };
            let needs_resume = self.parts.get(&key).is_some_and(|p| !p.resumed);
            if needs_resume {
                if let Err(reason) = self.resume(cluster, &key, start, end).await? {
                    self.fail(&key.0, reason);
                    continue;
                }
            }
            let Some(part) = self.parts.get(&key) else {
                continue;
            };
            let mirrored = part.partition.log_end_offset();
            self.mirror.with_partition_status(&self.link, &key, |s| {
                s.observe(Some(start), Some(end), mirrored, now_ms())
            });
        }
        Ok(())
    }

    /// Where a partition continues: a new mirror starts at the source's log start; an
    /// existing one at its log end, after its last batch was found unchanged at the source.
    /// `Ok(Err(reason))` fails the topic.
    async fn resume(
        &mut self,
        cluster: &mut Cluster,
        key: &(String, i32),
        source_start: i64,
        source_end: i64,
    ) -> Result<Result<(), String>, ClientError> {
        let Some(part) = self.parts.get(key) else {
            return Ok(Ok(()));
        };
        let (partition, leader) = (Arc::clone(&part.partition), part.leader);
        let (local_start, local_end) = (partition.log_start_offset(), partition.log_end_offset());
        let (topic, index) = (key.0.clone(), key.1);
        let mut pending_log_start = None;
        if local_end == 0 && source_start > 0 {
            // A new mirror: it starts where the source's log starts.
            if source_end == source_start {
                if let Err(err) = partition.start_empty_at(source_start, now_ms()) {
                    return Ok(Err(format!(
                        "placing the mirror's start at {source_start} failed: {err}"
                    )));
                }
            } else {
                pending_log_start = Some(source_start);
            }
        } else if source_start > local_end {
            return Ok(Err(format!(
                "source retention deleted offsets [{local_end}, {source_start}) of partition {index} \
                 before they were mirrored; nothing was skipped. To mirror what the source still has, \
                 delete the topic on Ferry and add it again: `ferry mirror remove {link} --topic {topic}`, \
                 `ferry topics delete {topic}`, `ferry mirror add {link} --topics {topic}`",
                link = self.link
            )));
        } else if local_end > local_start {
            if let Some(reason) = self
                .check_tail(cluster, &partition, leader, source_start)
                .await?
            {
                return Ok(Err(reason));
            }
        }
        if let Some(part) = self.parts.get_mut(key) {
            part.resumed = true;
            part.pending_log_start = pending_log_start;
            part.next_offset = pending_log_start.unwrap_or(partition.log_end_offset());
        }
        Ok(Ok(()))
    }

    /// Compares the mirror's last batch with the source's batch at the same offset.
    async fn check_tail(
        &self,
        cluster: &mut Cluster,
        partition: &Arc<Partition>,
        leader: i32,
        source_start: i64,
    ) -> Result<Option<String>, ClientError> {
        let Some((local, _)) = last_batch(partition) else {
            return Ok(None);
        };
        if local.base_offset < source_start {
            // The source no longer has that batch; what follows it is still there.
            return Ok(None);
        }
        let topic = partition.topic().to_string();
        let wanted = [(topic.clone(), partition.index(), local.base_offset)];
        let fetched = source::fetch(
            cluster,
            leader,
            &wanted,
            MIRROR_FETCH.with_max_bytes(FETCH_PARTITION_MAX_BYTES),
        )
        .await?;
        let Some(answer) = fetched.first() else {
            return Ok(None);
        };
        if answer.error_code != 0 {
            return Err(ClientError::Kafka {
                context: format!(
                    "checking the mirror's tail of {topic}-{}",
                    partition.index()
                ),
                code: answer.error_code,
            });
        }
        let whole = source::whole_batches(&answer.records);
        let source_batch = BatchHeader::parse_prefix(&answer.records[..whole]).ok();
        let same = source_batch.is_some_and(|s| {
            s.base_offset == local.base_offset
                && s.last_offset() == local.last_offset()
                && s.crc == local.crc
        });
        Ok((!same).then(|| {
            format!(
                "partition {} diverged from the source at offset {}: the mirror's last batch \
                 [{}, {}] (crc {:08x}) is not the source's ({}); the source was truncated or \
                 rewritten. Nothing more was copied; see `ferry mirror verify {} --topic {topic}`",
                partition.index(),
                local.base_offset,
                local.base_offset,
                local.last_offset(),
                local.crc,
                source_batch.map_or("none".to_string(), |s| format!(
                    "[{}, {}] crc {:08x}",
                    s.base_offset,
                    s.last_offset(),
                    s.crc
                )),
                self.link
            )
        }))
    }

    /// One Fetch per source leader for every resumed partition; false if there was no
    /// partition to fetch.
    async fn fetch_round(&mut self, cluster: &mut Cluster) -> Result<bool, ClientError> {
        let mut by_leader: BTreeMap<i32, Vec<(String, i32, i64)>> = BTreeMap::new();
        for ((topic, index), part) in &self.parts {
            if part.resumed && part.leader >= 0 {
                by_leader.entry(part.leader).or_default().push((
                    topic.clone(),
                    *index,
                    part.next_offset,
                ));
            }
        }
        let any = !by_leader.is_empty();
        let limits = self
            .pacer
            .fetch_limits(if self.busy { BUSY_FETCH } else { MIRROR_FETCH });
        let mut brought = false;
        for (leader, wanted) in by_leader {
            let fetched = source::fetch(cluster, leader, &wanted, limits).await?;
            for answer in fetched {
                brought |= !answer.records.is_empty();
                self.apply(answer).await?;
            }
        }
        self.busy = brought;
        Ok(any)
    }

    /// Appends one partition's fetched batches.
    async fn apply(&mut self, answer: Fetched) -> Result<(), ClientError> {
        let key = (answer.topic.clone(), answer.partition);
        match answer.error_code {
            0 => {}
            codes::OFFSET_OUT_OF_RANGE => {
                // Source retention may have passed the mirror: re-check at the next refresh.
                if let Some(part) = self.parts.get_mut(&key) {
                    part.resumed = false;
                }
                self.mirror.mark_changed(&self.link);
                return Ok(());
            }
            codes::NOT_LEADER_OR_FOLLOWER
            | codes::LEADER_NOT_AVAILABLE
            | codes::UNKNOWN_TOPIC_OR_PARTITION
            | codes::FENCED_LEADER_EPOCH
            | codes::UNKNOWN_LEADER_EPOCH
            | codes::UNKNOWN_TOPIC_ID => {
                // Leadership moved or metadata is stale: refresh, then fetch again.
                self.mirror.mark_changed(&self.link);
                return Ok(());
            }
            code => {
                return Err(ClientError::Kafka {
                    context: format!("Fetch {}-{}", answer.topic, answer.partition),
                    code,
                })
            }
        }
        // A pause, removal or promotion since the fetch was sent stops the copy here.
        if self.mirror.topic_state(&self.link, &key.0) != Some(TopicState::Mirroring) {
            self.parts.retain(|(topic, _), _| *topic != key.0);
            return Ok(());
        }
        let Some(part) = self.parts.get_mut(&key) else {
            return Ok(());
        };
        let records = match plan_chunk(
            &answer.records,
            part.next_offset,
            part.pending_log_start.is_some(),
        ) {
            Ok(records) => records,
            Err(reason) => {
                let reason = format!("partition {}: {reason}", answer.partition);
                self.fail(&key.0, reason);
                return Ok(());
            }
        };
        let mirrored_end = part.partition.log_end_offset();
        if records.is_empty() {
            self.observe_fetch(&key, &answer, mirrored_end);
            return Ok(());
        }
        self.append(&key, &answer, records).await
    }

    async fn append(
        &mut self,
        key: &(String, i32),
        answer: &Fetched,
        records: Bytes,
    ) -> Result<(), ClientError> {
        let Some(part) = self.parts.get_mut(key) else {
            return Ok(());
        };
        let partition = Arc::clone(&part.partition);
        let (batches, max_producer_id) = batch_summary(&records);
        if let Err(err) = self
            .mirror
            .broker
            .producer_ids
            .reserve_above(max_producer_id)
        {
            let reason = format!(
                "reserving the source's producer id {max_producer_id} on Ferry failed: {err}"
            );
            self.fail(&key.0, reason);
            return Ok(());
        }
        let appended = partition.append_verbatim(&records, now_ms());
        match appended {
            Ok(_) => {}
            Err(err) => {
                let reason = format!(
                    "appending the source's batches of partition {} at offset {} failed: {err}",
                    key.1, part.next_offset
                );
                self.fail(&key.0, reason);
                return Ok(());
            }
        }
        if let Some(start) = part.pending_log_start.take() {
            if let Err(err) = partition.delete_records_before(start) {
                warn!(link = %self.link, topic = %key.0, partition = key.1, "placing the mirror's log start at {start} failed: {err}");
            }
        }
        part.next_offset = partition.log_end_offset();
        let mirrored_end = part.next_offset;
        let bytes = records.len() as u64;
        self.mirror.with_partition_status(&self.link, key, |s| {
            s.bytes_mirrored += bytes;
            s.batches_mirrored += batches;
        });
        self.observe_fetch(key, answer, mirrored_end);
        let delay = self.pacer.after(records.len());
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Ok(())
    }

    fn observe_fetch(&self, key: &(String, i32), answer: &Fetched, mirrored_end: i64) {
        let start = Some(answer.log_start_offset).filter(|s| *s >= 0);
        self.mirror.with_partition_status(&self.link, key, |s| {
            s.observe(start, Some(answer.high_watermark), mirrored_end, now_ms())
        });
    }

    fn fail(&mut self, topic: &str, reason: String) {
        self.parts.retain(|(t, _), _| t != topic);
        self.mirror.fail_topic(&self.link, topic, reason);
    }
}

/// The part of a fetched chunk the mirror appends: its whole batches (a partial batch at
/// the end comes whole with the next fetch), if the first starts where the mirror
/// continues (`next`) or after it (a gap the source has too), or, for a new mirror placing
/// its start inside the source's first batch (`placing_start`), contains `next`. A source
/// asked for `next` never answers with a batch that ends below it or starts below it and
/// runs past it; either means its batches no longer line up with the mirror's (rewritten,
/// truncated, or lying), and nothing is appended. Batches Ferry cannot store (corrupt,
/// another format) are left for `Log::append_verbatim` to refuse with its reason.
pub fn plan_chunk(records: &Bytes, next: i64, placing_start: bool) -> Result<Bytes, String> {
    let chunk = records.slice(..source::whole_batches(records));
    let Ok(first) = BatchHeader::parse_prefix(&chunk) else {
        return Ok(chunk);
    };
    if first.base_offset >= next || (placing_start && first.last_offset() >= next) {
        return Ok(chunk);
    }
    Err(format!(
        "asked for offset {next}, the source answered with the batch [{}, {}], which does \
         not line up with the mirror's end: the source was rewritten or is lying; nothing \
         was copied",
        first.base_offset,
        first.last_offset()
    ))
}

/// The header and bytes of a partition's last batch (everything below its log end).
pub fn last_batch(partition: &Partition) -> Option<(BatchHeader, Bytes)> {
    let end = partition.log_end_offset();
    if end <= partition.log_start_offset() {
        return None;
    }
    let read = partition.read(end - 1, 1, true, false).ok()?;
    let bytes = read.records.load().ok()?;
    let header = BatchHeader::parse_prefix(&bytes).ok()?;
    (header.last_offset() == end - 1).then_some((header, bytes))
}

/// The number of batches and the largest producer id among them (-1 if none has one).
fn batch_summary(records: &[u8]) -> (u64, i64) {
    let mut batches = 0;
    let mut max_producer_id = -1;
    for (_, header) in crate::storage::batch::BatchIter::new(records).flatten() {
        batches += 1;
        if header.has_producer_id() {
            max_producer_id = max_producer_id.max(header.producer_id);
        }
    }
    (batches, max_producer_id)
}

#[cfg(test)]
mod tests {
    //! A model test of the mirror's data path without sockets: a source log of real
    //! batches with gaps, answering fetches as Kafka does (from the batch holding the asked
    //! offset, whole batches up to a size, sometimes a partial batch at the end), with
    //! faults (a flipped byte, a base offset moved down) and restarts of the mirror's log
    //! in between. Invariant after every step: the mirror holds exactly the source's
    //! batches below its end, byte for byte, and a fault stops it before anything wrong
    //! is stored.

    use std::os::unix::fs::FileExt;

    use bytes::Bytes;
    use proptest::prelude::*;

    use super::plan_chunk;
    use crate::storage::batch::test_support::build_batch;
    use crate::storage::batch::{BatchHeader, BatchIter};
    use crate::storage::log::{Log, LogConfig};

    #[derive(Debug, Clone)]
    enum Step {
        /// Fetch with this many bytes allowed and this many bytes of the next batch kept.
        Fetch { max_bytes: usize, partial: usize },
        /// A fetch whose first batch has a byte flipped.
        Corrupt,
        /// A fetch whose first batch's base offset is moved down by this much, below the
        /// offset asked for.
        ShiftDown(i64),
        /// The mirror's process restarts: its log is reopened from the files.
        Restart,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            8 => (1usize..400, 0usize..60).prop_map(|(max_bytes, partial)| Step::Fetch { max_bytes, partial }),
            1 => Just(Step::Corrupt),
            1 => (1i64..4).prop_map(Step::ShiftDown),
            2 => Just(Step::Restart),
        ]
    }

    /// Batches with gaps between them (compaction holes, markers): (gap, records).
    fn source() -> impl Strategy<Value = Vec<Vec<u8>>> {
        prop::collection::vec((0i64..3, 1usize..4), 1..25).prop_map(|shape| {
            let mut base = 0;
            let mut batches = Vec::new();
            for (gap, records) in shape {
                base += gap;
                let values: Vec<Vec<u8>> = (0..records)
                    .map(|i| format!("v{base}-{i}").into_bytes())
                    .collect();
                let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
                batches.push(build_batch(base, 0, &refs));
                base += records as i64;
            }
            batches
        })
    }

    /// What the source answers for a fetch at `at`.
    fn answer(batches: &[Vec<u8>], at: i64, max_bytes: usize, partial: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let holding = batches
            .iter()
            .position(|b| BatchHeader::parse_prefix(b).unwrap().last_offset() >= at);
        let Some(first) = holding else { return out };
        for batch in &batches[first..] {
            if !out.is_empty() && out.len() + batch.len() > max_bytes {
                out.extend_from_slice(&batch[..partial.min(batch.len() - 1)]);
                break;
            }
            out.extend_from_slice(batch);
        }
        out
    }

    fn mirror_batches(log: &Log) -> Vec<Vec<u8>> {
        let Ok(plans) = log.read_plans(log.log_start_offset()) else {
            return Vec::new();
        };
        let mut bytes = Vec::new();
        for plan in plans {
            let mut chunk = vec![0u8; (plan.end_position - plan.start_position) as usize];
            plan.file
                .read_exact_at(&mut chunk, plan.start_position)
                .unwrap();
            bytes.extend(chunk);
        }
        let mut out = Vec::new();
        for item in BatchIter::new(&bytes) {
            let (position, header) = item.unwrap();
            out.push(bytes[position..position + header.total_bytes()].to_vec());
        }
        out
    }

    fn check_prefix(log: &Log, batches: &[Vec<u8>]) {
        let end = log.log_end_offset();
        let expected: Vec<&Vec<u8>> = batches
            .iter()
            .filter(|b| BatchHeader::parse_prefix(b).unwrap().base_offset < end)
            .collect();
        let held = mirror_batches(log);
        assert_eq!(held.len(), expected.len(), "mirror end {end}");
        for (h, e) in held.iter().zip(expected) {
            // The leader epoch is the only field a log may stamp; the rest is the source's.
            assert_eq!(h[12..], e[12..]);
            assert_eq!(h[..8], e[..8]);
        }
        if let Some(last) = held.last() {
            assert_eq!(BatchHeader::parse_prefix(last).unwrap().next_offset(), end);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn the_mirror_is_always_a_prefix_of_the_source(batches in source(), steps in prop::collection::vec(step(), 1..40)) {
            let dir = tempfile::tempdir().unwrap();
            let mut log = Log::create(dir.path(), LogConfig::default(), 0, 0).unwrap();
            let mut failed = false;
            for step in steps {
                let next = log.log_end_offset();
                let fetched = match &step {
                    Step::Restart => {
                        drop(log);
                        log = Log::open(dir.path(), LogConfig::default(), None, false, 0).unwrap().0;
                        check_prefix(&log, &batches);
                        continue;
                    }
                    Step::Fetch { max_bytes, partial } => answer(&batches, next, *max_bytes, *partial),
                    Step::Corrupt => {
                        let mut bytes = answer(&batches, next, 1, 0);
                        if let Some(last) = bytes.len().checked_sub(1) {
                            bytes[last] ^= 0x40;
                        }
                        bytes
                    }
                    Step::ShiftDown(by) => {
                        let mut bytes = answer(&batches, next, 1, 0);
                        // Only a lie below the asked offset can be told from a gap; one
                        // that moves a batch within a gap is for `ferry mirror verify`.
                        if bytes.len() >= 8 {
                            let base = i64::from_be_bytes(bytes[..8].try_into().unwrap());
                            if base - by < next {
                                bytes[..8].copy_from_slice(&(base - by).to_be_bytes());
                            }
                        }
                        bytes
                    }
                };
                if failed {
                    continue;
                }
                match plan_chunk(&Bytes::from(fetched), next, false) {
                    Ok(chunk) if chunk.is_empty() => {}
                    Ok(chunk) => {
                        if log.append_verbatim(&chunk, 0).is_err() {
                            failed = true;
                        }
                    }
                    Err(_) => failed = true,
                }
                check_prefix(&log, &batches);
                prop_assert!(log.log_end_offset() >= next, "the mirror went backwards");
            }
            // Without a fault, enough fetches copy everything.
            if !failed {
                for _ in 0..batches.len() + 1 {
                    let next = log.log_end_offset();
                    let chunk = plan_chunk(&Bytes::from(answer(&batches, next, 1_000_000, 0)), next, false).unwrap();
                    if !chunk.is_empty() {
                        log.append_verbatim(&chunk, 0).unwrap();
                    }
                }
                prop_assert_eq!(mirror_batches(&log).len(), batches.len());
                check_prefix(&log, &batches);
            }
        }
    }

    #[test]
    fn batches_in_an_old_message_format_are_refused_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::create(dir.path(), LogConfig::default(), 0, 0).unwrap();
        let mut batch = build_batch(0, 0, &[b"a"]);
        batch[16] = 1; // magic v1
        let chunk = plan_chunk(&Bytes::from(batch), 0, false).unwrap();
        let err = log.append_verbatim(&chunk, 0).unwrap_err().to_string();
        assert!(err.contains("magic 1 is not supported"), "{err}");
        assert_eq!(log.log_end_offset(), 0);
    }

    #[test]
    fn a_new_mirror_may_start_inside_the_sources_first_batch() {
        let batch = Bytes::from(build_batch(10, 0, &[b"a", b"b", b"c"]));
        assert_eq!(plan_chunk(&batch, 11, true).unwrap().len(), batch.len());
        assert!(plan_chunk(&batch, 11, false).is_err());
        assert!(
            plan_chunk(&batch, 14, false).is_err(),
            "a batch wholly below was returned"
        );
        assert_eq!(plan_chunk(&batch, 10, false).unwrap().len(), batch.len());
        assert_eq!(
            plan_chunk(&batch, 7, false).unwrap().len(),
            batch.len(),
            "a gap"
        );
        assert!(plan_chunk(&batch.slice(..20), 10, false)
            .unwrap()
            .is_empty());
    }
}
