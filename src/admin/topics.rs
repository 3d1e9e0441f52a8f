//! Topics and configs over the wire, for `ferry topics` and `ferry configs`, against any
//! Kafka-protocol cluster: create, list, describe (partitions with their log start and
//! end offsets and size on disk from DescribeLogDirs, and the topic's own configs), alter
//! configs (IncrementalAlterConfigs), delete, add partitions; describe and alter a topic's
//! or a broker's configs with their sources as Kafka names them.

use std::collections::{BTreeMap, BTreeSet};

use proto_kafka::messages::{
    ApiKey, CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest,
    CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse, DescribeConfigsRequest,
    DescribeConfigsResponse, DescribeLogDirsRequest, DescribeLogDirsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, TopicName,
};
use proto_kafka::protocol::StrBytes;

use super::groups::{list_offsets, EARLIEST, LATEST};
use crate::client::{ClientError, Cluster};

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

fn name(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

/// A Kafka error code with its message as the broker sent it.
fn failed(context: String, code: i16, message: Option<&StrBytes>) -> ClientError {
    match message.map(|m| m.as_str()).filter(|m| !m.is_empty()) {
        Some(message) => ClientError::Refused(format!("{context}: {message}")),
        None => ClientError::Kafka { context, code },
    }
}

/// A topic as `list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSummary {
    pub name: String,
    pub partitions: usize,
    pub internal: bool,
}

pub async fn list(cluster: &mut Cluster) -> Result<Vec<TopicSummary>, ClientError> {
    let metadata = cluster.metadata(None).await?;
    let mut topics: Vec<TopicSummary> = metadata
        .topics
        .iter()
        .map(|t| TopicSummary {
            name: t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default(),
            partitions: t.partitions.len(),
            internal: t.is_internal,
        })
        .collect();
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(topics)
}

pub async fn create(
    cluster: &mut Cluster,
    topic: &str,
    partitions: i32,
    replication_factor: i16,
    configs: &[(String, String)],
) -> Result<(), ClientError> {
    use proto_kafka::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(name(topic)))
            .with_num_partitions(partitions)
            .with_replication_factor(replication_factor)
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        CreatableTopicConfig::default()
                            .with_name(name(k))
                            .with_value(Some(name(v)))
                    })
                    .collect(),
            )]);
    let controller = controller(cluster).await?;
    let (_, response): (i16, CreateTopicsResponse) = cluster
        .broker(controller)
        .await?
        .call(ApiKey::CreateTopics, 7, &request)
        .await?;
    for result in &response.topics {
        if result.error_code != 0 {
            return Err(failed(
                format!("creating topic '{topic}'"),
                result.error_code,
                result.error_message.as_ref(),
            ));
        }
    }
    Ok(())
}

/// Admin requests go to the controller Metadata names (any broker forwards in Kafka 4).
pub(crate) async fn controller(cluster: &mut Cluster) -> Result<i32, ClientError> {
    let metadata = cluster.metadata(Some(Vec::new())).await?;
    let any = metadata.brokers.first().map_or(-1, |b| b.node_id.0);
    Ok(Some(metadata.controller_id.0)
        .filter(|id| *id >= 0)
        .unwrap_or(any))
}

pub async fn delete(cluster: &mut Cluster, topic: &str) -> Result<(), ClientError> {
    let request = DeleteTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topic_names(vec![TopicName(name(topic))]);
    let controller = controller(cluster).await?;
    let (_, response): (i16, DeleteTopicsResponse) = cluster
        .broker(controller)
        .await?
        .call(ApiKey::DeleteTopics, 5, &request)
        .await?;
    for result in &response.responses {
        if result.error_code == 3 {
            return Err(ClientError::NotFound(format!(
                "topic '{topic}' does not exist"
            )));
        }
        if result.error_code != 0 {
            return Err(failed(
                format!("deleting topic '{topic}'"),
                result.error_code,
                result.error_message.as_ref(),
            ));
        }
    }
    Ok(())
}

pub async fn add_partitions(
    cluster: &mut Cluster,
    topic: &str,
    count: i32,
) -> Result<(), ClientError> {
    use proto_kafka::messages::create_partitions_request::CreatePartitionsTopic;
    let request = CreatePartitionsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(vec![CreatePartitionsTopic::default()
            .with_name(TopicName(name(topic)))
            .with_count(count)
            .with_assignments(None)]);
    let controller = controller(cluster).await?;
    let (_, response): (i16, CreatePartitionsResponse) = cluster
        .broker(controller)
        .await?
        .call(ApiKey::CreatePartitions, 3, &request)
        .await?;
    for result in &response.results {
        if result.error_code != 0 {
            return Err(failed(
                format!("adding partitions to '{topic}'"),
                result.error_code,
                result.error_message.as_ref(),
            ));
        }
    }
    Ok(())
}

