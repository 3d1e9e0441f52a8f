//! Field-exact success responses: one successful request per implemented API, at the
//! highest version Ferry advertises (and FindCoordinator also at v3), decoded with Kafka's
//! message types, checking every nullable field against what Kafka's broker sends: null
//! where Kafka sends null (CreateTopics, AlterConfigs, CreatePartitions, DeleteTopics,
//! DescribeCluster and DescribeProducers error messages; DescribeConfigs documentation;
//! Metadata rack; group instance ids of dynamic members), a value where Kafka sends one.
//! Also Kafka's answer to a topic named twice in one admin request.

use bytes::Bytes;
use ferry::client::Connection;
use ferry::storage::records::{self, BatchSpec, NewRecord};
use proto_kafka::messages::*;
use proto_kafka::protocol::{Decodable, Encodable, StrBytes};

use crate::support::Broker;

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

fn topic(text: &str) -> TopicName {
    TopicName(s(text))
}

async fn call<Req: Encodable, Resp: Decodable>(
    wire: &mut Connection,
    api: ApiKey,
    max: i16,
    request: &Req,
) -> (i16, Resp) {
    wire.call(api, max, request)
        .await
        .unwrap_or_else(|e| panic!("{api:?}: {e}"))
}

async fn create_topics(wire: &mut Connection) {
    use create_topics_request::CreatableTopic;
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(5_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(topic("fields"))
            .with_num_partitions(2)
            .with_replication_factor(1)]);
    let (version, response): (_, CreateTopicsResponse) =
        call(wire, ApiKey::CreateTopics, 7, &request).await;
    assert_eq!(version, 7);
    let result = &response.topics[0];
    assert_eq!(result.error_code, 0);
    assert_eq!(
        result.error_message, None,
        "CreateTopics error_message on success"
    );
    assert_eq!(result.num_partitions, 2);
    assert!(!result.topic_id.is_nil());
    assert!(result.configs.as_ref().is_some_and(|c| !c.is_empty()));
}

async fn produce_and_fetch(wire: &mut Connection) {
    use fetch_request::{FetchPartition, FetchTopic};
    use produce_request::{PartitionProduceData, TopicProduceData};
    let batch = records::build_batch(
        BatchSpec::PLAIN,
        &[NewRecord {
            key: Some(b"k"),
            value: Some(b"v"),
            timestamp: 1_700_000_000_000,
        }],
    );
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic("fields"))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(Bytes::from(batch)))])]);
    let (_, response): (_, ProduceResponse) = call(wire, ApiKey::Produce, 11, &request).await;
    let partition = &response.responses[0].partition_responses[0];
    assert_eq!(partition.error_code, 0);
    assert_eq!(
        partition.error_message, None,
        "Produce error_message on success"
    );
    assert!(partition.record_errors.is_empty());

    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic("fields"))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_log_start_offset(-1)
                .with_partition_max_bytes(1 << 20)])]);
    let (_, response): (_, FetchResponse) = call(wire, ApiKey::Fetch, 12, &request).await;
    let data = &response.responses[0].partitions[0];
    assert_eq!(data.error_code, 0);
    assert!(
        data.records.as_ref().is_some_and(|r| !r.is_empty()),
        "records are never null"
    );
    assert_eq!(data.aborted_transactions, None, "read_uncommitted: null");
    assert_eq!((data.high_watermark, data.log_start_offset), (1, 0));
}

