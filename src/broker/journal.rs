//! Group commit across partitions for durable mode (`flush.messages=1`). A durable append
//! writes its batches to the partition's segment as always and a copy to the shared
//! journal file (`storage::journal`), under the partition's lock so the journal holds each
//! partition's appends in log order. The journal thread then makes a whole round of
//! appends durable with one `fdatasync` of that one file and moves each partition's high
//! watermark, so acknowledgements cost one device flush per round, not one per partition.
//!
//! The segments are fsynced later, off the acknowledgement path: when three quarters of
//! `ferry.journal.file.bytes` are written the thread starts a new file and asks the flusher to fsync every
//! partition the old file covers; the old file is deleted once each of them has a recovery
//! point at or past what the file held for it (a deleted topic needs nothing). After a
//! crash, `replay` appends what the segments lost from the files that are left.
//!
//! If the journal cannot be written or fsynced, it stops taking appends for good (until a
//! restart) and durable partitions fall back to fsyncing their own segments: slower, never
//! less safe. Nothing here holds the journal's lock while calling into a partition.
//!
//! The journal's lock is the one lock durable partitions share on the produce path: it is
//! held for one `pwritev` per append (a copy into the page cache), which is what puts every
//! partition's appends into one file in a known order; default-flush partitions never take
//! it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing::{error, info, warn};
use uuid::Uuid;

use super::activity::Activity;
use super::now_ms;
use super::partition::Partition;
use super::topics::TopicRegistry;
use crate::storage::journal::{self, EntryReader, JournalFile};
use crate::storage::{fsync, StorageError};

/// A journal file is retired (and its partitions' segments fsynced) once this share of
/// its preallocated bytes (`ferry.journal.file.bytes`) is written; the rest leaves room for
/// the appends that arrive before the next file is in place (later ones extend the file).
const ROTATE_AT_QUARTERS: u64 = 3;
/// How often the thread looks at retired files when no appends wake it.
const IDLE_CHECK_MS: u64 = 1_000;
/// Least time between two looks at retired files while rounds run back to back.
const RETIRED_CHECK_MS: u64 = 100;
/// Retired files kept for reuse instead of being deleted.
const MAX_RECYCLABLE_FILES: usize = 2;

/// The highest log end journaled per partition, keyed by the partition's address (which
/// no other partition can take while the `Arc` or `Weak` held here lives). Appends to one
/// partition are journaled in log order, so one entry per partition covers all of them:
/// the map never holds more entries than there are durable partitions.
struct HighestEnds<P> {
    ends: HashMap<usize, (P, i64)>,
}

impl<P> HighestEnds<P> {
    fn new() -> Self {
        HighestEnds {
            ends: HashMap::new(),
        }
    }

