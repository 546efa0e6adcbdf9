#!/usr/bin/env python3
"""Racks as clients see them (issue 22 item 4), through confluent-kafka's
AdminClient and kafka-python's.

1. describe_cluster (confluent-kafka and kafka-python) reports each broker's
   rack as RACKS gives it, and DescribeConfigs of broker 1 its broker.rack.
2. A topic of 8 partitions replicated 2 ways gets, for every partition,
   replicas in two different racks, and preferred leaders spread evenly
   (2 per broker over 4 brokers).

usage: racks.py BOOTSTRAP ID=RACK[,ID=RACK...]
"""
import collections
import sys
import time

from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic
from kafka import KafkaAdminClient


def fail(msg):
    print(f"racks: FAIL: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def main():
    bootstrap = sys.argv[1]
    want = {int(i): r for i, r in (x.split("=") for x in sys.argv[2].split(","))}
    admin = AdminClient({"bootstrap.servers": bootstrap})
    cluster = admin.describe_cluster(request_timeout=10).result()
    seen = {n.id: n.rack for n in cluster.nodes}
    if seen != want:
        fail(f"describe_cluster racks {seen}, expected {want}")
    kadmin = KafkaAdminClient(bootstrap_servers=bootstrap)
    described = kadmin.describe_cluster()
    seen = {b["broker_id"]: b["rack"] for b in described["brokers"]}
    if seen != want:
        fail(f"kafka-python describe_cluster racks {seen}, expected {want}")
    kadmin.close()
    res = ConfigResource(ConfigResource.Type.BROKER, "1")
    configs = admin.describe_configs([res])[res].result()
    if configs["broker.rack"].value != want[1]:
        fail(f"broker 1's broker.rack is {configs['broker.rack'].value!r}")
    print(f"racks reported: {seen}", flush=True)

    admin.create_topics([NewTopic("racked", 8, 2)])["racked"].result()
    deadline = time.time() + 30
    while True:
        md = admin.list_topics("racked", timeout=10).topics["racked"]
        if len(md.partitions) == 8 and all(p.leader >= 0 for p in md.partitions.values()):
            break
        if time.time() > deadline:
            fail(f"the topic's partitions have no leaders: {md.partitions}")
        time.sleep(0.2)
    leaders = collections.Counter()
    for p, m in sorted(md.partitions.items()):
        racks = {want[r] for r in m.replicas}
        if len(racks) != 2:
            fail(f"partition {p}: replicas {list(m.replicas)} are in racks {racks}")
        leaders[m.replicas[0]] += 1
    if sorted(leaders.values()) != [2, 2, 2, 2]:
        fail(f"preferred leaders per broker: {dict(leaders)}")
    print(f"every partition spans both racks; preferred leaders {dict(leaders)}", flush=True)


main()
