//! Topic compression: with `compression.type` set to a codec, records produced in another
//! codec (or none) are stored in the topic's codec and come back to librdkafka consumers
//! identical (keys, values, headers, timestamps, offsets); `uncompressed` stores them plain.

use std::path::Path;

use ferry::storage::batch::{self, BatchIter, Compression};
use rdkafka::producer::FutureProducer;

use crate::records::{end_offsets, produce_all, read_all, test_record, RecordData};
use crate::support::Broker;

/// The codec of every batch in a partition's first segment.
fn stored_codecs(dir: &Path, topic: &str) -> Vec<Compression> {
    let bytes = std::fs::read(dir.join(format!("{topic}-0/00000000000000000000.log"))).unwrap();
    BatchIter::new(&bytes)
        .map(|item| {
            let (position, header) = item.unwrap();
            batch::validate(&bytes[position..]).unwrap();
            header.compression().unwrap()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_stored_in_the_topics_codec_and_read_back_identical() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &[]);
    for (topic_codec, sent_with, stored) in [
        ("zstd", "none", Compression::Zstd),
        ("gzip", "lz4", Compression::Gzip),
        ("snappy", "none", Compression::Snappy),
        ("lz4", "zstd", Compression::Lz4),
        ("uncompressed", "gzip", Compression::None),
        ("producer", "snappy", Compression::Snappy),
    ] {
        let topic = format!("codec-{topic_codec}");
        broker
            .create_topic(&topic, 1, &[("compression.type", topic_codec)])
            .await;
        let producer: FutureProducer = broker
            .client_config()
            .set("compression.codec", sent_with)
            .set("linger.ms", "5")
            .create()
            .unwrap();
        let sent: Vec<RecordData> = (0..200)
            .map(|seq| test_record(&topic, seq, 1_700_000_000_000))
            .collect();
        let acked = produce_all(&producer, &topic, &sent).await;
        let codecs = stored_codecs(dir.path(), &topic);
        assert!(!codecs.is_empty());
        assert!(
            codecs.iter().all(|c| *c == stored),
            "{topic} sent as {sent_with}: stored {codecs:?}"
        );
        assert!(
            read_all(&broker, &topic, &end_offsets(&acked)) == acked,
            "{topic}: every record comes back as produced"
        );
    }
    assert!(broker.stop().success());
}
