//! Hostile input: random and mutated frames thrown at the request decoder (property tests,
//! with every allocation counted) and at a live broker over raw sockets (oversized and
//! negative size prefixes, hostile array counts, unknown keys and versions, random frames,
//! a gzip bomb, connections that announce a large frame and then stall).
//!
//! What users rely on: a hostile frame costs the broker at most that connection. The broker
//! keeps running, keeps its memory within the configured limits and keeps answering every
//! other client promptly.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use ferry::protocol::versions::{self, SUPPORTED};
use ferry::protocol::{decode_request_header, DecodeError, RequestFrame};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use proto_kafka::messages::create_topics_request::CreatableTopic;
use proto_kafka::messages::create_topics_request::CreatableTopicConfig;
use proto_kafka::messages::delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
use proto_kafka::messages::delete_topics_request::DeleteTopicState;
use proto_kafka::messages::describe_configs_request::DescribeConfigsResource;
use proto_kafka::messages::fetch_request::{FetchPartition, FetchTopic};
use proto_kafka::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use proto_kafka::messages::metadata_request::MetadataRequestTopic;
use proto_kafka::messages::produce_request::{PartitionProduceData, TopicProduceData};
use proto_kafka::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, AlterUserScramCredentialsRequest,
    DescribeProducersRequest, DescribeTransactionsRequest, DescribeUserScramCredentialsRequest,
    EndTxnRequest, InitProducerIdRequest, ListTransactionsRequest, SaslAuthenticateRequest,
    SaslHandshakeRequest, TxnOffsetCommitRequest,
};
use proto_kafka::messages::{
    AlterConfigsRequest, DeleteGroupsRequest, DescribeGroupsRequest, FindCoordinatorRequest,
    HeartbeatRequest, IncrementalAlterConfigsRequest, JoinGroupRequest, LeaveGroupRequest,
    ListGroupsRequest, OffsetCommitRequest, OffsetDeleteRequest, OffsetFetchRequest,
    SyncGroupRequest,
};
use proto_kafka::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, BrokerId, CreatePartitionsRequest,
    CreateTopicsRequest, CreateTopicsResponse, DeleteRecordsRequest, DeleteTopicsRequest,
    DescribeClusterRequest, DescribeConfigsRequest, FetchRequest, FetchResponse,
    ListOffsetsRequest, ListOffsetsResponse, MetadataRequest, MetadataResponse, ProduceRequest,
    ProduceResponse, RequestHeader, ResponseHeader, TopicName,
};
use proto_kafka::protocol::{Decodable, Encodable, StrBytes};

use crate::support::Broker;

// ---------------------------------------------------------------------------------------
// Allocation accounting: the decoder properties check that decoding a frame allocates in
// proportion to the frame, not to the counts and lengths written inside it.
// ---------------------------------------------------------------------------------------

/// Counts bytes allocated by the current thread while tracking is on.
struct CountingAllocator;

thread_local! {
    static TRACKING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATED_BYTES: Cell<usize> = const { Cell::new(0) };
}

fn note_allocation(bytes: usize) {
    let _ = TRACKING.try_with(|tracking| {
        if tracking.get() {
            ALLOCATED_BYTES.with(|total| total.set(total.get().saturating_add(bytes)));
        }
    });
}

// SAFETY: every call is forwarded unchanged to the system allocator; the bookkeeping only
// touches const-initialised thread-locals without destructors, so it never allocates.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation(new_size.saturating_sub(layout.size()));
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Bytes allocated while running one closure on this thread.
#[derive(Debug, Clone, Copy)]
struct Allocations {
    total_bytes: usize,
}

fn count_allocations<R>(f: impl FnOnce() -> R) -> (R, Allocations) {
    ALLOCATED_BYTES.with(|c| c.set(0));
    TRACKING.with(|t| t.set(true));
    let result = f();
    TRACKING.with(|t| t.set(false));
    let allocations = Allocations {
        total_bytes: ALLOCATED_BYTES.with(Cell::get),
    };
    (result, allocations)
}

/// Decoding may allocate at most this many bytes per frame byte (decoded structs are larger
/// than their encodings: a 2-byte empty topic name in Metadata v1 becomes a 72-byte struct,
/// the worst ratio among the implemented requests, 36), plus a fixed allowance. A decoder that trusts a count or length from the wire allocates that
/// count times the element size, far beyond this for the small frames generated here.
const ALLOCATED_BYTES_PER_FRAME_BYTE: usize = 64;
/// Fixed allowance for small bookkeeping allocations (error messages, empty maps).
const ALLOCATION_ALLOWANCE_BYTES: usize = 64 * 1024;

fn allocation_bound(frame_bytes: usize) -> usize {
    frame_bytes * ALLOCATED_BYTES_PER_FRAME_BYTE + ALLOCATION_ALLOWANCE_BYTES
}

// ---------------------------------------------------------------------------------------
// Building and decoding requests.
// ---------------------------------------------------------------------------------------

fn str_bytes(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

fn topic_name(text: &str) -> TopicName {
    TopicName(str_bytes(text))
}

/// A request frame (without the size prefix): header for `key`/`version`, then `body`.
fn frame_with_body(key: ApiKey, version: i16, correlation_id: i32, body: &[u8]) -> BytesMut {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("hostile")));
    let mut buf = BytesMut::new();
    header
        .encode(&mut buf, key.request_header_version(version))
        .expect("encode request header");
    buf.put_slice(body);
    buf
}

/// A complete request frame (without the size prefix).
fn request_frame<T: Encodable>(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &T,
) -> BytesMut {
    let mut encoded = BytesMut::new();
    body.encode(&mut encoded, version)
        .unwrap_or_else(|e| panic!("encode {key:?} v{version}: {e}"));
    frame_with_body(key, version, correlation_id, &encoded)
}

/// Decodes `frame`'s body as `T`; with `reencode`, returns the decoded body encoded again.
fn decode_as<T: Decodable + Encodable>(
    frame: &RequestFrame,
    reencode: bool,
) -> Result<Option<Bytes>, DecodeError> {
    let body = frame.decode_body::<T>()?;
    if !reencode {
        return Ok(None);
    }
    let mut buf = BytesMut::new();
    body.encode(&mut buf, frame.api_version)
        .expect("re-encode request");
    Ok(Some(buf.freeze()))
}

/// Decodes the body the way dispatch does: only implemented API versions are decoded, each
/// as its API's request type. With `reencode`, returns the decoded body encoded again
/// (`None` if dispatch would not decode it).
fn decode_body(frame: &RequestFrame, reencode: bool) -> Result<Option<Bytes>, DecodeError> {
    if !versions::is_supported(frame.api_key, frame.api_version) {
        return Ok(None);
    }
    let r = reencode;
    match frame.api_key {
        ApiKey::Produce => decode_as::<ProduceRequest>(frame, r),
        ApiKey::Fetch => decode_as::<FetchRequest>(frame, r),
        ApiKey::ListOffsets => decode_as::<ListOffsetsRequest>(frame, r),
        ApiKey::Metadata => decode_as::<MetadataRequest>(frame, r),
        ApiKey::ApiVersions => decode_as::<ApiVersionsRequest>(frame, r),
        ApiKey::CreateTopics => decode_as::<CreateTopicsRequest>(frame, r),
        ApiKey::DeleteTopics => decode_as::<DeleteTopicsRequest>(frame, r),
        ApiKey::DeleteRecords => decode_as::<DeleteRecordsRequest>(frame, r),
        ApiKey::DescribeConfigs => decode_as::<DescribeConfigsRequest>(frame, r),
        ApiKey::CreatePartitions => decode_as::<CreatePartitionsRequest>(frame, r),
        ApiKey::DescribeCluster => decode_as::<DescribeClusterRequest>(frame, r),
        ApiKey::OffsetCommit => decode_as::<OffsetCommitRequest>(frame, r),
        ApiKey::OffsetFetch => decode_as::<OffsetFetchRequest>(frame, r),
        ApiKey::FindCoordinator => decode_as::<FindCoordinatorRequest>(frame, r),
        ApiKey::JoinGroup => decode_as::<JoinGroupRequest>(frame, r),
        ApiKey::Heartbeat => decode_as::<HeartbeatRequest>(frame, r),
        ApiKey::LeaveGroup => decode_as::<LeaveGroupRequest>(frame, r),
        ApiKey::SyncGroup => decode_as::<SyncGroupRequest>(frame, r),
        ApiKey::DescribeGroups => decode_as::<DescribeGroupsRequest>(frame, r),
        ApiKey::ListGroups => decode_as::<ListGroupsRequest>(frame, r),
        ApiKey::DeleteGroups => decode_as::<DeleteGroupsRequest>(frame, r),
        ApiKey::AlterConfigs => decode_as::<AlterConfigsRequest>(frame, r),
        ApiKey::IncrementalAlterConfigs => decode_as::<IncrementalAlterConfigsRequest>(frame, r),
        ApiKey::OffsetDelete => decode_as::<OffsetDeleteRequest>(frame, r),
        ApiKey::InitProducerId => decode_as::<InitProducerIdRequest>(frame, r),
        ApiKey::AddPartitionsToTxn => decode_as::<AddPartitionsToTxnRequest>(frame, r),
        ApiKey::AddOffsetsToTxn => decode_as::<AddOffsetsToTxnRequest>(frame, r),
        ApiKey::EndTxn => decode_as::<EndTxnRequest>(frame, r),
        ApiKey::TxnOffsetCommit => decode_as::<TxnOffsetCommitRequest>(frame, r),
        ApiKey::DescribeProducers => decode_as::<DescribeProducersRequest>(frame, r),
        ApiKey::DescribeTransactions => decode_as::<DescribeTransactionsRequest>(frame, r),
        ApiKey::ListTransactions => decode_as::<ListTransactionsRequest>(frame, r),
        ApiKey::DescribeLogDirs => {
            decode_as::<proto_kafka::messages::DescribeLogDirsRequest>(frame, r)
        }
        ApiKey::SaslHandshake => decode_as::<SaslHandshakeRequest>(frame, r),
        ApiKey::SaslAuthenticate => decode_as::<SaslAuthenticateRequest>(frame, r),
        ApiKey::DescribeUserScramCredentials => {
            decode_as::<DescribeUserScramCredentialsRequest>(frame, r)
        }
        ApiKey::AlterUserScramCredentials => {
            decode_as::<AlterUserScramCredentialsRequest>(frame, r)
        }
        other => panic!("{other:?} is in SUPPORTED; teach hostile_frames its request type"),
    }
}

