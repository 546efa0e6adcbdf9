#!/usr/bin/env python3
"""Consumer groups through a real client library (subscribe(), not assign()).

usage: groups.py BOOTSTRAP TOPIC {confluent,confluent-cooperative,confluent-consumer,kafka-python}

On a new 6-partition topic with 600 records:
1. three members of one group get two partitions each and together read every
   record exactly once;
2. one member leaves: the other two take over its partitions, nothing skipped;
3. every member commits and closes; a new member of the group resumes at the
   committed offsets (as a non-member reads them);
4. a static member (group.instance.id) that restarts within its session
   timeout gets its partitions back without a rebalance of the others;
5. (confluent-consumer: the KIP-848 protocol, group.protocol=consumer) a member
   joins while two others consume: they give up only the partitions it takes
   and keep consuming the rest throughout.
Exits non-zero with a message on the first failure.
"""
import sys
import threading
import time

PARTITIONS = 6
N = 600


def fail(msg):
    print(f"groups: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


class Confluent:
    strategy = None

    def __init__(self, bootstrap):
        self.bootstrap = bootstrap

    def create(self, topic):
        from confluent_kafka.admin import AdminClient, NewTopic
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=-1)])[topic].result(30)

    def produce(self, topic, values):
        from confluent_kafka import Producer
        p = Producer({"bootstrap.servers": self.bootstrap, "acks": "all"})
        for i, v in values:
            p.produce(topic, value=v.encode(), partition=i % PARTITIONS)
        if p.flush(30):
            fail("produce: undelivered records")

    def committed(self, topic, group):
        from confluent_kafka import Consumer, TopicPartition
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": group})
        got = c.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=30)
        c.close()
        return {tp.partition: tp.offset for tp in got}

    def member(self, topic, group, instance=None):
        from confluent_kafka import Consumer
        conf = {"bootstrap.servers": self.bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                "enable.auto.commit": False, "session.timeout.ms": 10000, "heartbeat.interval.ms": 500}
        if instance:
            conf["group.instance.id"] = instance
        if self.strategy:
            conf["partition.assignment.strategy"] = self.strategy
        c = Consumer(conf)
        m = ConfluentMember(c)
        c.subscribe([topic], on_assign=lambda _c, _ps: m.assigned())
        return m


class ConfluentMember:
    def __init__(self, c):
        self.c = c
        self.rebalances = 0
        self.revoked = []

    def assigned(self):
        self.rebalances += 1

    def revoking(self, partitions):
        self.revoked.extend(tp.partition for tp in partitions)

    def poll(self):
        m = self.c.poll(0.2)
        if m is None:
            return []
        if m.error():
            fail(f"consume error {m.error()}")
        return [(m.partition(), m.offset())]

    def assignment(self):
        return sorted(tp.partition for tp in self.c.assignment())

    def commit(self):
        try:
            self.c.commit(asynchronous=False)
        except Exception as e:  # noqa: BLE001 - nothing consumed yet is not an error here
            if "NO_OFFSET" not in str(e):
                raise

    def close(self):
        self.c.close()


class ConfluentCooperative(Confluent):
    """Incremental (cooperative) rebalancing: the broker relays it unchanged."""
    strategy = "cooperative-sticky"


class ConfluentConsumerProtocol(Confluent):
    """KIP-848: the coordinator assigns (server-side assignor) and members
    reconcile incrementally through ConsumerGroupHeartbeat."""

    def member(self, topic, group, instance=None):
        from confluent_kafka import Consumer
        conf = {"bootstrap.servers": self.bootstrap, "group.id": group, "group.protocol": "consumer",
                "auto.offset.reset": "earliest", "enable.auto.commit": False}
        if instance:
            conf["group.instance.id"] = instance
        c = Consumer(conf)
        m = ConfluentMember(c)

        def revoke(_c, ps):
            # A member may start consuming before the others join (there is no
            # initial rebalance delay in this protocol): it commits what it read
            # of the partitions it gives up, as applications do, so that their
            # next owner continues after it.
            m.revoking(ps)
            m.commit()
        c.subscribe([topic], on_assign=lambda _c, _ps: m.assigned(), on_revoke=revoke)
        return m


