//! DeleteTopics (key 20), v1-6: deletes topics by name (v1-5) or by name or id (v6).

use std::sync::Arc;

use proto_kafka::messages::delete_topics_response::DeletableTopicResult;
use proto_kafka::messages::{DeleteTopicsRequest, DeleteTopicsResponse};
use uuid::Uuid;

use super::{log_refusal, str_bytes, topic_name};
use crate::broker::dispatch::{Handled, RequestContext};
use crate::broker::error_code::{self, code, KafkaError};
use crate::broker::{now_ms, Broker};

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
    let responses = wanted
        .into_iter()
        .map(|(name, id)| {
            let mut result = DeletableTopicResult::default();
            let name = match name {
                Some(name) => Some(name),
                None => broker.topics.get_by_id(id).map(|t| t.name.clone()),
            };
            let Some(name) = name else {
                result.error_code = code(KafkaError::UnknownTopicId);
                result.topic_id = id;
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
        })
        .collect();
    Handled::Now(DeleteTopicsResponse::default().with_responses(responses))
}