async fn metadata_and_offsets(wire: &mut Connection) {
    use list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    let request = MetadataRequest::default().with_topics(Some(vec![
        metadata_request::MetadataRequestTopic::default().with_name(Some(topic("fields"))),
        metadata_request::MetadataRequestTopic::default()
            .with_name(None)
            .with_topic_id(uuid::Uuid::from_u128(7)),
    ]));
    let (version, response): (_, MetadataResponse) =
        call(wire, ApiKey::Metadata, 12, &request).await;
    assert_eq!(version, 12);
    assert!(response.cluster_id.is_some());
    assert_eq!(response.brokers[0].rack, None, "no broker.rack: null");
    assert_eq!(
        response.topics[0].name.as_ref().map(|n| n.0.as_str()),
        Some("fields")
    );
    let unknown = &response.topics[1];
    assert_eq!(unknown.error_code, 100, "UNKNOWN_TOPIC_ID");
    assert_eq!(unknown.name, None, "an unknown topic id has a null name");

    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic("fields"))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(-1)])]);
    let (_, response): (_, ListOffsetsResponse) =
        call(wire, ApiKey::ListOffsets, 7, &request).await;
    assert_eq!(response.topics[0].partitions[0].offset, 1);
}

async fn find_coordinator(wire: &mut Connection) {
    let request = FindCoordinatorRequest::default().with_key(s("fields-group"));
    let (version, response): (_, FindCoordinatorResponse) =
        call(wire, ApiKey::FindCoordinator, 3, &request).await;
    assert_eq!(version, 3);
    assert_eq!(response.error_code, 0);
    assert_eq!(
        response.error_message, None,
        "FindCoordinator v3 error_message on success"
    );
    let request = FindCoordinatorRequest::default().with_coordinator_keys(vec![s("fields-group")]);
    let (_, response): (_, FindCoordinatorResponse) =
        call(wire, ApiKey::FindCoordinator, 6, &request).await;
    let coordinator = &response.coordinators[0];
    assert_eq!(coordinator.error_code, 0);
    // Kafka leaves the per-key message of v4+ at its default, "".
    assert_eq!(
        coordinator.error_message.as_ref().map(|m| m.as_str()),
        Some("")
    );
}

