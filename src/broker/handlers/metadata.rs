//! Metadata (key 3), v0-12: the broker list, and per topic its id and partitions with this
//! broker as leader, only replica and only in-sync replica. Unknown topics are created when
//! the request allows it (v4+ flag; always for v0-3) and `auto.create.topics.enable` is on.
//! v0 asks for all topics with an empty list, v1+ with a null one.

use std::collections::BTreeMap;
use std::sync::Arc;

use proto_kafka::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use proto_kafka::messages::{BrokerId, MetadataRequest, MetadataResponse};
use tracing::{debug, warn};
use uuid::Uuid;

use super::{str_bytes, topic_name};
use crate::broker::dispatch::{Handled, RequestContext};
use crate::broker::error_code::{self, code, KafkaError, NONE};
use crate::broker::partition::LEADER_EPOCH;
use crate::broker::topics::{Topic, TopicError, TopicSpec};
use crate::broker::{authorized_ops, Broker};
use crate::config::Endpoint;

/// Sentinel for "authorized operations not requested".
const OPERATIONS_NOT_REQUESTED: i32 = authorized_ops::NOT_REQUESTED;

pub fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: MetadataRequest,
) -> Handled<MetadataResponse> {
    let version = ctx.api_version;
    let all_topics = match &request.topics {
        None => true,
        Some(list) => version == 0 && list.is_empty(),
    };
    let allow_create = version < 4 || request.allow_auto_topic_creation;
    let topic_operations =
        authorized_ops::topic(version >= 8 && request.include_topic_authorized_operations);
    let cluster_operations = authorized_ops::cluster(request.include_cluster_authorized_operations);
    let topics = if all_topics {
        broker
            .topics
            .list()
            .iter()
            .map(|t| topic_entry(broker, t, version))
            .collect()
    } else {
        let requested = request.topics.unwrap_or_default();
        requested
            .iter()
            .map(|t| match &t.name {
                Some(name) => named_topic(broker, ctx, name.0.as_str(), allow_create),
                None => topic_by_id(broker, t.topic_id, version),
            })
            .collect()
    };
    let mut topics: Vec<MetadataResponseTopic> = topics;
    if version >= 8 {
        // KIP-430: for the topics described (not those answered with an error).
        for entry in topics.iter_mut().filter(|t| t.error_code == NONE) {
            entry.topic_authorized_operations = topic_operations;
        }
    }
    let mut response = MetadataResponse::default()
        .with_brokers(vec![broker_entry(broker, &ctx.listener.advertised)])
        .with_topics(topics);
    if version >= 1 {
        response.controller_id = BrokerId(broker.node_id);
    }
    if version >= 2 {
        response.cluster_id = Some(str_bytes(&broker.cluster_id));
    }
    if (8..=10).contains(&version) {
        response.cluster_authorized_operations = cluster_operations;
    }
    Handled::Now(response)
}

/// This broker as reached through the listener the request came in on.
fn broker_entry(broker: &Broker, advertised: &Endpoint) -> MetadataResponseBroker {
    MetadataResponseBroker::default()
        .with_node_id(BrokerId(broker.node_id))
        .with_host(str_bytes(&advertised.host))
        .with_port(i32::from(advertised.port))
}

fn named_topic(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    name: &str,
    allow_create: bool,
) -> MetadataResponseTopic {
    let version = ctx.api_version;
    if let Some(topic) = broker.topics.get(name) {
        return topic_entry(broker, &topic, version);
    }
    if !(allow_create && broker.config.auto_create_topics_enable) {
        return error_entry(name, code(KafkaError::UnknownTopicOrPartition), version);
    }
    let spec = TopicSpec {
        name: name.to_string(),
        partitions: broker.config.num_partitions,
        replication_factor: 1,
        configs: BTreeMap::new(),
    };
    match broker.topics.create(&spec, false) {
        Ok(topic) => topic_entry(broker, &topic, version),
        // Another request created it between our lookup and the create.
        Err(TopicError::AlreadyExists { .. }) => match broker.topics.get(name) {
            Some(topic) => topic_entry(broker, &topic, version),
            None => error_entry(name, code(KafkaError::LeaderNotAvailable), version),
        },
        // A name the client got wrong is answered (INVALID_TOPIC_EXCEPTION), not logged at
        // warn, as in Kafka: one request can name millions of topics.
        Err(err @ (TopicError::InvalidName { .. } | TopicError::Collides { .. })) => {
            debug!(topic = name, client = ?ctx.client_id, "not auto-creating topic: {err}");
            error_entry(name, error_code::from_topic(&err), version)
        }
        Err(err) => {
            warn!(topic = name, client = ?ctx.client_id, "auto-creating topic failed: {err}");
            error_entry(name, error_code::from_topic(&err), version)
        }
    }
}

fn topic_by_id(broker: &Arc<Broker>, topic_id: Uuid, version: i16) -> MetadataResponseTopic {
    match broker.topics.get_by_id(topic_id) {
        Some(topic) => topic_entry(broker, &topic, version),
        None => {
            // Kafka answers an unknown id with a null name.
            let mut entry = MetadataResponseTopic::default()
                .with_error_code(code(KafkaError::UnknownTopicId))
                .with_name(None)
                .with_topic_id(topic_id);
            if version >= 8 {
                entry.topic_authorized_operations = OPERATIONS_NOT_REQUESTED;
            }
            entry
        }
    }
}

fn error_entry(name: &str, error: i16, version: i16) -> MetadataResponseTopic {
    let mut entry = MetadataResponseTopic::default()
        .with_error_code(error)
        .with_name(Some(topic_name(name)));
    if version >= 8 {
        entry.topic_authorized_operations = OPERATIONS_NOT_REQUESTED;
    }
    entry
}

fn topic_entry(broker: &Broker, topic: &Topic, version: i16) -> MetadataResponseTopic {
    let node = BrokerId(broker.node_id);
    let partitions = topic
        .partitions
        .iter()
        .map(|p| {
            let mut entry = MetadataResponsePartition::default()
                .with_error_code(NONE)
                .with_partition_index(p.index())
                .with_leader_id(node)
                .with_replica_nodes(vec![node])
                .with_isr_nodes(vec![node]);
            if version >= 7 {
                entry.leader_epoch = LEADER_EPOCH;
            }
            if p.is_offline() {
                entry.error_code = code(KafkaError::KafkaStorageError);
                if version >= 5 {
                    entry.offline_replicas = vec![node];
                }
            }
            entry
        })
        .collect();
    let mut entry = MetadataResponseTopic::default()
        .with_error_code(NONE)
        .with_name(Some(topic_name(&topic.name)))
        .with_partitions(partitions);
    if version >= 1 {
        entry.is_internal = topic.is_internal();
    }
    if version >= 8 {
        entry.topic_authorized_operations = OPERATIONS_NOT_REQUESTED;
    }
    if version >= 10 {
        entry.topic_id = topic.topic_id;
    }
    entry
}
