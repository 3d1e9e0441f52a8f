//! Routes a decoded request header to its API's handler and turns the handler's typed
//! answer into an encoded response frame (now, later, or not at all).
//!
//! Handlers run in two phases: the synchronous part (validation, appends, registering with
//! a coordinator) runs in request order on the connection's task; what has to wait (a
//! long-poll fetch, an fsync, a rebalance) is returned as a future that the connection
//! awaits in order before writing the response.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use proto_kafka::messages::ApiKey;
use proto_kafka::protocol::Encodable;

use super::handlers;
use super::Broker;
use crate::config::listeners::BoundListener;
use crate::protocol::codec::EncodeError;
use crate::protocol::fetch_encoder::{self, FetchResponseOut};
use crate::protocol::frame::OutFrame;
use crate::protocol::{encode_response, versions, RequestFrame};
use crate::security::{Principal, Session};

/// Who sent a request and what it is.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub api_key: ApiKey,
    pub api_version: i16,
    pub correlation_id: i32,
    pub client_id: Option<String>,
    pub peer: SocketAddr,
    /// The listener the request came in on (Metadata answers with its addresses).
    pub listener: Arc<BoundListener>,
    pub principal: Arc<Principal>,
}

/// A boxed future that is `Send`.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What a handler produced.
pub enum Handled<T> {
    /// The response is ready.
    Now(T),
    /// The response is ready when the future completes.
    Later(BoxFuture<T>),
    /// Kafka sends no response (Produce with acks=0).
    NoResponse,
    /// Kafka closes the connection (an acks=0 produce that failed).
    Close(String),
}

/// What the connection does with a request.
pub enum Reply {
    Ready(Result<OutFrame, EncodeError>),
    Pending(BoxFuture<Result<OutFrame, EncodeError>>),
    NoResponse,
    /// Close the connection after writing the responses before this one.
    Close(String),
}

/// A response body that can become a complete frame.
pub trait IntoFrame {
    fn into_frame(
        self,
        key: ApiKey,
        version: i16,
        correlation_id: i32,
    ) -> Result<OutFrame, EncodeError>;
}

impl<T: Encodable> IntoFrame for T {
    fn into_frame(
        self,
        key: ApiKey,
        version: i16,
        correlation_id: i32,
    ) -> Result<OutFrame, EncodeError> {
        encode_response(key, version, correlation_id, &self).map(OutFrame::from_bytes)
    }
}

/// Fetch responses are encoded by hand so record data can be sent from files.
impl IntoFrame for FetchResponseOut {
    fn into_frame(
        self,
        _key: ApiKey,
        version: i16,
        correlation_id: i32,
    ) -> Result<OutFrame, EncodeError> {
        Ok(fetch_encoder::encode(&self, version, correlation_id))
    }
}

fn finish<T: IntoFrame + Send + 'static>(ctx: &RequestContext, handled: Handled<T>) -> Reply {
    let (key, version, correlation_id) = (ctx.api_key, ctx.api_version, ctx.correlation_id);
    match handled {
        Handled::Now(body) => Reply::Ready(body.into_frame(key, version, correlation_id)),
        Handled::Later(future) => Reply::Pending(Box::pin(async move {
            let body = future.await;
            body.into_frame(key, version, correlation_id)
        })),
        Handled::NoResponse => Reply::NoResponse,
        Handled::Close(reason) => Reply::Close(reason),
    }
}

macro_rules! route {
    ($broker:expr, $ctx:expr, $frame:expr, $($module:ident)::+) => {
        match $frame.decode_body() {
            Ok(request) => finish($ctx, handlers::$($module)::+::handle($broker, $ctx, request)),
            Err(err) => Reply::Close(err.to_string()),
        }
    };
}