/// Header and body, as the connection and dispatch decode them.
fn decode_frame(frame: Bytes) -> Result<(), DecodeError> {
    let frame = decode_request_header(frame)?;
    decode_body(&frame, false).map(drop)
}

// ---------------------------------------------------------------------------------------
// Record batches (v2), built by hand so that tests control every field.
// ---------------------------------------------------------------------------------------

fn put_varint(buf: &mut Vec<u8>, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    while zigzag >= 0x80 {
        buf.push((zigzag as u8) | 0x80);
        zigzag >>= 7;
    }
    buf.push(zigzag as u8);
}

/// One record: `(offset_delta, timestamp_delta, key, value)`, no headers.
fn encode_record(offset_delta: i64, timestamp_delta: i64, key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut body = vec![0u8]; // attributes
    put_varint(&mut body, timestamp_delta);
    put_varint(&mut body, offset_delta);
    put_varint(&mut body, key.len() as i64);
    body.extend_from_slice(key);
    put_varint(&mut body, value.len() as i64);
    body.extend_from_slice(value);
    put_varint(&mut body, 0); // headers
    let mut record = Vec::with_capacity(body.len() + 5);
    put_varint(&mut record, body.len() as i64);
    record.extend_from_slice(&body);
    record
}

const GZIP_ATTRIBUTES: i16 = 1;

/// A v2 batch with a correct CRC around `records_area` (already compressed if
/// `attributes` names a codec).
fn record_batch(
    records_area: &[u8],
    attributes: i16,
    records_count: i32,
    base_timestamp: i64,
) -> Vec<u8> {
    let mut batch = Vec::with_capacity(61 + records_area.len());
    batch.extend_from_slice(&0i64.to_be_bytes()); // base offset
    batch.extend_from_slice(&((49 + records_area.len()) as i32).to_be_bytes());
    batch.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
    batch.push(2); // magic
    batch.extend_from_slice(&[0; 4]); // crc, filled in below
    batch.extend_from_slice(&attributes.to_be_bytes());
    batch.extend_from_slice(&(records_count - 1).max(0).to_be_bytes()); // last offset delta
    batch.extend_from_slice(&base_timestamp.to_be_bytes());
    batch.extend_from_slice(&base_timestamp.to_be_bytes()); // max timestamp
    batch.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
    batch.extend_from_slice(&(-1i16).to_be_bytes()); // producer epoch
    batch.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    batch.extend_from_slice(&records_count.to_be_bytes());
    batch.extend_from_slice(records_area);
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    batch
}

/// An uncompressed batch of `values`, offsets 0.., timestamps `base_timestamp`...
fn simple_batch(values: &[&[u8]], base_timestamp: i64) -> Vec<u8> {
    let mut area = Vec::new();
    for (i, value) in values.iter().enumerate() {
        area.extend(encode_record(i as i64, i as i64, b"k", value));
    }
    record_batch(&area, 0, values.len() as i32, base_timestamp)
}

fn produce_request(topic: &str, partition: i32, batch: Vec<u8>, acks: i16) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(Bytes::from(batch)))])])
}

// ---------------------------------------------------------------------------------------
// A corpus of valid requests: every implemented API at every accepted version.
// ---------------------------------------------------------------------------------------

const CORPUS_TOPIC: &str = "hostile-topic";

/// A representative body of `key` that `version` can carry.
fn sample_body(key: ApiKey, version: i16) -> Bytes {
    fn enc<T: Encodable>(body: &T, key: ApiKey, version: i16) -> Bytes {
        let mut buf = BytesMut::new();
        body.encode(&mut buf, version)
            .unwrap_or_else(|e| panic!("encode sample {key:?} v{version}: {e}"));
        buf.freeze()
    }
    let name = || topic_name(CORPUS_TOPIC);
    match key {
        ApiKey::Produce => enc(
            &produce_request(CORPUS_TOPIC, 0, simple_batch(&[b"one", b"two"], 1_000), 1),
            key,
            version,
        ),
        ApiKey::Fetch => {
            let partition = FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20);
            let request = FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms(0)
                .with_min_bytes(1)
                .with_max_bytes(1 << 20)
                .with_topics(vec![FetchTopic::default()
                    .with_topic(name())
                    .with_partitions(vec![
                        partition.clone(),
                        partition.with_partition(1),
                    ])]);
            enc(&request, key, version)
        }
        ApiKey::ListOffsets => {
            let request = ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![ListOffsetsTopic::default()
                    .with_name(name())
                    .with_partitions(vec![
                        ListOffsetsPartition::default().with_timestamp(-1),
                        ListOffsetsPartition::default().with_timestamp(1_000),
                    ])]);
            enc(&request, key, version)
        }
        ApiKey::Metadata => {
            let topic = MetadataRequestTopic::default().with_name(Some(name()));
            let request = MetadataRequest::default().with_topics(Some(vec![
                topic.clone(),
                topic.with_name(Some(topic_name("other"))),
            ]));
            enc(&request, key, version)
        }
        ApiKey::ApiVersions => {
            let mut request = ApiVersionsRequest::default();
            if version >= 3 {
                request = request
                    .with_client_software_name(str_bytes("hostile"))
                    .with_client_software_version(str_bytes("1.0"));
            }
            enc(&request, key, version)
        }
        ApiKey::CreateTopics => {
            let request = CreateTopicsRequest::default()
                .with_timeout_ms(1_000)
                .with_topics(vec![CreatableTopic::default()
                    .with_name(name())
                    .with_num_partitions(2)
                    .with_replication_factor(1)
                    .with_configs(vec![CreatableTopicConfig::default()
                        .with_name(str_bytes("retention.ms"))
                        .with_value(Some(str_bytes("60000")))])]);
            enc(&request, key, version)
        }
        ApiKey::DeleteTopics => {
            let request = if version >= 6 {
                DeleteTopicsRequest::default()
                    .with_topics(vec![DeleteTopicState::default().with_name(Some(name()))])
            } else {
                DeleteTopicsRequest::default().with_topic_names(vec![name()])
            };
            enc(&request.with_timeout_ms(1_000), key, version)
        }
        ApiKey::DeleteRecords => {
            let request = DeleteRecordsRequest::default()
                .with_timeout_ms(1_000)
                .with_topics(vec![DeleteRecordsTopic::default()
                    .with_name(name())
                    .with_partitions(vec![
                        DeleteRecordsPartition::default().with_offset(1)
                    ])]);
            enc(&request, key, version)
        }
        ApiKey::DescribeConfigs => {
            let request = DescribeConfigsRequest::default().with_resources(vec![
                DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(str_bytes(CORPUS_TOPIC))
                    .with_configuration_keys(Some(vec![str_bytes("retention.ms")])),
            ]);
            enc(&request, key, version)
        }
        ApiKey::CreatePartitions => {
            use proto_kafka::messages::create_partitions_request::CreatePartitionsTopic;
            let request = CreatePartitionsRequest::default()
                .with_timeout_ms(1_000)
                .with_topics(vec![CreatePartitionsTopic::default()
                    .with_name(name())
                    .with_count(3)]);
            enc(&request, key, version)
        }
        ApiKey::DescribeCluster => enc(&DescribeClusterRequest::default(), key, version),
        other => group_sample_body(other, version),
    }
}

