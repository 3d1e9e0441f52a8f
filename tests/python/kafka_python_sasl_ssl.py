"""kafka-python over SASL_SSL with SCRAM-SHA-512: produce three records and read them back.

Usage: kafka_python_sasl_ssl.py BOOTSTRAP CA_PEM USER PASSWORD; prints OK on success.
"""

import sys

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

bootstrap, ca, user, password = sys.argv[1:5]
security = dict(
    bootstrap_servers=bootstrap,
    security_protocol="SASL_SSL",
    ssl_cafile=ca,
    sasl_mechanism="SCRAM-SHA-512",
    sasl_plain_username=user,
    sasl_plain_password=password,
)
topic = "python-sasl-ssl"
producer = KafkaProducer(**security)
sent = [producer.send(topic, key=b"k", value=f"v{i}".encode()).get(timeout=30) for i in range(3)]
producer.close()
partition = TopicPartition(topic, sent[0].partition)
consumer = KafkaConsumer(consumer_timeout_ms=10000, **security)
consumer.assign([partition])
consumer.seek(partition, sent[0].offset)
values = []
for message in consumer:
    values.append(message.value.decode())
    if len(values) == 3:
        break
consumer.close()
assert values == ["v0", "v1", "v2"], values
print("OK")
