//! The cleaner against a model, without sockets: random sequences of keyed writes,
//! tombstones, transactions (some aborted), cleaning passes, clock jumps and restarts (clean
//! and crash) on a real log with small segments. After every step the log must read as
//! the model says: in offset order, skipping control batches and aborted transactions, the
//! last value of every key is the model's, every record that is left carries the offset and
//! value it was written with, and offsets only increase. After a final pass past every
//! delete horizon, the cleaned part holds one record per key and no aborted record.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicBool;

use proptest::prelude::*;

use super::offset_map::OffsetMap;
use super::pass::{self, PassContext, PassStats};
use super::throttle::Throttler;
use crate::storage::log::cleaning_tests::read_everything;
use crate::storage::log::{AppendOrigin, Log, LogCheckpoint, LogConfig, Marker};
use crate::storage::producer_state::{CONTROL_ABORT, CONTROL_COMMIT};
use crate::storage::records::{build_batch, BatchSpec, NewRecord};

const DELETE_RETENTION_MS: i64 = 1_000;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 400,
        index_interval_bytes: 64,
        compacted: true,
        min_cleanable_dirty_ratio: 0.0,
        delete_retention_ms: DELETE_RETENTION_MS,
        file_delete_delay_ms: 0,
        ..LogConfig::default()
    }
}

#[derive(Debug, Clone)]
enum Op {
    Put { key: u8, tombstone: bool },
    TxnPut { producer: u8, key: u8 },
    TxnEnd { producer: u8, commit: bool },
    Clean { advance_ms: i64 },
    Restart { clean: bool },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..12, prop::bool::weighted(0.2)).prop_map(|(key, tombstone)| Op::Put { key, tombstone }),
        3 => (0u8..2, 0u8..12).prop_map(|(producer, key)| Op::TxnPut { producer, key }),
        2 => (0u8..2, any::<bool>()).prop_map(|(producer, commit)| Op::TxnEnd { producer, commit }),
        2 => (0i64..1_500).prop_map(|advance_ms| Op::Clean { advance_ms }),
        1 => any::<bool>().prop_map(|clean| Op::Restart { clean }),
    ]
}

/// A record written, as the model remembers it.
#[derive(Debug, Clone)]
struct Written {
    key: u8,
    value: Option<Vec<u8>>,
}

/// A record read back: offset, key, value, and whether it sits in a control batch.
type LogRecord = (i64, Option<Vec<u8>>, Option<Vec<u8>>, bool);

struct Harness {
    dir: tempfile::TempDir,
    log: Option<Log>,
    now_ms: i64,
    checkpoint: Option<i64>,
    written: BTreeMap<i64, Written>,
    /// Offsets of aborted transactional records.
    aborted: Vec<i64>,
    /// Per producer: next sequence, and the offsets of its open transaction.
    producers: HashMap<i64, (i32, Vec<i64>)>,
    last_pass: PassStats,
}

