//! Talking to a link's source cluster with Ferry's own client (`client/`), with only a
//! consumer's rights: Metadata, ListOffsets, Fetch (read_uncommitted, so control batches
//! and aborted data come across as they are), DescribeConfigs, ListGroups, OffsetFetch,
//! and OffsetCommit for the consumers-first write-back.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use proto_kafka::messages::{ApiKey, BrokerId, FetchRequest, FetchResponse, TopicName};
use proto_kafka::protocol::StrBytes;

use crate::client::{check, ClientError, ClientOptions, ClientSecurity, Cluster};

/// The client id Ferry uses on the source (visible in the source's request logs).
pub const CLIENT_ID: &str = "ferry-mirror";
/// How long one Fetch waits on the source for new data when the source is quiet.
pub const FETCH_WAIT_MS: i32 = 500;
/// Topic configs a mirror topic takes from its source (when set there on the topic).
pub const MIRRORED_CONFIGS: &[&str] = &[
    "cleanup.policy",
    "retention.ms",
    "retention.bytes",
    "max.message.bytes",
    "message.timestamp.type",
    "compression.type",
    "delete.retention.ms",
    "min.compaction.lag.ms",
    "max.compaction.lag.ms",
    "min.cleanable.dirty.ratio",
];

/// Client properties the source connection honours today; others are refused.
const SUPPORTED_CLIENT_KEYS: &[&str] = &[
    "bootstrap.servers",
    "client.id",
    "security.protocol",
    "request.timeout.ms",
];

/// Checks a link's client properties: the security keys as Ferry's client reads them
/// (`client::security`: TLS, SASL PLAIN/SCRAM), and the few others the mirror uses.
pub fn check_client_config(config: &BTreeMap<String, String>) -> Result<(), String> {
    ClientSecurity::from_properties(config)?;
    if let Some(timeout) = config.get("request.timeout.ms") {
        if !timeout.parse::<u64>().is_ok_and(|ms| ms > 0) {
            return Err(format!(
                "request.timeout.ms={timeout}: a positive number of milliseconds is needed"
            ));
        }
    }
    match config.keys().find(|k| {
        let security = k.starts_with("ssl.") || k.starts_with("sasl.");
        !security && !SUPPORTED_CLIENT_KEYS.contains(&k.as_str())
    }) {
        Some(key) => Err(format!(
            "source client property '{key}' is not supported by the mirror yet (supported: {})",
            SUPPORTED_CLIENT_KEYS.join(", ")
        )),
        None => Ok(()),
    }
}

/// Connects to a link's source with its client properties (`request.timeout.ms`, checked
/// by [`check_client_config`] when the link was made).
pub async fn connect(
    source: &str,
    config: &BTreeMap<String, String>,
) -> Result<Cluster, ClientError> {
    let timeout = config
        .get("request.timeout.ms")
        .and_then(|ms| ms.parse::<u64>().ok())
        .map_or(
            crate::client::REQUEST_TIMEOUT,
            std::time::Duration::from_millis,
        );
    let security = ClientSecurity::from_properties(config).map_err(ClientError::Refused)?;
    let options = ClientOptions {
        request_timeout: timeout,
        security: std::sync::Arc::new(security),
    };
    Cluster::connect_with(source, CLIENT_ID, &options).await
}

/// A source topic as Metadata describes it.
#[derive(Debug, Clone)]
pub struct SourceTopic {
    pub name: String,
    /// The topic id (Metadata v10+), as text; None if the source does not send one.
    pub topic_id: Option<String>,
    /// Partition index -> leader node id (-1 while leaderless).
    pub leaders: BTreeMap<i32, i32>,
    /// Non-zero if the source reported an error for the topic.
    pub error_code: i16,
}

/// Metadata for `topics`.
pub async fn topics(
    cluster: &mut Cluster,
    names: &[String],
) -> Result<Vec<SourceTopic>, ClientError> {
    let response = cluster.metadata(Some(names.to_vec())).await?;
    Ok(response
        .topics
        .iter()
        .map(|t| {
            let id = t.topic_id;
            SourceTopic {
                name: t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default(),
                topic_id: (!id.is_nil()).then(|| id.to_string()),
                leaders: t
                    .partitions
                    .iter()
                    .map(|p| (p.partition_index, p.leader_id.0))
                    .collect(),
                error_code: t.error_code,
            }
        })
        .collect())
}

/// Every topic name on the source (for `--topic-regex`).
pub async fn all_topic_names(cluster: &mut Cluster) -> Result<Vec<String>, ClientError> {
    let response = cluster.metadata(None).await?;
    Ok(response
        .topics
        .iter()
        .filter(|t| !t.is_internal)
        .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
        .collect())
}