/// Handles one request.
pub fn dispatch(broker: &Arc<Broker>, frame: RequestFrame, session: &Session) -> Reply {
    let ctx = RequestContext {
        api_key: frame.api_key,
        api_version: frame.api_version,
        correlation_id: frame.correlation_id,
        client_id: frame.client_id.clone(),
        peer: session.peer,
        listener: Arc::clone(&session.listener),
        principal: Arc::clone(&session.principal),
    };
    if !versions::is_supported(frame.api_key, frame.api_version) {
        if frame.api_key == ApiKey::ApiVersions {
            // KIP-511: answer with v0 and UNSUPPORTED_VERSION so the client can retry.
            let frame = handlers::api_versions::unsupported_version(&ctx).map(OutFrame::from_bytes);
            return Reply::Ready(frame);
        }
        return Reply::Close(format!(
            "{:?} v{} is not supported (see ApiVersions)",
            frame.api_key, frame.api_version
        ));
    }
    let ctx = &ctx;
    match frame.api_key {
        ApiKey::ApiVersions => route!(broker, ctx, frame, api_versions),
        ApiKey::Metadata => route!(broker, ctx, frame, metadata),
        ApiKey::Produce => route!(broker, ctx, frame, produce),
        ApiKey::Fetch => route!(broker, ctx, frame, fetch),
        ApiKey::ListOffsets => route!(broker, ctx, frame, list_offsets),
        ApiKey::CreateTopics => route!(broker, ctx, frame, create_topics),
        ApiKey::DeleteTopics => route!(broker, ctx, frame, delete_topics),
        ApiKey::DeleteRecords => route!(broker, ctx, frame, delete_records),
        ApiKey::DescribeLogDirs => route!(broker, ctx, frame, describe_log_dirs),
        ApiKey::CreatePartitions => route!(broker, ctx, frame, create_partitions),
        ApiKey::DescribeConfigs => route!(broker, ctx, frame, describe_configs),
        ApiKey::DescribeCluster => route!(broker, ctx, frame, describe_cluster),
        ApiKey::FindCoordinator => route!(broker, ctx, frame, find_coordinator),
        ApiKey::JoinGroup => route!(broker, ctx, frame, join_group),
        ApiKey::SyncGroup => route!(broker, ctx, frame, sync_group),
        ApiKey::Heartbeat => route!(broker, ctx, frame, heartbeat),
        ApiKey::LeaveGroup => route!(broker, ctx, frame, leave_group),
        ApiKey::OffsetCommit => route!(broker, ctx, frame, offset_commit),
        ApiKey::OffsetFetch => route!(broker, ctx, frame, offset_fetch),
        ApiKey::DescribeGroups => route!(broker, ctx, frame, describe_groups),
        ApiKey::ListGroups => route!(broker, ctx, frame, list_groups),
        ApiKey::DeleteGroups => route!(broker, ctx, frame, delete_groups),
        ApiKey::OffsetDelete => route!(broker, ctx, frame, offset_delete),
        ApiKey::InitProducerId => route!(broker, ctx, frame, init_producer_id),
        ApiKey::AddPartitionsToTxn => route!(broker, ctx, frame, add_partitions_to_txn),
        ApiKey::AddOffsetsToTxn => route!(broker, ctx, frame, add_offsets_to_txn),
        ApiKey::EndTxn => route!(broker, ctx, frame, end_txn),
        ApiKey::TxnOffsetCommit => route!(broker, ctx, frame, txn_offset_commit),
        ApiKey::DescribeProducers => route!(broker, ctx, frame, describe_producers),
        ApiKey::DescribeTransactions => route!(broker, ctx, frame, describe_transactions),
        ApiKey::ListTransactions => route!(broker, ctx, frame, list_transactions),
        ApiKey::AlterConfigs => route!(broker, ctx, frame, alter_configs::legacy),
        ApiKey::IncrementalAlterConfigs => route!(broker, ctx, frame, alter_configs::incremental),
        ApiKey::SaslHandshake => route!(broker, ctx, frame, sasl::handshake),
        ApiKey::SaslAuthenticate => route!(broker, ctx, frame, sasl::authenticate),
        ApiKey::DescribeUserScramCredentials => {
            route!(broker, ctx, frame, scram_credentials::describe)
        }
        ApiKey::AlterUserScramCredentials => route!(broker, ctx, frame, scram_credentials::alter),
        other => Reply::Close(format!("{other:?} is advertised but has no handler")),
    }
}

/// Handles a request of Ferry's own admin API (`protocol::ferry_admin`).
pub fn ferry_admin(broker: &Arc<Broker>, frame: bytes::Bytes, session: &Session) -> Reply {
    super::admin_api::handle_frame(broker, frame, session.peer)
}