impl Harness {
    fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::create(dir.path(), config(), 0, 0).unwrap();
        Harness {
            dir,
            log: Some(log),
            now_ms: 1_000_000,
            checkpoint: None,
            written: BTreeMap::new(),
            aborted: Vec::new(),
            producers: HashMap::new(),
            last_pass: PassStats::default(),
        }
    }

    fn log(&mut self) -> &mut Log {
        self.log.as_mut().unwrap()
    }

    fn append(&mut self, key: u8, value: Option<Vec<u8>>, producer: Option<i64>) {
        let now_ms = self.now_ms;
        let spec = match producer {
            Some(id) => {
                let (sequence, _) = self.producers.entry(id).or_default();
                let spec = BatchSpec {
                    producer_id: id,
                    producer_epoch: 0,
                    base_sequence: *sequence,
                    transactional: true,
                    control: false,
                };
                *sequence += 1;
                spec
            }
            None => BatchSpec::PLAIN,
        };
        let key_bytes = [key];
        let record = NewRecord {
            key: Some(&key_bytes),
            value: value.as_deref(),
            timestamp: now_ms,
        };
        let bytes = build_batch(spec, &[record]);
        let info = self
            .log()
            .append_as_leader(&bytes, 0, AppendOrigin::Client, now_ms)
            .unwrap();
        if let Some(id) = producer {
            self.producers
                .entry(id)
                .or_default()
                .1
                .push(info.first_offset);
        }
        self.written
            .insert(info.first_offset, Written { key, value });
    }

    fn end_txn(&mut self, producer: i64, commit: bool) {
        let Some((_, open)) = self.producers.get_mut(&producer) else {
            return;
        };
        if open.is_empty() {
            return;
        }
        let offsets = std::mem::take(open);
        if !commit {
            self.aborted.extend(offsets);
        }
        let marker = Marker {
            producer_id: producer,
            producer_epoch: 0,
            control_type: if commit {
                CONTROL_COMMIT
            } else {
                CONTROL_ABORT
            },
            coordinator_epoch: 0,
        };
        let now_ms = self.now_ms;
        self.log().append_marker(&marker, now_ms).unwrap();
    }

    fn clean(&mut self) {
        let now_ms = self.now_ms;
        let log = self.log.as_mut().unwrap();
        let view = log.cleaning_view(log.log_end_offset()).unwrap();
        let Some(selection) = pass::select(&view, self.checkpoint, now_ms, true) else {
            return;
        };
        let mut map = OffsetMap::new(1 << 12, 0.9);
        let context = PassContext {
            map: &mut map,
            throttler: &Throttler::new(f64::MAX),
            stop: &AtomicBool::new(false),
            io_buffer_bytes: 128,
            now_ms,
        };
        let stats = pass::run(&view, &selection, context, |cleaned| {
            log.replace_segments(cleaned)
        })
        .unwrap();
        self.checkpoint = Some(stats.end_offset);
        self.last_pass = stats;
    }

    fn restart(&mut self, clean: bool) {
        let mut log = self.log.take().unwrap();
        let checkpoint = if clean {
            log.write_all_indexes().unwrap();
            let plan = log.flush_plan();
            plan.sync_data().unwrap();
            log.mark_flushed(&plan);
            Some(log.checkpoint())
        } else {
            Some(LogCheckpoint {
                recovery_point: log.log_start_offset(),
                log_start_offset: log.log_start_offset(),
            })
        };
        drop(log);
        let (log, _) =
            Log::open(self.dir.path(), config(), checkpoint, clean, self.now_ms).unwrap();
        self.log = Some(log);
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Put { key, tombstone } => {
                let value = (!tombstone).then(|| format!("v{}", self.written.len()).into_bytes());
                self.append(key, value, None);
            }
            Op::TxnPut { producer, key } => {
                let value = Some(format!("t{}", self.written.len()).into_bytes());
                self.append(key, value, Some(i64::from(producer) + 1));
            }
            Op::TxnEnd { producer, commit } => self.end_txn(i64::from(producer) + 1, commit),
            Op::Clean { advance_ms } => {
                self.now_ms += advance_ms;
                self.clean();
            }
            Op::Restart { clean } => self.restart(clean),
        }
    }

    /// Every record left in the log: (offset, key, value, in a control batch).
    fn read_log(&mut self) -> Vec<LogRecord> {
        let mut out = Vec::new();
        let mut previous_last = -1i64;
        for (header, records) in read_everything(self.log()) {
            assert!(header.base_offset > previous_last, "offsets only increase");
            previous_last = header.last_offset();
            for record in records {
                out.push((record.offset, record.key, record.value, header.is_control()));
            }
        }
        out
    }

    /// The value of every key as a read_committed reader of the whole model sees it.
    fn model_view(&self) -> BTreeMap<u8, Vec<u8>> {
        let mut view = BTreeMap::new();
        for (offset, written) in &self.written {
            if self.aborted.contains(offset) || self.is_open(*offset) {
                continue;
            }
            match &written.value {
                Some(value) => view.insert(written.key, value.clone()),
                None => view.remove(&written.key),
            };
        }
        view
    }

    fn is_open(&self, offset: i64) -> bool {
        self.producers
            .values()
            .any(|(_, open)| open.contains(&offset))
    }

    fn check(&mut self) {
        let records = self.read_log();
        let mut view = BTreeMap::new();
        for (offset, key, value, control) in &records {
            if *control {
                continue;
            }
            let written = self
                .written
                .get(offset)
                .expect("a record at an offset never written");
            assert_eq!(key.as_deref(), Some(&[written.key][..]), "offset {offset}");
            assert_eq!(value, &written.value, "offset {offset}");
            if self.aborted.contains(offset) || self.is_open(*offset) {
                continue;
            }
            match value {
                Some(v) => view.insert(written.key, v.clone()),
                None => view.remove(&written.key),
            };
        }
        assert_eq!(view, self.model_view());
    }

    /// After every transaction ended and a pass past every horizon: below the pass's end,
    /// one data record per key, no aborted record, no tombstone.
    fn check_fully_cleaned(&mut self) {
        let end = self.last_pass.end_offset;
        let records = self.read_log();
        let mut keys = std::collections::HashSet::new();
        for (offset, key, value, control) in records {
            if control || offset >= end {
                continue;
            }
            assert!(
                !self.aborted.contains(&offset),
                "aborted record at {offset} left"
            );
            assert!(
                value.is_some(),
                "tombstone at {offset} left past its horizon"
            );
            assert!(keys.insert(key), "two records of one key below {end}");
        }
    }
}

