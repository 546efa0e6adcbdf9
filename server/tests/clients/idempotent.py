#!/usr/bin/env python3
"""Idempotent producers through real clients: kafka-python 3 with its default
settings (idempotence on) and confluent-kafka with enable.idempotence=true
produce to a 3-partition topic; every value is read back exactly once.

usage: idempotent.py BOOTSTRAP TOPIC {kafka-python,confluent}
"""
import sys

N = 600
PARTITIONS = 3


def fail(msg):
    print(f"idempotent: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def main():
    bootstrap, topic, kind = sys.argv[1:4]
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=-1)])[topic].result(30)
    values = [f"{kind}-{i}".encode() for i in range(N)]
    if kind == "kafka-python":
        from kafka import KafkaProducer
        p = KafkaProducer(bootstrap_servers=bootstrap)  # defaults: enable_idempotence on
        futures = [p.send(topic, value=v, partition=i % PARTITIONS) for i, v in enumerate(values)]
        for f in futures:
            f.get(timeout=30)
        p.close()
    else:
        from confluent_kafka import Producer
        p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
        errors = []
        for i, v in enumerate(values):
            p.produce(topic, value=v, partition=i % PARTITIONS,
                      on_delivery=lambda e, _m: errors.append(e) if e else None)
        if p.flush(30) or errors:
            fail(f"undelivered: {errors[:3]}")
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{topic}-check", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, q, 0) for q in range(PARTITIONS)])
    got = []
    for _ in range(200):
        for m in c.consume(1000, 0.2):
            if m.error():
                fail(f"consume: {m.error()}")
            got.append(m.value())
        if len(got) >= N:
            break
    c.close()
    if sorted(got) != sorted(values):
        fail(f"read {len(got)} values ({len(set(got))} distinct), expected each of {N} once")
    print(f"idempotent: {kind}: ok")


if __name__ == "__main__":
    main()
