//! The librdkafka side: the admin client that creates and deletes the harness's topics, and
//! the readers (plain assigned consumers or consumer-group members) that record end-to-end
//! latency. The producer is `producer.rs`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::stats::{unix_micros, Latency};

/// Longest the admin client waits for a topic to be created or deleted (10,000 partitions
/// can take a while on any broker).
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(300);
/// How often librdkafka reports statistics (for records per batch).
pub const STATISTICS_INTERVAL_MS: u32 = 1000;
/// Distinct client error messages kept per phase (all are counted).
const KEPT_ERRORS: usize = 5;

/// Errors reported by librdkafka clients: counted, the first few kept.
#[derive(Debug, Default)]
pub struct ErrorLog {
    count: AtomicU64,
    kept: Mutex<Vec<String>>,
}

impl ErrorLog {
    pub fn push(&self, message: String) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() < KEPT_ERRORS && !kept.contains(&message) {
            kept.push(message);
        }
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub fn kept(&self) -> Vec<String> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The admin client plus a small runtime to wait on its futures.
pub struct Admin {
    client: AdminClient<DefaultClientContext>,
    runtime: tokio::runtime::Runtime,
}

impl Admin {
    pub fn connect(bootstrap: &str) -> Result<Admin, String> {
        let client = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("client.id", "ferry-bench-admin")
            .create()
            .map_err(|e| format!("admin client: {e}"))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("runtime: {e}"))?;
        Ok(Admin { client, runtime })
    }

    fn options() -> AdminOptions {
        AdminOptions::new()
            .operation_timeout(Some(ADMIN_TIMEOUT))
            .request_timeout(Some(ADMIN_TIMEOUT))
    }

    /// Creates the topic and returns how long the broker took to answer.
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: &[(&str, &str)],
    ) -> Result<Duration, String> {
        let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        for (key, value) in configs {
            topic = topic.set(key, value);
        }
        let start = Instant::now();
        let results = self
            .runtime
            .block_on(self.client.create_topics(&[topic], &Admin::options()))
            .map_err(|e| format!("create topic {name}: {e}"))?;
        let elapsed = start.elapsed();
        for result in results {
            result.map_err(|(topic, code)| format!("create topic {topic}: {code}"))?;
        }
        Ok(elapsed)
    }

    pub fn delete_topics(&self, names: &[&str]) -> Result<Duration, String> {
        let start = Instant::now();
        let results = self
            .runtime
            .block_on(self.client.delete_topics(names, &Admin::options()))
            .map_err(|e| format!("delete topics {names:?}: {e}"))?;
        let elapsed = start.elapsed();
        for result in results {
            result.map_err(|(topic, code)| format!("delete topic {topic}: {code}"))?;
        }
        Ok(elapsed)
    }
}

/// A reader's context: client errors only.
#[derive(Debug, Default)]
pub struct ReaderContext {
    pub errors: Arc<ErrorLog>,
}

impl ClientContext for ReaderContext {
    fn error(&self, error: KafkaError, reason: &str) {
        self.errors.push(format!("{error}: {reason}"));
    }
}

impl ConsumerContext for ReaderContext {}

/// When readers stop: once they have `target_records` (known when producing ends) or at
/// the deadline. Readers check it after every record, so it is lock-free and takes the
/// reader's own clock reading.
#[derive(Debug)]
pub struct ReaderControl {
    target_records: AtomicU64,
    /// UNIX microseconds; `u64::MAX` until `finish`.
    deadline_us: AtomicU64,
    abort: AtomicBool,
}

impl Default for ReaderControl {
    fn default() -> ReaderControl {
        ReaderControl {
            target_records: AtomicU64::new(u64::MAX),
            deadline_us: AtomicU64::new(u64::MAX),
            abort: AtomicBool::new(false),
        }
    }
}

impl ReaderControl {
    /// Readers stop at `target_records` or once `within` has passed from now.
    pub fn finish(&self, target_records: u64, within: Duration) {
        let within_us = u64::try_from(within.as_micros()).unwrap_or(u64::MAX);
        let deadline_us = unix_micros().saturating_add(within_us);
        self.deadline_us.store(deadline_us, Ordering::Release);
        self.target_records.store(target_records, Ordering::Release);
    }

    pub fn abort(&self) {
        self.abort.store(true, Ordering::Release);
    }

    /// Whether a reader that has read `records` should stop at `now_us` (UNIX microseconds).
    fn done(&self, records: u64, now_us: u64) -> bool {
        records >= self.target_records.load(Ordering::Acquire)
            || self.abort.load(Ordering::Acquire)
            || now_us >= self.deadline_us.load(Ordering::Acquire)
    }
}

/// How a reader attaches to the topic.
#[derive(Debug, Clone)]
pub enum ReaderMode {
    /// Every partition assigned from the start (no group).
    Assign { partitions: i32 },
    /// A member of this consumer group, subscribed to the topic.
    Group { group: String },
}

