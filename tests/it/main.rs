//! Integration tests: the real `ferry` binary with real clients (librdkafka through the
//! `rdkafka` crate, kafka-python, raw sockets for hostile input).

mod crash;
mod hostile_frames;
mod kafka_python;
mod librdkafka_suite;
mod produce_consume;
mod records;
mod recovery;
mod support;