class KafkaPython(Confluent):
    def create(self, topic):
        from kafka.admin import KafkaAdminClient, NewTopic
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)
        admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)], timeout_ms=30000)
        admin.close()

    def produce(self, topic, values):
        from kafka import KafkaProducer
        p = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=False)
        for f in [p.send(topic, value=v.encode(), partition=i % PARTITIONS) for i, v in values]:
            f.get(timeout=30)
        p.close()

    def committed(self, topic, group):
        from kafka import KafkaConsumer, TopicPartition
        c = KafkaConsumer(bootstrap_servers=self.bootstrap, group_id=group, enable_auto_commit=False)
        got = {p: c.committed(TopicPartition(topic, p)) for p in range(PARTITIONS)}
        c.close()
        return got

    def member(self, topic, group, instance=None):
        from kafka import KafkaConsumer
        kw = {}
        if instance:
            kw["group_instance_id"] = instance
        from kafka import ConsumerRebalanceListener

        c = KafkaConsumer(bootstrap_servers=self.bootstrap, group_id=group, auto_offset_reset="earliest",
                          enable_auto_commit=False, session_timeout_ms=10000, heartbeat_interval_ms=500, **kw)
        m = KafkaPythonMember(c)

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked):
                pass

            def on_partitions_assigned(self, assigned):
                m.assigned()
        c.subscribe([topic], listener=Listener())
        return m


class KafkaPythonMember(ConfluentMember):
    def poll(self):
        out = []
        for tp, msgs in self.c.poll(timeout_ms=200).items():
            out.extend((tp.partition, m.offset) for m in msgs)
        return out

    def assignment(self):
        return sorted(tp.partition for tp in self.c.assignment())

    def commit(self):
        self.c.commit()


def run_members(members, stop, seen, lock, assigned):
    """Polls every member on its own thread until stop() says so, recording what
    each read and its latest assignment (a client is asked from its own thread)."""
    def loop(i, m):
        while not stop():
            for rec in m.poll():
                with lock:
                    seen.setdefault(rec, []).append(i)
            assigned[i] = m.assignment()
    threads = [threading.Thread(target=loop, args=(i, m), daemon=True) for i, m in enumerate(members)]
    for t in threads:
        t.start()
    return threads


