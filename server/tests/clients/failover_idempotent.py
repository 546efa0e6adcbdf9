#!/usr/bin/env python3
"""Idempotent producers through the kill -9 of their partition's leader.

Two idempotent producers — confluent-kafka (enable.idempotence=true, 5 requests
in flight) and kafka-python 3 (its defaults: idempotence on, 5 in flight) —
write distinct values to a one-partition, three-replica topic at a steady
RATE each, so that requests are always in flight. Each time both have had
another ACKED_BETWEEN values acknowledged, the script prints READY and waits
for a line on stdin (the test kills the partition's leader then, and
restarts it once another node leads), KILLS times; the producers go on
through the failovers (neither passes three quarters of TOTAL before the last
kill) until each has sent TOTAL values, then flush. Every acknowledged value
must be in the log exactly once, and no value more than once.

usage: failover_idempotent.py BOOTSTRAP TOPIC
"""
import os
import sys
import threading
import time

ACKED_BETWEEN = 2000
KILLS = 3
TOTAL = 12000
RATE = 2000  # values per second, per producer


def pace(i, started, go_on, idle=lambda: time.sleep(0.05)):
    """Sleeps to keep RATE; holds at three quarters of TOTAL until the last
    kill, calling `idle` meanwhile (confluent-kafka reports deliveries only
    while it is polled)."""
    if i == TOTAL * 3 // 4:
        while not go_on.is_set():
            idle()
    ahead = started + i / RATE - time.time()
    if ahead > 0:
        time.sleep(ahead)


def fail(msg):
    print(f"failover_idempotent: FAIL: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


class Run:
    """One producer's values and what became of them."""

    def __init__(self, name):
        self.name = name
        self.acked = set()
        self.failed = []
        self.lock = threading.Lock()

    def ack(self, value):
        with self.lock:
            self.acked.add(value)

    def failure(self, value, err):
        with self.lock:
            self.failed.append((value, str(err)))

    def count(self):
        with self.lock:
            return len(self.acked)


def confluent(bootstrap, topic, run, go_on):
    from confluent_kafka import Producer
    p = Producer({
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "max.in.flight.requests.per.connection": 5,
        "linger.ms": 2,
        "batch.num.messages": 50,
        "message.timeout.ms": 120000,
        **({"debug": os.environ["RDKAFKA_DEBUG"]} if os.environ.get("RDKAFKA_DEBUG") else {}),
    })

    def report(err, msg):
        if err:
            run.failure(msg.value(), err)
        else:
            run.ack(msg.value())

    started = time.time()
    for i in range(TOTAL):
        pace(i, started, go_on, lambda: p.poll(0.05))
        while True:
            try:
                p.produce(topic, value=f"c-{i}".encode(), partition=0, on_delivery=report)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    if p.flush(120):
        fail("confluent-kafka: undelivered after 120 s")


def kafka_python(bootstrap, topic, run, go_on):
    from kafka import KafkaProducer
    p = KafkaProducer(bootstrap_servers=bootstrap.split(","), linger_ms=2, batch_size=4096,
                      request_timeout_ms=10000, delivery_timeout_ms=120000)
    futures = []
    started = time.time()
    for i in range(TOTAL):
        pace(i, started, go_on)
        v = f"k-{i}".encode()
        f = p.send(topic, value=v, partition=0)
        f.add_callback(lambda _md, v=v: run.ack(v))
        f.add_errback(lambda e, v=v: run.failure(v, e))
        futures.append(f)
    p.flush(120)
    p.close(30)


def read_all(bootstrap, topic):
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{topic}-check",
                  "enable.auto.commit": False})
    # Right after the last failover, metadata may still name the old leader:
    # ask again while the answer is a retriable error.
    from confluent_kafka import KafkaError, KafkaException
    retriable = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                 KafkaError._TRANSPORT, KafkaError._TIMED_OUT}
    deadline = time.time() + 60
    while True:
        try:
            _, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=30)
            break
        except KafkaException as e:
            if e.args[0].code() not in retriable or time.time() > deadline:
                raise
            time.sleep(0.2)
    c.assign([TopicPartition(topic, 0, 0)])
    got, at = [], 0
    deadline = time.time() + 120
    while at < high and time.time() < deadline:
        for m in c.consume(1000, 0.5):
            if m.error():
                fail(f"consume: {m.error()}")
            got.append(m.value())
            at = m.offset() + 1
    c.close()
    if at < high:
        fail(f"read up to offset {at} of {high}")
    return got


def main():
    bootstrap, topic = sys.argv[1:3]
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=3)])[topic].result(30)
    runs = [Run("confluent-kafka"), Run("kafka-python")]
    go_on = threading.Event()
    errors = []

    def guarded(f, run):
        try:
            f(bootstrap, topic, run, go_on)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(f"{run.name}: {e!r}")
            go_on.set()

    threads = [threading.Thread(target=guarded, args=(f, r))
               for f, r in zip([confluent, kafka_python], runs)]
    for t in threads:
        t.start()
    for kill in range(1, KILLS + 1):
        deadline = time.time() + 60
        while any(r.count() < kill * ACKED_BETWEEN for r in runs) and not errors:
            if time.time() > deadline:
                fail(f"acknowledged before kill {kill} (60 s): {[r.count() for r in runs]}; "
                     f"failures: {[r.failed[:3] for r in runs]}")
            time.sleep(0.02)
        print("READY", flush=True)
        sys.stdin.readline()
    go_on.set()
    for t in threads:
        t.join(300)
    if errors:
        fail("; ".join(errors))
    got = read_all(bootstrap, topic)
    counts = {}
    for v in got:
        counts[v] = counts.get(v, 0) + 1
    dups = {v: n for v, n in counts.items() if n > 1}
    for r in runs:
        missing = [v for v in r.acked if v not in counts]
        print(f"{r.name}: {len(r.acked)} acknowledged, {len(r.failed)} failed, "
              f"{len(missing)} acknowledged but missing", flush=True)
        if missing:
            fail(f"{r.name}: {len(missing)} acknowledged values missing, e.g. {sorted(missing)[:3]}")
    print(f"log: {len(got)} records, {len(dups)} values more than once", flush=True)
    if dups:
        fail(f"{len(dups)} values in the log more than once, e.g. {sorted(dups.items())[:3]}")
    print("failover_idempotent: ok", flush=True)


if __name__ == "__main__":
    main()
