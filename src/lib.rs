//! Ferry: a Kafka-compatible streaming broker.
//!
//! Layers, each with one owner (see ARCHITECTURE.md for the full code map):
//! * [`network`]: sockets, framing, per-connection pipelining, shutdown.
//! * [`protocol`]: the Kafka wire codec and the table of supported API versions.
//! * [`broker`]: request handlers (one per API), partitions, topics, the flusher.
//! * [`coordinator`]: the group coordinator (and later transactions), testable without sockets.
//! * [`storage`]: the segmented on-disk log, recovery, checkpoints, data directory.
//! * [`config`]: Kafka-style configuration and topic configs.
//! * [`server`]: composition root wiring the layers together.
//! * [`client`]: a small Kafka protocol client for Ferry's own tools.
//! * [`admin`]: operator tools over the wire (`ferry groups`).
//! * [`mirror`]: migration: links to source clusters, mirror topics at the source's
//!   offsets, group offsets carried over, promotion (`ferry mirror`).
//! * [`metrics`]: the Prometheus endpoint (`--metrics-listen`), reading the layers' counters.
//! * [`logging`]: client text escaped and connection warnings limited per peer in the log.
//! * [`properties`]: Java `.properties` text used by configs and metadata files.
//! * [`sync`]: locks that survive a panic in one holder, so one bug cannot cascade.
//! * `bench` (feature `bench`): the benchmark harness behind `ferry bench`.

pub mod admin;
#[cfg(feature = "bench")]
pub mod bench;
pub mod broker;
pub mod client;
pub mod config;
pub mod coordinator;
pub mod logging;
pub mod metrics;
pub mod mirror;
pub mod network;
pub mod properties;
pub mod protocol;
pub mod security;
pub mod server;
pub mod storage;
pub mod sync;
