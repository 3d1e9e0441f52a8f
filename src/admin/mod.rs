//! Operator tools, separate from argument parsing: over the wire against any
//! Kafka-protocol cluster (Ferry or Apache Kafka) for `ferry groups`, and offline on a
//! data directory's files for `ferry log` (`log_files.rs`).

pub mod console;
pub mod groups;
pub mod log_files;
pub mod mirror;
pub mod render;
pub mod time;
pub mod topics;
pub mod users;
