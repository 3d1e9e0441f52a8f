//! The single source of truth for which APIs and versions Ferry implements. ApiVersions
//! advertises exactly this table, and dispatch rejects anything outside it.

use proto_kafka::messages::ApiKey;

/// One implemented API.
#[derive(Debug, Clone, Copy)]
pub struct ApiSupport {
    pub key: ApiKey,
    /// Lowest version advertised in ApiVersions.
    pub advertised_min: i16,
    /// Lowest version actually accepted (Produce advertises 0 but accepts 3+, like Kafka 4:
    /// librdkafka before 2.11.1 disabled compression unless Produce v0 was in range).
    pub accepted_min: i16,
    pub max: i16,
}

const fn api(key: ApiKey, min: i16, max: i16) -> ApiSupport {
    ApiSupport {
        key,
        advertised_min: min,
        accepted_min: min,
        max,
    }
}

/// Implemented APIs, in api-key order.
pub static SUPPORTED: &[ApiSupport] = &[
    ApiSupport {
        key: ApiKey::Produce,
        advertised_min: 0,
        accepted_min: 3,
        max: 11,
    },
    api(ApiKey::Fetch, 4, 12),
    api(ApiKey::ListOffsets, 1, 7),
    api(ApiKey::Metadata, 0, 12),
    api(ApiKey::OffsetCommit, 2, 9),
    api(ApiKey::OffsetFetch, 1, 9),
    api(ApiKey::FindCoordinator, 0, 6),
    api(ApiKey::JoinGroup, 0, 9),
    api(ApiKey::Heartbeat, 0, 4),
    api(ApiKey::LeaveGroup, 0, 5),
    api(ApiKey::SyncGroup, 0, 5),
    api(ApiKey::DescribeGroups, 0, 5),
    api(ApiKey::ListGroups, 0, 5),
    api(ApiKey::SaslHandshake, 0, 1),
    api(ApiKey::ApiVersions, 0, 4),
    api(ApiKey::CreateTopics, 2, 7),
    api(ApiKey::DeleteTopics, 1, 6),
    api(ApiKey::DeleteRecords, 0, 2),
    api(ApiKey::InitProducerId, 0, 5),
    api(ApiKey::AddPartitionsToTxn, 0, 3),
    api(ApiKey::AddOffsetsToTxn, 0, 4),
    api(ApiKey::EndTxn, 0, 4),
    api(ApiKey::TxnOffsetCommit, 0, 4),
    api(ApiKey::DescribeConfigs, 1, 4),
    api(ApiKey::AlterConfigs, 0, 2),
    api(ApiKey::DescribeLogDirs, 1, 4),
    api(ApiKey::SaslAuthenticate, 0, 2),
    api(ApiKey::CreatePartitions, 0, 3),
    api(ApiKey::DeleteGroups, 0, 2),
    api(ApiKey::IncrementalAlterConfigs, 0, 1),
    api(ApiKey::OffsetDelete, 0, 0),
    api(ApiKey::DescribeUserScramCredentials, 0, 0),
    api(ApiKey::AlterUserScramCredentials, 0, 0),
    api(ApiKey::DescribeCluster, 0, 1),
    api(ApiKey::DescribeProducers, 0, 0),
    api(ApiKey::DescribeTransactions, 0, 0),
    api(ApiKey::ListTransactions, 0, 1),
];

/// The support entry for an API key, if Ferry implements it.
pub fn lookup(key: ApiKey) -> Option<&'static ApiSupport> {
    SUPPORTED.iter().find(|s| s.key == key)
}

/// True if `version` of `key` is implemented.
pub fn is_supported(key: ApiKey, version: i16) -> bool {
    lookup(key).is_some_and(|s| version >= s.accepted_min && version <= s.max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_within_what_the_codec_can_handle() {
        for support in SUPPORTED {
            let codec = support.key.valid_versions();
            assert!(support.accepted_min >= codec.min, "{:?}", support.key);
            assert!(support.max <= codec.max, "{:?}", support.key);
            assert!(support.advertised_min <= support.accepted_min);
        }
        let keys: Vec<i16> = SUPPORTED.iter().map(|s| s.key as i16).collect();
        assert!(
            keys.windows(2).all(|w| w[0] < w[1]),
            "sorted by key, no duplicates"
        );
    }
}
