//! Ferry's own admin API: the control plane of `ferry mirror`, carried in Kafka's framing
//! on the Kafka listener so that it needs no second port and, once Ferry has SASL and
//! ACLs, is authenticated and authorised like every Kafka admin request.
//!
//! Request: the size-prefixed frame holds a Kafka request header v1 with API key
//! [`API_KEY`] (outside Kafka's range, which ends below 100) and version 0, then one JSON
//! document in UTF-8 (the rest of the frame). Response: the size prefix, the correlation
//! id (response header v0), then one JSON document. Ferry does not list the key in
//! ApiVersions, so Kafka clients never see it; a Kafka broker closes the connection on
//! it, which the `ferry mirror` tools report as "not a Ferry broker".
//!
//! Why JSON and not a Kafka message schema: the operations are few, carry nested
//! descriptions (links, topics, partitions, groups) and change as the mirror grows; the
//! version field gates incompatible changes, and every field is read with a default so an
//! older tool and a newer broker still talk.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The API key of Ferry's admin requests.
pub const API_KEY: i16 = 20_000;
/// The one version defined so far.
pub const VERSION: i16 = 0;

/// A decoded admin request.
#[derive(Debug)]
pub struct AdminRequest {
    pub version: i16,
    pub correlation_id: i32,
    pub body: Bytes,
}

/// Why an admin frame could not be decoded.
#[derive(Debug, PartialEq, Eq)]
pub struct MalformedAdminFrame(pub &'static str);

impl std::fmt::Display for MalformedAdminFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed Ferry admin request: {}", self.0)
    }
}

/// Decodes a request frame (the bytes after the size prefix).
pub fn decode_request(mut frame: Bytes) -> Result<AdminRequest, MalformedAdminFrame> {
    if frame.len() < 10 {
        return Err(MalformedAdminFrame("shorter than a request header"));
    }
    let api_key = frame.get_i16();
    if api_key != API_KEY {
        return Err(MalformedAdminFrame("not the Ferry admin API key"));
    }
    let version = frame.get_i16();
    let correlation_id = frame.get_i32();
    let client_id_bytes = frame.get_i16();
    if client_id_bytes > 0 {
        let skip = usize::try_from(client_id_bytes).unwrap_or(0);
        if frame.len() < skip {
            return Err(MalformedAdminFrame("the client id runs past the frame"));
        }
        frame.advance(skip);
    }
    Ok(AdminRequest {
        version,
        correlation_id,
        body: frame,
    })
}

/// A request frame with its size prefix.
pub fn encode_request(correlation_id: i32, client_id: &str, body: &[u8]) -> BytesMut {
    let client_id = &client_id.as_bytes()[..client_id.len().min(i16::MAX as usize)];
    let size = 2 + 2 + 4 + 2 + client_id.len() + body.len();
    let mut frame = BytesMut::with_capacity(4 + size);
    frame.put_i32(i32::try_from(size).unwrap_or(i32::MAX));
    frame.put_i16(API_KEY);
    frame.put_i16(VERSION);
    frame.put_i32(correlation_id);
    frame.put_i16(client_id.len() as i16);
    frame.put_slice(client_id);
    frame.put_slice(body);
    frame
}

/// A response frame with its size prefix.
pub fn encode_response(correlation_id: i32, body: &[u8]) -> Bytes {
    let mut frame = BytesMut::with_capacity(8 + body.len());
    frame.put_i32(i32::try_from(4 + body.len()).unwrap_or(i32::MAX));
    frame.put_i32(correlation_id);
    frame.put_slice(body);
    frame.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_short_frames_are_errors() {
        let mut frame = encode_request(7, "ferry-mirror", br#"{"op":"status"}"#);
        let size = frame.get_i32();
        assert_eq!(size as usize, frame.len());
        let request = decode_request(frame.freeze()).unwrap();
        assert_eq!((request.version, request.correlation_id), (VERSION, 7));
        assert_eq!(&request.body[..], br#"{"op":"status"}"#);
        assert!(decode_request(Bytes::from_static(&[0x4e, 0x20, 0, 0])).is_err());
        let mut lying = BytesMut::new();
        lying.put_i16(API_KEY);
        lying.put_i16(0);
        lying.put_i32(1);
        lying.put_i16(500);
        assert!(decode_request(lying.freeze()).is_err());
    }
}