/// The source topic's configs that a mirror copies: those set on the topic itself.
pub async fn mirrored_configs(
    cluster: &mut Cluster,
    topic: &str,
) -> Result<BTreeMap<String, String>, ClientError> {
    let configs = crate::admin::topics::describe_configs(
        cluster,
        crate::admin::topics::Target::Topic(topic.to_string()),
    )
    .await?;
    Ok(configs
        .into_iter()
        .filter(|c| c.source == "DYNAMIC_TOPIC_CONFIG" && MIRRORED_CONFIGS.contains(&&*c.name))
        .filter_map(|c| c.value.map(|v| (c.name, v)))
        .collect())
}

/// Earliest or latest offsets of the given partitions.
pub async fn offsets(
    cluster: &mut Cluster,
    partitions: &BTreeSet<(String, i32)>,
    timestamp: i64,
) -> Result<BTreeMap<(String, i32), i64>, ClientError> {
    crate::admin::groups::list_offsets(cluster, partitions, timestamp).await
}

/// One partition of a Fetch answer.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub topic: String,
    /// Transactions aborted in the returned range (read_committed only): (producer id,
    /// first offset).
    pub aborted: Vec<(i64, i64)>,
    pub partition: i32,
    pub error_code: i16,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub records: Bytes,
}

/// How much one Fetch may return.
#[derive(Debug, Clone, Copy)]
pub struct FetchLimits {
    /// How long the source may hold the Fetch for `min_bytes` to arrive.
    pub max_wait_ms: i32,
    pub min_bytes: i32,
    pub max_bytes: i32,
    pub partition_max_bytes: i32,
    /// 0 = read_uncommitted (the mirror: markers and aborted data too), 1 = read_committed.
    pub isolation_level: i8,
}

impl FetchLimits {
    /// The same limits with another total.
    pub const fn with_max_bytes(self, max_bytes: i32) -> FetchLimits {
        FetchLimits { max_bytes, ..self }
    }
}

/// One Fetch from broker `leader` for `(topic, partition, offset)`; also the Fetch of
/// `ferry consume`.
pub async fn fetch(
    cluster: &mut Cluster,
    leader: i32,
    wanted: &[(String, i32, i64)],
    limits: FetchLimits,
) -> Result<Vec<Fetched>, ClientError> {
    use proto_kafka::messages::fetch_request::{FetchPartition, FetchTopic};
    let mut by_topic: BTreeMap<&str, Vec<(i32, i64)>> = BTreeMap::new();
    for (topic, partition, offset) in wanted {
        by_topic
            .entry(topic.as_str())
            .or_default()
            .push((*partition, *offset));
    }
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(limits.max_wait_ms)
        .with_min_bytes(limits.min_bytes)
        .with_max_bytes(limits.max_bytes)
        .with_isolation_level(limits.isolation_level)
        .with_session_epoch(-1)
        .with_topics(
            by_topic
                .iter()
                .map(|(topic, partitions)| {
                    FetchTopic::default()
                        .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                        .with_partitions(
                            partitions
                                .iter()
                                .map(|(p, at)| {
                                    FetchPartition::default()
                                        .with_partition(*p)
                                        .with_fetch_offset(*at)
                                        .with_log_start_offset(-1)
                                        .with_partition_max_bytes(limits.partition_max_bytes)
                                })
                                .collect(),
                        )
                })
                .collect(),
        );
    let (_, response): (i16, FetchResponse) = cluster
        .broker(leader)
        .await?
        .call(ApiKey::Fetch, 12, &request)
        .await?;
    check(response.error_code, || {
        format!("Fetch from broker {leader}")
    })?;
    let mut out = Vec::new();
    for topic in &response.responses {
        for p in &topic.partitions {
            out.push(Fetched {
                topic: topic.topic.0.to_string(),
                partition: p.partition_index,
                error_code: p.error_code,
                aborted: p
                    .aborted_transactions
                    .iter()
                    .flatten()
                    .map(|a| (a.producer_id.0, a.first_offset))
                    .collect(),
                high_watermark: p.high_watermark,
                log_start_offset: p.log_start_offset,
                records: p.records.clone().unwrap_or_default(),
            });
        }
    }
    Ok(out)
}

