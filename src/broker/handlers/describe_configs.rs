//! DescribeConfigs (key 32), v1-4: every topic config with its effective value and source
//! (topic override, broker setting or default), and the broker's own settings.

use std::sync::Arc;

use proto_kafka::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use proto_kafka::messages::{DescribeConfigsRequest, DescribeConfigsResponse};

use super::str_bytes;
use crate::broker::dispatch::{Handled, RequestContext};
use crate::broker::error_code::{code, KafkaError};
use crate::broker::Broker;
use crate::config::topic::{ConfigEntry, ConfigSource};
use crate::config::BrokerConfig;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

pub fn handle(
    broker: &Arc<Broker>,
    _ctx: &RequestContext,
    request: DescribeConfigsRequest,
) -> Handled<DescribeConfigsResponse> {
    let results = request
        .resources
        .iter()
        .map(|resource| {
            let name = resource.resource_name.as_str();
            let mut result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            let entries = match resource.resource_type {
                RESOURCE_TOPIC => match broker.topics.get(name) {
                    Some(topic) => Ok(broker.topics.defaults().describe(&topic.configs)),
                    None => Err((
                        KafkaError::UnknownTopicOrPartition,
                        format!("Topic '{name}' does not exist."),
                    )),
                },
                RESOURCE_BROKER if name.is_empty() || name == broker.node_id.to_string() => {
                    Ok(broker_entries(broker))
                }
                RESOURCE_BROKER => Err((
                    KafkaError::InvalidRequest,
                    format!("Unknown broker id '{name}'."),
                )),
                other => Err((
                    KafkaError::InvalidRequest,
                    format!("Unsupported resource type {other}."),
                )),
            };
            match entries {
                Ok(entries) => {
                    // The message spec's contract: "null if we succeeded". (Kafka 2.7+
                    // brokers leave the codec's "" here; clients read both as no error.)
                    result.error_message = None;
                    let wanted = resource.configuration_keys.as_ref();
                    let read_only = resource.resource_type == RESOURCE_BROKER;
                    result.configs = entries
                        .into_iter()
                        .filter(|e| {
                            wanted.is_none_or(|keys| keys.iter().any(|k| k.as_str() == e.name))
                        })
                        .map(|e| to_result(e, request.include_synonyms, read_only))
                        .collect();
                }
                Err((error, message)) => {
                    result.error_code = code(error);
                    result.error_message = Some(str_bytes(&message));
                }
            }
            result
        })
        .collect();
    Handled::Now(DescribeConfigsResponse::default().with_results(results))
}

fn broker_entries(broker: &Broker) -> Vec<ConfigEntry> {
    broker
        .config
        .describe(&broker.listeners)
        .into_iter()
        .map(|(key, value, explicit)| {
            let source = if explicit {
                ConfigSource::StaticBroker
            } else {
                ConfigSource::Default
            };
            let synonyms = vec![(key.clone(), value.clone(), source)];
            ConfigEntry {
                config_type: BrokerConfig::config_type(&key),
                name: key,
                value,
                source,
                synonyms,
            }
        })
        .collect()
}

/// One config as Kafka describes it. `read_only`: broker configs are (Ferry changes no
/// broker config at runtime, as Kafka's static ones); topic configs are not.
fn to_result(
    entry: ConfigEntry,
    include_synonyms: bool,
    read_only: bool,
) -> DescribeConfigsResourceResult {
    let synonyms = if include_synonyms {
        entry
            .synonyms
            .iter()
            .map(|(name, value, source)| {
                DescribeConfigsSynonym::default()
                    .with_name(str_bytes(name))
                    .with_value(Some(str_bytes(value)))
                    .with_source(*source as i8)
            })
            .collect()
    } else {
        Vec::new()
    };
    // Kafka sends documentation only when asked for it (v3+ `include_documentation`), and
    // Ferry has none to send: null either way, as Kafka does for keys without text.
    DescribeConfigsResourceResult::default()
        .with_name(str_bytes(&entry.name))
        .with_value(Some(str_bytes(&entry.value)))
        .with_documentation(None)
        .with_config_source(entry.source as i8)
        .with_config_type(entry.config_type as i8)
        .with_read_only(read_only)
        .with_is_sensitive(false)
        .with_synonyms(synonyms)
}
