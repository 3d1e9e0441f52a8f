//! Integration tests: the real `ferry` binary with real clients (librdkafka through the
//! `rdkafka` crate, kafka-python, raw sockets for hostile input).

#[cfg(feature = "bench")]
mod bench;
mod compaction;
mod compression;
mod connections;
mod console_cli;
mod consumer_process;
mod crash;
mod disk_full;
mod eos_pipeline;
mod groups;
mod groups_cli;
mod hostile_frames;
mod idempotence;
mod kafka_python;
mod latency_report;
mod librdkafka_suite;
mod log_cli;
mod metrics;
mod mirror;
mod mirror_hostile;
mod produce_consume;
mod records;
mod recovery;
mod responses;
mod restart;
mod restart_model;
mod retention;
mod security;
mod security_config;
mod support;
mod topics_cli;
mod transactions;
