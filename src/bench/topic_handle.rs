//! A librdkafka topic handle for the harness's producer, so that each send skips the
//! per-record topic lookup of `rdkafka`'s `BaseProducer::send`.
//!
//! Why: `send` copies the topic name into a new `CString` and calls `rd_kafka_producev`,
//! which looks the topic up under the client-wide write lock (`rd_kafka_topic_new0` with
//! locking) for every record. At a million records a second that lock, shared with
//! librdkafka's broker and polling threads, and the allocation made the harness's producer
//! thread, not the broker, the limit of W1 (a profile of that thread: about a fifth of its
//! time in the lookup, the lock and futex wake-ups). `rd_kafka_produce` on a handle made once
//! per phase, as librdkafka's own `rdkafka_performance` does, takes only the topic's read
//! lock. What reaches the broker is unchanged: the same client, configuration, partitioner
//! and batches.

use std::ffi::{c_void, CString};
use std::marker::PhantomData;
use std::ptr::{self, NonNull};

use rdkafka::bindings as rdsys;
use rdkafka::client::{Client, ClientContext};
use rdkafka::types::RDKafkaErrorCode;

/// `RD_KAFKA_PARTITION_UA`: let the topic's partitioner choose (what `send` does without a
/// partition).
const PARTITION_UNASSIGNED: i32 = -1;

/// A topic handle of one producer; it cannot outlive the producer (`'p`), since librdkafka
/// requires topic handles to be destroyed before their client.
pub struct TopicHandle<'p> {
    handle: NonNull<rdsys::rd_kafka_topic_t>,
    /// The message array of `send_copies`, reused.
    batch: Vec<rdsys::rd_kafka_message_t>,
    _producer: PhantomData<&'p ()>,
}

impl<'p> TopicHandle<'p> {
    /// A handle for `topic` of the producer `client`, with its default topic configuration
    /// (the same one `send` uses).
    pub fn new<C: ClientContext>(
        client: &'p Client<C>,
        topic: &str,
    ) -> Result<TopicHandle<'p>, String> {
        let name = CString::new(topic).map_err(|e| format!("topic name {topic:?}: {e}"))?;
        // SAFETY: the client pointer is live for `'p` (the client is borrowed that long);
        // `name` is a NUL-terminated string librdkafka copies; a null configuration means
        // the client's default topic configuration, which librdkafka copies too.
        let handle = unsafe {
            rdsys::rd_kafka_topic_new(client.native_ptr(), name.as_ptr(), ptr::null_mut())
        };
        let handle = NonNull::new(handle).ok_or_else(|| {
            // SAFETY: reads librdkafka's thread-local last error; no arguments.
            let code: RDKafkaErrorCode = unsafe { rdsys::rd_kafka_last_error() }.into();
            format!("topic handle for {topic}: {code}")
        })?;
        Ok(TopicHandle {
            handle,
            batch: Vec::new(),
            _producer: PhantomData,
        })
    }

    /// Queues one record (librdkafka copies `value` and `key`); `due_us` comes back as the
    /// delivery opaque of its report (see `producer.rs`), as with `BaseRecord::with_opaque_to`.
    pub fn send(
        &self,
        value: &[u8],
        key: Option<&[u8]>,
        due_us: usize,
    ) -> Result<(), RDKafkaErrorCode> {
        let (key_ptr, key_len) = key.map_or((ptr::null(), 0), |k| (k.as_ptr().cast(), k.len()));
        // SAFETY: the handle is live (destroyed only in `drop`); with RD_KAFKA_MSG_F_COPY
        // librdkafka copies the payload and key before returning and never writes through
        // the payload pointer; the opaque is an integer carried back to the delivery report,
        // never dereferenced.
        let rc = unsafe {
            rdsys::rd_kafka_produce(
                self.handle.as_ptr(),
                PARTITION_UNASSIGNED,
                rdsys::RD_KAFKA_MSG_F_COPY,
                value.as_ptr().cast_mut().cast::<c_void>(),
                value.len(),
                key_ptr,
                key_len,
                due_us as *mut c_void,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            // SAFETY: reads librdkafka's thread-local error of the failed call on this thread.
            Err(unsafe { rdsys::rd_kafka_last_error() }.into())
        }
    }
}