    /// Notes that the partition at `key` was journaled up to `end`.
    fn note(&mut self, key: usize, end: i64, partition: impl FnOnce() -> P) {
        let entry = self.ends.entry(key).or_insert_with(|| (partition(), end));
        entry.1 = entry.1.max(end);
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    fn entries(&self) -> impl Iterator<Item = &(P, i64)> {
        self.ends.values()
    }

    fn into_entries(self) -> impl Iterator<Item = (P, i64)> {
        self.ends.into_values()
    }
}

/// Partitions with entries in one file (kept until their segments are durable).
type Covered = HighestEnds<Weak<Partition>>;

/// Partitions with entries awaiting the next fdatasync.
type Unsynced = HighestEnds<Arc<Partition>>;

fn partition_key(partition: &Arc<Partition>) -> usize {
    Arc::as_ptr(partition) as usize
}

struct State {
    file: JournalFile,
    /// Partitions appended to since the last round began, one entry each (so at most one
    /// per durable partition, however many appends, acks=0 ones included, arrive while an
    /// fdatasync stalls).
    unsynced: Unsynced,
    covered: Covered,
    stopping: bool,
}

/// A file no longer appended to, kept until its partitions' segments are durable.
struct Retired {
    path: PathBuf,
    covered: Covered,
}

/// The journal: its current file and the thread that fsyncs it.
pub struct Journal {
    dir: PathBuf,
    /// `ferry.journal.file.bytes`: preallocated size of each file after the first.
    file_bytes: u64,
    state: Mutex<State>,
    wake: Condvar,
    failed: AtomicBool,
    spare: Mutex<Spare>,
    spare_wanted: Condvar,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Where the fdatasyncs are counted.
    activity: Arc<Activity>,
}

/// The next file, prepared ahead by its own thread.
struct Spare {
    file: Option<JournalFile>,
    wanted: bool,
    next_sequence: u64,
    /// Retired files no longer needed, to take into use again (at most
    /// `MAX_RECYCLABLE_FILES`; more are deleted).
    recyclable: Vec<PathBuf>,
    stopping: bool,
}

/// What `Journal::start` found from before: files to replay, oldest first.
pub struct Leftover {
    files: Vec<(u64, PathBuf)>,
}

impl Journal {
    /// Opens the journal folder in `data_dir`, starts a new file after any left from
    /// before (returned for `replay`) and starts the threads (syncing, preparing files).
    pub fn start(
        data_dir: &Path,
        file_bytes: u64,
        activity: Arc<Activity>,
    ) -> Result<(Arc<Journal>, Leftover), StorageError> {
        let dir = data_dir.join(journal::JOURNAL_DIR);
        std::fs::create_dir_all(&dir).map_err(|e| StorageError::io("create journal", &dir, e))?;
        let old = journal::list(&dir).map_err(|e| StorageError::io("list journal", &dir, e))?;
        let next = old.last().map_or(0, |(sequence, _)| sequence + 1);
        let file = JournalFile::create(&dir, next)
            .map_err(|e| StorageError::io("create journal file", &dir, e))?;
        let journal = Arc::new(Journal {
            dir,
            file_bytes,
            state: Mutex::new(State {
                file,
                unsynced: HighestEnds::new(),
                covered: HighestEnds::new(),
                stopping: false,
            }),
            wake: Condvar::new(),
            failed: AtomicBool::new(false),
            spare: Mutex::new(Spare {
                file: None,
                wanted: false,
                next_sequence: next + 1,
                recyclable: Vec::new(),
                stopping: false,
            }),
            spare_wanted: Condvar::new(),
            threads: Mutex::new(Vec::new()),
            activity,
        });
        let worker = Arc::clone(&journal);
        let syncing = std::thread::Builder::new()
            .name("ferry-journal".to_string())
            .spawn(move || worker.run())
            .map_err(|e| StorageError::io("start the journal thread", &journal.dir, e))?;
        let worker = Arc::clone(&journal);
        let preparing = std::thread::Builder::new()
            .name("ferry-journal-prep".to_string())
            .spawn(move || worker.prepare_spares())
            .map_err(|e| StorageError::io("start the journal thread", &journal.dir, e))?;
        *crate::sync::lock(&journal.threads, "journal thread handles lock") =
            vec![syncing, preparing];
        Ok((journal, Leftover { files: old }))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        crate::sync::lock(&self.state, "journal lock")
    }

    /// Journals a durable append (called with the partition's lock held, so entries are in
    /// log order). `end` is the log end after the append; the high watermark moves there
    /// once a round has fsynced the entry. False means the journal is not taking appends
    /// and the caller must make the data durable by fsyncing the segment instead.
    pub fn append(
        &self,
        partition: &Arc<Partition>,
        topic_id: Uuid,
        batches: &[u8],
        end: i64,
    ) -> bool {
        if self.failed.load(Ordering::Acquire) {
            return false;
        }
        let mut state = self.lock();
        if let Err(err) = state.file.append(topic_id, partition.index(), batches) {
            drop(state);
            self.fail(&format!("writing an entry failed: {err}"));
            return false;
        }
        let key = partition_key(partition);
        state.unsynced.note(key, end, || Arc::clone(partition));
        state.covered.note(key, end, || Arc::downgrade(partition));
        self.wake.notify_one();
        true
    }

    fn fail(&self, why: &str) {
        if !self.failed.swap(true, Ordering::AcqRel) {
            error!(
                dir = %self.dir.display(),
                "the durable-mode journal failed ({why}); until a restart, durable partitions \
                 fsync their own segments for every acknowledgement"
            );
        }
    }

    /// Makes the threads sync what is queued and exit, and waits for them.
    pub fn stop(&self) {
        self.lock().stopping = true;
        self.wake.notify_one();
        self.lock_spare().stopping = true;
        self.spare_wanted.notify_one();
        let threads = std::mem::take(&mut *crate::sync::lock(
            &self.threads,
            "journal thread handles lock",
        ));
        for thread in threads {
            if thread.join().is_err() {
                error!("a journal thread panicked");
            }
        }
    }