/// Sample bodies of the group and config APIs.
fn group_sample_body(key: ApiKey, version: i16) -> Bytes {
    use proto_kafka::messages::alter_configs_request as alter;
    use proto_kafka::messages::incremental_alter_configs_request as incremental;
    use proto_kafka::messages::join_group_request::JoinGroupRequestProtocol;
    use proto_kafka::messages::leave_group_request::MemberIdentity;
    use proto_kafka::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use proto_kafka::messages::offset_delete_request::{
        OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
    };
    use proto_kafka::messages::offset_fetch_request::{
        OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
    };
    use proto_kafka::messages::sync_group_request::SyncGroupRequestAssignment;
    use proto_kafka::messages::GroupId;
    fn enc<T: Encodable>(body: &T, key: ApiKey, version: i16) -> Bytes {
        let mut buf = BytesMut::new();
        body.encode(&mut buf, version)
            .unwrap_or_else(|e| panic!("encode sample {key:?} v{version}: {e}"));
        buf.freeze()
    }
    let group = || GroupId(str_bytes("hostile-group"));
    let name = || topic_name(CORPUS_TOPIC);
    match key {
        ApiKey::OffsetCommit => {
            let request = OffsetCommitRequest::default()
                .with_group_id(group())
                .with_generation_id_or_member_epoch(-1)
                .with_topics(vec![OffsetCommitRequestTopic::default()
                    .with_name(name())
                    .with_partitions(vec![OffsetCommitRequestPartition::default()
                        .with_committed_offset(1)
                        .with_committed_metadata(Some(str_bytes("m")))])]);
            enc(&request, key, version)
        }
        ApiKey::OffsetFetch if version >= 8 => {
            let request =
                OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
                    .with_group_id(group())
                    .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                        .with_name(name())
                        .with_partition_indexes(vec![0])]))]);
            enc(&request, key, version)
        }
        ApiKey::OffsetFetch => {
            let request = OffsetFetchRequest::default()
                .with_group_id(group())
                .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                    .with_name(name())
                    .with_partition_indexes(vec![0])]));
            enc(&request, key, version)
        }
        ApiKey::FindCoordinator if version >= 4 => {
            let request = FindCoordinatorRequest::default()
                .with_coordinator_keys(vec![str_bytes("hostile-group")]);
            enc(&request, key, version)
        }
        ApiKey::FindCoordinator => enc(
            &FindCoordinatorRequest::default().with_key(str_bytes("hostile-group")),
            key,
            version,
        ),
        ApiKey::JoinGroup => {
            let request = JoinGroupRequest::default()
                .with_group_id(group())
                .with_session_timeout_ms(10_000)
                .with_protocol_type(str_bytes("consumer"))
                .with_protocols(vec![JoinGroupRequestProtocol::default()
                    .with_name(str_bytes("range"))
                    .with_metadata(Bytes::from_static(&[0, 0, 0, 0, 0, 0]))]);
            enc(&request, key, version)
        }
        ApiKey::Heartbeat => enc(
            &HeartbeatRequest::default()
                .with_group_id(group())
                .with_member_id(str_bytes("m")),
            key,
            version,
        ),
        ApiKey::LeaveGroup if version >= 3 => {
            let request = LeaveGroupRequest::default()
                .with_group_id(group())
                .with_members(vec![
                    MemberIdentity::default().with_member_id(str_bytes("m"))
                ]);
            enc(&request, key, version)
        }
        ApiKey::LeaveGroup => enc(
            &LeaveGroupRequest::default()
                .with_group_id(group())
                .with_member_id(str_bytes("m")),
            key,
            version,
        ),
        ApiKey::SyncGroup => {
            let request = SyncGroupRequest::default()
                .with_group_id(group())
                .with_member_id(str_bytes("m"))
                .with_assignments(vec![SyncGroupRequestAssignment::default()
                    .with_member_id(str_bytes("m"))
                    .with_assignment(Bytes::from_static(&[0, 0]))]);
            enc(&request, key, version)
        }
        ApiKey::DescribeGroups => enc(
            &DescribeGroupsRequest::default().with_groups(vec![group()]),
            key,
            version,
        ),
        ApiKey::ListGroups => enc(&ListGroupsRequest::default(), key, version),
        ApiKey::DeleteGroups => enc(
            &DeleteGroupsRequest::default().with_groups_names(vec![group()]),
            key,
            version,
        ),
        ApiKey::AlterConfigs => {
            let request = AlterConfigsRequest::default()
                .with_validate_only(true)
                .with_resources(vec![alter::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(str_bytes(CORPUS_TOPIC))
                    .with_configs(vec![alter::AlterableConfig::default()
                        .with_name(str_bytes("retention.ms"))
                        .with_value(Some(str_bytes("1000")))])]);
            enc(&request, key, version)
        }
        ApiKey::IncrementalAlterConfigs => {
            let request = IncrementalAlterConfigsRequest::default()
                .with_validate_only(true)
                .with_resources(vec![incremental::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(str_bytes(CORPUS_TOPIC))
                    .with_configs(vec![incremental::AlterableConfig::default()
                        .with_name(str_bytes("retention.ms"))
                        .with_value(Some(str_bytes("1000")))])]);
            enc(&request, key, version)
        }
        ApiKey::OffsetDelete => {
            let request = OffsetDeleteRequest::default()
                .with_group_id(group())
                .with_topics(vec![OffsetDeleteRequestTopic::default()
                    .with_name(name())
                    .with_partitions(vec![OffsetDeleteRequestPartition::default()])]);
            enc(&request, key, version)
        }
        other => transaction_sample_body(other, version),
    }
}

/// Sample bodies of the idempotence and transaction APIs.
fn transaction_sample_body(key: ApiKey, version: i16) -> Bytes {
    use proto_kafka::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
    use proto_kafka::messages::describe_producers_request::TopicRequest;
    use proto_kafka::messages::txn_offset_commit_request::{
        TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
    };
    use proto_kafka::messages::{GroupId, ProducerId, TransactionalId};
    fn enc<T: Encodable>(body: &T, key: ApiKey, version: i16) -> Bytes {
        let mut buf = BytesMut::new();
        body.encode(&mut buf, version)
            .unwrap_or_else(|e| panic!("encode sample {key:?} v{version}: {e}"));
        buf.freeze()
    }
    let txn_id = || TransactionalId(str_bytes("hostile-txn"));
    match key {
        ApiKey::InitProducerId => enc(
            &InitProducerIdRequest::default()
                .with_transactional_id(Some(txn_id()))
                .with_transaction_timeout_ms(60_000),
            key,
            version,
        ),
        ApiKey::AddPartitionsToTxn => enc(
            &AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(txn_id())
                .with_v3_and_below_producer_id(ProducerId(1))
                .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
                    .with_name(topic_name(CORPUS_TOPIC))
                    .with_partitions(vec![0])]),
            key,
            version,
        ),
        ApiKey::AddOffsetsToTxn => enc(
            &AddOffsetsToTxnRequest::default()
                .with_transactional_id(txn_id())
                .with_producer_id(ProducerId(1))
                .with_group_id(GroupId(str_bytes("hostile-group"))),
            key,
            version,
        ),
        ApiKey::EndTxn => enc(
            &EndTxnRequest::default()
                .with_transactional_id(txn_id())
                .with_producer_id(ProducerId(1)),
            key,
            version,
        ),
        ApiKey::TxnOffsetCommit => enc(
            &TxnOffsetCommitRequest::default()
                .with_transactional_id(txn_id())
                .with_group_id(GroupId(str_bytes("hostile-group")))
                .with_producer_id(ProducerId(1))
                .with_topics(vec![TxnOffsetCommitRequestTopic::default()
                    .with_name(topic_name(CORPUS_TOPIC))
                    .with_partitions(vec![
                        TxnOffsetCommitRequestPartition::default().with_committed_offset(1)
                    ])]),
            key,
            version,
        ),
        ApiKey::DescribeProducers => enc(
            &DescribeProducersRequest::default().with_topics(vec![TopicRequest::default()
                .with_name(topic_name(CORPUS_TOPIC))
                .with_partition_indexes(vec![0])]),
            key,
            version,
        ),
        ApiKey::DescribeTransactions => enc(
            &DescribeTransactionsRequest::default().with_transactional_ids(vec![txn_id()]),
            key,
            version,
        ),
        ApiKey::ListTransactions => enc(&ListTransactionsRequest::default(), key, version),
        ApiKey::DescribeLogDirs => {
            use proto_kafka::messages::describe_log_dirs_request::DescribableLogDirTopic;
            let request =
                proto_kafka::messages::DescribeLogDirsRequest::default().with_topics(Some(vec![
                    DescribableLogDirTopic::default()
                        .with_topic(topic_name(CORPUS_TOPIC))
                        .with_partitions(vec![0]),
                ]));
            enc(&request, key, version)
        }
        ApiKey::SaslHandshake => enc(
            &SaslHandshakeRequest::default().with_mechanism(str_bytes("PLAIN")),
            key,
            version,
        ),
        ApiKey::SaslAuthenticate => enc(
            &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from_static(b"\0a\0b")),
            key,
            version,
        ),
        ApiKey::DescribeUserScramCredentials => {
            use proto_kafka::messages::describe_user_scram_credentials_request::UserName;
            let request = DescribeUserScramCredentialsRequest::default().with_users(Some(vec![
                UserName::default().with_name(str_bytes("alice")),
            ]));
            enc(&request, key, version)
        }
        ApiKey::AlterUserScramCredentials => {
            use proto_kafka::messages::alter_user_scram_credentials_request::ScramCredentialUpsertion;
            let request = AlterUserScramCredentialsRequest::default().with_upsertions(vec![
                ScramCredentialUpsertion::default()
                    .with_name(str_bytes("alice"))
                    .with_mechanism(1)
                    .with_iterations(4096)
                    .with_salt(Bytes::from_static(b"salt"))
                    .with_salted_password(Bytes::from_static(&[7; 32])),
            ]);
            enc(&request, key, version)
        }
        other => panic!("{other:?} is in SUPPORTED; teach hostile_frames a sample request"),
    }
}

/// One valid request frame (without size prefix) per implemented API version.
fn corpus() -> &'static [(ApiKey, i16, Bytes)] {
    static CORPUS: OnceLock<Vec<(ApiKey, i16, Bytes)>> = OnceLock::new();
    CORPUS.get_or_init(build_corpus)
}

fn build_corpus() -> Vec<(ApiKey, i16, Bytes)> {
    let mut out = Vec::new();
    for support in SUPPORTED {
        for version in support.accepted_min..=support.max {
            let body = sample_body(support.key, version);
            let frame = frame_with_body(support.key, version, 7, &body).freeze();
            out.push((support.key, version, frame));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Mutations.
// ---------------------------------------------------------------------------------------

/// Values that hostile counts and lengths take: the largest and most negative lengths,
/// -1 (null), and values just past what any frame here holds.
const HOSTILE_I32: [u32; 7] = [
    0x7fff_ffff,
    0xffff_ffff,
    0x8000_0000,
    0x7fff_fffe,
    0xffff_fffe,
    0x0001_0000,
    0x0000_ffff,
];

#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(Index, u8),
    SetByte(Index, u8),
    Insert(Index, u8),
    Delete(Index),
    Truncate(Index),
    /// Overwrite a 4-byte window (array counts, bytes lengths) with a big-endian value.
    Int32(Index, u32),
    /// Overwrite a 2-byte window (string lengths) with a big-endian value.
    Int16(Index, u16),
    /// Overwrite a 5-byte window with an unsigned varint (compact counts and lengths).
    Varint(Index, u32),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let hostile32 = prop_oneof![
        3 => proptest::sample::select(HOSTILE_I32.to_vec()),
        1 => any::<u32>(),
    ];
    let hostile16 = prop_oneof![
        Just(0x7fffu16),
        Just(0xffff),
        Just(0x8000),
        Just(0x7ffe),
        any::<u16>()
    ];
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(i, bit)| Mutation::FlipBit(i, bit)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::SetByte(i, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<Index>().prop_map(Mutation::Delete),
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), hostile32.clone()).prop_map(|(i, v)| Mutation::Int32(i, v)),
        (any::<Index>(), hostile16).prop_map(|(i, v)| Mutation::Int16(i, v)),
        (any::<Index>(), hostile32).prop_map(|(i, v)| Mutation::Varint(i, v)),
    ]
}

