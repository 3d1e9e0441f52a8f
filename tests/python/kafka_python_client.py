"""An independent client against Ferry: kafka-python creates a topic, produces keyed
records with headers, consumes them back through a consumer group, commits, and reads
the committed offsets back. Prints one line per check; exits non-zero on any failure.

Usage: python3 kafka_python_client.py BOOTSTRAP TOPIC GROUP
"""
import sys
import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

RECORDS = 300
PARTITIONS = 3


def main(bootstrap, topic, group):
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="ferry-it-admin")
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    assert topic in admin.list_topics(), "created topic is listed"
    print("admin: created", topic)

    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        compression_type="gzip",
        acks="all",
    )
    sent = {}
    for i in range(RECORDS):
        key = ("k%d" % (i % 17)).encode()
        value = ("v%05d" % i).encode()
        headers = [("seq", str(i).encode()), ("dup", b"a"), ("dup", b"b")]
        meta = producer.send(topic, key=key, value=value, headers=headers,
                             timestamp_ms=1_600_000_000_000 + i).get(timeout=30)
        sent[(meta.partition, meta.offset)] = (key, value, headers, 1_600_000_000_000 + i)
    producer.flush()
    producer.close()
    print("producer: %d records acknowledged" % len(sent))

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=20000,
    )
    received = {}
    deadline = time.time() + 60
    while len(received) < RECORDS and time.time() < deadline:
        for message in consumer:
            received[(message.partition, message.offset)] = (
                message.key, message.value, list(message.headers), message.timestamp)
            if len(received) == RECORDS:
                break
    assert received == sent, "every record comes back intact at its offset (%d of %d)" % (
        len(received), RECORDS)
    print("consumer: %d records match" % len(received))
    consumer.commit()
    ends = {}
    for partition, offset in sent:
        ends[partition] = max(ends.get(partition, 0), offset + 1)
    offsets = admin.list_group_offsets({group: None})[group]
    committed = {tp.partition: meta.offset for tp, meta in offsets.items()}
    assert committed == ends, "committed offsets %r == log ends %r" % (committed, ends)
    consumer.close()
    print("group: committed offsets", committed)
    listed = admin.list_groups()
    groups = [g.get("group_id") if isinstance(g, dict) else g[0] for g in listed]
    assert group in groups, "group is listed"
    print("OK")


if __name__ == "__main__":
    main(*sys.argv[1:4])
