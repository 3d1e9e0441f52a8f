"""kafka-python as an idempotent and a transactional producer against Ferry: committed
records are visible to a read_committed consumer, aborted ones never.

Usage: python3 kafka_python_transactions.py BOOTSTRAP TOPIC
"""
import sys

from kafka import KafkaConsumer, KafkaProducer, TopicPartition


def main(bootstrap, topic):
    idempotent = KafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
    for i in range(50):
        idempotent.send(topic, value=b"idem-%d" % i, partition=0)
    idempotent.flush()
    idempotent.close()
    print("idempotent: 50 records")

    txn = KafkaProducer(bootstrap_servers=bootstrap, transactional_id="kafka-python-txn")
    txn.init_transactions()
    txn.begin_transaction()
    for i in range(10):
        txn.send(topic, value=b"committed-%d" % i, partition=0)
    txn.commit_transaction()
    txn.begin_transaction()
    for i in range(10):
        txn.send(topic, value=b"aborted-%d" % i, partition=0)
    txn.flush()
    txn.abort_transaction()
    txn.close()
    print("transactional: one commit, one abort")

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed",
                             auto_offset_reset="earliest", consumer_timeout_ms=5000)
    consumer.assign([TopicPartition(topic, 0)])
    values = [m.value for m in consumer]
    consumer.close()
    expected = [b"idem-%d" % i for i in range(50)] + [b"committed-%d" % i for i in range(10)]
    assert values == expected, "read_committed saw %r" % values[:80]
    print("read_committed: %d records, none aborted" % len(values))
    print("OK")


if __name__ == "__main__":
    main(*sys.argv[1:3])
