#!/usr/bin/env python3
"""Cluster administration through confluent-kafka's AdminClient (issue 22).

1. describe_cluster: every broker and a controller.
2. create_partitions: TOPIC grows from 2 to 5 partitions; shrinking is
   refused with INVALID_PARTITIONS; a record produced to the new partition 4
   is read back.
3. Prints READY and waits for a line on stdin (the test restarts a node, so
   that some partitions are led elsewhere than their preferred replica).
4. elect_leaders(PREFERRED) over every partition: each answers success or
   ELECTION_NOT_NEEDED, and afterwards every partition is led by its first
   replica.

usage: cluster_admin.py BOOTSTRAP TOPIC BROKERS
"""
import sys
import time

from confluent_kafka import Consumer, ElectionType, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic


def fail(msg):
    print(f"cluster_admin: FAIL: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def leaders(admin, topic):
    md = admin.list_topics(topic, timeout=10).topics[topic]
    return {p: (m.leader, list(m.replicas)) for p, m in md.partitions.items()}


def main():
    bootstrap, topic, brokers = sys.argv[1], sys.argv[2], int(sys.argv[3])
    admin = AdminClient({"bootstrap.servers": bootstrap})

    cluster = admin.describe_cluster(request_timeout=10).result()
    if len(cluster.nodes) != brokers or cluster.controller is None:
        fail(f"describe_cluster: {cluster.nodes} controller {cluster.controller}")
    print(f"cluster {cluster.cluster_id}: {len(cluster.nodes)} brokers, controller {cluster.controller.id}", flush=True)

    admin.create_topics([NewTopic(topic, 2, 3)])[topic].result()
    admin.create_partitions([NewPartitions(topic, 5)])[topic].result()
    deadline = time.time() + 30
    while len(leaders(admin, topic)) != 5:
        if time.time() > deadline:
            fail(f"metadata still lists {leaders(admin, topic)}")
        time.sleep(0.2)
    try:
        admin.create_partitions([NewPartitions(topic, 3)])[topic].result()
        fail("shrinking a topic was accepted")
    except Exception as e:
        code = e.args[0].code() if e.args and hasattr(e.args[0], "code") else None
        if code != KafkaError.INVALID_PARTITIONS:
            fail(f"shrinking: {e!r}")

    p = Producer({"bootstrap.servers": bootstrap})
    p.produce(topic, value=b"in-a-new-partition", partition=4)
    if p.flush(30):
        fail("the record to partition 4 was not acknowledged")
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "admin-check", "auto.offset.reset": "earliest"})
    c.assign([TopicPartition(topic, 4, 0)])
    got = None
    deadline = time.time() + 30
    while got is None and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            got = m.value()
    c.close()
    if got != b"in-a-new-partition":
        fail(f"partition 4 read {got!r}")
    print("partitions added and used", flush=True)

    print("READY", flush=True)
    sys.stdin.readline()

    before = leaders(admin, topic)
    off = [p for p, (l, r) in before.items() if l != r[0]]
    print(f"led elsewhere than their preferred replica before: {sorted(off)}", flush=True)
    result = admin.elect_leaders(
        ElectionType.PREFERRED,
        [TopicPartition(topic, p) for p in range(5)],
    ).result(timeout=60)
    for tp, err in result.items():
        # The result maps each partition to None or a KafkaError.
        code = None if err is None else (err.code() if hasattr(err, "code") else err.args[0].code())
        if code is not None and code != KafkaError.ELECTION_NOT_NEEDED:
            fail(f"elect_leaders {tp.topic}-{tp.partition}: {err}")
    deadline = time.time() + 30
    while True:
        now = leaders(admin, topic)
        if all(l == r[0] for l, r in now.values()):
            break
        if time.time() > deadline:
            fail(f"not every partition is led by its preferred replica: {now}")
        time.sleep(0.2)
    print(f"elections: {len(result)} partitions answered; all led by their preferred replica", flush=True)


main()