fn run_sequence(ops: &[Op]) {
    let mut harness = Harness::new();
    for op in ops {
        harness.apply(op);
        harness.check();
    }
    for producer in [1, 2] {
        harness.end_txn(producer, producer == 1);
    }
    // Three passes past every horizon: data of an aborted transaction goes in the first,
    // the marker left without data is stamped in the second and goes in the third.
    for _ in 0..3 {
        harness.now_ms += DELETE_RETENTION_MS + 1;
        harness.clean();
        harness.check();
    }
    harness.check_fully_cleaned();
    assert_eq!(
        harness.last_pass.next_horizon_ms, None,
        "nothing left for a later pass to remove"
    );
    harness.restart(false);
    harness.check();
    harness.restart(true);
    harness.check();
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 48,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn cleaning_keeps_the_latest_value_of_every_key(ops in prop::collection::vec(op(), 1..120)) {
        run_sequence(&ops);
    }
}

#[test]
fn a_long_sequence_with_every_kind_of_step() {
    let mut ops = Vec::new();
    for i in 0..400u32 {
        let key = (i % 7) as u8;
        ops.push(match i % 11 {
            0 => Op::TxnPut { producer: 0, key },
            1 => Op::TxnEnd {
                producer: 0,
                commit: i % 2 == 0,
            },
            2 => Op::Put {
                key,
                tombstone: true,
            },
            5 => Op::Clean { advance_ms: 700 },
            9 if i % 3 == 0 => Op::Restart { clean: i % 2 == 0 },
            _ => Op::Put {
                key,
                tombstone: false,
            },
        });
    }
    run_sequence(&ops);
}

/// Found by the model: once a pass removed an ABORT marker, its transaction must leave
/// the aborted-transaction index too, or the same producer's next, committed transaction
/// looks aborted to the next pass (and to read_committed readers).
#[test]
fn a_committed_transaction_after_a_removed_abort_marker_stays() {
    let put = |key| Op::Put {
        key,
        tombstone: false,
    };
    let mut ops = vec![put(0); 6];
    ops.push(Op::TxnPut {
        producer: 0,
        key: 0,
    });
    ops.extend(vec![put(0); 4]);
    ops.extend([
        Op::TxnEnd {
            producer: 0,
            commit: false,
        },
        Op::TxnPut {
            producer: 0,
            key: 0,
        },
        put(1),
        put(1),
        Op::Clean { advance_ms: 233 },
        put(2),
        Op::Clean { advance_ms: 358 },
    ]);
    run_sequence(&ops);
}

/// One key overwritten over many segments: the cleaned segments are empty, and a read
/// from the start still reaches the latest record (empty segments are skipped).
#[test]
fn a_log_cleaned_to_empty_segments_reads_to_its_end() {
    let mut ops = vec![
        Op::Put {
            key: 3,
            tombstone: false
        };
        150
    ];
    ops.push(Op::Clean { advance_ms: 10 });
    ops.push(Op::Restart { clean: true });
    run_sequence(&ops);
}