    fn run(&self) {
        let mut retired: Vec<Retired> = Vec::new();
        let mut rotate_next = false;
        let mut last_check = std::time::Instant::now();
        loop {
            // Files are prepared by another thread, so appends never wait for one.
            let fresh = if rotate_next && !self.failed.load(Ordering::Acquire) {
                self.take_spare()
            } else {
                None
            };
            let (handle, round, old, stopping) = {
                let mut state = self.lock();
                while state.unsynced.is_empty() && !state.stopping && fresh.is_none() {
                    let idle = Duration::from_millis(IDLE_CHECK_MS);
                    let (next, timeout) = crate::sync::recover(self.wake.wait_timeout(state, idle));
                    state = next;
                    if timeout.timed_out() {
                        break;
                    }
                }
                let handle = state.file.handle();
                let round = std::mem::replace(&mut state.unsynced, HighestEnds::new());
                let old = fresh.map(|file| {
                    let old = std::mem::replace(&mut state.file, file);
                    (
                        old,
                        std::mem::replace(&mut state.covered, HighestEnds::new()),
                    )
                });
                // A plain appending file (the first one) is swapped for a preallocated one
                // as soon as it is used; a preallocated one when it is mostly written.
                rotate_next = state.file.size_bytes() >= self.file_bytes / 4 * ROTATE_AT_QUARTERS
                    || (state.file.preallocated_bytes() == 0 && state.file.size_bytes() > 0);
                (handle, round, old, state.stopping)
            };
            self.sync_round(&handle, round);
            if let Some((file, covered)) = old {
                retired.push(self.retire(file, covered));
            }
            if last_check.elapsed() >= Duration::from_millis(RETIRED_CHECK_MS) || stopping {
                last_check = std::time::Instant::now();
                retired.retain(|file| !self.release_if_covered(file));
            }
            if stopping {
                return;
            }
        }
    }

    /// The prepared zero-filled file, if ready; otherwise asks for one.
    fn take_spare(&self) -> Option<JournalFile> {
        let mut spare = self.lock_spare();
        let file = spare.file.take();
        if file.is_none() && !spare.wanted {
            spare.wanted = true;
            self.spare_wanted.notify_one();
        }
        file
    }

    fn lock_spare(&self) -> MutexGuard<'_, Spare> {
        crate::sync::lock(&self.spare, "journal spare lock")
    }

    /// The preparing thread: creates the next zero-filled file whenever one is wanted,
    /// away from the thread whose fsyncs acknowledge appends.
    fn prepare_spares(&self) {
        loop {
            let sequence = {
                let mut spare = self.lock_spare();
                while !(spare.stopping || spare.wanted && spare.file.is_none()) {
                    spare = crate::sync::recover(self.spare_wanted.wait(spare));
                }
                if spare.stopping {
                    return;
                }
                (spare.next_sequence, spare.recyclable.pop())
            };
            let (sequence, recyclable) = sequence;
            let prepared = match &recyclable {
                Some(old) => JournalFile::recycle(&self.dir, old, sequence),
                None => JournalFile::create_zeroed(&self.dir, sequence, self.file_bytes),
            };
            match prepared {
                Ok(file) => {
                    if recyclable.is_some() {
                        info!(file = %file.path().display(), "reusing a retired journal file");
                    }
                    let mut spare = self.lock_spare();
                    spare.file = Some(file);
                    spare.next_sequence += 1;
                    spare.wanted = false;
                }
                Err(err) => {
                    // The journal keeps appending to its current file; try again later
                    // (with a new zero-filled file: the recycled one, if any, is dropped).
                    warn!(dir = %self.dir.display(), "preparing the next journal file failed: {err}");
                    let _ = std::fs::remove_file(self.dir.join(format!("{sequence:020}.journal")));
                    if let Some(old) = recyclable {
                        let _ = std::fs::remove_file(old);
                    }
                    std::thread::sleep(Duration::from_millis(IDLE_CHECK_MS));
                }
            }
        }
    }

    /// One group commit: fsync the file, then release every append the round covered.
    fn sync_round(&self, file: &std::fs::File, round: Unsynced) {
        if round.is_empty() {
            return;
        }
        self.activity.journal_fdatasyncs.add(1);
        match fsync::sync_data(file) {
            Ok(()) => {
                for (partition, end) in round.into_entries() {
                    partition.journal_synced(end);
                }
            }
            Err(err) => {
                // The entries may not be on disk; their segments still hold the data, so
                // fsyncing those instead makes it durable (or takes them offline).
                self.fail(&format!("fdatasync failed: {err}"));
                for (partition, _) in round.into_entries() {
                    partition.request_flush();
                }
            }
        }
    }

