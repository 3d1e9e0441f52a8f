//! The broker side of the transaction coordinator: producer ids and transaction markers.
//! A marker written into `__consumer_offsets` also tells the group coordinator to apply or
//! drop that producer's transactional offsets.

use std::sync::Arc;

use super::internal_log::durable_future;
use super::producer_ids::ProducerIds;
use super::topics::TopicRegistry;
use super::{now_ms, OFFSETS_TOPIC};
use crate::coordinator::group::GroupCoordinator;
use crate::coordinator::txn::TxnEnvironment;
use crate::coordinator::DurableFuture;
use crate::storage::log::Marker;
use crate::storage::producer_state::CONTROL_COMMIT;

pub struct BrokerTxnEnvironment {
    pub topics: Arc<TopicRegistry>,
    pub groups: Arc<GroupCoordinator>,
    pub producer_ids: Arc<ProducerIds>,
}

impl TxnEnvironment for BrokerTxnEnvironment {
    fn next_producer_id(&self) -> Result<i64, String> {
        self.producer_ids.next().map_err(|e| e.to_string())
    }

    fn write_marker(
        &self,
        topic: &str,
        partition: i32,
        marker: &Marker,
    ) -> Result<Option<DurableFuture>, String> {
        let Some(target) = self.topics.partition(topic, partition) else {
            return Ok(None);
        };
        let (_, wait) = target
            .append_marker(marker, now_ms())
            .map_err(|e| e.to_string())?;
        if topic == OFFSETS_TOPIC {
            let index = usize::try_from(partition).unwrap_or(usize::MAX);
            let commit = marker.control_type == CONTROL_COMMIT;
            self.groups
                .complete_transaction(index, marker.producer_id, commit);
        }
        Ok(Some(durable_future(&target, wait)))
    }
}