async fn group_lifecycle(wire: &mut Connection) {
    let group = GroupId(s("fields-group"));
    let join = JoinGroupRequest::default()
        .with_group_id(group.clone())
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
        )
        .with_name(s("range"))
        .with_metadata(Bytes::from_static(b"\0\0\0\0\0\0\0\0"))]);
    let (_, first): (_, JoinGroupResponse) = call(wire, ApiKey::JoinGroup, 9, &join).await;
    assert_eq!(first.error_code, 79, "MEMBER_ID_REQUIRED");
    let join = join.with_member_id(first.member_id.clone());
    let (version, joined): (_, JoinGroupResponse) = call(wire, ApiKey::JoinGroup, 9, &join).await;
    assert_eq!((version, joined.error_code), (9, 0));
    assert_eq!(
        joined.protocol_type.as_ref().map(|p| p.as_str()),
        Some("consumer")
    );
    assert_eq!(
        joined.protocol_name.as_ref().map(|p| p.as_str()),
        Some("range")
    );
    assert_eq!(
        joined.members[0].group_instance_id, None,
        "a dynamic member"
    );
    let member = joined.member_id.clone();
    let sync = SyncGroupRequest::default()
        .with_group_id(group.clone())
        .with_generation_id(joined.generation_id)
        .with_member_id(member.clone())
        .with_protocol_type(Some(s("consumer")))
        .with_protocol_name(Some(s("range")))
        .with_assignments(vec![
            sync_group_request::SyncGroupRequestAssignment::default()
                .with_member_id(member.clone())
                .with_assignment(Bytes::from_static(b"assigned")),
        ]);
    let (_, synced): (_, SyncGroupResponse) = call(wire, ApiKey::SyncGroup, 5, &sync).await;
    assert_eq!(synced.error_code, 0);
    assert_eq!(
        synced.protocol_type.as_ref().map(|p| p.as_str()),
        Some("consumer")
    );
    assert_eq!(
        synced.protocol_name.as_ref().map(|p| p.as_str()),
        Some("range")
    );
    let heartbeat = HeartbeatRequest::default()
        .with_group_id(group.clone())
        .with_generation_id(joined.generation_id)
        .with_member_id(member.clone());
    let (_, beat): (_, HeartbeatResponse) = call(wire, ApiKey::Heartbeat, 4, &heartbeat).await;
    assert_eq!(beat.error_code, 0);

    let commit = OffsetCommitRequest::default()
        .with_group_id(group.clone())
        .with_generation_id_or_member_epoch(joined.generation_id)
        .with_member_id(member.clone())
        .with_topics(vec![
            offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(topic("fields"))
                .with_partitions(vec![
                    offset_commit_request::OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(1)
                        .with_committed_metadata(None),
                ]),
        ]);
    let (_, committed): (_, OffsetCommitResponse) =
        call(wire, ApiKey::OffsetCommit, 9, &commit).await;
    assert_eq!(committed.topics[0].partitions[0].error_code, 0);
    let fetch = OffsetFetchRequest::default().with_groups(vec![
        offset_fetch_request::OffsetFetchRequestGroup::default()
            .with_group_id(group.clone())
            .with_topics(None),
    ]);
    let (_, fetched): (_, OffsetFetchResponse) = call(wire, ApiKey::OffsetFetch, 9, &fetch).await;
    let partition = &fetched.groups[0].topics[0].partitions[0];
    assert_eq!(partition.committed_offset, 1);
    // Kafka stores a null commit metadata as "" and never answers null.
    assert_eq!(partition.metadata.as_ref().map(|m| m.as_str()), Some(""));

    let describe = DescribeGroupsRequest::default().with_groups(vec![group.clone()]);
    let (_, described): (_, DescribeGroupsResponse) =
        call(wire, ApiKey::DescribeGroups, 5, &describe).await;
    let described = &described.groups[0];
    assert_eq!(
        (described.error_code, described.group_state.as_str()),
        (0, "Stable")
    );
    assert_eq!(
        described.members[0].group_instance_id, None,
        "a dynamic member"
    );
    let (_, listed): (_, ListGroupsResponse) =
        call(wire, ApiKey::ListGroups, 5, &ListGroupsRequest::default()).await;
    assert_eq!(listed.error_code, 0);
    assert!(listed.groups.iter().any(|g| g.group_id == group));

    let leave = LeaveGroupRequest::default()
        .with_group_id(group.clone())
        .with_members(vec![
            leave_group_request::MemberIdentity::default().with_member_id(member.clone())
        ]);
    let (_, left): (_, LeaveGroupResponse) = call(wire, ApiKey::LeaveGroup, 5, &leave).await;
    assert_eq!(left.error_code, 0);
    assert_eq!(
        left.members[0].group_instance_id, None,
        "echoes the dynamic member's null"
    );

    let delete_offsets = OffsetDeleteRequest::default()
        .with_group_id(group.clone())
        .with_topics(vec![
            offset_delete_request::OffsetDeleteRequestTopic::default()
                .with_name(topic("fields"))
                .with_partitions(vec![
                    offset_delete_request::OffsetDeleteRequestPartition::default()
                        .with_partition_index(0),
                ]),
        ]);
    let (_, deleted): (_, OffsetDeleteResponse) =
        call(wire, ApiKey::OffsetDelete, 0, &delete_offsets).await;
    assert_eq!(deleted.error_code, 0);
    let delete = DeleteGroupsRequest::default().with_groups_names(vec![group]);
    let (_, deleted): (_, DeleteGroupsResponse) =
        call(wire, ApiKey::DeleteGroups, 2, &delete).await;
    assert_eq!(deleted.results[0].error_code, 0);
}

