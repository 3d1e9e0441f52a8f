//! Transaction coordinator scenarios with an in-memory state log and marker recorder.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use super::*;
use crate::coordinator::{KeyValue, RecordVisitor};

#[derive(Default)]
struct MemoryLog {
    records: Mutex<Vec<Vec<KeyValue>>>,
}

impl CoordinatorLog for MemoryLog {
    fn partitions(&self) -> usize {
        self.records.lock().unwrap().len()
    }
    fn append(
        &self,
        partition: usize,
        records: &[KeyValue],
        _: Option<(i64, i16)>,
    ) -> Result<DurableFuture, String> {
        self.records.lock().unwrap()[partition].extend_from_slice(records);
        Ok(Box::pin(async { Ok(()) }))
    }
    fn replay(&self, partition: usize, visit: &mut RecordVisitor<'_>) -> Result<(), String> {
        for (key, value) in &self.records.lock().unwrap()[partition] {
            visit(LogEvent::Record {
                key,
                value: value.as_deref(),
                transactional_producer: None,
            });
        }
        Ok(())
    }
}

#[derive(Default)]
struct Env {
    next_id: AtomicI64,
    markers: Mutex<Vec<(String, i32, Marker)>>,
}

impl TxnEnvironment for Env {
    fn next_producer_id(&self) -> Result<i64, String> {
        Ok(self.next_id.fetch_add(1, Ordering::SeqCst) + 1000)
    }
    fn write_marker(
        &self,
        topic: &str,
        partition: i32,
        marker: &Marker,
    ) -> Result<Option<DurableFuture>, String> {
        self.markers
            .lock()
            .unwrap()
            .push((topic.to_string(), partition, *marker));
        Ok(None)
    }
}

fn setup() -> (Arc<MemoryLog>, Arc<Env>, TransactionCoordinator) {
    let log = Arc::new(MemoryLog {
        records: Mutex::new(vec![Vec::new(); 4]),
    });
    let env = Arc::new(Env::default());
    let c = TransactionCoordinator::new(TxnConfig::default(), log.clone(), env.clone());
    (log, env, c)
}

const ALL: &dyn Fn(&str, i32) -> bool = &|_, _| true;

#[test]
fn idempotent_producers_get_fresh_ids() {
    let (_, _, c) = setup();
    let (a, epoch, _) = c.init_producer_id(None, 0, None, 0).unwrap();
    let (b, _, _) = c.init_producer_id(None, 0, None, 0).unwrap();
    assert_eq!(epoch, 0);
    assert_ne!(a, b);
}

#[test]
fn commit_writes_markers_to_every_partition() {
    let (_, env, c) = setup();
    let (pid, epoch, _) = c.init_producer_id(Some("t"), 60_000, None, 0).unwrap();
    let parts = [("a".to_string(), 0), ("b".to_string(), 1)];
    let (results, _) = c.add_partitions("t", pid, epoch, &parts, ALL, 10).unwrap();
    assert_eq!(results, vec![None, None]);
    c.end_txn("t", pid, epoch, true, 20).unwrap();
    let markers = env.markers.lock().unwrap().clone();
    assert_eq!(markers.len(), 2);
    assert!(markers
        .iter()
        .all(|(_, _, m)| m.control_type == CONTROL_COMMIT && m.producer_id == pid));
    // A retried EndTxn(commit) succeeds; an abort now is the wrong state.
    assert!(c.end_txn("t", pid, epoch, true, 30).is_ok());
    assert_eq!(
        c.end_txn("t", pid, epoch, false, 30).err(),
        Some(TxnError::InvalidTxnState)
    );
    assert_eq!(
        c.describe(&["t".into()])[0].as_ref().unwrap().state,
        "CompleteCommit"
    );
}

