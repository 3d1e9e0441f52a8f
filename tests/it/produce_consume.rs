//! Produce and consume with librdkafka: keyed records with every compression codec, read
//! back byte for byte (keys, values, repeated and null headers, timestamps) at the offsets
//! the broker acknowledged, before and after a restart.

use std::collections::BTreeMap;

use rdkafka::producer::FutureProducer;

use crate::records::{
    assert_dense_and_ordered, end_offsets, partition_for_key, produce_all, read_all, test_record,
};
use crate::support::Broker;

const RECORDS_PER_CODEC: u64 = 100_000;
const PARTITIONS: i32 = 6;
const CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_records_with_every_codec_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &[]);
    let base_timestamp = 1_700_000_000_000;
    let mut produced = BTreeMap::new();
    for codec in CODECS {
        let topic = format!("codec-{codec}");
        broker.create_topic(&topic, PARTITIONS, &[]).await;
        let producer: FutureProducer = broker
            .client_config()
            .set("compression.type", codec)
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "5")
            .set("queue.buffering.max.messages", "1000000")
            .create()
            .unwrap();
        let records: Vec<_> = (0..RECORDS_PER_CODEC)
            .map(|seq| test_record(codec, seq, base_timestamp))
            .collect();
        let acked = produce_all(&producer, &topic, &records).await;
        assert_eq!(acked.len() as u64, RECORDS_PER_CODEC);
        assert_eq!(
            end_offsets(&acked).len() as i32,
            PARTITIONS,
            "every partition used"
        );
        for (&(partition, _), record) in &acked {
            let key = record.key.as_deref().unwrap();
            assert_eq!(
                partition,
                partition_for_key(key, PARTITIONS),
                "keyed record misplaced"
            );
        }
        assert_dense_and_ordered(&acked);
        let read = read_all(&broker, &topic, &end_offsets(&acked));
        assert!(
            read == acked,
            "{codec}: records read back differ from those acknowledged"
        );
        produced.insert(topic, acked);
    }
    assert!(broker.stop().success(), "clean shutdown");
    let broker = Broker::start(dir.path(), &[]);
    for (topic, acked) in &produced {
        let read = read_all(&broker, topic, &end_offsets(acked));
        assert!(read == *acked, "{topic}: records differ after restart");
    }
}
