//! Which transactional batches a cleaning pass may drop, following Kafka's
//! `CleanedTransactionMetadata`: walking the log in offset order, a producer is inside an
//! aborted transaction from the transaction's first offset (from the aborted-transaction
//! index) to its ABORT marker, and its data batches there are dropped; any other
//! transactional data batch belongs to a committed (or still open) transaction. A marker
//! may go once no data of its transaction is left: an ABORT marker when this walk saw no
//! batch of its transaction, a COMMIT marker when it saw none (all were cleaned away).

use std::collections::{HashMap, HashSet, VecDeque};

use crate::storage::batch::BatchHeader;
use crate::storage::producer_state::{AbortedTxn, CONTROL_ABORT, CONTROL_COMMIT};

/// The walk's transaction state.
pub struct TxnTracker {
    /// Aborted transactions not reached yet, by first offset.
    pending: VecDeque<AbortedTxn>,
    /// Producers inside an aborted transaction: whether a batch of it was seen.
    in_aborted: HashMap<i64, bool>,
    /// Producers inside a transaction that is not aborted, with data seen.
    in_committed: HashSet<i64>,
}

impl TxnTracker {
    /// A walk starting at `from`: the aborted transactions whose markers lie before it are
    /// over and ignored.
    pub fn new(aborted: &[AbortedTxn], from: i64) -> TxnTracker {
        let mut pending: Vec<AbortedTxn> = aborted
            .iter()
            .filter(|a| a.last_offset >= from)
            .copied()
            .collect();
        pending.sort_by_key(|a| a.first_offset);
        TxnTracker {
            pending: pending.into(),
            in_aborted: HashMap::new(),
            in_committed: HashSet::new(),
        }
    }

    fn enter_aborted_up_to(&mut self, offset: i64) {
        while self
            .pending
            .front()
            .is_some_and(|a| a.first_offset <= offset)
        {
            if let Some(txn) = self.pending.pop_front() {
                self.in_aborted.insert(txn.producer_id, false);
            }
        }
    }

    /// A data batch: true if it belongs to an aborted transaction (drop its records).
    pub fn on_data(&mut self, header: &BatchHeader) -> bool {
        self.enter_aborted_up_to(header.last_offset());
        if !header.is_transactional() {
            return false;
        }
        if let Some(seen) = self.in_aborted.get_mut(&header.producer_id) {
            *seen = true;
            return true;
        }
        self.in_committed.insert(header.producer_id);
        false
    }

    /// A control batch with its control type (`None`: no record, already emptied): true
    /// if no data of its transaction is left, so the marker may go once its delete
    /// horizon has passed.
    pub fn on_control(&mut self, header: &BatchHeader, control_type: Option<i16>) -> bool {
        self.enter_aborted_up_to(header.last_offset());
        let producer_id = header.producer_id;
        match control_type {
            None => true,
            Some(CONTROL_ABORT) => !self.in_aborted.remove(&producer_id).unwrap_or(false),
            Some(CONTROL_COMMIT) => !self.in_committed.remove(&producer_id),
            Some(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::batch;
    use crate::storage::records::{build_batch, BatchSpec, NewRecord};

    fn header(offset: i64, producer_id: i64, transactional: bool, control: bool) -> BatchHeader {
        let spec = BatchSpec {
            producer_id,
            producer_epoch: 0,
            base_sequence: if control { -1 } else { 0 },
            transactional,
            control,
        };
        let record = NewRecord {
            key: Some(b"k"),
            value: Some(b"v"),
            timestamp: 0,
        };
        let mut bytes = build_batch(spec, &[record]);
        batch::set_base_offset_and_epoch(&mut bytes, offset, 0);
        batch::validate(&bytes).unwrap()
    }

    #[test]
    fn aborted_data_goes_and_markers_go_only_without_data() {
        // Producer 1 aborts [0, 2]; producer 2 commits [1, 3].
        let aborted = [AbortedTxn {
            producer_id: 1,
            first_offset: 0,
            last_offset: 2,
            last_stable_offset: 0,
        }];
        let mut walk = TxnTracker::new(&aborted, 0);
        assert!(walk.on_data(&header(0, 1, true, false)), "aborted data");
        assert!(!walk.on_data(&header(1, 2, true, false)), "committed data");
        assert!(
            !walk.on_control(&header(2, 1, true, true), Some(CONTROL_ABORT)),
            "data seen"
        );
        assert!(!walk.on_control(&header(3, 2, true, true), Some(CONTROL_COMMIT)));
        assert!(
            !walk.on_data(&header(4, 1, false, false)),
            "not transactional"
        );

        // A later walk over the cleaned log: the data is gone, so are the markers' reasons.
        let mut walk = TxnTracker::new(&aborted, 0);
        assert!(walk.on_control(&header(2, 1, true, true), Some(CONTROL_ABORT)));
        assert!(walk.on_control(&header(3, 2, true, true), Some(CONTROL_COMMIT)));
        assert!(
            walk.on_control(&header(5, 3, true, true), None),
            "an emptied marker"
        );
    }

    #[test]
    fn a_walk_from_the_middle_ignores_transactions_that_ended_before_it() {
        let aborted = [AbortedTxn {
            producer_id: 1,
            first_offset: 0,
            last_offset: 2,
            last_stable_offset: 0,
        }];
        let mut walk = TxnTracker::new(&aborted, 3);
        assert!(
            !walk.on_data(&header(5, 1, true, false)),
            "a later committed transaction"
        );
    }
}