/// `queued.min.messages` of every reader: records per partition librdkafka keeps fetched
/// ahead of the application, as `rdkafka_performance` sets it. With librdkafka's default
/// (100,000) a reader that has fallen behind stops fetching a partition for
/// `fetch.queue.backoff.ms` whenever its queue passes the threshold, and reads small
/// records at about a quarter of the rate it reaches otherwise (measured 254,000 against
/// 973,000 records/s catching up on 8 partitions of 100-byte records with
/// `rdkafka_performance -G`), which measures the client's back-off, not the broker.
pub const READER_QUEUED_MIN_MESSAGES: u32 = 1_000_000;
/// `fetch.queue.backoff.ms` of every reader. A reader far enough behind still fills its
/// queue to `queued.max.messages.kbytes` (64 MiB, left at librdkafka's default to bound the
/// harness's memory); with the default back-off (1 s) it then stops fetching for a second
/// each time (`rdkafka_performance -G` catching up 12 M 100-byte records: 880,000 records/s
/// with 1 s, 1,330,000 with 10 ms).
pub const READER_FETCH_QUEUE_BACKOFF_MS: u32 = 10;

#[derive(Debug, Clone)]
pub struct ReaderSpec {
    pub bootstrap: String,
    pub topic: String,
    pub mode: ReaderMode,
    pub fetch_wait_ms: u32,
    /// Record end-to-end latency (not for catch-up reads, where it is only the data's age).
    pub measure_e2e: bool,
    /// How long a group member may take to get its assignment.
    pub join_timeout: Duration,
}

/// What one reader saw.
#[derive(Debug, Default)]
pub struct ReaderOutcome {
    pub records: u64,
    pub bytes: u64,
    pub e2e: Latency,
    /// When the newest record arrived, in UNIX microseconds.
    pub last_at_us: Option<u64>,
    pub errors: Arc<ErrorLog>,
}

/// Creates the consumer and attaches it (for a group: waits for the assignment).
pub fn start_reader(
    spec: &ReaderSpec,
) -> Result<(BaseConsumer<ReaderContext>, Arc<ErrorLog>), String> {
    let group = match &spec.mode {
        ReaderMode::Group { group } => group.clone(),
        ReaderMode::Assign { .. } => format!("ferry-bench-reader-{}", spec.topic),
    };
    let context = ReaderContext::default();
    let errors = Arc::clone(&context.errors);
    let consumer: BaseConsumer<ReaderContext> = ClientConfig::new()
        .set("bootstrap.servers", &spec.bootstrap)
        .set("client.id", "ferry-bench-reader")
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", spec.fetch_wait_ms.to_string())
        .set(
            "queued.min.messages",
            READER_QUEUED_MIN_MESSAGES.to_string(),
        )
        .set(
            "fetch.queue.backoff.ms",
            READER_FETCH_QUEUE_BACKOFF_MS.to_string(),
        )
        .create_with_context(context)
        .map_err(|e| format!("consumer: {e}"))?;
    match &spec.mode {
        ReaderMode::Assign { partitions } => {
            let mut list = TopicPartitionList::new();
            for p in 0..*partitions {
                list.add_partition_offset(&spec.topic, p, Offset::Beginning)
                    .map_err(|e| format!("assign: {e}"))?;
            }
            consumer.assign(&list).map_err(|e| format!("assign: {e}"))?;
        }
        ReaderMode::Group { .. } => {
            consumer
                .subscribe(&[&spec.topic])
                .map_err(|e| format!("subscribe: {e}"))?;
            let deadline = Instant::now() + spec.join_timeout;
            loop {
                if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
                    // Nothing is produced yet; a record here would be from an earlier run.
                    drop(message);
                }
                if consumer.assignment().is_ok_and(|a| a.count() > 0) {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(format!(
                        "group {group} got no assignment within {:?}",
                        spec.join_timeout
                    ));
                }
            }
        }
    }
    Ok((consumer, errors))
}

/// Polls until the control says stop; counts records and bytes and records end-to-end
/// latency from the UNIX-microsecond stamp in each value's first 8 bytes.
pub fn read(
    consumer: &BaseConsumer<ReaderContext>,
    errors: Arc<ErrorLog>,
    control: &ReaderControl,
    measure_e2e: bool,
) -> ReaderOutcome {
    let mut outcome = ReaderOutcome {
        errors,
        ..ReaderOutcome::default()
    };
    // One clock read per record, also used for the deadline.
    let mut now_us = unix_micros();
    while !control.done(outcome.records, now_us) {
        let polled = consumer.poll(Duration::from_millis(50));
        now_us = unix_micros();
        match polled {
            Some(Ok(message)) => {
                let payload = message.payload().unwrap_or_default();
                outcome.records += 1;
                outcome.bytes += (payload.len() + message.key().map_or(0, <[u8]>::len)) as u64;
                outcome.last_at_us = Some(now_us);
                if measure_e2e {
                    if let Some(stamp) = payload.get(..8) {
                        let stamp = u64::from_be_bytes(stamp.try_into().unwrap_or_default());
                        outcome.e2e.record(now_us.saturating_sub(stamp));
                    }
                }
            }
            Some(Err(e)) => outcome.errors.push(format!("consume: {e}")),
            None => {}
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_stop_at_target_or_deadline() {
        let control = ReaderControl::default();
        assert!(!control.done(1_000_000, unix_micros()));
        control.finish(10, Duration::from_secs(60));
        assert!(!control.done(9, unix_micros()));
        assert!(control.done(10, unix_micros()));
        assert!(control.done(9, unix_micros() + 61_000_000));
        let control = ReaderControl::default();
        control.finish(10, Duration::ZERO);
        assert!(control.done(0, unix_micros()));
        let control = ReaderControl::default();
        control.abort();
        assert!(control.done(0, unix_micros()));
    }
}