fn overwrite(frame: &mut [u8], at: &Index, bytes: &[u8]) {
    if frame.len() < bytes.len() {
        return;
    }
    let start = at.index(frame.len() - bytes.len() + 1);
    frame[start..start + bytes.len()].copy_from_slice(bytes);
}

fn apply(frame: &mut Vec<u8>, mutation: &Mutation) {
    if frame.is_empty() {
        return;
    }
    match mutation {
        Mutation::FlipBit(i, bit) => {
            let at = i.index(frame.len());
            frame[at] ^= 1 << bit;
        }
        Mutation::SetByte(i, b) => {
            let at = i.index(frame.len());
            frame[at] = *b;
        }
        Mutation::Insert(i, b) => {
            let at = i.index(frame.len() + 1);
            frame.insert(at, *b);
        }
        Mutation::Delete(i) => {
            let at = i.index(frame.len());
            frame.remove(at);
        }
        Mutation::Truncate(i) => {
            let len = i.index(frame.len());
            frame.truncate(len);
        }
        Mutation::Int32(i, v) => overwrite(frame, i, &v.to_be_bytes()),
        Mutation::Int16(i, v) => overwrite(frame, i, &v.to_be_bytes()),
        Mutation::Varint(i, v) => {
            let mut varint = Vec::new();
            let mut rest = *v;
            while rest >= 0x80 {
                varint.push((rest as u8) | 0x80);
                rest >>= 7;
            }
            varint.push(rest as u8);
            overwrite(frame, i, &varint);
        }
    }
}

/// Bytes skewed towards 0, 0xff and small values, so that random bodies decode further
/// (zero counts, null markers) than uniformly random bytes would.
fn body_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        4 => any::<u8>(),
        2 => Just(0u8),
        1 => Just(0xffu8),
        2 => 0u8..4,
    ]
}

/// A supported `(key, version)`.
fn supported_version() -> impl Strategy<Value = (ApiKey, i16)> {
    (0..SUPPORTED.len())
        .prop_flat_map(|i| {
            let support = SUPPORTED[i];
            (Just(support.key), support.accepted_min..=support.max)
        })
        .boxed()
}

/// Cases per decoder property (each decodes one frame of at most a few KiB).
const DECODER_CASES: u32 = 5_000;

fn decoder_config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------
// Decoder properties.
// ---------------------------------------------------------------------------------------

#[test]
fn every_sample_request_decodes_and_round_trips() {
    let corpus = corpus();
    let expected: usize = SUPPORTED
        .iter()
        .map(|s| (s.max - s.accepted_min + 1) as usize)
        .sum();
    assert_eq!(corpus.len(), expected);
    for (key, version, frame) in corpus {
        let (key, version) = (*key, *version);
        let (decoded, allocations) = count_allocations(|| decode_frame(frame.clone()));
        decoded.unwrap_or_else(|e| panic!("{key:?} v{version}: {e}"));
        let request = decode_request_header(frame.clone()).unwrap();
        let body = decode_body(&request, true)
            .unwrap()
            .expect("supported versions are decoded");
        let header_len = frame.len() - body.len();
        assert_eq!(
            body,
            frame.slice(header_len..),
            "{key:?} v{version} does not re-encode to the same bytes"
        );
        assert!(
            allocations.total_bytes <= allocation_bound(frame.len()),
            "{key:?} v{version}: {allocations:?} for a {}-byte frame",
            frame.len()
        );
    }
}

proptest! {
    #![proptest_config(decoder_config(DECODER_CASES))]

    /// Random bytes after a valid header, for every implemented API version: decoding
    /// returns (Ok or a DecodeError) and allocates in proportion to the frame.
    #[test]
    fn random_bodies_decode_without_panicking(
        (key, version) in supported_version(),
        correlation_id in any::<i32>(),
        body in proptest::collection::vec(body_byte(), 0..512),
    ) {
        let frame = frame_with_body(key, version, correlation_id, &body).freeze();
        let len = frame.len();
        let (result, allocations) = count_allocations(|| decode_frame(frame));
        if let Err(err) = &result {
            prop_assert!(
                matches!(err, DecodeError::MalformedBody { .. }),
                "a valid header was rejected: {err}"
            );
        }
        prop_assert!(
            allocations.total_bytes <= allocation_bound(len),
            "{key:?} v{version}: {allocations:?} for a {len}-byte frame"
        );
    }

    /// Entirely random frames (any api key, version and header bytes).
    #[test]
    fn random_frames_decode_without_panicking(
        frame in proptest::collection::vec(body_byte(), 0..256),
    ) {
        let len = frame.len();
        let (_, allocations) = count_allocations(|| decode_frame(Bytes::from(frame)));
        prop_assert!(allocations.total_bytes <= allocation_bound(len), "{allocations:?}");
    }

    /// Valid requests of every implemented API version with bytes flipped, inserted,
    /// deleted, truncated and counts/lengths overwritten with hostile values.
    #[test]
    fn mutated_requests_decode_without_panicking(
        sample in any::<Index>(),
        mutations in proptest::collection::vec(mutation(), 1..5),
    ) {
        let (key, version, frame) = sample.get(corpus());
        let mut frame = frame.to_vec();
        for m in &mutations {
            apply(&mut frame, m);
        }
        let len = frame.len();
        let (_, allocations) = count_allocations(|| decode_frame(Bytes::from(frame)));
        prop_assert!(
            allocations.total_bytes <= allocation_bound(len),
            "{key:?} v{version}: {allocations:?} for a {len}-byte frame"
        );
    }
}

/// Hostile counts and lengths (i32::MAX, -1, 0x10000, ...) written over each 4-byte window
/// at the start of every implemented request body (where the outermost counts live), and
/// the kafka-protocol 0.18.0 abort: an 18-byte Metadata v1 request claiming i32::MAX topics.
#[test]
fn hostile_counts_at_the_start_of_every_body_allocate_in_proportion_to_the_frame() {
    for (key, version, frame) in corpus() {
        let header_len = frame.len() - sample_body(*key, *version).len();
        for offset in 0..8.min(frame.len() - header_len) {
            for value in HOSTILE_I32 {
                let mut hostile = frame.to_vec();
                let at = header_len + offset;
                if at + 4 > hostile.len() {
                    continue;
                }
                hostile[at..at + 4].copy_from_slice(&value.to_be_bytes());
                let len = hostile.len();
                let (_, allocations) = count_allocations(|| decode_frame(Bytes::from(hostile)));
                assert!(
                    allocations.total_bytes <= allocation_bound(len),
                    "{key:?} v{version}, {value:#x} at body offset {offset}: {allocations:?}"
                );
            }
        }
    }
    let mut metadata = BytesMut::new();
    metadata.put_i16(ApiKey::Metadata as i16);
    metadata.put_i16(1);
    metadata.put_i32(1);
    metadata.put_i16(-1);
    metadata.put_i32(i32::MAX);
    assert_eq!(metadata.len() + 4, 18);
    let (result, allocations) = count_allocations(|| decode_frame(metadata.freeze()));
    assert!(matches!(result, Err(DecodeError::MalformedBody { .. })));
    assert!(
        allocations.total_bytes <= allocation_bound(14),
        "{allocations:?}"
    );
}

// ---------------------------------------------------------------------------------------
// A raw-socket Kafka client.
// ---------------------------------------------------------------------------------------

/// How long a well-behaved request may take to be answered.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the broker may take to close a connection it should close at once.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest response the raw client accepts (bigger means the stream is out of sync).
const MAX_RESPONSE_BYTES: usize = 64 << 20;

const PRODUCE_VERSION: i16 = 9;
const METADATA_VERSION: i16 = 12;
const API_VERSIONS_VERSION: i16 = 3;
const LIST_OFFSETS_VERSION: i16 = 7;
const CREATE_TOPICS_VERSION: i16 = 7;
const FETCH_VERSION: i16 = 12;

