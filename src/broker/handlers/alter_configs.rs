//! AlterConfigs (key 33, v0-2) and IncrementalAlterConfigs (key 44, v0-1) for topics.
//! AlterConfigs replaces a topic's whole set of overrides; IncrementalAlterConfigs applies
//! SET, DELETE, APPEND and SUBTRACT (the last two on list-valued keys). Broker configs are
//! static in Ferry: changing them is refused with a message saying so.

use std::collections::BTreeMap;
use std::sync::Arc;

use proto_kafka::messages::{
    AlterConfigsRequest, AlterConfigsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
};

use super::{log_refusal, str_bytes};
use crate::broker::dispatch::{Handled, RequestContext};
use crate::broker::error_code::{self, code, KafkaError};
use crate::broker::topics::TopicError;
use crate::broker::Broker;
use crate::config::ConfigError;

const RESOURCE_TOPIC: i8 = 2;
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;
/// Topic keys whose values are comma-separated lists.
const LIST_KEYS: &[&str] = &["cleanup.policy"];

/// The outcome for one resource: error code and message.
type Outcome = (i16, Option<String>);

fn outcome(result: Result<(), TopicError>) -> Outcome {
    match result {
        Ok(()) => (0, None),
        Err(err) => (error_code::from_topic(&err), Some(err.to_string())),
    }
}

fn not_a_topic(resource_type: i8) -> Outcome {
    (
        code(KafkaError::InvalidRequest),
        Some(format!(
            "resource type {resource_type} cannot be altered: Ferry's broker configs are static \
             (set them in the config file); only topics (type 2) can be altered"
        )),
    )
}

fn invalid(key: &str, reason: &str) -> TopicError {
    TopicError::InvalidConfig(ConfigError {
        key: key.to_string(),
        reason: reason.to_string(),
    })
}

pub mod incremental {
    use super::*;

    pub fn handle(
        broker: &Arc<Broker>,
        ctx: &RequestContext,
        request: IncrementalAlterConfigsRequest,
    ) -> Handled<IncrementalAlterConfigsResponse> {
        use proto_kafka::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
        let responses = request
            .resources
            .iter()
            .map(|resource| {
                let name = resource.resource_name.as_str();
                let (error, message) = if resource.resource_type != RESOURCE_TOPIC {
                    not_a_topic(resource.resource_type)
                } else {
                    let ops: Vec<(String, i8, Option<String>)> = resource
                        .configs
                        .iter()
                        .map(|c| {
                            (
                                c.name.to_string(),
                                c.config_operation,
                                c.value.as_ref().map(|v| v.to_string()),
                            )
                        })
                        .collect();
                    outcome(apply(broker, name, &ops, request.validate_only))
                };
                if let Some(message) = &message {
                    log_refusal(ctx, "alter configs", name, error, message);
                }
                AlterConfigsResourceResponse::default()
                    .with_error_code(error)
                    .with_error_message(message.as_deref().map(str_bytes))
                    .with_resource_type(resource.resource_type)
                    .with_resource_name(resource.resource_name.clone())
            })
            .collect();
        Handled::Now(IncrementalAlterConfigsResponse::default().with_responses(responses))
    }

    fn apply(
        broker: &Broker,
        topic: &str,
        ops: &[(String, i8, Option<String>)],
        validate_only: bool,
    ) -> Result<(), TopicError> {
        let current = broker
            .topics
            .get(topic)
            .ok_or_else(|| TopicError::Unknown {
                name: topic.to_string(),
            })?;
        let mut configs = current.configs.clone();
        for (key, op, value) in ops {
            let effective = broker.topics.defaults().effective(&configs)(key).to_string();
            let is_list = LIST_KEYS.contains(&key.as_str());
            match (*op, value) {
                (OP_SET, Some(value)) => {
                    configs.insert(key.clone(), value.clone());
                }
                (OP_DELETE, _) => {
                    configs.remove(key);
                }
                (OP_APPEND | OP_SUBTRACT, _) if !is_list => {
                    return Err(invalid(
                        key,
                        "APPEND and SUBTRACT apply only to list-valued configs",
                    ));
                }
                (OP_APPEND, Some(value)) => {
                    let mut items: Vec<String> = effective
                        .split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect();
                    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                        if !items.iter().any(|i| i == item) {
                            items.push(item.to_string());
                        }
                    }
                    configs.insert(key.clone(), items.join(","));
                }
                (OP_SUBTRACT, Some(value)) => {
                    let remove: Vec<&str> = value.split(',').map(str::trim).collect();
                    let items: Vec<&str> = effective
                        .split(',')
                        .map(str::trim)
                        .filter(|i| !i.is_empty() && !remove.contains(i))
                        .collect();
                    configs.insert(key.clone(), items.join(","));
                }
                (OP_SET | OP_APPEND | OP_SUBTRACT, None) => {
                    return Err(invalid(key, "a value is required for this operation"));
                }
                (other, _) => return Err(invalid(key, &format!("unknown operation {other}"))),
            }
        }
        broker.topics.alter_configs(topic, configs, validate_only)
    }
}

pub mod legacy {
    use super::*;

    pub fn handle(
        broker: &Arc<Broker>,
        ctx: &RequestContext,
        request: AlterConfigsRequest,
    ) -> Handled<AlterConfigsResponse> {
        use proto_kafka::messages::alter_configs_response::AlterConfigsResourceResponse;
        let responses = request
            .resources
            .iter()
            .map(|resource| {
                let name = resource.resource_name.as_str();
                let (error, message) = if resource.resource_type != RESOURCE_TOPIC {
                    not_a_topic(resource.resource_type)
                } else {
                    let configs: Result<BTreeMap<String, String>, TopicError> = resource
                        .configs
                        .iter()
                        .map(|c| match &c.value {
                            Some(v) => Ok((c.name.to_string(), v.to_string())),
                            None => Err(invalid(c.name.as_str(), "null values are not allowed")),
                        })
                        .collect();
                    outcome(configs.and_then(|configs| {
                        broker
                            .topics
                            .alter_configs(name, configs, request.validate_only)
                    }))
                };
                if let Some(message) = &message {
                    log_refusal(ctx, "alter configs", name, error, message);
                }
                AlterConfigsResourceResponse::default()
                    .with_error_code(error)
                    .with_error_message(message.as_deref().map(str_bytes))
                    .with_resource_type(resource.resource_type)
                    .with_resource_name(resource.resource_name.clone())
            })
            .collect();
        Handled::Now(AlterConfigsResponse::default().with_responses(responses))
    }
}
