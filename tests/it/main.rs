//! Integration tests: the real `ferry` binary with real clients (librdkafka through the
//! `rdkafka` crate, kafka-python, raw sockets for hostile input).

mod crash;
mod hostile_frames;
mod produce_consume;
mod records;
mod recovery;
mod support;