    /// Once every partition a retired file covers has fsynced its segments past what the
    /// file held (a dropped partition, from a deleted topic, needs nothing), keeps the file
    /// for reuse or deletes it. True when the file is released.
    fn release_if_covered(&self, file: &Retired) -> bool {
        let done = file.covered.entries().all(|(partition, end)| {
            partition
                .upgrade()
                .is_none_or(|p| p.recovery_point() >= *end)
        });
        if !done {
            return false;
        }
        // Only a file with a whole preallocated size is worth reusing (the first, appending
        // file is usually small).
        let whole = std::fs::metadata(&file.path).is_ok_and(|m| m.len() >= self.file_bytes);
        if whole {
            let mut spare = self.lock_spare();
            if spare.recyclable.len() < MAX_RECYCLABLE_FILES {
                spare.recyclable.push(file.path.clone());
                return true;
            }
        }
        match std::fs::remove_file(&file.path) {
            Ok(()) => true,
            Err(err) => {
                warn!(file = %file.path.display(), "deleting a journal file failed: {err}");
                false
            }
        }
    }

    /// Asks the flusher to fsync every partition a finished file covers.
    fn retire(&self, file: JournalFile, covered: Covered) -> Retired {
        for (partition, _) in covered.entries() {
            if let Some(partition) = partition.upgrade() {
                partition.request_flush();
            }
        }
        info!(
            file = %file.path().display(),
            partitions = covered.len(),
            "retiring a journal file: fsyncing its partitions' segments, then deleting it"
        );
        Retired {
            path: file.path().to_path_buf(),
            covered,
        }
    }
}

/// Appends to the partitions what the journal files left from before hold and their
/// segments lost, fsyncs those partitions and deletes the files. Runs at startup, after
/// the logs were opened and before anything is served.
pub fn replay(leftover: Leftover, topics: &TopicRegistry) -> Result<(), StorageError> {
    if leftover.files.is_empty() {
        return Ok(());
    }
    let now = now_ms();
    let mut touched: HashMap<usize, Arc<Partition>> = HashMap::new();
    let mut entries = 0u64;
    let mut appended_records = 0u64;
    for (sequence, path) in &leftover.files {
        let mut reader = EntryReader::open(path, *sequence)
            .map_err(|e| StorageError::io("open journal", path, e))?;
        while let Some(entry) = reader
            .next_entry()
            .map_err(|e| StorageError::io("read journal", path, e))?
        {
            entries += 1;
            let partition = topics.get_by_id(entry.topic_id).and_then(|t| {
                t.partitions
                    .get(usize::try_from(entry.partition).ok()?)
                    .cloned()
            });
            // A topic deleted since has nothing to restore.
            let Some(partition) = partition else { continue };
            match partition.replay_journaled(&entry.batches, now) {
                Ok(0) => {}
                Ok(records) => {
                    appended_records += records;
                    touched.insert(partition_key(&partition), partition);
                }
                Err(err) => error!(
                    topic = partition.topic(), partition = partition.index(), file = %path.display(),
                    "a journal entry could not be replayed: {err}"
                ),
            }
        }
        if reader.torn_bytes() > 0 {
            info!(file = %path.display(), bytes = reader.torn_bytes(), "the journal ends with an incomplete entry (never acknowledged)");
        }
    }
    info!(
        files = leftover.files.len(),
        entries,
        records = appended_records,
        partitions = touched.len(),
        "replayed the journal"
    );
    // The files go only once what they restored is durable in the segments and the
    // checkpoints say so; otherwise they stay, and the next start replays them again
    // (replay skips what a log already holds).
    if touched.is_empty() {
        remove_journal_files(&leftover);
        return Ok(());
    }
    let durable = touched.values().all(|partition| match partition.close() {
        Ok(_) => true,
        Err(err) => {
            error!(
                topic = partition.topic(),
                partition = partition.index(),
                "fsyncing a partition restored from the journal failed; the journal files stay \
                 for the next start: {err}"
            );
            false
        }
    });
    if !durable {
        return Ok(());
    }
    if let Err(err) = topics.write_checkpoints() {
        warn!("writing checkpoints after the journal replay failed; the journal files stay for the next start: {err}");
        return Ok(());
    }
    remove_journal_files(&leftover);
    Ok(())
}

fn remove_journal_files(leftover: &Leftover) {
    for (_, path) in &leftover.files {
        if let Err(err) = std::fs::remove_file(path) {
            warn!(file = %path.display(), "deleting a replayed journal file failed: {err}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_appends_keep_one_entry_per_partition_with_its_highest_end() {
        // As during a stalled fdatasync: many appends (acks=0 ones need no answer, so
        // nothing else limits them) to a few partitions before the next round.
        let mut pending: HighestEnds<&str> = HighestEnds::new();
        for end in 1..=10_000 {
            pending.note(1, end, || "a");
            pending.note(2, end * 2, || "b");
        }
        pending.note(1, 5, || "a");
        assert_eq!(pending.len(), 2);
        let mut ends: Vec<_> = pending.into_entries().collect();
        ends.sort();
        assert_eq!(ends, vec![("a", 10_000), ("b", 20_000)]);
    }
}
