//! DescribeCluster (key 60), v0-1: the cluster id, this broker as controller and only
//! broker.

use std::sync::Arc;

use proto_kafka::messages::describe_cluster_response::DescribeClusterBroker;
use proto_kafka::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::str_bytes;
use crate::broker::dispatch::{Handled, RequestContext};
use crate::broker::error_code::{code, KafkaError};
use crate::broker::{authorized_ops, Broker};

/// DescribeCluster v1 endpoint type for brokers (2 would be controllers).
const ENDPOINT_TYPE_BROKERS: i8 = 1;

pub fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: DescribeClusterRequest,
) -> Handled<DescribeClusterResponse> {
    let mut response = DescribeClusterResponse::default()
        .with_cluster_id(str_bytes(&broker.cluster_id))
        .with_controller_id(BrokerId(broker.node_id))
        .with_cluster_authorized_operations(authorized_ops::cluster(
            request.include_cluster_authorized_operations,
        ));
    if ctx.api_version >= 1 {
        response.endpoint_type = ENDPOINT_TYPE_BROKERS;
        if request.endpoint_type != ENDPOINT_TYPE_BROKERS {
            response.error_code = code(KafkaError::UnsupportedEndpointType);
            response.error_message = Some(str_bytes(
                "only broker endpoints are described (endpoint_type=1)",
            ));
            return Handled::Now(response);
        }
    }
    response.brokers = vec![DescribeClusterBroker::default()
        .with_broker_id(BrokerId(broker.node_id))
        .with_host(str_bytes(&ctx.listener.advertised.host))
        .with_port(i32::from(ctx.listener.advertised.port))];
    Handled::Now(response)
}
