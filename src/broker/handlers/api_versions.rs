//! ApiVersions (key 18), v0-4: advertises exactly the table in `protocol::versions`.
//! A request for a newer version than Ferry knows gets a v0 response with
//! UNSUPPORTED_VERSION and the full list (KIP-511), so the client can retry lower.

use std::sync::Arc;

use bytes::Bytes;
use proto_kafka::messages::api_versions_response::ApiVersion;
use proto_kafka::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};

use crate::broker::dispatch::{Handled, RequestContext};
use crate::broker::error_code::{code, KafkaError};
use crate::broker::Broker;
use crate::protocol::codec::EncodeError;
use crate::protocol::{encode_response, versions};

fn api_list() -> Vec<ApiVersion> {
    versions::SUPPORTED
        .iter()
        .map(|s| {
            ApiVersion::default()
                .with_api_key(s.key as i16)
                .with_min_version(s.advertised_min)
                .with_max_version(s.max)
        })
        .collect()
}

/// Kafka's rule for client software names and versions (KIP-511).
fn valid_software_field(text: &str) -> bool {
    let bytes = text.as_bytes();
    let edge_ok = |b: &u8| b.is_ascii_alphanumeric();
    let inner_ok = |b: &u8| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'.';
    match bytes {
        [] => false,
        [only] => edge_ok(only),
        [first, middle @ .., last] => {
            edge_ok(first) && edge_ok(last) && middle.iter().all(inner_ok)
        }
    }
}

pub fn handle(
    _broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: ApiVersionsRequest,
) -> Handled<ApiVersionsResponse> {
    let mut response = ApiVersionsResponse::default().with_api_keys(api_list());
    if ctx.api_version >= 3
        && !(valid_software_field(request.client_software_name.as_str())
            && valid_software_field(request.client_software_version.as_str()))
    {
        response.error_code = code(KafkaError::InvalidRequest);
    }
    Handled::Now(response)
}

/// The v0 answer to an ApiVersions request of a version Ferry does not support.
pub fn unsupported_version(ctx: &RequestContext) -> Result<Bytes, EncodeError> {
    let response = ApiVersionsResponse::default()
        .with_error_code(code(KafkaError::UnsupportedVersion))
        .with_api_keys(api_list());
    encode_response(ApiKey::ApiVersions, 0, ctx.correlation_id, &response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn software_names_follow_kip_511() {
        for ok in ["librdkafka", "2.12.1", "kafka-python", "a"] {
            assert!(valid_software_field(ok), "{ok}");
        }
        for bad in ["", "-x", "x-", "has space", "ä"] {
            assert!(!valid_software_field(bad), "{bad}");
        }
    }
}
