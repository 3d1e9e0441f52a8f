//! Operator tools that work over the wire against any Kafka-protocol cluster (Ferry or
//! Apache Kafka): the logic behind `ferry groups`, separate from argument parsing.

pub mod groups;
pub mod render;
pub mod time;