def step(msg):
    print(f"groups: {time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def wait(what, cond, secs=60):
    deadline = time.time() + secs
    while not cond():
        if time.time() > deadline:
            fail(f"timed out: {what}")
        time.sleep(0.1)


def main():
    bootstrap, topic, kind = sys.argv[1:4]
    client = {"confluent": Confluent, "confluent-cooperative": ConfluentCooperative,
              "confluent-consumer": ConfluentConsumerProtocol, "kafka-python": KafkaPython}[kind](bootstrap)
    client.create(topic)
    client.produce(topic, [(i, f"v{i}") for i in range(N)])
    group = f"{topic}-g"

    step("produced")
    # 1. Three members, two partitions each, every record once.
    members = [client.member(topic, group) for _ in range(3)]
    seen, lock, done, assigned = {}, threading.Lock(), [False], {}
    threads = run_members(members, lambda: done[0], seen, lock, assigned)
    wait("every record read by the three members", lambda: len(seen) >= N)
    with lock:
        twice = [r for r, who in seen.items() if len(who) > 1]
    if twice:
        fail(f"{len(twice)} records read twice in a stable group, e.g. {twice[:3]}")
    wait("three members with two partitions each",
         lambda: sorted(len(assigned.get(i, [])) for i in range(3)) == [2, 2, 2])
    assignments = [assigned[i] for i in range(3)]
    if sorted(len(a) for a in assignments) != [2, 2, 2] or sorted(sum(assignments, [])) != list(range(6)):
        fail(f"assignments {assignments}")

    step("1 ok")
    # 2. One leaves; the others take over its partitions; nothing is skipped.
    done[0] = True
    for t in threads:
        t.join()
    for m in members:
        m.commit()
    members[2].close()
    client.produce(topic, [(i, f"w{i}") for i in range(N, 2 * N)])
    done[0] = False
    assigned.clear()
    threads = run_members(members[:2], lambda: done[0], seen, lock, assigned)
    wait("the two members read the records produced after the third left",
         lambda: all((p, o) in seen for p in range(PARTITIONS) for o in range(N // PARTITIONS, 2 * N // PARTITIONS)))
    wait("the two members share all six partitions",
         lambda: sorted(assigned.get(0, []) + assigned.get(1, [])) == list(range(6)))

    step("2 ok")
    # 3. Commit and close; a new member resumes at the committed offsets.
    done[0] = True
    for t in threads:
        t.join()
    for m in members[:2]:
        m.commit()
        m.close()
    step("closed")
    committed = client.committed(topic, group)
    if any(o is None or o < N // PARTITIONS for o in committed.values()):
        fail(f"committed offsets {committed}: below what the first members read")
    client.produce(topic, [(i, f"x{i}") for i in range(2 * N, 3 * N)])
    step("produced more")
    fresh, first = client.member(topic, group), {}

    def drain():
        for _ in range(2000):
            recs = fresh.poll()
            if not recs:
                break
            for p, o in recs:
                first.setdefault(p, o)
        return len(first) == PARTITIONS
    wait("the new member reads what was produced after the commit", drain)
    if first != committed:
        fail(f"the new member started at {first}, not at the committed offsets {committed}")
    fresh.close()

    step("3 ok")
    # 4. A static member restarts within its session timeout: no rebalance.
    # (Each member polls on its own thread, as applications do: kafka-python
    # rejoins after any poll that times out during its join.)
    sgroup = f"{topic}-static"
    a, b = client.member(topic, sgroup, "static-a"), client.member(topic, sgroup, "static-b")
    seen, done, assigned = {}, [False], {}
    threads = run_members([a, b], lambda: done[0], seen, lock, assigned)
    wait("both static members assigned",
         lambda: len(assigned.get(0, [])) + len(assigned.get(1, [])) == PARTITIONS)
    # kafka-python's leader may rejoin once after a first join that outlasted its
    # poll timeout (the initial rebalance delay): let the group settle first.
    settled = [b.rebalances, time.time()]

    def quiet():
        if b.rebalances != settled[0]:
            settled[:] = [b.rebalances, time.time()]
        return time.time() - settled[1] > 2
    wait("the static group settles", quiet)
    done[0] = True
    for t in threads:
        t.join()
    before, rebalances = assigned[1], b.rebalances
    a.c.close()
    a = client.member(topic, sgroup, "static-a")
    done[0] = False
    assigned.clear()
    threads = run_members([a, b], lambda: done[0], seen, lock, assigned)
    wait("the restarted static member gets its partitions back", lambda: len(assigned.get(0, [])) > 0)
    time.sleep(2)
    done[0] = True
    for t in threads:
        t.join()
    if assigned.get(1) != before or b.rebalances != rebalances:
        fail(f"the other static member was rebalanced: {before} -> {assigned.get(1)}, "
             f"{rebalances} -> {b.rebalances} assignments")
    a.close()
    b.close()
    if kind == "confluent-consumer":
        step("4 ok")
        join_while_consuming(client, topic)
    print(f"groups: {kind}: ok")


def join_while_consuming(client, topic):
    """5. A third member joins two that consume: each of the two gives up only
    partitions the newcomer takes, and never stops consuming the others."""
    group = f"{topic}-join"
    members = [client.member(topic, group) for _ in range(2)]
    seen, lock, done, assigned = {}, threading.Lock(), [False], {}
    threads = run_members(members, lambda: done[0], seen, lock, assigned)
    wait("two members have three partitions each",
         lambda: sorted(assigned.get(0, []) + assigned.get(1, [])) == list(range(6))
         and len(assigned[0]) == 3)
    before = {i: list(assigned[i]) for i in range(2)}
    already = [len(m.revoked) for m in members]
    history = {0: [], 1: []}
    stop_watch = [False]

    def watch():
        while not stop_watch[0]:
            for i in range(2):
                history[i].append(list(assigned.get(i, [])))
            time.sleep(0.01)
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    newcomer = client.member(topic, group)
    threads += run_members([newcomer], lambda: done[0], seen, lock, assigned_new := {})
    wait("the newcomer gets two partitions", lambda: len(assigned_new.get(0, [])) == 2)
    wait("the others settle on two each",
         lambda: sorted(len(assigned.get(i, [])) for i in range(2)) == [2, 2])
    stop_watch[0] = True
    watcher.join()
    done[0] = True
    for t in threads:
        t.join()
    taken = set(assigned_new[0])
    for i in range(2):
        revoked = set(members[i].revoked[already[i]:])
        if not revoked <= taken:
            fail(f"member {i} gave up {sorted(revoked)}, more than the newcomer took {sorted(taken)}")
        kept = set(before[i]) - taken
        for snapshot in history[i]:
            if not kept <= set(snapshot):
                fail(f"member {i} stopped consuming {sorted(kept - set(snapshot))} it kept "
                     f"(assignment {snapshot}, before {before[i]})")
    for m in members + [newcomer]:
        m.close()
    step("5 ok")


if __name__ == "__main__":
    main()