/// One partition as `describe` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionDetails {
    pub partition: i32,
    pub leader: i32,
    pub log_start_offset: Option<i64>,
    pub log_end_offset: Option<i64>,
    pub size_bytes: Option<i64>,
}

/// A topic's partitions and the configs set on it (not its defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDetails {
    pub name: String,
    pub internal: bool,
    pub partitions: Vec<PartitionDetails>,
    pub configs: Vec<ConfigDetails>,
}

pub async fn describe(cluster: &mut Cluster, topic: &str) -> Result<TopicDetails, ClientError> {
    let metadata = cluster.metadata(Some(vec![topic.to_string()])).await?;
    let found = metadata
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
        .filter(|t| t.error_code != 3)
        .ok_or_else(|| ClientError::NotFound(format!("topic '{topic}' does not exist")))?;
    let internal = found.is_internal;
    let leaders: BTreeMap<i32, i32> = found
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.leader_id.0))
        .collect();
    let brokers: BTreeSet<i32> = metadata.brokers.iter().map(|b| b.node_id.0).collect();
    let keys: BTreeSet<(String, i32)> = leaders.keys().map(|p| (topic.to_string(), *p)).collect();
    let starts = list_offsets(cluster, &keys, EARLIEST).await?;
    let ends = list_offsets(cluster, &keys, LATEST).await?;
    let sizes = log_dir_sizes(cluster, &brokers, topic).await?;
    let partitions = leaders
        .iter()
        .map(|(p, leader)| {
            let key = (topic.to_string(), *p);
            PartitionDetails {
                partition: *p,
                leader: *leader,
                log_start_offset: starts.get(&key).copied(),
                log_end_offset: ends.get(&key).copied(),
                size_bytes: sizes.get(p).copied(),
            }
        })
        .collect();
    let configs = describe_configs(cluster, Target::Topic(topic.to_string()))
        .await?
        .into_iter()
        .filter(|c| c.source == "DYNAMIC_TOPIC_CONFIG")
        .collect();
    Ok(TopicDetails {
        name: topic.to_string(),
        internal,
        partitions,
        configs,
    })
}

/// Partition sizes of `topic` on every broker (the leader's copy on a cluster).
async fn log_dir_sizes(
    cluster: &mut Cluster,
    brokers: &BTreeSet<i32>,
    topic: &str,
) -> Result<BTreeMap<i32, i64>, ClientError> {
    use proto_kafka::messages::describe_log_dirs_request::DescribableLogDirTopic;
    let request =
        DescribeLogDirsRequest::default()
            .with_topics(Some(vec![DescribableLogDirTopic::default()
                .with_topic(TopicName(name(topic)))
                .with_partitions((0..100_000).collect())]));
    let mut sizes = BTreeMap::new();
    for broker in brokers {
        let connection = cluster.broker(*broker).await?;
        // A cluster without DescribeLogDirs (or refusing it) shows no sizes.
        let Ok((_, response)) = connection
            .call::<_, DescribeLogDirsResponse>(ApiKey::DescribeLogDirs, 4, &request)
            .await
        else {
            continue;
        };
        for dir in response.results.iter().filter(|d| d.error_code == 0) {
            for t in dir.topics.iter().filter(|t| t.name.0.as_str() == topic) {
                for p in &t.partitions {
                    let size = sizes.entry(p.partition_index).or_insert(0);
                    *size = (*size).max(p.partition_size);
                }
            }
        }
    }
    Ok(sizes)
}

/// Whose configs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Topic(String),
    /// A broker by id, or the one the tool is connected to.
    Broker(Option<i32>),
}

/// One config as `configs describe` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigDetails {
    pub name: String,
    pub value: Option<String>,
    /// Kafka's name for the source (`DYNAMIC_TOPIC_CONFIG`, `STATIC_BROKER_CONFIG`, ...).
    pub source: &'static str,
    pub read_only: bool,
    pub sensitive: bool,
    /// Kafka's type name (`LONG`, `LIST`, ...).
    pub config_type: &'static str,
}

fn source_name(source: i8) -> &'static str {
    match source {
        1 => "DYNAMIC_TOPIC_CONFIG",
        2 => "DYNAMIC_BROKER_CONFIG",
        3 => "DYNAMIC_DEFAULT_BROKER_CONFIG",
        4 => "STATIC_BROKER_CONFIG",
        5 => "DEFAULT_CONFIG",
        6 => "DYNAMIC_BROKER_LOGGER_CONFIG",
        7 => "CLIENT_METRICS_CONFIG",
        8 => "GROUP_CONFIG",
        _ => "UNKNOWN",
    }
}