impl TopicHandle<'_> {
    /// Queues `count` copies of `value` to `partition` in one `rd_kafka_produce_batch` call
    /// (librdkafka copies each), all with `due_us` as their delivery opaque. Returns how
    /// many were queued and the error that stopped the others: librdkafka gives every
    /// record after a full queue the same `QueueFull`, so the queued ones are the first.
    ///
    /// Why: per record, `rd_kafka_produce` runs the partitioner, takes the topic's read
    /// lock and reads two clocks; a batch to one partition does those once per call.
    pub fn send_copies(
        &mut self,
        partition: i32,
        value: &[u8],
        count: usize,
        due_us: usize,
    ) -> (usize, Option<RDKafkaErrorCode>) {
        self.send_each(partition, std::iter::repeat_n(value, count), due_us)
    }

    /// Like [`Self::send_copies`], with a value of its own per record.
    pub fn send_each<'v>(
        &mut self,
        partition: i32,
        values: impl Iterator<Item = &'v [u8]>,
        due_us: usize,
    ) -> (usize, Option<RDKafkaErrorCode>) {
        self.batch.clear();
        self.batch
            .extend(values.map(|value| rdsys::rd_kafka_message_t {
                err: rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR,
                rkt: ptr::null_mut(),
                partition,
                payload: value.as_ptr().cast_mut().cast::<c_void>(),
                len: value.len(),
                key: ptr::null_mut(),
                key_len: 0,
                offset: 0,
                _private: due_us as *mut c_void,
            }));
        let count = self.batch.len();
        let count_c = i32::try_from(count).unwrap_or(i32::MAX);
        // SAFETY: the handle is live; the array holds `count` initialised messages whose
        // payload pointers are valid for their `len` bytes (the values outlive the call);
        // with RD_KAFKA_MSG_F_COPY
        // librdkafka copies each payload before returning and writes only the messages'
        // `err` fields; the opaque is an integer, never dereferenced.
        let queued = unsafe {
            rdsys::rd_kafka_produce_batch(
                self.handle.as_ptr(),
                partition,
                rdsys::RD_KAFKA_MSG_F_COPY,
                self.batch.as_mut_ptr(),
                count_c,
            )
        };
        let queued = usize::try_from(queued).unwrap_or(0);
        let error = self
            .batch
            .iter()
            .find(|m| m.err != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR)
            .map(|m| m.err.into());
        (queued, error)
    }
}

impl Drop for TopicHandle<'_> {
    fn drop(&mut self) {
        // SAFETY: the handle came from `rd_kafka_topic_new` and is released exactly once,
        // while its client is still alive (`'p`).
        unsafe { rdsys::rd_kafka_topic_destroy(self.handle.as_ptr()) }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use super::super::producer::tests::unconnected_producer;
    use super::*;

    #[test]
    fn a_batch_queues_what_fits_and_reports_the_rest_as_queue_full() {
        let producer = unconnected_producer("10");
        let mut handle = TopicHandle::new(producer.client(), "bench-handle").unwrap();
        assert_eq!(handle.send_copies(0, b"value", 4, 1), (4, None));
        assert_eq!(
            handle.send_copies(0, b"value", 15, 2),
            (6, Some(RDKafkaErrorCode::QueueFull))
        );
        // The ten queued records time out and reach the event loop as failures.
        producer.flush(Duration::from_secs(30)).unwrap();
        let stats = producer.stats();
        assert_eq!(stats.failed_records.load(Ordering::Relaxed), 10);
    }

    #[test]
    fn a_full_queue_is_reported_as_queue_full() {
        let producer = unconnected_producer("1");
        let handle = TopicHandle::new(producer.client(), "bench-handle").unwrap();
        handle.send(b"first", None, 1).unwrap();
        assert_eq!(
            handle.send(b"second", None, 2),
            Err(RDKafkaErrorCode::QueueFull)
        );
    }
}
