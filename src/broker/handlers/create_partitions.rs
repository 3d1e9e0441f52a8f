//! CreatePartitions (key 37), v0-3: grows topics; manual assignments must name this broker.

use std::sync::Arc;

use proto_kafka::messages::create_partitions_response::CreatePartitionsTopicResult;
use proto_kafka::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::{log_refusal, split_duplicates, str_bytes, topic_name, DUPLICATE_TOPIC_NAME};
use crate::broker::dispatch::{Handled, RequestContext};
use crate::broker::error_code::{self, code, KafkaError};
use crate::broker::Broker;

pub fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: CreatePartitionsRequest,
) -> Handled<CreatePartitionsResponse> {
    let (unique, duplicated) = split_duplicates(&request.topics, |t| t.name.0.as_str());
    let mut results: Vec<CreatePartitionsTopicResult> = unique
        .into_iter()
        .map(|topic| {
            let name = topic.name.0.as_str();
            let mut result = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
            let foreign = topic.assignments.iter().flatten().any(|a| {
                a.broker_ids.iter().any(|b| b.0 != broker.node_id) || a.broker_ids.len() != 1
            });
            if foreign {
                result.error_code = code(KafkaError::InvalidReplicaAssignment);
                result.error_message = Some(str_bytes(&format!(
                    "Every new partition must have exactly one replica, on broker {}.",
                    broker.node_id
                )));
                return result;
            }
            if let Err(err) = broker
                .topics
                .add_partitions(name, topic.count, request.validate_only)
            {
                result.error_code = error_code::from_topic(&err);
                let message = err.to_string();
                log_refusal(ctx, "create partitions", name, result.error_code, &message);
                result.error_message = Some(str_bytes(&message));
            }
            result
        })
        .collect();
    results.extend(duplicated.iter().map(|name| {
        CreatePartitionsTopicResult::default()
            .with_name(topic_name(name))
            .with_error_code(code(KafkaError::InvalidRequest))
            .with_error_message(Some(str_bytes(DUPLICATE_TOPIC_NAME)))
    }));
    Handled::Now(CreatePartitionsResponse::default().with_results(results))
}
