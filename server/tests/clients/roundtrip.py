#!/usr/bin/env python3
"""Produce and consume through a real Kafka client library against a broker.

usage: roundtrip.py BOOTSTRAP TOPIC {confluent,kafka-python} COUNT PARTITIONS

Creates TOPIC (PARTITIONS partitions) through the client's admin API, produces
COUNT messages with keys and headers round-robin over the partitions with
acks=all, then consumes every partition from the beginning with assign() (no
consumer group) and checks content, order per partition and the high
watermarks. Exits non-zero with a message on the first mismatch.
"""
import sys
import time


def fail(msg):
    print(f"roundtrip: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def expected(count, partitions):
    per = {p: [] for p in range(partitions)}
    for i in range(count):
        p = i % partitions
        per[p].append((f"key-{i}".encode(), f"value-{i}-{'x' * (i % 50)}".encode(), f"h{i}".encode()))
    return per


def with_retries(what, fn, deadline_s=30):
    deadline = time.time() + deadline_s
    while True:
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - retry any client error until the deadline
            if time.time() > deadline:
                fail(f"{what}: {e}")
            time.sleep(0.2)


def confluent(bootstrap, topic, count, partitions):
    from confluent_kafka import Consumer, Producer, TopicPartition, OFFSET_BEGINNING
    from confluent_kafka.admin import AdminClient, NewTopic

    from confluent_kafka.admin import ConfigResource, ResourceType

    admin = AdminClient({"bootstrap.servers": bootstrap})
    fs = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=-1,
                                       config={"retention.ms": "3600000"})])
    fs[topic].result(30)
    described = admin.describe_configs([ConfigResource(ResourceType.TOPIC, topic)])
    configs = list(described.values())[0].result(30)
    if configs.get("retention.ms") is None or configs["retention.ms"].value != "3600000":
        fail(f"describe_configs: {configs}")

    errors = []
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                         "message.timeout.ms": 30000})
    want = expected(count, partitions)
    for p in range(partitions):
        for key, value, h in want[p]:
            while True:
                try:
                    producer.produce(topic, value=value, key=key, partition=p, headers=[("h", h)],
                                     on_delivery=lambda err, msg: errors.append(err) if err else None)
                    break
                except BufferError:
                    producer.poll(0.1)
    left = producer.flush(60)
    if left or errors:
        fail(f"confluent produce: {left} undelivered, errors {errors[:3]}")

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "weir-roundtrip",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    for p in range(partitions):
        low, high = with_retries("watermarks", lambda: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5))
        if (low, high) != (0, len(want[p])):
            fail(f"partition {p}: watermarks {(low, high)}, want {(0, len(want[p]))}")
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    got = {p: [] for p in range(partitions)}
    deadline = time.time() + 60
    while sum(len(v) for v in got.values()) < count:
        if time.time() > deadline:
            fail(f"consumed {sum(len(v) for v in got.values())} of {count}")
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            fail(f"consume error {msg.error()}")
        if msg.offset() != len(got[msg.partition()]):
            fail(f"partition {msg.partition()}: offset {msg.offset()} out of order")
        got[msg.partition()].append((msg.key(), msg.value(), dict(msg.headers() or []).get("h")))

    # Offsets for times inside one batch: ten records 10 ms apart, lingered into
    # one batch; the first at or after base+55 is the seventh (offset 6).
    times = f"{topic}-times"
    base = 1_700_000_000_000
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 200,
                         "message.timeout.ms": 30000})
    for i in range(10):
        with_retries("produce with a timestamp",
                     lambda: producer.produce(times, value=b"t%d" % i, partition=0, timestamp=base + i * 10))
    if producer.flush(60):
        fail("timestamped records undelivered")
    found = with_retries("offsets_for_times", lambda: consumer.offsets_for_times(
        [TopicPartition(times, 0, base + 55)], timeout=10))
    if found[0].offset != 6:
        fail(f"offsets_for_times(base+55): offset {found[0].offset}, want 6 (the record, not its batch)")
    consumer.close()
    return want, got


def kafka_python(bootstrap, topic, count, partitions):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = with_retries("admin", lambda: KafkaAdminClient(bootstrap_servers=bootstrap))
    admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)], timeout_ms=30000)
    admin.close()

    # weir does not offer idempotent producers (InitProducerId) yet; kafka-python 3
    # turns them on by default.
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, retries=10,
                             enable_idempotence=False)
    want = expected(count, partitions)
    futures = []
    for p in range(partitions):
        for key, value, h in want[p]:
            futures.append(producer.send(topic, value=value, key=key, partition=p, headers=[("h", h)]))
    producer.flush(60)
    for f in futures:
        f.get(timeout=30)
    producer.close()

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             auto_offset_reset="earliest", consumer_timeout_ms=2000)
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    ends = consumer.end_offsets(tps)
    for tp in tps:
        if ends[tp] != len(want[tp.partition]):
            fail(f"partition {tp.partition}: end offset {ends[tp]}, want {len(want[tp.partition])}")
    got = {p: [] for p in range(partitions)}
    deadline = time.time() + 60
    while sum(len(v) for v in got.values()) < count and time.time() < deadline:
        for tp, msgs in consumer.poll(timeout_ms=500).items():
            for m in msgs:
                if m.offset != len(got[tp.partition]):
                    fail(f"partition {tp.partition}: offset {m.offset} out of order")
                got[tp.partition].append((m.key, m.value, dict(m.headers or []).get("h")))
    consumer.close()
    return want, got


def main():
    bootstrap, topic, client, count, partitions = sys.argv[1:6]
    count, partitions = int(count), int(partitions)
    run = {"confluent": confluent, "kafka-python": kafka_python}[client]
    want, got = run(bootstrap, topic, count, partitions)
    for p in range(partitions):
        if got[p] != want[p]:
            first = next((i for i, (a, b) in enumerate(zip(got[p], want[p])) if a != b), min(len(got[p]), len(want[p])))
            fail(f"{client} partition {p}: {len(got[p])} messages, first difference at {first}")
    print(f"roundtrip: {client}: {count} messages over {partitions} partitions ok")


if __name__ == "__main__":
    main()