/// Errors that mean the peer closed the connection.
fn is_closed(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

fn is_timeout(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

struct Client {
    stream: TcpStream,
    next_correlation_id: i32,
}

impl Client {
    fn connect(broker: &Broker) -> Client {
        let stream = TcpStream::connect(&broker.bootstrap).expect("connect to ferry");
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(ANSWER_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(ANSWER_TIMEOUT)).unwrap();
        Client {
            stream,
            // Far from the small ids of random and corpus frames, so that a probe's answer
            // is never confused with the answer to a hostile frame.
            next_correlation_id: 1 << 30,
        }
    }

    fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Sends `frame` with its size prefix.
    fn send_frame(&mut self, frame: &[u8]) -> io::Result<()> {
        let mut buf = Vec::with_capacity(4 + frame.len());
        buf.extend_from_slice(&(frame.len() as i32).to_be_bytes());
        buf.extend_from_slice(frame);
        self.send_raw(&buf)
    }

    /// Sends a request and returns its correlation id.
    fn send<T: Encodable>(&mut self, key: ApiKey, version: i16, body: &T) -> io::Result<i32> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id += 1;
        self.send_frame(&request_frame(key, version, correlation_id, body))?;
        Ok(correlation_id)
    }

    /// Reads one response frame; `None` if the broker closed the connection.
    fn read_frame(&mut self) -> io::Result<Option<Bytes>> {
        let mut size = [0u8; 4];
        match self.stream.read_exact(&mut size) {
            Ok(()) => {}
            Err(err) if is_closed(&err) => return Ok(None),
            Err(err) => return Err(err),
        }
        let size = i32::from_be_bytes(size);
        let size = usize::try_from(size)
            .ok()
            .filter(|s| *s <= MAX_RESPONSE_BYTES)
            .unwrap_or_else(|| panic!("response size prefix {size}: stream out of sync"));
        let mut frame = vec![0u8; size];
        self.stream.read_exact(&mut frame)?;
        Ok(Some(Bytes::from(frame)))
    }

    /// Sends a request and decodes its response.
    fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        request: &Req,
    ) -> Resp {
        let correlation_id = self
            .send(key, version, request)
            .unwrap_or_else(|e| panic!("send {key:?} v{version}: {e}"));
        let frame = self
            .read_frame()
            .unwrap_or_else(|e| panic!("no answer to {key:?} v{version}: {e}"))
            .unwrap_or_else(|| panic!("connection closed instead of answering {key:?}"));
        decode_response(key, version, correlation_id, frame)
    }

    /// Asserts that the broker closes the connection (without answering) within `within`.
    fn assert_closed(&mut self, within: Duration, what: &str) {
        self.stream.set_read_timeout(Some(within)).unwrap();
        let start = Instant::now();
        match self.read_frame() {
            Ok(None) => {}
            Ok(Some(frame)) => {
                panic!("{what}: expected the connection to be closed, got {frame:?}")
            }
            Err(err) if is_timeout(&err) => {
                panic!("{what}: connection still open after {:?}", start.elapsed())
            }
            Err(err) if is_closed(&err) => {}
            Err(err) => panic!("{what}: {err}"),
        }
        self.stream.set_read_timeout(Some(ANSWER_TIMEOUT)).unwrap();
    }
}

fn decode_response<T: Decodable>(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    mut frame: Bytes,
) -> T {
    let header = ResponseHeader::decode(&mut frame, key.response_header_version(version))
        .unwrap_or_else(|e| panic!("{key:?} v{version} response header: {e}"));
    assert_eq!(header.correlation_id, correlation_id, "{key:?} v{version}");
    T::decode(&mut frame, version)
        .unwrap_or_else(|e| panic!("{key:?} v{version} response body: {e}"))
}

fn api_versions_request() -> ApiVersionsRequest {
    ApiVersionsRequest::default()
        .with_client_software_name(str_bytes("hostile"))
        .with_client_software_version(str_bytes("1.0"))
}

fn metadata_request(topics: &[&str]) -> MetadataRequest {
    MetadataRequest::default()
        .with_allow_auto_topic_creation(false)
        .with_topics(Some(
            topics
                .iter()
                .map(|t| MetadataRequestTopic::default().with_name(Some(topic_name(t))))
                .collect(),
        ))
}

/// The API list Ferry must advertise.
fn assert_advertises_supported(response: &ApiVersionsResponse) {
    let advertised: Vec<(i16, i16, i16)> = response
        .api_keys
        .iter()
        .map(|k| (k.api_key, k.min_version, k.max_version))
        .collect();
    let expected: Vec<(i16, i16, i16)> = SUPPORTED
        .iter()
        .map(|s| (s.key as i16, s.advertised_min, s.max))
        .collect();
    assert_eq!(advertised, expected);
}

/// The broker process is running and answers ApiVersions and Metadata on a new connection.
fn assert_serving(broker: &mut Broker) {
    assert!(broker.is_running(), "ferry exited");
    let mut client = Client::connect(broker);
    let versions: ApiVersionsResponse = client.call(
        ApiKey::ApiVersions,
        API_VERSIONS_VERSION,
        &api_versions_request(),
    );
    assert_eq!(versions.error_code, 0);
    assert_advertises_supported(&versions);
    let metadata: MetadataResponse = client.call(
        ApiKey::Metadata,
        METADATA_VERSION,
        &MetadataRequest::default().with_topics(None),
    );
    assert_eq!(metadata.brokers.len(), 1, "one broker in metadata");
    assert!(broker.is_running(), "ferry exited");
}

fn create_topic(client: &mut Client, name: &str, partitions: i32) {
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(topic_name(name))
            .with_num_partitions(partitions)
            .with_replication_factor(1)]);
    let response: CreateTopicsResponse =
        client.call(ApiKey::CreateTopics, CREATE_TOPICS_VERSION, &request);
    assert_eq!(
        response.topics[0].error_code, 0,
        "create {name}: {response:?}"
    );
}

/// Produces one batch and returns `(error_code, base_offset)`.
fn produce(client: &mut Client, topic: &str, batch: Vec<u8>) -> (i16, i64) {
    let response: ProduceResponse = client.call(
        ApiKey::Produce,
        PRODUCE_VERSION,
        &produce_request(topic, 0, batch, 1),
    );
    let partition = &response.responses[0].partition_responses[0];
    (partition.error_code, partition.base_offset)
}

/// ListOffsets for one timestamp on partition 0: `(error_code, offset)`.
fn list_offset(client: &mut Client, topic: &str, timestamp: i64) -> (i16, i64) {
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_current_leader_epoch(-1)
                .with_timestamp(timestamp)])]);
    let response: ListOffsetsResponse =
        client.call(ApiKey::ListOffsets, LIST_OFFSETS_VERSION, &request);
    let partition = &response.topics[0].partitions[0];
    (partition.error_code, partition.offset)
}

/// Lets every hostile connection of these tests be logged (they look for each one's
/// line); `hostile_peers_cannot_flood_the_log` checks the default limit.
const UNLIMITED_WARNINGS: &str = "ferry.connection.warnings.per.peer.per.minute=1000000";

fn start_broker(overrides: &[&str]) -> (tempfile::TempDir, Broker) {
    start_broker_with(&[&[UNLIMITED_WARNINGS], overrides].concat())
}

fn start_broker_with(overrides: &[&str]) -> (tempfile::TempDir, Broker) {
    let dir = tempfile::tempdir().unwrap();
    let mut args = Vec::new();
    for value in overrides {
        args.push("--override");
        args.push(value);
    }
    let broker = Broker::start(dir.path(), &args);
    (dir, broker)
}

