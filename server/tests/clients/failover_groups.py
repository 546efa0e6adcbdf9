#!/usr/bin/env python3
"""A consumer group through a coordinator failover (run by group_failover.rs).

usage: failover_groups.py BOOTSTRAP TOPIC [classic|consumer]

(`consumer`: the members use the KIP-848 protocol, group.protocol=consumer.)

Creates TOPIC (6 partitions, 3 replicas), produces 3,000 records, and runs two
confluent-kafka members of one group that commit synchronously every 25
records, remembering every acknowledged commit. Prints READY once commits are
acknowledged, then waits for a line on standard input (the test kills the
coordinator's node meanwhile) and keeps consuming until every record was read.
Then the members close, and the committed offsets, read by a non-member, must
be at least every offset whose commit was acknowledged before the kill, and no
partition may have gone without a member for longer than the session timeout
plus an election (10 s) after the kill.
"""
import sys
import threading
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

PARTITIONS = 6
N = 3000
# The classic members' session timeout (6 s) plus an election.
SESSION_PLUS_ELECTION = 10.0


def fail(msg):
    print(f"failover_groups: FAIL: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def main():
    bootstrap, topic = sys.argv[1:3]
    protocol = sys.argv[3] if len(sys.argv) > 3 else "classic"
    group = f"{topic}-g"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=3)])[topic].result(30)
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for i in range(N):
        p.produce(topic, value=b"v%d" % i, partition=i % PARTITIONS)
    if p.flush(60):
        fail("produce: undelivered records")

    seen, acked, lock = set(), {}, threading.Lock()
    assignments = {}
    killed, done = [False], [False]
    acked_before_kill = {}

    def member():
        conf = {"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                "enable.auto.commit": False, "max.poll.interval.ms": 30000}
        if protocol == "consumer":
            conf["group.protocol"] = "consumer"
        else:
            conf.update({"session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
        c = Consumer(conf)
        c.subscribe([topic])
        n = 0
        me = threading.get_ident()
        while not done[0]:
            m = c.poll(0.2)
            try:
                assignments[me] = {tp.partition for tp in c.assignment()}
            except KafkaException:
                pass
            if m is None or m.error():
                continue
            with lock:
                seen.add((m.partition(), m.offset()))
            n += 1
            if n % 25 == 0:
                try:
                    for tp in c.commit(asynchronous=False) or []:
                        if tp.error is None and tp.offset >= 0:
                            with lock:
                                acked[tp.partition] = max(acked.get(tp.partition, -1), tp.offset)
                                if not killed[0]:
                                    acked_before_kill[tp.partition] = acked[tp.partition]
                except KafkaException:
                    pass  # a commit that failed (coordinator moving) was not acknowledged
            time.sleep(0.002)  # spread the work over the failover
        try:
            c.close()
        except KafkaException:
            pass

    threads = [threading.Thread(target=member, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    deadline = time.time() + 60
    while len(acked_before_kill) < PARTITIONS // 2:
        if time.time() > deadline:
            fail(f"no commits acknowledged before the kill: {acked_before_kill}")
        time.sleep(0.05)
    print("READY", flush=True)
    sys.stdin.readline()
    with lock:
        killed[0] = True
        before = dict(acked_before_kill)
    # The longest time any partition went without a member, from the kill on.
    unowned_since, longest = {}, [0.0, None]

    def watch():
        while not done[0]:
            now = time.time()
            owned = set().union(*assignments.values()) if assignments else set()
            for q in range(PARTITIONS):
                if q in owned:
                    unowned_since.pop(q, None)
                else:
                    since = unowned_since.setdefault(q, now)
                    if now - since > longest[0]:
                        longest[:] = [now - since, q]
            time.sleep(0.05)
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    deadline = time.time() + 120
    while True:
        with lock:
            if len(seen) >= N:
                break
            missing = N - len(seen)
        if time.time() > deadline:
            fail(f"{missing} records never read after the failover")
        time.sleep(0.1)
    done[0] = True
    for t in threads:
        t.join(30)
    watcher.join(5)
    if longest[0] > SESSION_PLUS_ELECTION:
        fail(f"partition {longest[1]} had no member for {longest[0]:.1f} s after the kill")
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    committed = {tp.partition: tp.offset
                 for tp in reader.committed([TopicPartition(topic, q) for q in range(PARTITIONS)], timeout=30)}
    reader.close()
    lost = {q: (o, committed.get(q)) for q, o in before.items() if committed.get(q, -1) < o}
    if lost:
        fail(f"commits acknowledged before the kill are gone (partition: (acked, now)): {lost}")
    print(f"failover_groups: ok; acknowledged before the kill {before}, committed now {committed}; "
          f"longest a partition went without a member: {longest[0]:.2f} s", flush=True)


if __name__ == "__main__":
    main()
