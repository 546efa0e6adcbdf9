#!/usr/bin/env python3
"""Moving a partition's replicas with kafka-python 3's admin client (issue 22).

TOPIC (one partition, three replicas, on a cluster of four brokers) moves to
the broker that holds no replica plus two of its replicas, the new one first
(preferred), through alter_partition_reassignments, while a producer
(acks=all) keeps writing. list_partition_reassignments shows the move until
it is done; afterwards the partition's replicas are the target and every
acknowledged value is read back. Prints `TARGET a,b,c` for the test.

usage: reassign.py BOOTSTRAP TOPIC
"""
import sys
import threading
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient


def fail(msg):
    print(f"reassign: FAIL: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def replicas(admin, topic):
    # Metadata v1+ as kafka-python 3 decodes it (field names of the protocol).
    for t in admin.describe_topics([topic]):
        for p in t["partitions"]:
            if p.get("partition_index", p.get("partition")) == 0:
                return list(p.get("replica_nodes", p.get("replicas")))
    return None


def main():
    bootstrap, topic = sys.argv[1], sys.argv[2]
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    brokers = sorted(b.get("broker_id", b.get("node_id")) for b in admin.describe_cluster()["brokers"])
    first = replicas(admin, topic)
    if not first or len(first) != 3 or len(brokers) != 4:
        fail(f"replicas {first}, brokers {brokers}")
    outsider = next(b for b in brokers if b not in first)
    target = [outsider, first[1], first[2]]
    print(f"TARGET {','.join(map(str, target))}", flush=True)

    acked, failed = set(), []
    stop = threading.Event()

    def produce():
        p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
        i = 0
        while not stop.is_set():
            v = f"r{i}".encode()
            i += 1
            p.send(topic, v, partition=0).add_callback(
                lambda _md, v=v: acked.add(v)
            ).add_errback(lambda e, v=v: failed.append((v, repr(e))))
            time.sleep(0.002)
        p.flush(60)
        p.close()

    producer = threading.Thread(target=produce)
    producer.start()
    time.sleep(1)
    result = admin.alter_partition_reassignments({TopicPartition(topic, 0): target})
    err = result.get(TopicPartition(topic, 0))
    if err is not None:
        fail(f"alter_partition_reassignments: {err}")
    seen_ongoing = False
    deadline = time.time() + 60
    while True:
        ongoing = admin.list_partition_reassignments()
        if TopicPartition(topic, 0) in ongoing:
            seen_ongoing = True
        elif replicas(admin, topic) == target:
            break
        if time.time() > deadline:
            fail(f"the move did not finish: {ongoing}, replicas {replicas(admin, topic)}")
        time.sleep(0.1)
    time.sleep(1)
    stop.set()
    producer.join()
    if failed:
        fail(f"{len(failed)} sends failed, e.g. {failed[:3]}")
    c = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=5000)
    c.assign([TopicPartition(topic, 0)])
    c.seek_to_beginning()
    seen = {m.value for m in c}
    c.close()
    missing = acked - seen
    if missing:
        fail(f"{len(missing)} acknowledged values missing after the move")
    print(
        f"moved {first} -> {target} (listed while under way: {seen_ongoing}); "
        f"{len(acked)} values acknowledged during and around it, all read back",
        flush=True,
    )


main()
