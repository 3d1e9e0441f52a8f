//! Opening the coordinators at startup: their internal topics (`__consumer_offsets`,
//! `__transaction_state`) are created if missing, then their state is replayed.

use std::sync::Arc;

use super::internal_log::InternalTopicLog;
use super::producer_ids::ProducerIds;
use super::topics::{Topic, TopicError, TopicRegistry, TopicSpec};
use super::txn_env::BrokerTxnEnvironment;
use super::{now_ms, OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC};
use crate::config::BrokerConfig;
use crate::coordinator::group::GroupCoordinator;
use crate::coordinator::txn::TransactionCoordinator;
use crate::storage::StorageError;

/// Configs of the compacted internal topics besides their `segment.bytes` (Kafka's
/// `offsets.topic.segment.bytes` / `transaction.state.log.segment.bytes`): a batch limit
/// large enough for big groups.
const INTERNAL_TOPIC_CONFIGS: &[(&str, &str)] = &[
    ("cleanup.policy", "compact"),
    ("max.message.bytes", "10485760"),
];

fn storage_error(config: &BrokerConfig, what: &'static str, reason: String) -> StorageError {
    StorageError::io(what, &config.data_dir, std::io::Error::other(reason))
}

fn internal_topic(
    config: &BrokerConfig,
    topics: &TopicRegistry,
    name: &str,
    partitions: i32,
    segment_bytes: i32,
) -> Result<Arc<Topic>, StorageError> {
    let spec = TopicSpec {
        name: name.to_string(),
        partitions,
        replication_factor: 1,
        configs: INTERNAL_TOPIC_CONFIGS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .chain([("segment.bytes".to_string(), segment_bytes.to_string())])
            .collect(),
    };
    topics.get_or_create(&spec).map_err(|err| match err {
        TopicError::Storage(err) => err,
        other => storage_error(config, "create an internal topic", other.to_string()),
    })
}

/// Creates `__consumer_offsets` if needed and loads the groups it holds.
pub fn open_groups(
    config: &BrokerConfig,
    topics: &TopicRegistry,
) -> Result<Arc<GroupCoordinator>, StorageError> {
    let topic = internal_topic(
        config,
        topics,
        OFFSETS_TOPIC,
        config.group.offsets_topic_partitions,
        config.offsets_topic_segment_bytes,
    )?;
    let log = Arc::new(InternalTopicLog::new(topic.partitions.clone()));
    let groups = Arc::new(GroupCoordinator::new(config.group.clone(), log));
    groups.load(now_ms());
    Ok(groups)
}

/// Creates `__transaction_state` if needed, loads the transactions it holds and completes
/// any a crash interrupted.
pub fn open_transactions(
    config: &BrokerConfig,
    topics: &Arc<TopicRegistry>,
    groups: &Arc<GroupCoordinator>,
    producer_ids: &Arc<ProducerIds>,
) -> Result<TransactionCoordinator, StorageError> {
    let topic = internal_topic(
        config,
        topics,
        TRANSACTION_STATE_TOPIC,
        config.txn.state_topic_partitions,
        config.transaction_state_segment_bytes,
    )?;
    let log = Arc::new(InternalTopicLog::new(topic.partitions.clone()));
    let env = Arc::new(BrokerTxnEnvironment {
        topics: Arc::clone(topics),
        groups: Arc::clone(groups),
        producer_ids: Arc::clone(producer_ids),
    });
    let txns = TransactionCoordinator::new(config.txn.clone(), log, env);
    txns.load(now_ms());
    Ok(txns)
}
