//! The harness's readers: librdkafka consumers (every partition assigned, or a member of a
//! consumer group) that take records in batches and record end-to-end latency with one
//! clock read per batch.
//!
//! Why not `rdkafka`'s `BaseConsumer::poll`: it hands out one record per call (one queue
//! event, a `BorrowedMessage`, a deadline clock read and librdkafka's own timeout clock
//! read each), and the reader read the clock again per record for its latency. A profile
//! of W1's reader (`perf record -g` of the harness, quick W1 with `acks=1`, 2026-11-22)
//! put a quarter of that thread in clock reads alone. Here `rd_kafka_consume_batch_queue`
//! returns everything already fetched in one call; the records of a batch were all in the
//! application's hands when the call returned, which is when their latency is taken.
//!
//! The client is made by `rdkafka` from the same configuration, without its event mode, so
//! librdkafka serves errors through a callback and assigns a group's partitions itself
//! (what it does for any application without a rebalance callback).

use std::ffi::{c_char, c_int, c_void, CStr};
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::bindings as rdsys;
use rdkafka::client::{Client, ClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::types::{RDKafkaErrorCode, RDKafkaType};
use rdkafka::{Offset, TopicPartitionList};

use super::clients::ErrorLog;
use super::stats::{unix_micros, Latency};

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
/// Most records taken from librdkafka's queue in one call.
const READ_BATCH_RECORDS: usize = 4096;
/// How long a reader with nothing to read waits for a record before it checks whether to
/// stop.
const READ_WAIT_MS: c_int = 50;

/// When readers stop: once they have `target_records` (known when producing ends) or at
/// the deadline. Readers check it after every batch, so it is lock-free and takes the
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

#[derive(Debug, Clone)]
pub struct ReaderSpec {
    pub bootstrap: String,
    /// Security settings (W9's SASL_SSL phase).
    pub client_props: Vec<(String, String)>,
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

/// A reader's client context: where its error callback reports.
#[derive(Debug, Default)]
struct ReaderContext {
    errors: Arc<ErrorLog>,
}

impl ClientContext for ReaderContext {}

/// librdkafka's error callback (client-level errors such as lost connections).
///
/// # Safety
/// `opaque` is the client's configured opaque, which `Client::new` sets to its context (a
/// `ReaderContext` that lives as long as the client); `reason` is null or NUL-terminated.
unsafe extern "C" fn report_error(
    _client: *mut rdsys::rd_kafka_t,
    code: c_int,
    reason: *const c_char,
    opaque: *mut c_void,
) {
    // SAFETY: per this function's contract.
    let context = unsafe { &*opaque.cast::<ReaderContext>() };
    let reason = if reason.is_null() {
        String::new()
    } else {
        // SAFETY: per this function's contract.
        unsafe { CStr::from_ptr(reason) }
            .to_string_lossy()
            .into_owned()
    };
    context
        .errors
        .push(format!("client error {code}: {}", reason.trim()));
}

/// An attached reader. Dropping it closes the consumer (leaving its group) and destroys it.
pub struct Reader {
    client: Client<ReaderContext>,
    /// The consumer queue, where fetched records (and, forwarded, everything else) arrive.
    queue: NonNull<rdsys::rd_kafka_queue_t>,
    /// The records of the current batch, destroyed before the next one is taken.
    batch: Vec<*mut rdsys::rd_kafka_message_t>,
}

impl Reader {
    /// Creates the consumer and attaches it (for a group: waits for the assignment).
    pub fn attach(spec: &ReaderSpec) -> Result<Reader, String> {
        let group = match &spec.mode {
            ReaderMode::Group { group } => group.clone(),
            ReaderMode::Assign { .. } => format!("ferry-bench-reader-{}", spec.topic),
        };
        let mut config = ClientConfig::new();
        for (key, value) in &spec.client_props {
            config.set(key, value);
        }
        config
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
            );
        let mut reader = Reader::new(&config)?;
        match &spec.mode {
            ReaderMode::Assign { partitions } => reader.assign(&spec.topic, *partitions)?,
            ReaderMode::Group { .. } => reader.join(&spec.topic, &group, spec.join_timeout)?,
        }
        Ok(reader)
    }

    fn new(config: &ClientConfig) -> Result<Reader, String> {
        let native = config
            .create_native_config()
            .map_err(|e| format!("consumer configuration: {e}"))?;
        // SAFETY: the configuration object is live and owned here until `Client::new` hands
        // it to `rd_kafka_new`; the callbacks are plain functions. No log callback: log
        // lines are dropped, as they always were (the harness installs no logger).
        unsafe {
            rdsys::rd_kafka_conf_set_error_cb(native.ptr(), Some(report_error));
            rdsys::rd_kafka_conf_set_log_cb(native.ptr(), None);
        }
        let client = Client::new(
            config,
            native,
            RDKafkaType::RD_KAFKA_CONSUMER,
            ReaderContext::default(),
        )
        .map_err(|e| format!("consumer: {e}"))?;
        // SAFETY: the client is live; forwarding the main queue to the consumer queue and
        // taking a reference to the latter are what a consumer does before polling.
        let queue = unsafe {
            let code: RDKafkaErrorCode =
                rdsys::rd_kafka_poll_set_consumer(client.native_ptr()).into();
            if code != RDKafkaErrorCode::NoError {
                return Err(format!("consumer queue: {code}"));
            }
            rdsys::rd_kafka_queue_get_consumer(client.native_ptr())
        };
        let queue = NonNull::new(queue).ok_or("consumer queue: none")?;
        Ok(Reader {
            client,
            queue,
            batch: Vec::with_capacity(READ_BATCH_RECORDS),
        })
    }

    fn assign(&self, topic: &str, partitions: i32) -> Result<(), String> {
        let mut list = TopicPartitionList::new();
        for p in 0..partitions {
            list.add_partition_offset(topic, p, Offset::Beginning)
                .map_err(|e| format!("assign: {e}"))?;
        }
        // SAFETY: both pointers are live; librdkafka copies the list.
        let code: RDKafkaErrorCode =
            unsafe { rdsys::rd_kafka_assign(self.client.native_ptr(), list.ptr()) }.into();
        match code {
            RDKafkaErrorCode::NoError => Ok(()),
            code => Err(format!("assign: {code}")),
        }
    }

    /// Subscribes and reads until the group gave this member partitions.
    fn join(&mut self, topic: &str, group: &str, timeout: Duration) -> Result<(), String> {
        let mut list = TopicPartitionList::new();
        list.add_topic_unassigned(topic);
        // SAFETY: both pointers are live; librdkafka copies the list.
        let code: RDKafkaErrorCode =
            unsafe { rdsys::rd_kafka_subscribe(self.client.native_ptr(), list.ptr()) }.into();
        if code != RDKafkaErrorCode::NoError {
            return Err(format!("subscribe: {code}"));
        }
        let deadline = Instant::now() + timeout;
        while self.assigned_partitions()? == 0 {
            if Instant::now() > deadline {
                return Err(format!(
                    "group {group} got no assignment within {timeout:?}"
                ));
            }
            // Nothing is produced yet; a record here would be from an earlier run.
            self.take_batch(READ_WAIT_MS);
        }
        Ok(())
    }

    fn assigned_partitions(&self) -> Result<usize, String> {
        let mut list = ptr::null_mut();
        // SAFETY: the client is live; on success librdkafka hands over a new list, read
        // and destroyed here.
        unsafe {
            let code: RDKafkaErrorCode =
                rdsys::rd_kafka_assignment(self.client.native_ptr(), &mut list).into();
            if code != RDKafkaErrorCode::NoError {
                return Err(format!("assignment: {code}"));
            }
            let count = usize::try_from((*list).cnt).unwrap_or(0);
            rdsys::rd_kafka_topic_partition_list_destroy(list);
            Ok(count)
        }
    }

    /// Keeps reading for `duration` while nothing is produced yet, so that the first
    /// fetches are in flight before the clock starts.
    pub fn settle(&mut self, duration: Duration) {
        let until = Instant::now() + duration;
        while Instant::now() < until {
            self.take_batch(READ_WAIT_MS);
        }
    }

    /// Reads until the control says stop; counts records and bytes and records end-to-end
    /// latency from the UNIX-microsecond stamp in each value's first 8 bytes.
    pub fn read(&mut self, control: &ReaderControl, measure_e2e: bool) -> ReaderOutcome {
        let mut outcome = ReaderOutcome {
            errors: Arc::clone(&self.client.context().errors),
            ..ReaderOutcome::default()
        };
        let mut now_us = unix_micros();
        while !control.done(outcome.records, now_us) {
            // Whatever is already fetched, at once; if nothing, wait for one record.
            if self.take_batch(0) == 0 {
                self.take_batch(READ_WAIT_MS);
            }
            // One clock read per batch, also used for the deadline.
            now_us = unix_micros();
            self.count_batch(&mut outcome, now_us, measure_e2e);
        }
        self.destroy_batch();
        outcome
    }

    fn count_batch(&self, outcome: &mut ReaderOutcome, now_us: u64, measure_e2e: bool) {
        for &message in &self.batch {
            // SAFETY: every pointer in the batch is a live message until `destroy_batch`.
            let message = unsafe { &*message };
            if message.err != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                let code: RDKafkaErrorCode = message.err.into();
                outcome.errors.push(format!("consume: {code}"));
                continue;
            }
            outcome.records += 1;
            outcome.bytes += (message.len + message.key_len) as u64;
            outcome.last_at_us = Some(now_us);
            if measure_e2e && message.len >= 8 && !message.payload.is_null() {
                // SAFETY: the payload holds `len` (at least 8) bytes while the message lives.
                let stamp = unsafe { ptr::read_unaligned(message.payload.cast::<[u8; 8]>()) };
                outcome
                    .e2e
                    .record(now_us.saturating_sub(u64::from_be_bytes(stamp)));
            }
        }
    }

    /// Replaces the current batch with up to `READ_BATCH_RECORDS` records, waiting at most
    /// `timeout_ms` (librdkafka waits until the batch is full or the time is up, so callers
    /// wait only when they ask for what is already there first); returns how many.
    fn take_batch(&mut self, timeout_ms: c_int) -> usize {
        self.destroy_batch();
        let capacity = if timeout_ms == 0 {
            READ_BATCH_RECORDS
        } else {
            1
        };
        // SAFETY: the queue is live; librdkafka writes at most `capacity` message pointers
        // into the vector's spare capacity (which is `READ_BATCH_RECORDS`) and returns how
        // many, or -1 on error, when it writes none.
        let taken = unsafe {
            rdsys::rd_kafka_consume_batch_queue(
                self.queue.as_ptr(),
                timeout_ms,
                self.batch.as_mut_ptr(),
                capacity,
            )
        };
        let taken = usize::try_from(taken).unwrap_or(0).min(capacity);
        // SAFETY: the first `taken` slots were just written by librdkafka.
        unsafe { self.batch.set_len(taken) };
        taken
    }

    fn destroy_batch(&mut self) {
        for message in self.batch.drain(..) {
            // SAFETY: each message came from `rd_kafka_consume_batch_queue` and is
            // destroyed exactly once (drained from the batch).
            unsafe { rdsys::rd_kafka_message_destroy(message) };
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.destroy_batch();
        // SAFETY: the client and the queue reference are live; the consumer is closed
        // (leaving its group) once, and the reference released once, before the client is
        // destroyed after this.
        unsafe {
            rdsys::rd_kafka_consumer_close(self.client.native_ptr());
            rdsys::rd_kafka_queue_destroy(self.queue.as_ptr());
        }
    }
}

// SAFETY: librdkafka clients, queues and messages may be used from any thread; a `Reader`
// is moved into its reading thread and used only there.
unsafe impl Send for Reader {}

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

    #[test]
    fn client_errors_reach_the_readers_error_log() {
        // Nothing listens on port 1: librdkafka reports the failed connections through the
        // error callback, which is served while the reader waits for records.
        let mut reader = Reader::new(
            ClientConfig::new()
                .set("bootstrap.servers", "127.0.0.1:1")
                .set("group.id", "bench-reader-test")
                .set("reconnect.backoff.ms", "10"),
        )
        .unwrap();
        reader.assign("bench-reader", 1).unwrap();
        let control = ReaderControl::default();
        control.finish(1, Duration::from_secs(3));
        let outcome = reader.read(&control, true);
        assert_eq!(outcome.records, 0);
        assert!(outcome.errors.count() > 0);
        assert!(
            outcome.errors.kept()[0].contains("Connection refused"),
            "{:?}",
            outcome.errors.kept()
        );
    }
}
