//! The flusher thread: fsyncs partitions' segments on request (segment rolls,
//! `flush.messages`/`flush.ms`, journal files being retired, and durable partitions when
//! the journal has failed). While one round runs, new requests queue for the next, so
//! requests share fsyncs. Durable acknowledgements normally come from the journal
//! (`broker::journal`), not from here. Runs on its own OS thread because fsync blocks.
//!
//! A round fsyncs the queued partitions one by one, with the writeback of the next
//! `WRITEBACK_AHEAD_PARTITIONS - 1` already started (no waiting) while one is fsynced: the
//! device always has the next partition's data to write, but never more than a couple of
//! partitions' worth queued. Starting all of them at once (as rounds first did) put a whole
//! journal file's worth of segment data (12 MiB by default) in the device's queue when a
//! durable-mode journal file retired, and the journal's next fdatasync, which acknowledges
//! produces, waited behind it: 7-13 ms, against 0.8-2.4 ms with one partition at a time, in
//! a probe on this VM (16 files of 768 KiB, docs/performance.md).

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use super::now_ms;
use super::partition::Partition;

/// Partitions of a round whose writeback has started and which are not yet fsynced: the
/// one being fsynced and the ones started ahead of it.
const WRITEBACK_AHEAD_PARTITIONS: usize = 2;

#[derive(Default)]
struct Queue {
    pending: Vec<Arc<Partition>>,
    stopping: bool,
}

/// Handle to the flusher thread.
#[derive(Default)]
pub struct Flusher {
    queue: Mutex<Queue>,
    wake: Condvar,
}

impl Flusher {
    /// Starts the flusher thread.
    pub fn start() -> (Arc<Flusher>, JoinHandle<()>) {
        let flusher = Arc::new(Flusher::default());
        let worker = Arc::clone(&flusher);
        let handle = std::thread::Builder::new()
            .name("ferry-flusher".to_string())
            .spawn(move || worker.run())
            .expect("spawning the flusher thread at startup");
        (flusher, handle)
    }

    /// Queues a partition for the next flush round (the partition de-duplicates requests).
    pub fn request(&self, partition: Arc<Partition>) {
        let mut queue = crate::sync::lock(&self.queue, "flusher queue lock");
        queue.pending.push(partition);
        self.wake.notify_one();
    }

    /// Asks the thread to finish the queued work and exit.
    pub fn stop(&self) {
        let mut queue = crate::sync::lock(&self.queue, "flusher queue lock");
        queue.stopping = true;
        self.wake.notify_one();
    }

    fn run(&self) {
        loop {
            let (batch, stopping) = {
                let mut queue = crate::sync::lock(&self.queue, "flusher queue lock");
                while queue.pending.is_empty() && !queue.stopping {
                    queue = crate::sync::recover(self.wake.wait(queue));
                }
                (std::mem::take(&mut queue.pending), queue.stopping)
            };
            flush_round(&batch, now_ms());
            if stopping {
                return;
            }
        }
    }
}

/// Fsyncs `batch` in order, with at most `WRITEBACK_AHEAD_PARTITIONS` started at a time.
fn flush_round(batch: &[Arc<Partition>], now_ms: i64) {
    let mut queued = batch.iter();
    let mut started = VecDeque::with_capacity(WRITEBACK_AHEAD_PARTITIONS);
    loop {
        while started.len() < WRITEBACK_AHEAD_PARTITIONS {
            let Some(partition) = queued.next() else {
                break;
            };
            started.push_back((partition, partition.begin_flush()));
        }
        let Some((partition, flush)) = started.pop_front() else {
            return;
        };
        partition.finish_flush(flush, now_ms);
    }
}
