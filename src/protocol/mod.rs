//! The Kafka wire codec: request framing and headers, response encoding, and the table of
//! API versions Ferry implements. Message bodies are (de)serialised by the `proto-kafka`
//! crate; see `codec.rs` for why that crate and how its decoders are guarded.

pub mod codec;
pub mod ferry_admin;
pub mod fetch_encoder;
pub mod frame;
pub mod versions;

pub use codec::{decode_request_header, encode_response, DecodeError, RequestFrame};