/// Waits until the broker has logged a line containing every one of `needles`.
fn wait_for_log(broker: &Broker, seen: &mut Vec<String>, needles: &[&str]) {
    let deadline = Instant::now() + CLOSE_TIMEOUT;
    loop {
        seen.extend(broker.drain_log());
        if seen
            .iter()
            .any(|line| needles.iter().all(|n| line.contains(n)))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no log line contains {needles:?}; log:\n{}",
            seen.join("\n")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------
// Live broker: frame sizes.
// ---------------------------------------------------------------------------------------

const ONE_MIB: usize = 1 << 20;

/// A Produce frame (without size prefix) of exactly `frame_bytes` bytes: one record whose
/// value fills the space.
fn produce_frame_of_size(topic: &str, frame_bytes: usize) -> BytesMut {
    let build = |key_len: usize, value_len: usize| {
        let area = encode_record(0, 0, &vec![b'k'; key_len], &vec![b'v'; value_len]);
        let batch = record_batch(&area, 0, 1, 1_000);
        request_frame(
            ApiKey::Produce,
            PRODUCE_VERSION,
            99,
            &produce_request(topic, 0, batch, 1),
        )
    };
    let overhead = build(0, 0).len();
    let guess = frame_bytes - overhead;
    for key_len in 0..4 {
        for value_len in guess.saturating_sub(16)..=guess {
            let frame = build(key_len, value_len);
            if frame.len() == frame_bytes {
                return frame;
            }
        }
    }
    panic!("cannot build a produce frame of exactly {frame_bytes} bytes");
}

#[test]
fn size_prefixes_beyond_socket_request_max_bytes_close_the_connection_unread() {
    let (_dir, mut broker) = start_broker(&["socket.request.max.bytes=1048576"]);
    let mut log = Vec::new();
    let mut client = Client::connect(&broker);
    create_topic(&mut client, "limits", 1);

    // A frame of exactly the limit is read and answered.
    let at_limit = produce_frame_of_size("limits", ONE_MIB);
    client.send_frame(&at_limit).unwrap();
    let response = client.read_frame().unwrap().expect("answered");
    let response: ProduceResponse = decode_response(ApiKey::Produce, PRODUCE_VERSION, 99, response);
    let partition = &response.responses[0].partition_responses[0];
    assert_eq!((partition.error_code, partition.base_offset), (0, 0));

    // One byte more closes the connection, after the prefix and before the body: the
    // broker neither waits for the body nor answers.
    let mut client = Client::connect(&broker);
    let over = produce_frame_of_size("limits", ONE_MIB + 1);
    client
        .send_raw(&((ONE_MIB + 1) as i32).to_be_bytes())
        .unwrap();
    client.send_raw(&over[..1024]).unwrap();
    client.assert_closed(CLOSE_TIMEOUT, "limit + 1");
    wait_for_log(
        &broker,
        &mut log,
        &["1048577", "socket.request.max.bytes=1048576"],
    );

    for prefix in [10 * ONE_MIB as i32, i32::MAX, -1, i32::MIN] {
        let mut client = Client::connect(&broker);
        client.send_raw(&prefix.to_be_bytes()).unwrap();
        client.send_raw(&[0u8; 64]).unwrap();
        client.assert_closed(CLOSE_TIMEOUT, &format!("size prefix {prefix}"));
        wait_for_log(
            &broker,
            &mut log,
            &[
                &format!("{prefix} bytes"),
                "socket.request.max.bytes=1048576",
            ],
        );
    }
    assert_serving(&mut broker);
    let (error, offset) = produce(
        &mut Client::connect(&broker),
        "limits",
        simple_batch(&[b"x"], 1),
    );
    assert_eq!(
        (error, offset),
        (0, 1),
        "the log holds exactly the at-limit batch before"
    );
}

// ---------------------------------------------------------------------------------------
// Live broker: malformed bodies, unknown keys and versions.
// ---------------------------------------------------------------------------------------

#[test]
fn metadata_claiming_i32_max_topics_closes_only_that_connection() {
    let (_dir, mut broker) = start_broker(&[]);
    let mut bystander = Client::connect(&broker);
    let mut client = Client::connect(&broker);
    let mut frame = BytesMut::new();
    frame.put_i32(14);
    frame.put_i16(ApiKey::Metadata as i16);
    frame.put_i16(1);
    frame.put_i32(1);
    frame.put_i16(-1);
    frame.put_i32(i32::MAX);
    assert_eq!(frame.len(), 18);
    client.send_raw(&frame).unwrap();
    client.assert_closed(CLOSE_TIMEOUT, "Metadata v1 with i32::MAX topics");
    let mut log = Vec::new();
    wait_for_log(&broker, &mut log, &["malformed Metadata v1 request body"]);
    // A connection opened before is unaffected.
    let versions: ApiVersionsResponse = bystander.call(
        ApiKey::ApiVersions,
        API_VERSIONS_VERSION,
        &api_versions_request(),
    );
    assert_eq!(versions.error_code, 0);
    assert_serving(&mut broker);
}

#[test]
fn unknown_keys_and_versions_get_kafkas_treatment() {
    let (_dir, mut broker) = start_broker(&[]);
    let mut log = Vec::new();

    // An API key Kafka does not define: closed, logged.
    let mut client = Client::connect(&broker);
    let frame = frame_with_body(ApiKey::Metadata, 0, 5, &[]);
    let mut unknown = frame.to_vec();
    unknown[0..2].copy_from_slice(&999i16.to_be_bytes());
    client.send_frame(&unknown).unwrap();
    client.assert_closed(CLOSE_TIMEOUT, "api key 999");
    wait_for_log(&broker, &mut log, &["unknown API key 999"]);

    // ApiVersions newer than Ferry knows: a v0 answer with UNSUPPORTED_VERSION (35) and
    // the full API list (KIP-511); the connection stays open.
    let mut client = Client::connect(&broker);
    client
        .send_frame(&frame_with_body(ApiKey::ApiVersions, 99, 41, &[]))
        .unwrap();
    let answer = client
        .read_frame()
        .unwrap()
        .expect("an answer, not a close");
    let response: ApiVersionsResponse = decode_response(ApiKey::ApiVersions, 0, 41, answer);
    assert_eq!(response.error_code, 35);
    assert!(!response.api_keys.is_empty());
    assert_advertises_supported(&response);
    let metadata: MetadataResponse = client.call(
        ApiKey::Metadata,
        METADATA_VERSION,
        &MetadataRequest::default().with_topics(None),
    );
    assert_eq!(metadata.brokers.len(), 1);

    // One version past what Ferry advertises, for every other API: closed, logged.
    for support in SUPPORTED {
        if support.key == ApiKey::ApiVersions {
            continue;
        }
        let version = support.max + 1;
        let mut client = Client::connect(&broker);
        client
            .send_frame(&frame_with_body(support.key, version, 3, &[0; 64]))
            .unwrap();
        let what = format!("{:?} v{version}", support.key);
        client.assert_closed(CLOSE_TIMEOUT, &what);
        wait_for_log(&broker, &mut log, &[&format!("{what} is not supported")]);
    }
    // Metadata v13 exists in Kafka 4.1 but is beyond what Ferry advertises.
    assert_eq!(versions::lookup(ApiKey::Metadata).unwrap().max + 1, 13);
    assert!(ApiKey::Metadata.valid_versions().max >= 13);

    // Produce v0-2 are advertised (for old librdkafka) but, as in Kafka 4, not accepted.
    let produce = versions::lookup(ApiKey::Produce).unwrap();
    for version in produce.advertised_min..produce.accepted_min {
        let mut client = Client::connect(&broker);
        client
            .send_frame(&frame_with_body(ApiKey::Produce, version, 3, &[0; 16]))
            .unwrap();
        client.assert_closed(CLOSE_TIMEOUT, &format!("Produce v{version}"));
    }
    assert_serving(&mut broker);
}

// ---------------------------------------------------------------------------------------
// Live broker: random frames.
// ---------------------------------------------------------------------------------------

/// Random frames sent to the live broker.
const LIVE_RANDOM_FRAMES: usize = 1_000;
/// Connections the random frames are spread over.
const LIVE_RANDOM_CONNECTIONS: usize = 4;
/// How long a probe behind a random frame may wait (a mutated Fetch may long-poll).
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// socket.request.max.bytes of the broker the random frames go to.
const LIVE_MAX_FRAME_BYTES: i32 = 100 << 20;

/// What became of a connection after a random frame and a probe behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterFrame {
    /// The probe was answered correctly: the connection is still usable.
    Usable,
    /// The broker closed the connection.
    Closed,
    /// Neither within `PROBE_TIMEOUT` (a long poll holds the answers behind it).
    Waiting,
}

#[derive(Debug, Clone)]
enum LiveFrame {
    /// Random bytes of the declared size.
    Random(Vec<u8>),
    /// A valid header for an implemented API version, then random bytes.
    RandomBody(ApiKey, i16, Vec<u8>),
    /// A corpus request with mutations applied.
    Mutated(Index, Vec<Mutation>),
    /// Only a size prefix beyond the limit (or negative).
    BadPrefix(i32),
}

fn live_frame() -> impl Strategy<Value = LiveFrame> {
    prop_oneof![
        2 => proptest::collection::vec(body_byte(), 0..1024).prop_map(LiveFrame::Random),
        3 => (supported_version(), proptest::collection::vec(body_byte(), 0..1024))
            .prop_map(|((key, version), body)| LiveFrame::RandomBody(key, version, body)),
        // Single mutations often still decode, so they reach the handlers.
        4 => (any::<Index>(), mutation()).prop_map(|(i, m)| LiveFrame::Mutated(i, vec![m])),
        2 => (any::<Index>(), proptest::collection::vec(mutation(), 2..5))
            .prop_map(|(i, m)| LiveFrame::Mutated(i, m)),
        1 => prop_oneof![Just(-1), Just(i32::MIN), Just(i32::MAX), LIVE_MAX_FRAME_BYTES + 1..i32::MAX]
            .prop_map(LiveFrame::BadPrefix),
    ]
}

/// APIs whose mutated requests are not sent to the live broker: a mutated partition count
/// creates tens of thousands of partitions (a legitimate, slow request, not hostile input),
/// and a mutated delete could hit the steady client's topic. Their decoders are covered by
/// the properties above.
fn excluded_from_live(key: ApiKey) -> bool {
    matches!(
        key,
        ApiKey::CreateTopics
            | ApiKey::CreatePartitions
            | ApiKey::DeleteTopics
            | ApiKey::DeleteRecords
    )
}

fn live_corpus() -> Vec<Bytes> {
    corpus()
        .iter()
        .filter(|(key, _, _)| !excluded_from_live(*key))
        .map(|(_, _, frame)| frame.clone())
        .collect()
}

/// The seed for the live random run: `HOSTILE_SEED` if set, else the clock (printed, so a
/// failure can be replayed).
fn live_seed() -> u64 {
    let seed = std::env::var("HOSTILE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("hostile_frames live seed: HOSTILE_SEED={seed}");
    seed
}

/// Sends `frame` (or only `bad_prefix`), then an ApiVersions probe on the same connection,
/// and reads until the probe's answer (skipping any answer to the frame itself).
fn send_and_probe(client: &mut Client, frame: &[u8], bad_prefix: Option<i32>) -> AfterFrame {
    let sent = match bad_prefix {
        Some(prefix) => client.send_raw(&prefix.to_be_bytes()),
        None => client.send_frame(frame),
    };
    if let Err(err) = sent {
        assert!(is_closed(&err), "send failed: {err}");
        return AfterFrame::Closed;
    }
    if bad_prefix.is_some() {
        client.assert_closed(CLOSE_TIMEOUT, &format!("size prefix {bad_prefix:?}"));
        return AfterFrame::Closed;
    }
    let probe = match client.send(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default()) {
        Ok(id) => id,
        Err(err) if is_closed(&err) => return AfterFrame::Closed,
        Err(err) => panic!("send probe: {err}"),
    };
    client.stream.set_read_timeout(Some(PROBE_TIMEOUT)).unwrap();
    let after = loop {
        match client.read_frame() {
            Ok(None) => break AfterFrame::Closed,
            Ok(Some(answer)) => {
                let correlation_id = i32::from_be_bytes(answer[..4].try_into().unwrap());
                if correlation_id != probe {
                    continue; // the answer to the random frame
                }
                let response: ApiVersionsResponse =
                    decode_response(ApiKey::ApiVersions, 0, probe, answer);
                assert_eq!(response.error_code, 0);
                assert_advertises_supported(&response);
                break AfterFrame::Usable;
            }
            Err(err) if is_timeout(&err) => break AfterFrame::Waiting,
            Err(err) if is_closed(&err) => break AfterFrame::Closed,
            Err(err) => panic!("read: {err}"),
        }
    };
    client
        .stream
        .set_read_timeout(Some(ANSWER_TIMEOUT))
        .unwrap();
    after
}

#[test]
fn random_frames_never_take_the_broker_down_or_slow_other_clients() {
    let (_dir, mut broker) =
        start_broker(&[&format!("socket.request.max.bytes={LIVE_MAX_FRAME_BYTES}")]);
    let mut steady = Client::connect(&broker);
    create_topic(&mut steady, "steady", 1);
    let live_corpus = live_corpus();
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &{
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&live_seed().to_le_bytes());
            seed
        }),
    );
    let strategy = live_frame();
    let mut connections: Vec<Option<Client>> = (0..LIVE_RANDOM_CONNECTIONS).map(|_| None).collect();
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    let mut steady_offset = 0;
    for i in 0..LIVE_RANDOM_FRAMES {
        let frame = strategy.new_tree(&mut runner).unwrap().current();
        let (bytes, bad_prefix) = match &frame {
            LiveFrame::Random(bytes) => (bytes.clone(), None),
            LiveFrame::RandomBody(key, version, body) => (
                frame_with_body(*key, *version, i as i32, body).to_vec(),
                None,
            ),
            LiveFrame::Mutated(index, mutations) => {
                let mut bytes = index.get(&live_corpus).to_vec();
                for m in mutations {
                    apply(&mut bytes, m);
                }
                (bytes, None)
            }
            LiveFrame::BadPrefix(prefix) => (Vec::new(), Some(*prefix)),
        };
        let slot = &mut connections[i % LIVE_RANDOM_CONNECTIONS];
        let client = slot.get_or_insert_with(|| Client::connect(&broker));
        let after = send_and_probe(client, &bytes, bad_prefix);
        *outcomes.entry(format!("{after:?}")).or_default() += 1;
        if after != AfterFrame::Usable {
            *slot = None; // closed by the broker, or abandoned
        }
        assert!(
            broker.is_running(),
            "ferry exited after frame {i}: {frame:?}"
        );

        // The well-behaved client is answered correctly and promptly throughout.
        if i % 10 == 0 {
            let started = Instant::now();
            let (error, offset) = produce(&mut steady, "steady", simple_batch(&[b"ok"], 1));
            assert_eq!(
                (error, offset),
                (0, steady_offset),
                "after frame {i}: {frame:?}"
            );
            steady_offset += 1;
            let metadata: MetadataResponse = steady.call(
                ApiKey::Metadata,
                METADATA_VERSION,
                &metadata_request(&["steady"]),
            );
            assert_eq!(metadata.topics.len(), 1);
            assert_eq!(metadata.topics[0].error_code, 0);
            assert_eq!(metadata.topics[0].partitions.len(), 1);
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "steady client took {:?} after frame {i}",
                started.elapsed()
            );
        }
    }
    eprintln!("random frames, connection afterwards: {outcomes:?}");
    let count = |after: AfterFrame| outcomes.get(&format!("{after:?}")).copied().unwrap_or(0);
    assert!(
        count(AfterFrame::Usable) > 0 && count(AfterFrame::Closed) > 0,
        "the mix exercises both outcomes"
    );
    // Only a long poll (a mutated Fetch with a large max_wait_ms) may hold the probe back.
    assert!(
        count(AfterFrame::Waiting) <= LIVE_RANDOM_FRAMES / 50,
        "too many connections neither answered nor closed"
    );
    assert_serving(&mut broker);
}

