//! Kafka's transaction coordinator (transaction version 1, the protocol every client
//! speaks unless the broker finalizes `transaction.version=2`, which Ferry does not):
//! producer ids (InitProducerId, with epoch bumps and fencing), transactions' partitions
//! (AddPartitionsToTxn, AddOffsetsToTxn) and their end (EndTxn), transaction timeouts and
//! transactional-id expiry.
//!
//! Ending a transaction: write PrepareCommit/PrepareAbort to `__transaction_state`, write a
//! COMMIT/ABORT marker into every partition of the transaction (including the group's
//! `__consumer_offsets` partition, which applies or drops the transactional offsets), then
//! write CompleteCommit/CompleteAbort. On a single node the markers are local appends, so
//! this happens before EndTxn is answered; a crash in between leaves a Prepare state that
//! [`TransactionCoordinator::load`] completes at the next start (markers are idempotent:
//! a marker for a producer without an open transaction changes nothing).
//!
//! A transaction that outlives its timeout is aborted with the producer's epoch bumped, so
//! the producer is fenced; so is the open transaction of a producer replaced by a new
//! InitProducerId for the same transactional id.

pub mod records;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use tracing::{error, info, warn};

use super::{partition_for, CoordinatorLog, DurableFuture, LogEvent};
use crate::storage::log::Marker;
use crate::storage::producer_state::{CONTROL_ABORT, CONTROL_COMMIT};
use records::{TxnState, TxnValue};

/// Transaction coordinator settings.
#[derive(Debug, Clone)]
pub struct TxnConfig {
    /// `transaction.max.timeout.ms`.
    pub max_timeout_ms: i32,
    /// `transactional.id.expiration.ms`: idle transactional ids are forgotten.
    pub id_expiration_ms: i64,
    /// `transaction.state.log.num.partitions`.
    pub state_topic_partitions: i32,
}

impl Default for TxnConfig {
    fn default() -> Self {
        TxnConfig {
            max_timeout_ms: 900_000,
            id_expiration_ms: 7 * 24 * 3_600_000,
            state_topic_partitions: 50,
        }
    }
}

/// Errors the transaction coordinator answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnError {
    InvalidTransactionTimeout,
    ConcurrentTransactions,
    InvalidProducerIdMapping,
    ProducerFenced,
    InvalidTxnState,
    UnknownTopicOrPartition,
    OperationNotAttempted,
    /// The id's `__transaction_state` partition could not be loaded.
    CoordinatorNotAvailable,
    /// Writing to an internal topic failed.
    StorageFailure,
}

impl fmt::Display for TxnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// What the coordinator needs from the broker.
pub trait TxnEnvironment: Send + Sync {
    /// A fresh producer id, never handed out before (also across restarts).
    fn next_producer_id(&self) -> Result<i64, String>;
    /// Writes a transaction marker into a partition (and lets the group coordinator apply
    /// or drop transactional offsets when it is a `__consumer_offsets` partition).
    /// `Ok(None)` if the partition no longer exists.
    fn write_marker(
        &self,
        topic: &str,
        partition: i32,
        marker: &Marker,
    ) -> Result<Option<DurableFuture>, String>;
}

/// One transactional id.
#[derive(Debug, Clone)]
struct Txn {
    producer_id: i64,
    producer_epoch: i16,
    timeout_ms: i32,
    state: TxnState,
    partitions: BTreeSet<(String, i32)>,
    start_ms: i64,
    last_update_ms: i64,
}

impl Txn {
    fn to_value(&self) -> TxnValue {
        TxnValue {
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            timeout_ms: self.timeout_ms,
            state: self.state,
            partitions: self.partitions.clone(),
            last_update_ms: self.last_update_ms,
            start_ms: self.start_ms,
        }
    }

    /// Kafka's producer-id and epoch checks for AddPartitions, AddOffsets and EndTxn.
    fn check_producer(&self, producer_id: i64, epoch: i16) -> Result<(), TxnError> {
        if self.producer_id != producer_id {
            return Err(TxnError::InvalidProducerIdMapping);
        }
        if self.producer_epoch != epoch {
            return Err(TxnError::ProducerFenced);
        }
        if matches!(
            self.state,
            TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::PrepareEpochFence
        ) {
            return Err(TxnError::ConcurrentTransactions);
        }
        Ok(())
    }
}

/// A transaction as DescribeTransactions shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnDescription {
    pub transactional_id: String,
    pub state: &'static str,
    pub timeout_ms: i32,
    pub start_ms: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub partitions: Vec<(String, i32)>,
}

