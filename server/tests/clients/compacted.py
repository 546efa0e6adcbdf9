"""A compacted topic read from the start by real clients (issue 20 item 3):
confluent-kafka producers write keyed records in every codec (gzip, snappy,
lz4, zstd) and kafka-python's snappy in its xerial framing, old tombstones delete some
keys; once the brokers' cleaners ran, confluent-kafka's and kafka-python's
consumers read the topic from the start: offsets only grow (stepping over the
gaps), every record read is the one produced at its offset, every key's last
value is its latest, deleted keys are gone, and far fewer records remain.

    python3 compacted.py BOOTSTRAP TOPIC REPLICATION
"""

import os
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KTopicPartition

KEYS = 40
PER_CODEC = 1500


def produce_all(bootstrap, topic):
    """Produces keyed records; returns {offset: (key, value)}."""
    produced = {}

    def delivered(err, msg):
        assert err is None, err
        produced[msg.offset()] = (msg.key(), msg.value())

    now_ms = int(time.time() * 1000)
    for codec in ["gzip", "snappy", "lz4", "zstd"]:
        p = Producer({"bootstrap.servers": bootstrap, "compression.type": codec,
                      "linger.ms": 20, "enable.idempotence": True})
        for i in range(PER_CODEC):
            key = b"k%d" % (i % KEYS)
            p.produce(topic, key=key, value=os.urandom(150) + codec.encode(),
                      partition=0, on_delivery=delivered)
            if i % 500 == 0:
                p.poll(0)
        # Tombstones ten minutes old for keys 0..4: past delete.retention.ms.
        for k in range(5):
            p.produce(topic, key=b"k%d" % k, value=None, partition=0,
                      timestamp=now_ms - 600_000, on_delivery=delivered)
        assert p.flush(30) == 0
    # kafka-python's producer (snappy in its xerial framing), then a
    # last record so that the log does not end with a tombstone.
    kp = KafkaProducer(bootstrap_servers=bootstrap, compression_type="snappy",
                       linger_ms=20)
    futures = []
    for i in range(300):
        key = b"k%d" % (10 + i % 10)
        value = os.urandom(150) + b"kafka-python"
        futures.append((key, value, kp.send(topic, key=key, value=value, partition=0)))
    futures.append((b"k39", b"last", kp.send(topic, key=b"k39", value=b"last", partition=0)))
    for key, value, f in futures:
        produced[f.get(timeout=30).offset] = (key, value)
    kp.close()
    return produced


def read_confluent(bootstrap, topic, end):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": topic + "-check",
                  "enable.auto.commit": False, "enable.partition.eof": True})
    c.assign([TopicPartition(topic, 0, 0)])
    got = []
    deadline = time.time() + 30
    while time.time() < deadline:
        m = c.poll(0.2)
        if m is None:
            continue
        if m.error():
            if m.error().code() == -191:  # _PARTITION_EOF
                if not got or got[-1][0] >= end - 1:
                    break
                continue
            raise AssertionError(m.error())
        got.append((m.offset(), m.key(), m.value()))
    c.close()
    return got


def read_kafka_python(bootstrap, topic, end):
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                      consumer_timeout_ms=5000)
    tp = KTopicPartition(topic, 0)
    c.assign([tp])
    c.seek_to_beginning(tp)
    got = []
    for m in c:
        got.append((m.offset, m.key, m.value))
        if m.offset >= end - 1:
            break
    c.close()
    return got


def check(name, got, produced, end):
    offsets = [o for o, _, _ in got]
    assert offsets, f"{name}: read nothing"
    assert offsets == sorted(set(offsets)), f"{name}: offsets do not only grow"
    assert offsets[-1] == end - 1, f"{name}: read up to {offsets[-1]}, not {end - 1}"
    for o, k, v in got:
        assert produced.get(o) == (k, v), f"{name}: offset {o} reads {k!r}, not what was produced there"
    latest = {}
    for o in sorted(produced):
        latest[produced[o][0]] = (o, produced[o][1])
    last = {}
    for o, k, v in got:
        last[k] = (o, v)
    for k, (o, v) in latest.items():
        if k in last:
            assert last[k][0] == o, f"{name}: key {k!r} ends at offset {last[k][0]}, not its latest {o}"
        else:
            assert v is None, f"{name}: key {k!r} is gone but its latest record is not a tombstone"


def main():
    bootstrap, topic, rf = sys.argv[1], sys.argv[2], int(sys.argv[3])
    admin = AdminClient({"bootstrap.servers": bootstrap})
    configs = {"cleanup.policy": "compact", "segment.bytes": "65536",
               "min.cleanable.dirty.ratio": "0", "delete.retention.ms": "1000"}
    for f in admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=rf,
                                           config=configs)], operation_timeout=10).values():
        f.result()
    produced = produce_all(bootstrap, topic)
    end = max(produced) + 1
    assert end == len(produced), f"{len(produced)} records at offsets up to {end - 1}"

    # The cleaners run every few hundred milliseconds: wait until a read
    # from the start shows the log cleaned (the segment being written stays).
    deadline = time.time() + 60
    while True:
        got = read_confluent(bootstrap, topic, end)
        if len(got) < end // 4 or time.time() > deadline:
            break
        time.sleep(0.5)
    assert len(got) < end // 4, f"{len(got)} of {end} records left: the topic was not cleaned"
    check("confluent-kafka", got, produced, end)
    check("kafka-python", read_kafka_python(bootstrap, topic, end), produced, end)
    # A record without a key is refused (INVALID_RECORD), as Kafka does.
    p = Producer({"bootstrap.servers": bootstrap, "retries": 0})
    errors = []
    p.produce(topic, value=b"no key", partition=0,
              on_delivery=lambda err, msg: errors.append(err))
    p.flush(10)
    assert errors and errors[0] is not None and errors[0].name() == "INVALID_RECORD", errors
    print(f"compacted: {end} produced, {len(got)} read after cleaning")


if __name__ == "__main__":
    main()