// ---------------------------------------------------------------------------------------
// Live broker: memory.
// ---------------------------------------------------------------------------------------

/// Bytes of zeros the gzip bomb inflates to.
const BOMB_DECOMPRESSED_BYTES: usize = 200 << 20;
/// Peak resident memory the broker may reach while handling the bomb.
const BOMB_MAX_PEAK_RSS_KIB: u64 = 200 << 10;

/// A gzip stream of `BOMB_DECOMPRESSED_BYTES` zeros: one compressed MiB, repeated as
/// concatenated gzip members (which Kafka's and Ferry's gzip readers both continue through).
fn gzip_bomb() -> Vec<u8> {
    use flate2::write::GzEncoder;
    let mut one_mib = GzEncoder::new(Vec::new(), flate2::Compression::best());
    one_mib.write_all(&vec![0u8; ONE_MIB]).unwrap();
    let member = one_mib.finish().unwrap();
    let mut bomb = Vec::with_capacity(member.len() * (BOMB_DECOMPRESSED_BYTES / ONE_MIB));
    for _ in 0..BOMB_DECOMPRESSED_BYTES / ONE_MIB {
        bomb.extend_from_slice(&member);
    }
    bomb
}

#[test]
fn a_gzip_bomb_is_never_decompressed_beyond_the_cap() {
    let (_dir, mut broker) = start_broker(&[]);
    let mut client = Client::connect(&broker);
    create_topic(&mut client, "bomb", 1);
    let bomb = gzip_bomb();
    assert!(bomb.len() < ONE_MIB, "{} compressed bytes", bomb.len());
    let batch = record_batch(&bomb, GZIP_ATTRIBUTES, 1, 1_000);

    // Produce: accepted as an opaque batch (Ferry does not decompress on produce).
    let started = Instant::now();
    let (error, offset) = produce(&mut client, "bomb", batch.clone());
    assert_eq!((error, offset), (0, 0));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // Fetch returns the batch byte for byte, still compressed.
    let fetch = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_bytes(10 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name("bomb"))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_current_leader_epoch(-1)
                .with_partition_max_bytes(10 << 20)])]);
    let response: FetchResponse = client.call(ApiKey::Fetch, FETCH_VERSION, &fetch);
    let records = response.responses[0].partitions[0].records.clone().unwrap();
    // Base offset (0..8) and leader epoch (12..16) are the leader's; the rest is as sent.
    assert_eq!(records.len(), batch.len());
    assert!(
        records[16..] == batch[16..],
        "fetched batch differs from the produced one"
    );

    // A timestamp lookup has to look inside the batch: decompression stops at the cap
    // (ferry.max.decompressed.batch.bytes, 64 MiB) and the lookup fails with
    // CORRUPT_MESSAGE (2) instead of inflating 200 MiB.
    let started = Instant::now();
    let (error, _) = list_offset(&mut client, "bomb", 0);
    assert_eq!(error, 2, "CORRUPT_MESSAGE");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let mut log = Vec::new();
    wait_for_log(
        &broker,
        &mut log,
        &["decompress to more than 67108864 bytes"],
    );

    let peak = broker.status_kib("VmHWM");
    eprintln!("broker VmHWM {peak} KiB");
    assert!(
        peak < BOMB_MAX_PEAK_RSS_KIB,
        "peak RSS {peak} KiB (limit {BOMB_MAX_PEAK_RSS_KIB} KiB)"
    );
    assert_serving(&mut broker);
}

#[test]
fn a_record_with_a_hostile_offset_delta_does_not_break_timestamp_lookups() {
    let (_dir, mut broker) = start_broker(&[]);
    let mut client = Client::connect(&broker);
    create_topic(&mut client, "deltas", 1);
    let (error, offset) = produce(&mut client, "deltas", simple_batch(&[b"first"], 1_000));
    assert_eq!((error, offset), (0, 0));
    // The next batch's header is consistent (one record, last offset delta 0); the record
    // inside claims offset delta i64::MAX, which Ferry stores without parsing records.
    let area = encode_record(i64::MAX, 0, b"k", b"v");
    let (error, offset) = produce(&mut client, "deltas", record_batch(&area, 0, 1, 2_000));
    assert_eq!((error, offset), (0, 1));
    // A timestamp lookup that lands in that batch reports it as corrupt and keeps the
    // connection open; lookups elsewhere still work.
    let (error, _) = list_offset(&mut client, "deltas", 1_500);
    assert_eq!(error, 2, "CORRUPT_MESSAGE for a record outside its batch");
    assert_eq!(list_offset(&mut client, "deltas", 500), (0, 0));
    assert_eq!(list_offset(&mut client, "deltas", -1), (0, 2));
    assert_serving(&mut broker);
}

/// Connections that announce a large frame and then send nothing.
const STALLED_CONNECTIONS: usize = 20;
const STALL_FRAME_MAX_BYTES: usize = 64 << 20;
const STALL_QUEUED_MAX_BYTES: usize = 128 << 20;
/// Resident memory the broker may use while the stalled connections wait.
const STALL_MAX_RSS_KIB: u64 = 400 << 10;

#[test]
fn stalled_large_frames_neither_exhaust_memory_nor_block_small_requests() {
    let (_dir, mut broker) = start_broker(&[
        &format!("socket.request.max.bytes={STALL_FRAME_MAX_BYTES}"),
        &format!("queued.max.request.bytes={STALL_QUEUED_MAX_BYTES}"),
        "connections.max.idle.ms=4000",
    ]);
    let mut steady = Client::connect(&broker);
    create_topic(&mut steady, "steady", 1);
    let mut stalled = Vec::new();
    for _ in 0..STALLED_CONNECTIONS {
        let mut client = Client::connect(&broker);
        client
            .send_raw(&((STALL_FRAME_MAX_BYTES - 1024) as i32).to_be_bytes())
            .unwrap();
        client.send_raw(&[0u8; 8]).unwrap();
        stalled.push(client);
    }
    std::thread::sleep(Duration::from_millis(300));

    // Small requests on another connection are answered promptly, and memory stays bounded.
    for _ in 0..5 {
        let started = Instant::now();
        let metadata: MetadataResponse = steady.call(
            ApiKey::Metadata,
            METADATA_VERSION,
            &metadata_request(&["steady"]),
        );
        assert_eq!(metadata.topics[0].error_code, 0);
        // Well under connections.max.idle.ms: not merely answered once the stalled
        // connections time out.
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "Metadata took {:?} behind stalled large frames",
            started.elapsed()
        );
        let (error, _) = produce(&mut steady, "steady", simple_batch(&[b"small"], 1));
        assert_eq!(error, 0);
    }
    let rss = broker.status_kib("VmRSS");
    eprintln!("broker VmRSS {rss} KiB");
    assert!(rss < STALL_MAX_RSS_KIB, "RSS {rss} KiB with stalled frames");

    // The stalled connections are closed once idle for connections.max.idle.ms, which
    // releases their reservations: a large frame then goes through.
    for client in &mut stalled {
        client.assert_closed(Duration::from_secs(15), "stalled large frame");
    }
    let mut log = Vec::new();
    wait_for_log(
        &broker,
        &mut log,
        &[
            &format!("request frame of {} bytes", STALL_FRAME_MAX_BYTES - 1024),
            "longer than connections.max.idle.ms",
        ],
    );
    // (The steady connection itself has been idle meanwhile, so use a new one.)
    let mut client = Client::connect(&broker);
    let large = produce_frame_of_size("steady", 8 * ONE_MIB);
    client.send_frame(&large).unwrap();
    let answer = client.read_frame().unwrap().expect("answered");
    let response: ProduceResponse = decode_response(ApiKey::Produce, PRODUCE_VERSION, 99, answer);
    let partition = &response.responses[0].partition_responses[0];
    assert_eq!(
        partition.error_code, 10,
        "MESSAGE_TOO_LARGE: 8 MiB > max.message.bytes"
    );
    let peak = broker.status_kib("VmHWM");
    eprintln!("broker VmHWM {peak} KiB");
    assert!(peak < STALL_MAX_RSS_KIB, "peak RSS {peak} KiB");
    assert_serving(&mut broker);
}

