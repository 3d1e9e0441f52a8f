//! Request headers in, response frames out.
//!
//! Codec choice: message bodies use `proto-kafka` 0.22.0, a fork of `kafka-protocol` with
//! the same generated types (Kafka 4.1 schemas). `kafka-protocol` 0.18.0 calls
//! `Vec::with_capacity(n)` with array lengths taken from the wire, so an 18-byte Metadata
//! request claiming 2^31 topics aborts the whole process; `proto-kafka` checks every array
//! length against the bytes remaining before allocating (`check_array_len`). Ferry adds its
//! own guards around it: frames are bounded by `socket.request.max.bytes` before any
//! decoding, bodies are decoded from `Bytes` (zero-copy for record data), record batches
//! are never decoded through the crate (Ferry parses batch headers itself, so the crate's
//! collapsing of repeated record-header keys never touches stored data), and
//! `tests/it/hostile_frames.rs` throws random and mutated frames at this decoder and at a live
//! broker.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};
use proto_kafka::messages::{ApiKey, RequestHeader, ResponseHeader};
use proto_kafka::protocol::{Decodable, Encodable};

/// A request whose header has been decoded; the body is still raw bytes.
#[derive(Debug, Clone)]
pub struct RequestFrame {
    pub api_key: ApiKey,
    pub api_version: i16,
    pub correlation_id: i32,
    pub client_id: Option<String>,
    /// The request body after the header.
    pub body: Bytes,
}