async fn transaction(wire: &mut Connection) {
    let id = TransactionalId(s("fields-txn"));
    let init = InitProducerIdRequest::default()
        .with_transactional_id(Some(id.clone()))
        .with_transaction_timeout_ms(30_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let (_, init): (_, InitProducerIdResponse) = call(wire, ApiKey::InitProducerId, 5, &init).await;
    assert_eq!(init.error_code, 0);
    let (pid, epoch) = (init.producer_id, init.producer_epoch);
    let add = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(id.clone())
        .with_v3_and_below_producer_id(pid)
        .with_v3_and_below_producer_epoch(epoch)
        .with_v3_and_below_topics(vec![
            add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                .with_name(topic("fields"))
                .with_partitions(vec![1]),
        ]);
    let (_, added): (_, AddPartitionsToTxnResponse) =
        call(wire, ApiKey::AddPartitionsToTxn, 3, &add).await;
    assert_eq!(
        added.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code,
        0
    );
    let add_offsets = AddOffsetsToTxnRequest::default()
        .with_transactional_id(id.clone())
        .with_producer_id(pid)
        .with_producer_epoch(epoch)
        .with_group_id(GroupId(s("fields-txn-group")));
    let (_, added): (_, AddOffsetsToTxnResponse) =
        call(wire, ApiKey::AddOffsetsToTxn, 4, &add_offsets).await;
    assert_eq!(added.error_code, 0);
    let commit = TxnOffsetCommitRequest::default()
        .with_transactional_id(id.clone())
        .with_group_id(GroupId(s("fields-txn-group")))
        .with_producer_id(pid)
        .with_producer_epoch(epoch)
        .with_generation_id(-1)
        .with_topics(vec![
            txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                .with_name(topic("fields"))
                .with_partitions(vec![
                    txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                        .with_partition_index(1)
                        .with_committed_offset(0)
                        .with_committed_metadata(Some(s(""))),
                ]),
        ]);
    let (_, committed): (_, TxnOffsetCommitResponse) =
        call(wire, ApiKey::TxnOffsetCommit, 4, &commit).await;
    assert_eq!(committed.topics[0].partitions[0].error_code, 0);
    let (_, described): (_, DescribeTransactionsResponse) = call(
        wire,
        ApiKey::DescribeTransactions,
        0,
        &DescribeTransactionsRequest::default().with_transactional_ids(vec![id.clone()]),
    )
    .await;
    assert_eq!(
        described.transaction_states[0].transaction_state.as_str(),
        "Ongoing"
    );
    let (_, listed): (_, ListTransactionsResponse) = call(
        wire,
        ApiKey::ListTransactions,
        1,
        &ListTransactionsRequest::default(),
    )
    .await;
    assert_eq!(listed.error_code, 0);
    let end = EndTxnRequest::default()
        .with_transactional_id(id)
        .with_producer_id(pid)
        .with_producer_epoch(epoch)
        .with_committed(true);
    let (_, ended): (_, EndTxnResponse) = call(wire, ApiKey::EndTxn, 4, &end).await;
    assert_eq!(ended.error_code, 0);
    let producers = DescribeProducersRequest::default().with_topics(vec![
        describe_producers_request::TopicRequest::default()
            .with_name(topic("fields"))
            .with_partition_indexes(vec![1]),
    ]);
    let (_, producers): (_, DescribeProducersResponse) =
        call(wire, ApiKey::DescribeProducers, 0, &producers).await;
    let partition = &producers.topics[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    assert_eq!(
        partition.error_message, None,
        "DescribeProducers error_message on success"
    );
}

async fn configs_and_partitions(wire: &mut Connection) {
    const TOPIC: i8 = 2;
    let describe = DescribeConfigsRequest::default()
        .with_include_synonyms(true)
        .with_resources(vec![
            describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(TOPIC)
                .with_resource_name(s("fields"))
                .with_configuration_keys(None),
        ]);
    let (version, described): (_, DescribeConfigsResponse) =
        call(wire, ApiKey::DescribeConfigs, 4, &describe).await;
    assert_eq!(version, 4);
    let result = &described.results[0];
    assert_eq!(result.error_code, 0);
    assert_eq!(
        result.error_message, None,
        "DescribeConfigs error_message on success"
    );
    assert!(!result.configs.is_empty());
    for config in &result.configs {
        assert_eq!(
            config.documentation,
            None,
            "{} documentation",
            config.name.as_str()
        );
        assert!(config.value.is_some(), "{} value", config.name.as_str());
    }
    let alter = AlterConfigsRequest::default().with_resources(vec![
        alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(TOPIC)
            .with_resource_name(s("fields"))
            .with_configs(vec![alter_configs_request::AlterableConfig::default()
                .with_name(s("retention.ms"))
                .with_value(Some(s("86400000")))]),
    ]);
    let (_, altered): (_, AlterConfigsResponse) = call(wire, ApiKey::AlterConfigs, 2, &alter).await;
    assert_eq!(altered.responses[0].error_code, 0);
    assert_eq!(
        altered.responses[0].error_message, None,
        "AlterConfigs error_message"
    );
    let incremental = IncrementalAlterConfigsRequest::default().with_resources(vec![
        incremental_alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(TOPIC)
            .with_resource_name(s("fields"))
            .with_configs(vec![
                incremental_alter_configs_request::AlterableConfig::default()
                    .with_name(s("retention.ms"))
                    .with_config_operation(0)
                    .with_value(Some(s("172800000"))),
            ]),
    ]);
    let (_, altered): (_, IncrementalAlterConfigsResponse) =
        call(wire, ApiKey::IncrementalAlterConfigs, 1, &incremental).await;
    assert_eq!(altered.responses[0].error_code, 0);
    assert_eq!(
        altered.responses[0].error_message, None,
        "IncrementalAlterConfigs error_message"
    );
    let grow = CreatePartitionsRequest::default()
        .with_timeout_ms(5_000)
        .with_topics(vec![
            create_partitions_request::CreatePartitionsTopic::default()
                .with_name(topic("fields"))
                .with_count(3)
                .with_assignments(None),
        ]);
    let (_, grown): (_, CreatePartitionsResponse) =
        call(wire, ApiKey::CreatePartitions, 3, &grow).await;
    assert_eq!(grown.results[0].error_code, 0);
    assert_eq!(
        grown.results[0].error_message, None,
        "CreatePartitions error_message"
    );
    let cluster = DescribeClusterRequest::default();
    let (_, cluster): (_, DescribeClusterResponse) =
        call(wire, ApiKey::DescribeCluster, 1, &cluster).await;
    assert_eq!(cluster.error_code, 0);
    assert_eq!(cluster.error_message, None, "DescribeCluster error_message");
    assert_eq!(cluster.brokers[0].rack, None);
}

async fn delete_records_and_topic(wire: &mut Connection) {
    let delete = DeleteRecordsRequest::default()
        .with_timeout_ms(5_000)
        .with_topics(vec![delete_records_request::DeleteRecordsTopic::default()
            .with_name(topic("fields"))
            .with_partitions(vec![
                delete_records_request::DeleteRecordsPartition::default()
                    .with_partition_index(0)
                    .with_offset(1),
            ])]);
    let (_, deleted): (_, DeleteRecordsResponse) =
        call(wire, ApiKey::DeleteRecords, 2, &delete).await;
    assert_eq!(deleted.topics[0].partitions[0].low_watermark, 1);
    let delete = DeleteTopicsRequest::default()
        .with_timeout_ms(5_000)
        .with_topics(vec![
            delete_topics_request::DeleteTopicState::default().with_name(Some(topic("fields"))),
            delete_topics_request::DeleteTopicState::default()
                .with_name(None)
                .with_topic_id(uuid::Uuid::from_u128(7)),
        ]);
    let (version, deleted): (_, DeleteTopicsResponse) =
        call(wire, ApiKey::DeleteTopics, 6, &delete).await;
    assert_eq!(version, 6);
    let ok = &deleted.responses[0];
    assert_eq!(ok.error_code, 0);
    assert_eq!(
        ok.error_message, None,
        "DeleteTopics error_message on success"
    );
    let unknown = &deleted.responses[1];
    assert_eq!(unknown.error_code, 100, "UNKNOWN_TOPIC_ID");
    assert_eq!(unknown.name, None, "an unknown topic id has a null name");
    assert_eq!(
        unknown.error_message.as_ref().map(|m| m.as_str()),
        Some("This server does not host this topic ID.")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_answers_success_with_kafkas_nulls() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &[]);
    let mut wire = Connection::connect(&broker.bootstrap, "field-check")
        .await
        .unwrap();
    create_topics(&mut wire).await;
    produce_and_fetch(&mut wire).await;
    metadata_and_offsets(&mut wire).await;
    find_coordinator(&mut wire).await;
    group_lifecycle(&mut wire).await;
    transaction(&mut wire).await;
    configs_and_partitions(&mut wire).await;
    delete_records_and_topic(&mut wire).await;
}

/// A topic named twice in one CreateTopics, DeleteTopics or CreatePartitions request is
/// left alone and answered once with INVALID_REQUEST after the others, which still happen
/// (librdkafka failed the whole request with _BAD_MSG on one entry per occurrence).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_named_twice_is_answered_once_as_kafka_does() {
    use create_topics_request::CreatableTopic;
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &[]);
    let mut wire = Connection::connect(&broker.bootstrap, "duplicates")
        .await
        .unwrap();
    let new = |name: &str| {
        CreatableTopic::default()
            .with_name(topic(name))
            .with_num_partitions(1)
            .with_replication_factor(1)
    };
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(5_000)
        .with_topics(vec![new("twice"), new("once"), new("twice")]);
    let (_, response): (_, CreateTopicsResponse) =
        call(&mut wire, ApiKey::CreateTopics, 7, &request).await;
    let answers: Vec<(&str, i16, Option<&str>)> = response
        .topics
        .iter()
        .map(|t| {
            (
                t.name.0.as_str(),
                t.error_code,
                t.error_message.as_ref().map(|m| m.as_str()),
            )
        })
        .collect();
    assert_eq!(
        answers,
        vec![
            ("once", 0, None),
            ("twice", 42, Some("Duplicate topic name."))
        ]
    );
    let grow = |name: &str| {
        create_partitions_request::CreatePartitionsTopic::default()
            .with_name(topic(name))
            .with_count(2)
            .with_assignments(None)
    };
    let request = CreatePartitionsRequest::default()
        .with_timeout_ms(5_000)
        .with_topics(vec![grow("once"), grow("once")]);
    let (_, response): (_, CreatePartitionsResponse) =
        call(&mut wire, ApiKey::CreatePartitions, 3, &request).await;
    assert_eq!(response.results.len(), 1);
    assert_eq!(response.results[0].error_code, 42);
    let request = DeleteTopicsRequest::default()
        .with_timeout_ms(5_000)
        .with_topic_names(vec![topic("once"), topic("once")]);
    let (_, response): (_, DeleteTopicsResponse) =
        call(&mut wire, ApiKey::DeleteTopics, 5, &request).await;
    assert_eq!(response.responses.len(), 1);
    assert_eq!(response.responses[0].error_code, 42);
    // Neither duplicate changed anything: "once" still exists with one partition.
    let request = MetadataRequest::default().with_topics(Some(vec![
        metadata_request::MetadataRequestTopic::default().with_name(Some(topic("once"))),
    ]));
    let (_, metadata): (_, MetadataResponse) =
        call(&mut wire, ApiKey::Metadata, 12, &request).await;
    assert_eq!(metadata.topics[0].error_code, 0);
    assert_eq!(metadata.topics[0].partitions.len(), 1);
    // And librdkafka's admin client takes such an answer without failing the request.
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        broker.client_config().create().unwrap();
    let new_topic =
        |name| rdkafka::admin::NewTopic::new(name, 1, rdkafka::admin::TopicReplication::Fixed(1));
    let results = admin
        .create_topics(
            &[new_topic("dup"), new_topic("fine"), new_topic("dup")],
            &rdkafka::admin::AdminOptions::new(),
        )
        .await
        .expect("the request as a whole succeeds");
    assert!(
        results
            .iter()
            .any(|r| r.as_ref().is_ok_and(|t| t == "fine")),
        "{results:?}"
    );
}

