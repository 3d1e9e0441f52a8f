//! CreateTopics (key 19), v2-7: creates topics with a partition count (or the broker's
//! `num.partitions` for -1), replication factor 1, optional manual assignment onto this
//! broker, and validated config overrides; `validate_only` checks without creating.
//! v5+ responses list the new topic's configs, v7+ its id.

use std::collections::BTreeMap;
use std::sync::Arc;

use proto_kafka::messages::create_topics_request::CreatableTopic;
use proto_kafka::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use proto_kafka::messages::{CreateTopicsRequest, CreateTopicsResponse, TopicName};
use tracing::{info, warn};

use super::{log_refusal, split_duplicates, str_bytes, topic_name, DUPLICATE_TOPIC_NAME};
use crate::broker::dispatch::{Handled, RequestContext};
use crate::broker::error_code::{self, code, KafkaError};
use crate::broker::topics::{Topic, TopicError, TopicSpec};
use crate::broker::Broker;

pub fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: CreateTopicsRequest,
) -> Handled<CreateTopicsResponse> {
    let (unique, duplicated) = split_duplicates(&request.topics, |t| t.name.0.as_str());
    let mut results: Vec<CreatableTopicResult> = unique
        .into_iter()
        .map(|topic| {
            let name = topic.name.0.as_str();
            let mut result = unanswered(ctx.api_version, topic.name.clone());
            let created = spec_from(broker, topic).and_then(|spec| {
                broker
                    .topics
                    .create(&spec, request.validate_only)
                    .map(|t| (t, spec))
            });
            match created {
                Ok((created, spec)) => {
                    fill_success(broker, ctx.api_version, &mut result, &created, &spec);
                    // Kafka's controller sets null on success (validate_only too); the
                    // codec's default is "".
                    result.error_message = None;
                }
                Err(err) => {
                    result.error_code = error_code::from_topic(&err);
                    let message = err.to_string();
                    log_refusal(ctx, "create topic", name, result.error_code, &message);
                    result.error_message = Some(str_bytes(&message));
                }
            }
            if request.validate_only && result.error_code == 0 {
                info!(topic = name, "validated topic creation (validate_only)");
            }
            result
        })
        .collect();
    results.extend(duplicated.iter().map(|name| {
        let mut result = unanswered(ctx.api_version, topic_name(name));
        result.error_code = code(KafkaError::InvalidRequest);
        result.error_message = Some(str_bytes(DUPLICATE_TOPIC_NAME));
        result
    }));
    Handled::Now(CreateTopicsResponse::default().with_topics(results))
}

/// A result entry before the outcome is known: v5+ report -1 partitions and replication
/// factor unless the topic is created.
fn unanswered(version: i16, name: TopicName) -> CreatableTopicResult {
    let mut result = CreatableTopicResult::default().with_name(name);
    if version >= 5 {
        result.num_partitions = -1;
        result.replication_factor = -1;
    }
    result
}

fn spec_from(broker: &Broker, topic: &CreatableTopic) -> Result<TopicSpec, TopicError> {
    let mut configs = BTreeMap::new();
    for config in &topic.configs {
        let value = config.value.as_ref().ok_or_else(|| {
            TopicError::InvalidConfig(crate::config::ConfigError {
                key: config.name.to_string(),
                reason: "null values are not allowed when creating a topic".to_string(),
            })
        })?;
        configs.insert(config.name.to_string(), value.to_string());
    }
    let (partitions, replication_factor) = if topic.assignments.is_empty() {
        let partitions = if topic.num_partitions == -1 {
            broker.config.num_partitions
        } else {
            topic.num_partitions
        };
        let factor = if topic.replication_factor == -1 {
            1
        } else {
            topic.replication_factor
        };
        (partitions, factor)
    } else {
        assignment_size(broker, topic)?
    };
    let replication_factor = if replication_factor > 1 && broker.config.replication_factor_cap {
        warn!(
            topic = topic.name.0.as_str(),
            requested = replication_factor,
            "serving the topic with one replica (ferry.replication.factor.cap=true)"
        );
        1
    } else {
        replication_factor
    };
    Ok(TopicSpec {
        name: topic.name.0.to_string(),
        partitions,
        replication_factor,
        configs,
    })
}

/// Checks a manual assignment (every partition on this broker, indexes 0..n) and returns
/// its partition count and replication factor.
fn assignment_size(broker: &Broker, topic: &CreatableTopic) -> Result<(i32, i16), TopicError> {
    let invalid = |reason: String| TopicError::InvalidReplicaAssignment { reason };
    if topic.num_partitions != -1 || topic.replication_factor != -1 {
        return Err(invalid(
            "Both numPartitions or replicationFactor and replicasAssignments were set. Both \
             cannot be used at the same time."
                .to_string(),
        ));
    }
    let mut indexes: Vec<i32> = topic
        .assignments
        .iter()
        .map(|a| a.partition_index)
        .collect();
    indexes.sort_unstable();
    if indexes
        .iter()
        .enumerate()
        .any(|(i, p)| i64::from(*p) != i as i64)
    {
        return Err(invalid(
            "Partitions must be numbered consecutively from 0.".to_string(),
        ));
    }
    for assignment in &topic.assignments {
        if assignment.broker_ids.iter().any(|b| b.0 != broker.node_id) {
            return Err(invalid(format!(
                "Replica assignment names brokers other than {}.",
                broker.node_id
            )));
        }
    }
    let factor = topic.assignments[0].broker_ids.len() as i16;
    Ok((topic.assignments.len() as i32, factor))
}

fn fill_success(
    broker: &Broker,
    version: i16,
    result: &mut CreatableTopicResult,
    topic: &Topic,
    spec: &TopicSpec,
) {
    if version >= 7 {
        result.topic_id = topic.topic_id;
    }
    if version >= 5 {
        result.num_partitions = spec.partitions;
        result.replication_factor = spec.replication_factor;
        let configs = broker
            .topics
            .defaults()
            .describe(&spec.configs)
            .into_iter()
            .map(|entry| {
                CreatableTopicConfigs::default()
                    .with_name(str_bytes(&entry.name))
                    .with_value(Some(str_bytes(&entry.value)))
                    .with_config_source(entry.source as i8)
            })
            .collect();
        result.configs = Some(configs);
    }
}