/// Why a frame could not be decoded. Kafka closes the connection in every one of these
/// cases, and so does Ferry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than the fixed part of a request header.
    TooShort { frame_bytes: usize },
    /// An API key Kafka does not define.
    UnknownApiKey { api_key: i16, correlation_id: i32 },
    /// The header does not parse.
    MalformedHeader { api_key: ApiKey, reason: String },
    /// The body does not parse for its declared version.
    MalformedBody {
        api_key: ApiKey,
        api_version: i16,
        reason: String,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::TooShort { frame_bytes } => {
                write!(
                    f,
                    "request frame of {frame_bytes} bytes is shorter than a header"
                )
            }
            DecodeError::UnknownApiKey {
                api_key,
                correlation_id,
            } => {
                write!(
                    f,
                    "unknown API key {api_key} (correlation id {correlation_id})"
                )
            }
            DecodeError::MalformedHeader { api_key, reason } => {
                write!(f, "malformed {api_key:?} request header: {reason}")
            }
            DecodeError::MalformedBody {
                api_key,
                api_version,
                reason,
            } => {
                write!(
                    f,
                    "malformed {api_key:?} v{api_version} request body: {reason}"
                )
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// Bytes of api_key, api_version and correlation_id at the start of every header.
const FIXED_HEADER_BYTES: usize = 8;

/// Decodes the request header at the start of `frame` (the bytes after the size prefix).
pub fn decode_request_header(mut frame: Bytes) -> Result<RequestFrame, DecodeError> {
    if frame.len() < FIXED_HEADER_BYTES {
        return Err(DecodeError::TooShort {
            frame_bytes: frame.len(),
        });
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let api_version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api_key = ApiKey::try_from(raw_key).map_err(|()| DecodeError::UnknownApiKey {
        api_key: raw_key,
        correlation_id,
    })?;
    // Header v0 (no client id) was only used by ControlledShutdown v0, which Kafka 4 and
    // Ferry do not accept; every other request uses v1 or v2.
    let header_version = api_key.request_header_version(api_version).clamp(1, 2);
    let header = RequestHeader::decode(&mut frame, header_version).map_err(|e| {
        DecodeError::MalformedHeader {
            api_key,
            reason: e.to_string(),
        }
    })?;
    Ok(RequestFrame {
        api_key,
        api_version,
        correlation_id,
        client_id: header.client_id.map(|s| s.to_string()),
        body: frame,
    })
}

impl RequestFrame {
    /// Decodes the body as `T` at the frame's version.
    pub fn decode_body<T: Decodable>(&self) -> Result<T, DecodeError> {
        let mut body = self.body.clone();
        T::decode(&mut body, self.api_version).map_err(|e| DecodeError::MalformedBody {
            api_key: self.api_key,
            api_version: self.api_version,
            reason: e.to_string(),
        })
    }
}

/// A response that could not be encoded: a field set that its version cannot carry. This
/// is a Ferry bug; the connection is closed and the error logged.
#[derive(Debug, Clone)]
pub struct EncodeError {
    pub api_key: ApiKey,
    pub api_version: i16,
    pub reason: String,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot encode {:?} v{} response: {}",
            self.api_key, self.api_version, self.reason
        )
    }
}

impl std::error::Error for EncodeError {}

/// Encodes a complete response frame: size prefix, response header (v0 or v1 as the API
/// and version require; ApiVersions always uses v0) and body.
pub fn encode_response<T: Encodable>(
    api_key: ApiKey,
    api_version: i16,
    correlation_id: i32,
    body: &T,
) -> Result<Bytes, EncodeError> {
    let err = |e: proto_kafka::ProtoError| EncodeError {
        api_key,
        api_version,
        reason: e.to_string(),
    };
    let header_version = api_key.response_header_version(api_version);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let size = header.compute_size(header_version).map_err(err)?
        + body.compute_size(api_version).map_err(err)?;
    let mut buf = BytesMut::with_capacity(4 + size);
    buf.put_i32(i32::try_from(size).map_err(|_| EncodeError {
        api_key,
        api_version,
        reason: format!("response of {size} bytes exceeds the frame size limit"),
    })?);
    header.encode(&mut buf, header_version).map_err(err)?;
    body.encode(&mut buf, api_version).map_err(err)?;
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto_kafka::messages::metadata_request::MetadataRequestTopic;
    use proto_kafka::messages::{MetadataRequest, TopicName};
    use proto_kafka::protocol::StrBytes;

    fn request_bytes<T: Encodable>(key: ApiKey, version: i16, body: &T) -> Bytes {
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(7)
            .with_client_id(Some(StrBytes::from_static_str("test")));
        let mut buf = BytesMut::new();
        header
            .encode(&mut buf, key.request_header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    #[test]
    fn decodes_header_and_body() {
        let topic = MetadataRequestTopic::default()
            .with_name(Some(TopicName(StrBytes::from_static_str("orders"))));
        let req = MetadataRequest::default().with_topics(Some(vec![topic]));
        for version in [0, 4, 9, 12] {
            let frame =
                decode_request_header(request_bytes(ApiKey::Metadata, version, &req)).unwrap();
            assert_eq!(frame.correlation_id, 7);
            assert_eq!(frame.client_id.as_deref(), Some("test"));
            let body: MetadataRequest = frame.decode_body().unwrap();
            let topics = body.topics.unwrap();
            assert_eq!(topics[0].name.as_ref().unwrap().0.as_str(), "orders");
        }
    }

    #[test]
    fn hostile_array_length_is_an_error_not_an_abort() {
        // Metadata v1: header, then a topic count of i32::MAX and nothing else.
        let mut buf = BytesMut::new();
        buf.put_i16(ApiKey::Metadata as i16);
        buf.put_i16(1);
        buf.put_i32(1);
        buf.put_i16(-1);
        buf.put_i32(i32::MAX);
        let frame = decode_request_header(buf.freeze()).unwrap();
        let err = frame.decode_body::<MetadataRequest>().unwrap_err();
        assert!(matches!(err, DecodeError::MalformedBody { .. }));
    }

    #[test]
    fn unknown_keys_and_short_frames_are_rejected() {
        let mut buf = BytesMut::new();
        buf.put_i16(999);
        buf.put_i16(0);
        buf.put_i32(42);
        assert_eq!(
            decode_request_header(buf.freeze()).unwrap_err(),
            DecodeError::UnknownApiKey {
                api_key: 999,
                correlation_id: 42
            }
        );
        assert!(matches!(
            decode_request_header(Bytes::from_static(&[0, 3, 0])),
            Err(DecodeError::TooShort { frame_bytes: 3 })
        ));
    }
}
