#!/usr/bin/env python3
"""Rebalance time with a real client (confluent-kafka / librdkafka), classic
protocol vs the consumer group protocol (KIP-848).

usage: bench/rebalance.py BOOTSTRAP [ROUNDS] [classic|classic-hb300|consumer ...]

Per round: three members of a new group subscribe to a 12-partition topic and
poll on their own threads until each holds 4 partitions; after a pause that
varies from round to round (so the join lands at different points of the
others' heartbeat cycle), a fourth member subscribes, and the time from its
subscribe() until every member holds 3 partitions and together all 12 (every
partition consumed again) is one sample. Client settings are librdkafka's
defaults (classic: range/roundrobin assignors, 3 s heartbeats; consumer: the
broker's interval); `classic-hb300` is the classic protocol with
`heartbeat.interval.ms=300` (members learn of a rebalance from their next
heartbeat, so that interval is what bounds it). Prints the median, min and max per protocol, and JSON
lines with the samples.
"""
import json
import statistics
import sys
import threading
import time

from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic

PARTITIONS = 12


def member(bootstrap, topic, group, protocol, owned, i, stop):
    conf = {"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "latest"}
    if protocol == "consumer":
        conf["group.protocol"] = "consumer"
    elif protocol == "classic-hb300":
        conf["heartbeat.interval.ms"] = 300
    c = Consumer(conf)
    c.subscribe([topic])
    while not stop[0]:
        c.poll(0.01)
        owned[i] = sorted(tp.partition for tp in c.assignment())
    c.close()


def settled(owned, n):
    if len(owned) != n or any(o is None for o in owned):
        return False
    every = sorted(p for o in owned for p in o)
    return every == list(range(PARTITIONS)) and all(len(o) == PARTITIONS // n for o in owned)


def wait(cond, secs=120):
    deadline = time.time() + secs
    while not cond():
        if time.time() > deadline:
            raise SystemExit("rebalance.py: a group did not settle in time")
        time.sleep(0.001)


def round_(bootstrap, topic, protocol, r):
    group = f"{topic}-{protocol}-{r}-{time.time_ns()}"
    owned, stop, threads = [None] * 3, [False], []

    def start(i):
        t = threading.Thread(target=member, args=(bootstrap, topic, group, protocol, owned, i, stop), daemon=True)
        t.start()
        threads.append(t)
    for i in range(3):
        start(i)
    wait(lambda: settled(owned, 3))
    time.sleep((r * 0.379) % 1.0)
    owned.append(None)
    joined = time.time()
    start(3)
    wait(lambda: settled(owned, 4))
    took = time.time() - joined
    stop[0] = True
    for t in threads:
        t.join()
    return took


def main():
    bootstrap = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    protocols = sys.argv[3:] or ["classic", "consumer"]
    topic = f"rebalance-{time.time_ns()}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=-1)])[topic].result(30)
    for protocol in protocols:
        samples = [round_(bootstrap, topic, protocol, r) for r in range(rounds)]
        ms = [s * 1000 for s in samples]
        print(f"rebalance {protocol}: median {statistics.median(ms):.0f} ms, min {min(ms):.0f}, "
              f"max {max(ms):.0f} ({rounds} rounds)")
        print(json.dumps({"protocol": protocol, "ms": [round(x, 1) for x in ms]}))


if __name__ == "__main__":
    main()
