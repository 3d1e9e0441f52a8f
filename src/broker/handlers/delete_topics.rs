//! DeleteTopics (key 20), v1-6: deletes topics by name (v1-5) or by name or id (v6).

use std::sync::Arc;

use proto_kafka::messages::delete_topics_response::DeletableTopicResult;
use proto_kafka::messages::{DeleteTopicsRequest, DeleteTopicsResponse};
use uuid::Uuid;

use super::{log_refusal, split_duplicates, str_bytes, topic_name, DUPLICATE_TOPIC_NAME};
use crate::broker::dispatch::{Handled, RequestContext};
use crate::broker::error_code::{self, code, KafkaError};
use crate::broker::{now_ms, Broker};

/// Kafka's message for a topic id that names no topic (v6).
const UNKNOWN_TOPIC_ID: &str = "This server does not host this topic ID.";
/// Kafka's message for a topic id given more than once (v6).
const DUPLICATE_TOPIC_ID: &str = "Duplicate topic id.";

pub fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: DeleteTopicsRequest,
) -> Handled<DeleteTopicsResponse> {
    let version = ctx.api_version;
    let wanted: Vec<(Option<String>, Uuid)> = if version >= 6 {
        request
            .topics
            .iter()
            .map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id))
            .collect()
    } else {
        request
            .topic_names
            .iter()
            .map(|n| (Some(n.0.to_string()), Uuid::nil()))
            .collect()
    };
    // As Kafka's controller: a name (or id) given twice is not deleted and is answered once,
    // with INVALID_REQUEST, after the others.
    let key = |(name, id): &(Option<String>, Uuid)| match name {
        Some(name) => format!("name:{name}"),
        None => format!("id:{id}"),
    };
    let keys: Vec<String> = wanted.iter().map(key).collect();
    let (_, duplicated) = split_duplicates(&keys, |k| k.as_str());
    let skipped: std::collections::HashSet<&String> = duplicated.iter().collect();
    let mut responses: Vec<DeletableTopicResult> = wanted
        .iter()
        .zip(&keys)
        .filter(|(_, k)| !skipped.contains(k))
        .map(|((name, id), _)| delete_one(broker, ctx, name.clone(), *id))
        .collect();
    responses.extend(duplicated.iter().map(|key| {
        let mut result =
            DeletableTopicResult::default().with_error_code(code(KafkaError::InvalidRequest));
        let message = match (key.strip_prefix("name:"), key.strip_prefix("id:")) {
            (Some(name), _) => {
                result.name = Some(topic_name(name));
                DUPLICATE_TOPIC_NAME
            }
            (None, Some(id)) => {
                result.name = None;
                result.topic_id = Uuid::parse_str(id).unwrap_or_default();
                DUPLICATE_TOPIC_ID
            }
            (None, None) => DUPLICATE_TOPIC_NAME,
        };
        if version >= 5 {
            result.error_message = Some(str_bytes(message));
        }
        result
    }));
    Handled::Now(DeleteTopicsResponse::default().with_responses(responses))
}

fn delete_one(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    name: Option<String>,
    id: Uuid,
) -> DeletableTopicResult {
    let version = ctx.api_version;
    let mut result = DeletableTopicResult::default();
    let name = match name {
        Some(name) => Some(name),
        None => broker.topics.get_by_id(id).map(|t| t.name.clone()),
    };
    let Some(name) = name else {
        // As Kafka: the name of an unknown id is null.
        result.name = None;
        result.error_code = code(KafkaError::UnknownTopicId);
        result.topic_id = id;
        if version >= 5 {
            result.error_message = Some(str_bytes(UNKNOWN_TOPIC_ID));
        }
        return result;
    };
    result.name = Some(topic_name(&name));
    match broker.topics.delete(&name) {
        Ok(deleted_id) => {
            broker.groups.remove_topic_offsets(&name, now_ms());
            if version >= 6 {
                result.topic_id = deleted_id;
            }
        }
        Err(err) => {
            result.error_code = error_code::from_topic(&err);
            let message = err.to_string();
            log_refusal(ctx, "delete topic", &name, result.error_code, &message);
            if version >= 5 {
                result.error_message = Some(str_bytes(&message));
            }
        }
    }
    result
}
