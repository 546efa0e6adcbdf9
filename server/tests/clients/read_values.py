#!/usr/bin/env python3
"""Read partition 0 of a topic from the beginning with a real client.

usage: read_values.py BOOTSTRAP TOPIC {confluent,kafka-python}

Consumes with assign() (no consumer group) until the partition's end offset,
printing one line per record: OFFSET VALUE. Exits non-zero with a message when
the end is not reached within 30 s or the client reports an error.
"""
import sys
import time


def fail(msg):
    print(f"read_values: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def confluent(bootstrap, topic):
    from confluent_kafka import Consumer, TopicPartition, OFFSET_BEGINNING

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "weir-read-values",
                         "enable.auto.commit": False})
    _, end = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    out = []
    deadline = time.time() + 30
    while (not out or out[-1][0] < end - 1) and time.time() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            fail(f"consume error {msg.error()}")
        out.append((msg.offset(), msg.value().decode()))
    consumer.close()
    return end, out


def kafka_python(bootstrap, topic):
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    end = consumer.end_offsets([tp])[tp]
    out = []
    deadline = time.time() + 30
    while (not out or out[-1][0] < end - 1) and time.time() < deadline:
        for _, msgs in consumer.poll(timeout_ms=500).items():
            out.extend((m.offset, m.value.decode()) for m in msgs)
    consumer.close()
    return end, out


def main():
    bootstrap, topic, client = sys.argv[1:4]
    end, out = {"confluent": confluent, "kafka-python": kafka_python}[client](bootstrap, topic)
    if not out or out[-1][0] != end - 1:
        fail(f"{client}: read {len(out)} records, the end offset is {end}")
    for offset, value in out:
        print(offset, value)


if __name__ == "__main__":
    main()