/// The coordinator of every transactional id (a single node coordinates them all).
pub struct TransactionCoordinator {
    config: TxnConfig,
    log: Arc<dyn CoordinatorLog>,
    env: Arc<dyn TxnEnvironment>,
    txns: Mutex<HashMap<String, Txn>>,
    /// `__transaction_state` partitions that could not be replayed at startup.
    unavailable_partitions: Mutex<HashSet<usize>>,
}

/// Epoch at which a producer id is exhausted and replaced.
const MAX_EPOCH: i16 = i16::MAX - 1;

impl TransactionCoordinator {
    pub fn new(
        config: TxnConfig,
        log: Arc<dyn CoordinatorLog>,
        env: Arc<dyn TxnEnvironment>,
    ) -> Self {
        TransactionCoordinator {
            config,
            log,
            env,
            txns: Mutex::new(HashMap::new()),
            unavailable_partitions: Mutex::new(HashSet::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Txn>> {
        crate::sync::lock(&self.txns, "transaction coordinator lock")
    }

    fn persist(&self, id: &str, txn: &Txn) -> Result<DurableFuture, TxnError> {
        let partition = partition_for(id, self.log.partitions());
        let record = (records::key(id), Some(records::value(&txn.to_value())));
        self.log.append(partition, &[record], None).map_err(|err| {
            warn!(
                transactional_id = id,
                "writing to __transaction_state failed: {err}"
            );
            TxnError::StorageFailure
        })
    }

    /// Handles InitProducerId. Without a transactional id every call gets a fresh producer
    /// id (as Kafka does for idempotent producers); with one, the id's epoch is bumped
    /// (fencing older instances) and any open transaction is aborted first.
    pub fn init_producer_id(
        &self,
        transactional_id: Option<&str>,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        now_ms: i64,
    ) -> Result<(i64, i16, Vec<DurableFuture>), TxnError> {
        let next_id = || {
            self.env
                .next_producer_id()
                .map_err(|_| TxnError::StorageFailure)
        };
        let Some(id) = transactional_id.filter(|t| !t.is_empty()) else {
            return Ok((next_id()?, 0, Vec::new()));
        };
        if timeout_ms <= 0 || timeout_ms > self.config.max_timeout_ms {
            return Err(TxnError::InvalidTransactionTimeout);
        }
        self.check_available(id)?;
        let mut txns = self.lock();
        let mut waits = Vec::new();
        let txn = match txns.get_mut(id) {
            None => {
                let txn = Txn {
                    producer_id: next_id()?,
                    producer_epoch: 0,
                    timeout_ms,
                    state: TxnState::Empty,
                    partitions: BTreeSet::new(),
                    start_ms: -1,
                    last_update_ms: now_ms,
                };
                txns.entry(id.to_string()).or_insert(txn)
            }
            Some(txn) => {
                if let Some((producer_id, epoch)) = expected.filter(|(p, _)| *p >= 0) {
                    // KIP-360: a producer recovering its own id, not a new instance.
                    if producer_id != txn.producer_id || epoch != txn.producer_epoch {
                        return Err(TxnError::ProducerFenced);
                    }
                }
                if matches!(txn.state, TxnState::PrepareCommit | TxnState::PrepareAbort) {
                    return Err(TxnError::ConcurrentTransactions);
                }
                if txn.state == TxnState::Ongoing {
                    info!(
                        transactional_id = id,
                        "aborting the open transaction of a fenced producer"
                    );
                    bump_epoch(txn, &next_id)?;
                    waits.extend(self.end(id, txn, false, now_ms)?);
                }
                bump_epoch(txn, &next_id)?;
                txn.timeout_ms = timeout_ms;
                txn.state = TxnState::Empty;
                txn.partitions.clear();
                txn.last_update_ms = now_ms;
                txn
            }
        };
        let (producer_id, epoch) = (txn.producer_id, txn.producer_epoch);
        let snapshot = txn.clone();
        waits.push(self.persist(id, &snapshot)?);
        Ok((producer_id, epoch, waits))
    }

    /// Handles AddPartitionsToTxn: per partition, `None` or the error.
    pub fn add_partitions(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
        exists: &dyn Fn(&str, i32) -> bool,
        now_ms: i64,
    ) -> Result<(Vec<Option<TxnError>>, Option<DurableFuture>), TxnError> {
        self.check_available(id)?;
        let mut txns = self.lock();
        let txn = txns.get_mut(id).ok_or(TxnError::InvalidProducerIdMapping)?;
        txn.check_producer(producer_id, epoch)?;
        if partitions.iter().any(|(t, p)| !exists(t, *p)) {
            let results = partitions
                .iter()
                .map(|(t, p)| {
                    Some(if exists(t, *p) {
                        TxnError::OperationNotAttempted
                    } else {
                        TxnError::UnknownTopicOrPartition
                    })
                })
                .collect();
            return Ok((results, None));
        }
        let added = partitions.iter().any(|p| !txn.partitions.contains(p));
        if !added && txn.state == TxnState::Ongoing {
            return Ok((vec![None; partitions.len()], None));
        }
        if txn.state != TxnState::Ongoing {
            txn.start_ms = now_ms;
            txn.state = TxnState::Ongoing;
        }
        txn.partitions.extend(partitions.iter().cloned());
        txn.last_update_ms = now_ms;
        let snapshot = txn.clone();
        let wait = self.persist(id, &snapshot)?;
        Ok((vec![None; partitions.len()], Some(wait)))
    }

    /// Handles EndTxn: writes the markers and completes the transaction.
    pub fn end_txn(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        now_ms: i64,
    ) -> Result<Vec<DurableFuture>, TxnError> {
        self.check_available(id)?;
        let mut txns = self.lock();
        let txn = txns.get_mut(id).ok_or(TxnError::InvalidProducerIdMapping)?;
        txn.check_producer(producer_id, epoch)?;
        match (txn.state, commit) {
            (TxnState::Ongoing, _) => self.end(id, txn, commit, now_ms),
            // Retries of a completed EndTxn succeed.
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => Ok(Vec::new()),
            _ => Err(TxnError::InvalidTxnState),
        }
    }

    /// Prepare, markers, complete.
    fn end(
        &self,
        id: &str,
        txn: &mut Txn,
        commit: bool,
        now_ms: i64,
    ) -> Result<Vec<DurableFuture>, TxnError> {
        txn.state = if commit {
            TxnState::PrepareCommit
        } else {
            TxnState::PrepareAbort
        };
        txn.last_update_ms = now_ms;
        let mut waits = vec![self.persist(id, txn)?];
        waits.extend(self.write_markers(txn, commit)?);
        txn.state = if commit {
            TxnState::CompleteCommit
        } else {
            TxnState::CompleteAbort
        };
        txn.partitions.clear();
        txn.last_update_ms = now_ms;
        waits.push(self.persist(id, txn)?);
        Ok(waits)
    }

    fn write_markers(&self, txn: &Txn, commit: bool) -> Result<Vec<DurableFuture>, TxnError> {
        let marker = Marker {
            producer_id: txn.producer_id,
            producer_epoch: txn.producer_epoch,
            control_type: if commit {
                CONTROL_COMMIT
            } else {
                CONTROL_ABORT
            },
            coordinator_epoch: 0,
        };
        let mut waits = Vec::new();
        for (topic, partition) in &txn.partitions {
            match self.env.write_marker(topic, *partition, &marker) {
                Ok(Some(wait)) => waits.push(wait),
                Ok(None) => {}
                Err(err) => {
                    warn!(topic = ?topic, partition, "writing a transaction marker failed: {err}");
                    return Err(TxnError::StorageFailure);
                }
            }
        }
        Ok(waits)
    }

    /// Aborts transactions past their timeout (fencing their producer) and forgets
    /// transactional ids idle longer than `transactional.id.expiration.ms`.
    pub fn tick(&self, now_ms: i64) {
        let mut txns = self.lock();
        let next_id = || {
            self.env
                .next_producer_id()
                .map_err(|_| TxnError::StorageFailure)
        };
        for (id, txn) in txns.iter_mut() {
            if txn.state.is_prepared() {
                self.complete_prepared(id, txn, now_ms);
                continue;
            }
            let open_ms = now_ms.saturating_sub(txn.start_ms);
            if txn.state == TxnState::Ongoing && open_ms > i64::from(txn.timeout_ms) {
                info!(transactional_id = ?id, "aborting a transaction that exceeded its timeout");
                if bump_epoch(txn, &next_id)
                    .and_then(|()| self.end(id, txn, false, now_ms))
                    .is_err()
                {
                    warn!(transactional_id = ?id, "aborting the timed-out transaction failed; will retry");
                }
            }
        }
        let expired: Vec<String> = txns
            .iter()
            .filter(|(_, t)| {
                t.state != TxnState::Ongoing
                    && !t.state.is_prepared()
                    && now_ms.saturating_sub(t.last_update_ms) > self.config.id_expiration_ms
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            let partition = partition_for(&id, self.log.partitions());
            if self
                .log
                .append(partition, &[(records::key(&id), None)], None)
                .is_ok()
            {
                txns.remove(&id);
                info!(transactional_id = ?id, "expired an idle transactional id");
            }
        }
    }

    /// Rebuilds state from `__transaction_state` and completes transactions a crash left
    /// between Prepare and Complete (if that fails, e.g. on a full disk, `tick` retries).
    /// A partition that cannot be replayed makes only its own transactional ids
    /// unavailable (COORDINATOR_NOT_AVAILABLE) until a restart.
    pub fn load(&self, now_ms: i64) {
        let mut txns = self.lock();
        for partition in 0..self.log.partitions() {
            let replayed = self.log.replay(partition, &mut |event| {
                let LogEvent::Record { key, value, .. } = event else {
                    return;
                };
                let Some(id) = records::decode_key(key) else {
                    return;
                };
                match value.and_then(records::decode_value) {
                    Some(v) => {
                        txns.insert(
                            id,
                            Txn {
                                producer_id: v.producer_id,
                                producer_epoch: v.producer_epoch,
                                timeout_ms: v.timeout_ms,
                                state: v.state,
                                partitions: v.partitions,
                                start_ms: v.start_ms,
                                last_update_ms: v.last_update_ms,
                            },
                        );
                    }
                    None => {
                        txns.remove(&id);
                    }
                }
            });
            if let Err(reason) = replayed {
                error!(
                    partition,
                    "cannot load __transaction_state partition {partition}; its transactional \
                     ids are unavailable (COORDINATOR_NOT_AVAILABLE) until a restart: {reason}"
                );
                let partitions = self.log.partitions();
                txns.retain(|id, _| partition_for(id, partitions) != partition);
                crate::sync::lock(&self.unavailable_partitions, "transaction partitions")
                    .insert(partition);
            }
        }
        for (id, txn) in txns.iter_mut() {
            if txn.state.is_prepared() {
                info!(transactional_id = ?id, "completing a transaction interrupted by a crash");
                self.complete_prepared(id, txn, now_ms);
            }
        }
        info!(transactional_ids = txns.len(), "loaded transactions");
    }

    /// Finishes a transaction left in a Prepare state (markers are idempotent). A failure
    /// leaves it prepared for the next `tick` to retry, as Kafka's coordinator retries
    /// marker writes until they succeed.
    fn complete_prepared(&self, id: &str, txn: &mut Txn, now_ms: i64) {
        let commit = txn.state == TxnState::PrepareCommit;
        if let Err(err) = self.end(id, txn, commit, now_ms) {
            warn!(transactional_id = ?id, "completing a prepared transaction failed; will retry: {err}");
        }
    }

    /// Whether this coordinator can serve `transactional_id` (its `__transaction_state`
    /// partition was loaded).
    pub fn is_available(&self, transactional_id: &str) -> bool {
        let partition = partition_for(transactional_id, self.log.partitions());
        !crate::sync::lock(&self.unavailable_partitions, "transaction partitions")
            .contains(&partition)
    }

    fn check_available(&self, transactional_id: &str) -> Result<(), TxnError> {
        if self.is_available(transactional_id) {
            Ok(())
        } else {
            Err(TxnError::CoordinatorNotAvailable)
        }
    }

    /// DescribeTransactions.
    pub fn describe(&self, ids: &[String]) -> Vec<Option<TxnDescription>> {
        let txns = self.lock();
        ids.iter()
            .map(|id| txns.get(id).map(|t| describe_one(id, t)))
            .collect()
    }

    /// ListTransactions, filtered by state names and producer ids (empty = all).
    pub fn list(&self, states: &[String], producer_ids: &[i64]) -> Vec<TxnDescription> {
        let txns = self.lock();
        let mut out: Vec<TxnDescription> = txns
            .iter()
            .filter(|(_, t)| states.is_empty() || states.iter().any(|s| s == t.state.name()))
            .filter(|(_, t)| producer_ids.is_empty() || producer_ids.contains(&t.producer_id))
            .map(|(id, t)| describe_one(id, t))
            .collect();
        out.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        out
    }
}

fn describe_one(id: &str, t: &Txn) -> TxnDescription {
    TxnDescription {
        transactional_id: id.to_string(),
        state: t.state.name(),
        timeout_ms: t.timeout_ms,
        start_ms: t.start_ms,
        producer_id: t.producer_id,
        producer_epoch: t.producer_epoch,
        partitions: t.partitions.iter().cloned().collect(),
    }
}

/// Advances the epoch, replacing an exhausted producer id.
fn bump_epoch(txn: &mut Txn, next_id: &dyn Fn() -> Result<i64, TxnError>) -> Result<(), TxnError> {
    if txn.producer_epoch >= MAX_EPOCH {
        txn.producer_id = next_id()?;
        txn.producer_epoch = 0;
    } else {
        txn.producer_epoch += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