fn type_name(config_type: i8) -> &'static str {
    match config_type {
        1 => "BOOLEAN",
        2 => "STRING",
        3 => "INT",
        4 => "SHORT",
        5 => "LONG",
        6 => "DOUBLE",
        7 => "LIST",
        8 => "CLASS",
        9 => "PASSWORD",
        _ => "UNKNOWN",
    }
}

fn resource(target: &Target, connected_to: i32) -> (i8, String) {
    match target {
        Target::Topic(topic) => (RESOURCE_TOPIC, topic.clone()),
        Target::Broker(id) => (RESOURCE_BROKER, id.unwrap_or(connected_to).to_string()),
    }
}

/// The broker a broker config request goes to: the one named, else any.
async fn broker_for(cluster: &mut Cluster, target: &Target) -> Result<i32, ClientError> {
    match target {
        Target::Broker(Some(id)) => Ok(*id),
        _ => controller(cluster).await,
    }
}

pub async fn describe_configs(
    cluster: &mut Cluster,
    target: Target,
) -> Result<Vec<ConfigDetails>, ClientError> {
    use proto_kafka::messages::describe_configs_request::DescribeConfigsResource;
    let broker = broker_for(cluster, &target).await?;
    let (kind, resource_name) = resource(&target, broker);
    let request =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(kind)
            .with_resource_name(name(&resource_name))
            .with_configuration_keys(None)]);
    let (_, response): (i16, DescribeConfigsResponse) = cluster
        .broker(broker)
        .await?
        .call(ApiKey::DescribeConfigs, 4, &request)
        .await?;
    let mut out = Vec::new();
    for result in &response.results {
        if result.error_code == 3 {
            return Err(ClientError::NotFound(format!(
                "topic '{resource_name}' does not exist"
            )));
        }
        if result.error_code != 0 {
            return Err(failed(
                format!("describing the configs of {resource_name}"),
                result.error_code,
                result.error_message.as_ref(),
            ));
        }
        out.extend(result.configs.iter().map(|c| ConfigDetails {
            name: c.name.to_string(),
            value: c.value.as_ref().map(|v| v.to_string()),
            source: source_name(c.config_source),
            read_only: c.read_only,
            sensitive: c.is_sensitive,
            config_type: type_name(c.config_type),
        }));
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Sets and deletes configs (IncrementalAlterConfigs SET and DELETE).
pub async fn alter_configs(
    cluster: &mut Cluster,
    target: Target,
    set: &[(String, String)],
    delete: &[String],
) -> Result<(), ClientError> {
    use proto_kafka::messages::incremental_alter_configs_request::{
        AlterConfigsResource, AlterableConfig,
    };
    const OP_SET: i8 = 0;
    const OP_DELETE: i8 = 1;
    let broker = broker_for(cluster, &target).await?;
    let (kind, resource_name) = resource(&target, broker);
    let configs = set
        .iter()
        .map(|(k, v)| {
            AlterableConfig::default()
                .with_name(name(k))
                .with_config_operation(OP_SET)
                .with_value(Some(name(v)))
        })
        .chain(delete.iter().map(|k| {
            AlterableConfig::default()
                .with_name(name(k))
                .with_config_operation(OP_DELETE)
                .with_value(None)
        }))
        .collect();
    let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(kind)
            .with_resource_name(name(&resource_name))
            .with_configs(configs),
    ]);
    let (_, response): (i16, IncrementalAlterConfigsResponse) = cluster
        .broker(broker)
        .await?
        .call(ApiKey::IncrementalAlterConfigs, 1, &request)
        .await?;
    for result in &response.responses {
        if result.error_code != 0 {
            return Err(failed(
                format!("altering the configs of {resource_name}"),
                result.error_code,
                result.error_message.as_ref(),
            ));
        }
    }
    Ok(())
}

/// Parses `key=value`.
pub fn parse_setting(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("{text:?}: expected KEY=VALUE"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_key_equals_value() {
        assert_eq!(
            parse_setting("retention.ms=1000").unwrap(),
            ("retention.ms".to_string(), "1000".to_string())
        );
        assert_eq!(parse_setting("a=b=c").unwrap().1, "b=c");
        assert!(parse_setting("novalue").is_err());
        assert!(parse_setting("=x").is_err());
    }

    #[test]
    fn kafkas_names_for_sources_and_types() {
        assert_eq!(source_name(1), "DYNAMIC_TOPIC_CONFIG");
        assert_eq!(source_name(5), "DEFAULT_CONFIG");
        assert_eq!(type_name(7), "LIST");
    }
}
