//! The flusher thread: fsyncs partitions' segments on request (segment rolls,
//! `flush.messages`/`flush.ms`, journal files being retired, and durable partitions when
//! the journal has failed). While one round runs, new requests queue for the next, so
//! requests share fsyncs. Durable acknowledgements normally come from the journal
//! (`broker::journal`), not from here. Runs on its own OS thread because fsync blocks.
//!
//! A round first starts writeback of every queued partition (no waiting), then fsyncs them
//! one by one: the data of all partitions is in flight together and the filesystem can
//! fold their metadata updates into fewer journal commits, instead of one full write,
//! commit and device flush per partition in turn.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use super::now_ms;
use super::partition::Partition;

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
        let mut queue = self
            .queue
            .lock()
            .expect("flusher queue lock is never held across a panic");
        queue.pending.push(partition);
        self.wake.notify_one();
    }

    /// Asks the thread to finish the queued work and exit.
    pub fn stop(&self) {
        let mut queue = self
            .queue
            .lock()
            .expect("flusher queue lock is never held across a panic");
        queue.stopping = true;
        self.wake.notify_one();
    }

    fn run(&self) {
        loop {
            let (batch, stopping) = {
                let mut queue = self
                    .queue
                    .lock()
                    .expect("flusher queue lock is never held across a panic");
                while queue.pending.is_empty() && !queue.stopping {
                    queue = self.wake.wait(queue).expect("flusher queue lock poisoned");
                }
                (std::mem::take(&mut queue.pending), queue.stopping)
            };
            let now = now_ms();
            let started: Vec<_> = batch.iter().map(|p| p.begin_flush()).collect();
            for (partition, started) in batch.iter().zip(started) {
                partition.finish_flush(started, now);
            }
            if stopping {
                return;
            }
        }
    }
}