#[test]
fn a_new_instance_fences_the_old_and_aborts_its_transaction() {
    let (_, env, c) = setup();
    let (pid, epoch, _) = c.init_producer_id(Some("t"), 60_000, None, 0).unwrap();
    c.add_partitions("t", pid, epoch, &[("a".to_string(), 0)], ALL, 0)
        .unwrap();
    let (pid2, epoch2, _) = c.init_producer_id(Some("t"), 60_000, None, 5).unwrap();
    assert_eq!(pid2, pid);
    assert!(
        epoch2 > epoch + 1,
        "one bump to fence and abort, one for the new instance"
    );
    let markers = env.markers.lock().unwrap().clone();
    assert_eq!(markers.len(), 1);
    assert_eq!(markers[0].2.control_type, CONTROL_ABORT);
    assert!(markers[0].2.producer_epoch > epoch);
    assert_eq!(
        c.end_txn("t", pid, epoch, true, 6).err(),
        Some(TxnError::ProducerFenced)
    );
    assert_eq!(
        c.add_partitions("t", 999, epoch2, &[("a".to_string(), 0)], ALL, 6)
            .err(),
        Some(TxnError::InvalidProducerIdMapping)
    );
}

#[test]
fn timeouts_abort_and_fence() {
    let (_, env, c) = setup();
    let (pid, epoch, _) = c.init_producer_id(Some("t"), 1_000, None, 0).unwrap();
    c.add_partitions("t", pid, epoch, &[("a".to_string(), 0)], ALL, 100)
        .unwrap();
    c.tick(900);
    assert!(env.markers.lock().unwrap().is_empty());
    c.tick(1_200);
    assert_eq!(env.markers.lock().unwrap().len(), 1);
    assert_eq!(
        c.end_txn("t", pid, epoch, true, 1_300).err(),
        Some(TxnError::ProducerFenced)
    );
    assert_eq!(
        c.init_producer_id(Some("t"), 2_000_000, None, 0).err(),
        Some(TxnError::InvalidTransactionTimeout)
    );
}

#[test]
fn unknown_partitions_are_reported_and_nothing_is_added() {
    let (_, _, c) = setup();
    let (pid, epoch, _) = c.init_producer_id(Some("t"), 60_000, None, 0).unwrap();
    let exists = |t: &str, _: i32| t == "a";
    let (results, _) = c
        .add_partitions(
            "t",
            pid,
            epoch,
            &[("a".into(), 0), ("nope".into(), 0)],
            &exists,
            0,
        )
        .unwrap();
    assert_eq!(
        results,
        vec![
            Some(TxnError::OperationNotAttempted),
            Some(TxnError::UnknownTopicOrPartition)
        ]
    );
    assert_eq!(
        c.describe(&["t".into()])[0].as_ref().unwrap().state,
        "Empty"
    );
}

#[test]
fn a_crash_between_prepare_and_complete_is_finished_on_load() {
    let (log, env, c) = setup();
    let (pid, epoch, _) = c.init_producer_id(Some("t"), 60_000, None, 0).unwrap();
    c.add_partitions("t", pid, epoch, &[("a".to_string(), 0)], ALL, 0)
        .unwrap();
    // Simulate the crash: persist PrepareCommit as the last state.
    let prepared = TxnValue {
        producer_id: pid,
        producer_epoch: epoch,
        timeout_ms: 60_000,
        state: TxnState::PrepareCommit,
        partitions: [("a".to_string(), 0)].into(),
        last_update_ms: 1,
        start_ms: 0,
    };
    let partition = partition_for("t", 4);
    log.records.lock().unwrap()[partition]
        .push((records::key("t"), Some(records::value(&prepared))));
    let restarted = TransactionCoordinator::new(TxnConfig::default(), log.clone(), env.clone());
    restarted.load(10);
    assert_eq!(
        restarted.describe(&["t".into()])[0].as_ref().unwrap().state,
        "CompleteCommit"
    );
    assert_eq!(
        env.markers.lock().unwrap().last().unwrap().2.control_type,
        CONTROL_COMMIT
    );
    // The state itself survives a reload.
    let again = TransactionCoordinator::new(TxnConfig::default(), log, env);
    again.load(20);
    assert_eq!(again.list(&[], &[pid]).len(), 1);
}