/// DescribeConfigs v4 gives every config Kafka's type and marks broker configs read-only;
/// SUBTRACT may leave a list empty, described as "".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configs_have_kafkas_types_read_only_flags_and_empty_lists() {
    const TOPIC: i8 = 2;
    const BROKER: i8 = 4;
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &["--override", "log.retention.minutes=600"]);
    broker.create_topic("typed", 1, &[]).await;
    let mut wire = Connection::connect(&broker.bootstrap, "types")
        .await
        .unwrap();
    let describe = |kind: i8, name: &str| {
        DescribeConfigsRequest::default()
            .with_include_synonyms(true)
            .with_resources(vec![
                describe_configs_request::DescribeConfigsResource::default()
                    .with_resource_type(kind)
                    .with_resource_name(s(name))
                    .with_configuration_keys(None),
            ])
    };
    let (_, topic): (_, DescribeConfigsResponse) = call(
        &mut wire,
        ApiKey::DescribeConfigs,
        4,
        &describe(TOPIC, "typed"),
    )
    .await;
    let find = |response: &DescribeConfigsResponse, name: &str| {
        response.results[0]
            .configs
            .iter()
            .find(|c| c.name.as_str() == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} not described"))
    };
    // BOOLEAN 1, STRING 2, INT 3, LONG 5, DOUBLE 6, LIST 7.
    for (name, kind) in [
        ("preallocate", 1),
        ("compression.type", 2),
        ("segment.bytes", 3),
        ("retention.ms", 5),
        ("min.cleanable.dirty.ratio", 6),
        ("cleanup.policy", 7),
    ] {
        let config = find(&topic, name);
        assert_eq!(config.config_type, kind, "{name}");
        assert!(!config.read_only, "{name}");
    }
    assert!(topic.results[0].configs.iter().all(|c| c.config_type != 0));
    let retention = find(&topic, "retention.ms");
    assert_eq!(
        retention.value.as_ref().map(|v| v.as_str()),
        Some("36000000")
    );
    let synonyms: Vec<(&str, i8)> = retention
        .synonyms
        .iter()
        .map(|s| (s.name.as_str(), s.source))
        .collect();
    assert_eq!(
        synonyms,
        [("log.retention.minutes", 4), ("log.retention.hours", 5)]
    );

    let (_, node): (_, DescribeConfigsResponse) = call(
        &mut wire,
        ApiKey::DescribeConfigs,
        4,
        &describe(BROKER, "1"),
    )
    .await;
    for (name, kind) in [
        ("advertised.listeners", 2),
        ("auto.create.topics.enable", 1),
        ("num.partitions", 3),
        ("log.retention.bytes", 5),
        ("log.retention.minutes", 3),
        ("log.cleanup.policy", 7),
    ] {
        let config = find(&node, name);
        assert_eq!(config.config_type, kind, "{name}");
        assert!(config.read_only, "{name} is a static broker config");
    }
    assert!(node.results[0]
        .configs
        .iter()
        .all(|c| c.read_only && c.config_type != 0));

    // SUBTRACT of the only policy leaves an empty list, accepted and described as "".
    let subtract = IncrementalAlterConfigsRequest::default().with_resources(vec![
        incremental_alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(TOPIC)
            .with_resource_name(s("typed"))
            .with_configs(vec![
                incremental_alter_configs_request::AlterableConfig::default()
                    .with_name(s("cleanup.policy"))
                    .with_config_operation(3)
                    .with_value(Some(s("delete"))),
            ]),
    ]);
    let (_, altered): (_, IncrementalAlterConfigsResponse) =
        call(&mut wire, ApiKey::IncrementalAlterConfigs, 1, &subtract).await;
    assert_eq!(
        altered.responses[0].error_code, 0,
        "{:?}",
        altered.responses[0].error_message
    );
    let (_, topic): (_, DescribeConfigsResponse) = call(
        &mut wire,
        ApiKey::DescribeConfigs,
        4,
        &describe(TOPIC, "typed"),
    )
    .await;
    let policy = find(&topic, "cleanup.policy");
    assert_eq!(policy.value.as_ref().map(|v| v.as_str()), Some(""));
    assert_eq!(policy.config_source, 1, "a topic override");
}