/// Megabytes of records a greedy client fetches over and over.
const UNREAD_LOG_MB: usize = 50;
/// Fetches the greedy client pipelines without reading (the per-connection maximum).
const UNREAD_FETCHES: usize = 32;
/// Resident memory the broker may use while the greedy client reads nothing.
const UNREAD_MAX_RSS_KIB: u64 = 300 << 10;

#[test]
fn clients_that_stop_reading_hold_bounded_memory_and_are_disconnected() {
    let (_dir, mut broker) = start_broker(&["connections.max.idle.ms=3000"]);
    let mut client = Client::connect(&broker);
    create_topic(&mut client, "big", 1);
    let value = vec![7u8; 1_000_000];
    for _ in 0..UNREAD_LOG_MB {
        let (error, _) = produce(&mut client, "big", simple_batch(&[&value], 1));
        assert_eq!(error, 0);
    }
    // Pipelined fetches of the whole log (about 50 MB each), none of them read.
    let fetch = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_bytes(i32::MAX)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name("big"))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_current_leader_epoch(-1)
                .with_partition_max_bytes(i32::MAX)])]);
    let mut greedy = Client::connect(&broker);
    for _ in 0..UNREAD_FETCHES {
        greedy.send(ApiKey::Fetch, FETCH_VERSION, &fetch).unwrap();
    }
    std::thread::sleep(Duration::from_millis(1_000));
    let rss = broker.status_kib("VmRSS");
    eprintln!("broker VmRSS {rss} KiB");
    assert!(
        rss < UNREAD_MAX_RSS_KIB,
        "RSS {rss} KiB with {UNREAD_FETCHES} unread fetch responses"
    );
    let started = Instant::now();
    let (error, _) = produce(
        &mut Client::connect(&broker),
        "big",
        simple_batch(&[b"x"], 1),
    );
    assert_eq!(error, 0);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // After connections.max.idle.ms without the client reading, the broker gives up on it:
    // what it had already sent arrives, then the connection ends.
    std::thread::sleep(Duration::from_millis(4_000));
    let mut log = Vec::new();
    wait_for_log(
        &broker,
        &mut log,
        &["client read no response for longer than"],
    );
    greedy.stream.set_read_timeout(Some(CLOSE_TIMEOUT)).unwrap();
    let mut answered = 0;
    loop {
        match greedy.read_frame() {
            Ok(Some(_)) => answered += 1,
            Ok(None) => break,
            Err(err) if is_closed(&err) => break,
            Err(err) => panic!("greedy connection neither answered nor closed: {err}"),
        }
    }
    assert!(
        answered < UNREAD_FETCHES,
        "all {answered} responses were kept for it"
    );
    let peak = broker.status_kib("VmHWM");
    eprintln!("broker VmHWM {peak} KiB");
    assert!(peak < UNREAD_MAX_RSS_KIB, "peak RSS {peak} KiB");
    assert_serving(&mut broker);
}

/// Topics named in the log-flood test.
const INVALID_TOPICS_NAMED: usize = 10_000;

#[test]
fn invalid_topic_names_in_metadata_are_answered_without_a_log_line_each() {
    let (_dir, mut broker) = start_broker(&[]);
    std::thread::sleep(Duration::from_millis(200));
    broker.drain_log();
    // Metadata v1 always asks for auto-creation; "" and "bad name" cannot be created.
    let names: Vec<String> = (0..INVALID_TOPICS_NAMED)
        .map(|i| {
            if i % 2 == 0 {
                String::new()
            } else {
                format!("bad name {i}")
            }
        })
        .collect();
    let request = MetadataRequest::default().with_topics(Some(
        names
            .iter()
            .map(|n| MetadataRequestTopic::default().with_name(Some(topic_name(n))))
            .collect(),
    ));
    let response: MetadataResponse = Client::connect(&broker).call(ApiKey::Metadata, 1, &request);
    assert_eq!(response.topics.len(), INVALID_TOPICS_NAMED);
    assert!(
        response.topics.iter().all(|t| t.error_code == 17),
        "INVALID_TOPIC_EXCEPTION for every name"
    );
    assert_serving(&mut broker);
    std::thread::sleep(Duration::from_millis(200));
    let log = broker.drain_log();
    assert!(
        log.len() < 10,
        "{} log lines for one request, e.g. {:?}",
        log.len(),
        log.last()
    );
}

#[test]
fn requests_without_records_have_their_own_smaller_limit() {
    let (_dir, mut broker) = start_broker(&[
        "socket.request.max.bytes=4194304",
        "ferry.max.request.bytes.without.records=65536",
    ]);
    let mut log = Vec::new();
    let mut client = Client::connect(&broker);
    create_topic(&mut client, "limits", 1);
    // A Produce of 1 MiB is within socket.request.max.bytes and is answered.
    client
        .send_frame(&produce_frame_of_size("limits", ONE_MIB))
        .unwrap();
    let response = client.read_frame().unwrap().expect("answered");
    let response: ProduceResponse = decode_response(ApiKey::Produce, PRODUCE_VERSION, 99, response);
    assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
    // A Metadata request naming enough topics to exceed 64 KiB closes the connection.
    let names: Vec<String> = (0..5_000).map(|i| format!("topic-{i:08}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut client = Client::connect(&broker);
    let body = metadata_request(&names);
    client
        .send(ApiKey::Metadata, METADATA_VERSION, &body)
        .unwrap();
    client.assert_closed(CLOSE_TIMEOUT, "metadata over the limit");
    wait_for_log(
        &broker,
        &mut log,
        &["ferry.max.request.bytes.without.records=65536"],
    );
    assert_serving(&mut broker);
}

/// How long the long-poll Fetch below may wait; far beyond `ANSWER_TIMEOUT`.
const LONG_POLL_MS: i32 = 60_000;

/// A response that is complete goes out even while a later request on the same connection
/// is still waiting: an acknowledgement must not sit in the broker's write buffer until a
/// long-poll Fetch (or a produce awaiting its fsync) behind it resolves.
#[test]
fn a_finished_response_is_not_held_behind_a_later_long_poll() {
    let (_dir, broker) = start_broker(&[]);
    let mut client = Client::connect(&broker);
    create_topic(&mut client, "acked", 1);
    create_topic(&mut client, "idle", 1);
    let produce = request_frame(
        ApiKey::Produce,
        PRODUCE_VERSION,
        1,
        &produce_request("acked", 0, simple_batch(&[b"v"], 1), 1),
    );
    let fetch = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(LONG_POLL_MS)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name("idle"))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_current_leader_epoch(-1)
                .with_partition_max_bytes(1 << 20)])]);
    let fetch = request_frame(ApiKey::Fetch, FETCH_VERSION, 2, &fetch);
    // Both requests in one write, so the Fetch is queued before the Produce is answered.
    let mut both = Vec::new();
    for frame in [&produce[..], &fetch[..]] {
        both.extend_from_slice(&(frame.len() as i32).to_be_bytes());
        both.extend_from_slice(frame);
    }
    client.send_raw(&both).unwrap();
    let answer = client
        .read_frame()
        .unwrap_or_else(|e| panic!("produce not acknowledged while the fetch waits: {e}"))
        .expect("connection open");
    let response: ProduceResponse = decode_response(ApiKey::Produce, PRODUCE_VERSION, 1, answer);
    assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
}

/// Hundreds of malformed connections from one address make a handful of warnings, not one
/// each; and client-supplied text (a client id with a NUL byte and a terminal escape, a
/// topic name that is no name) reaches the log escaped.
#[test]
fn hostile_peers_cannot_flood_the_log_and_client_text_is_escaped() {
    let (_dir, mut broker) = start_broker_with(&[]);
    for _ in 0..300 {
        let mut client = Client::connect(&broker);
        client.send_raw(&i32::MAX.to_be_bytes()).unwrap();
        client.assert_closed(CLOSE_TIMEOUT, "oversized prefix");
    }
    // A client id and a topic name with a NUL byte and an escape sequence.
    let mut client = Client::connect(&broker);
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::CreateTopics as i16)
        .with_request_api_version(5)
        .with_correlation_id(9)
        .with_client_id(Some(str_bytes("evil\0client\u{1b}[2J")));
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(1_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(topic_name("bad\0topic\u{1b}[2J"))
            .with_num_partitions(1)
            .with_replication_factor(1)]);
    let mut body = BytesMut::new();
    header
        .encode(&mut body, ApiKey::CreateTopics.request_header_version(5))
        .unwrap();
    request.encode(&mut body, 5).unwrap();
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    client.send_raw(&frame).unwrap();
    let answer = client.read_frame().unwrap().expect("an answer");
    let response: CreateTopicsResponse = decode_response(ApiKey::CreateTopics, 5, 9, answer);
    assert_eq!(response.topics[0].error_code, 17, "INVALID_TOPIC_EXCEPTION");
    assert_serving(&mut broker);
    let (status, log) = broker.stop_with_log();
    assert!(status.success());
    let warnings: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("WARN") && l.contains("closing connection"))
        .collect();
    assert!(
        warnings.len() <= 10,
        "{} warnings for 300 malformed connections from one address",
        warnings.len()
    );
    for line in &log {
        assert!(
            !line.contains('\0') && !line.contains('\u{1b}'),
            "a raw control character reached the log: {line:?}"
        );
    }
}
