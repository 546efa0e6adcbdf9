"""Deleting records and retention configs from real clients (issue 20 items 1
and 2): confluent-kafka's AdminClient deletes records and alters a topic's
retention incrementally; a consumer group whose committed offset was deleted
gets OFFSET_OUT_OF_RANGE and resets to the earliest offset (auto.offset.reset);
kafka-python's admin deletes more, and its consumer, positioned below the new
start, resets too.

    python3 retention.py BOOTSTRAP TOPIC REPLICATION
"""

import sys

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry,
                                   ConfigResource, NewTopic)
from kafka import KafkaConsumer
from kafka import TopicPartition as KTopicPartition
from kafka.admin import KafkaAdminClient


def consume_all(consumer, expect, timeout_s=30):
    """Offsets of the first `expect` messages polled."""
    got = []
    polls = 0
    while len(got) < expect and polls < timeout_s * 10:
        polls += 1
        m = consumer.poll(0.1)
        if m is None:
            continue
        assert m.error() is None, m.error()
        got.append(m.offset())
    return got


def main():
    bootstrap, topic, rf = sys.argv[1], sys.argv[2], int(sys.argv[3])
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=rf)],
                                 operation_timeout=10).values():
        f.result()
    p = Producer({"bootstrap.servers": bootstrap})
    for i in range(20):
        p.produce(topic, value=b"v%d" % i, partition=0)
    assert p.flush(10) == 0

    # The group's committed offset (2) is about to be deleted.
    group = topic + "-g"
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "enable.auto.commit": False})
    c.commit(offsets=[TopicPartition(topic, 0, 2)], asynchronous=False)
    c.close()

    res = admin.delete_records([TopicPartition(topic, 0, 10)])
    low = list(res.values())[0].result(timeout=10)
    assert low.low_watermark == 10, f"low watermark after delete_records: {low.low_watermark}"

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    got = consume_all(c, 10)
    c.close()
    assert got == list(range(10, 20)), f"after the reset: {got}"

    r = ConfigResource("topic", topic, incremental_configs=[
        ConfigEntry("retention.ms", "3600000",
                    incremental_operation=AlterConfigOpType.SET)])
    for f in admin.incremental_alter_configs([r]).values():
        f.result(timeout=10)
    configs = list(admin.describe_configs([ConfigResource("topic", topic)])
                   .values())[0].result(timeout=10)
    ms = configs["retention.ms"]
    assert ms.value == "3600000" and not ms.is_default, ms

    # kafka-python: delete up to 15, then a consumer positioned at 12 resets.
    kadmin = KafkaAdminClient(bootstrap_servers=bootstrap)
    out = kadmin.delete_records({KTopicPartition(topic, 0): 15})
    assert out[KTopicPartition(topic, 0)]["low_watermark"] == 15, out
    kadmin.close()
    kc = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                       enable_auto_commit=False, consumer_timeout_ms=10000)
    tp = KTopicPartition(topic, 0)
    kc.assign([tp])
    assert kc.beginning_offsets([tp])[tp] == 15
    kc.seek(tp, 12)
    offsets = [m.offset for _, m in zip(range(5), kc)]
    kc.close()
    assert offsets == [15, 16, 17, 18, 19], f"kafka-python after the reset: {offsets}"
    print("ok: reset to 10 and to 15")


if __name__ == "__main__":
    main()