/// The bytes of the whole batches at the start of `records` (a Fetch answer may end in
/// a partial batch, which the next fetch returns whole).
pub fn whole_batches(records: &[u8]) -> usize {
    let mut position = 0usize;
    while records.len() - position >= 12 {
        let length_bytes = [
            records[position + 8],
            records[position + 9],
            records[position + 10],
            records[position + 11],
        ];
        let Ok(length) = usize::try_from(i32::from_be_bytes(length_bytes)) else {
            break;
        };
        let Some(end) = position.checked_add(12).and_then(|p| p.checked_add(length)) else {
            break;
        };
        if end > records.len() {
            break;
        }
        position = end;
    }
    position
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_batches_are_taken() {
        let mut batch = vec![0u8; 12];
        batch[8..12].copy_from_slice(&20i32.to_be_bytes());
        batch.extend([0u8; 20]);
        let mut two = batch.clone();
        two.extend(&batch[..15]);
        assert_eq!(whole_batches(&two), 32);
        assert_eq!(whole_batches(&batch[..5]), 0);
        let mut negative = batch.clone();
        negative[8..12].copy_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(whole_batches(&negative), 0);
    }

    #[test]
    fn source_security_is_checked_when_the_link_is_made() {
        let mut config = BTreeMap::new();
        assert!(check_client_config(&config).is_ok());
        config.insert("security.protocol".into(), "SASL_PLAINTEXT".into());
        config.insert("sasl.mechanism".into(), "GSSAPI".into());
        assert!(check_client_config(&config)
            .unwrap_err()
            .contains("sasl.mechanism"));
        config.insert("sasl.mechanism".into(), "SCRAM-SHA-512".into());
        config.insert("sasl.username".into(), "mirror".into());
        config.insert("sasl.password".into(), "secret".into());
        assert!(check_client_config(&config).is_ok());
        config.insert("linger.ms".into(), "5".into());
        assert!(check_client_config(&config)
            .unwrap_err()
            .contains("linger.ms"));
    }
}

/// One ACL binding on the source, with Kafka's names.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SourceAcl {
    pub resource_type: &'static str,
    pub resource_name: String,
    pub pattern_type: &'static str,
    pub principal: String,
    pub host: String,
    pub operation: &'static str,
    pub permission: &'static str,
}

fn resource_type_name(code: i8) -> &'static str {
    match code {
        2 => "TOPIC",
        3 => "GROUP",
        4 => "CLUSTER",
        5 => "TRANSACTIONAL_ID",
        6 => "DELEGATION_TOKEN",
        7 => "USER",
        _ => "UNKNOWN",
    }
}

fn operation_name(code: i8) -> &'static str {
    const NAMES: [&str; 15] = [
        "UNKNOWN",
        "ANY",
        "ALL",
        "READ",
        "WRITE",
        "CREATE",
        "DELETE",
        "ALTER",
        "DESCRIBE",
        "CLUSTER_ACTION",
        "DESCRIBE_CONFIGS",
        "ALTER_CONFIGS",
        "IDEMPOTENT_WRITE",
        "CREATE_TOKENS",
        "DESCRIBE_TOKENS",
    ];
    usize::try_from(code)
        .ok()
        .and_then(|i| NAMES.get(i))
        .copied()
        .unwrap_or("UNKNOWN")
}

/// Every ACL binding of the source (DescribeAcls with an ANY filter), or why it cannot
/// be read: the source has no authorizer, the link's principal may not describe them, or
/// the source does not serve DescribeAcls.
pub async fn acls(cluster: &mut Cluster) -> Result<Vec<SourceAcl>, String> {
    use proto_kafka::messages::{DescribeAclsRequest, DescribeAclsResponse};
    let metadata = cluster
        .metadata(Some(Vec::new()))
        .await
        .map_err(|e| e.to_string())?;
    let node = metadata
        .brokers
        .first()
        .map(|b| b.node_id.0)
        .ok_or("the source lists no broker")?;
    let request = DescribeAclsRequest::default()
        .with_resource_type_filter(1)
        .with_pattern_type_filter(1)
        .with_operation(1)
        .with_permission_type(1);
    let connection = cluster.broker(node).await.map_err(|e| e.to_string())?;
    let response: DescribeAclsResponse =
        match connection.call(ApiKey::DescribeAcls, 3, &request).await {
            Ok((_, response)) => response,
            Err(ClientError::Unsupported { .. }) => {
                return Err("the source does not serve DescribeAcls".into())
            }
            Err(err) => return Err(err.to_string()),
        };
    match response.error_code {
        0 => {}
        54 => return Err("the source has no authorizer (SECURITY_DISABLED)".into()),
        31 => return Err("the link's principal may not describe the source's ACLs".into()),
        code => return Err(format!("DescribeAcls answered error {code}")),
    }
    let mut out = Vec::new();
    for resource in &response.resources {
        for acl in &resource.acls {
            out.push(SourceAcl {
                resource_type: resource_type_name(resource.resource_type),
                resource_name: resource.resource_name.to_string(),
                pattern_type: if resource.pattern_type == 4 {
                    "PREFIXED"
                } else {
                    "LITERAL"
                },
                principal: acl.principal.to_string(),
                host: acl.host.to_string(),
                operation: operation_name(acl.operation),
                permission: if acl.permission_type == 2 {
                    "DENY"
                } else {
                    "ALLOW"
                },
            });
        }
    }
    Ok(out)
}
