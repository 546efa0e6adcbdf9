#!/usr/bin/env python3
"""A rolling restart under a producer and a consumer (issue 22).

A confluent-kafka producer with its default settings (acks=all, retries
until message.timeout.ms) writes distinct values to TOPIC at a steady RATE,
while a consumer in a group reads them. Each time another ACKED_BETWEEN
values have been acknowledged the script prints READY and waits for a line
on stdin: the test stops one node with SIGTERM, waits for its exit and starts
it again, RESTARTS times. Then the producer sends TAIL more, flushes, and the
consumer must see every acknowledged value.

Fails when any delivery failed or an acknowledged value was never consumed.
Prints a summary line: values sent, acknowledged, failed, the longest time a
value waited for its acknowledgement (the longest produce stall).

usage: rolling_restart.py BOOTSTRAP TOPIC RESTARTS
"""
import sys
import threading
import time

ACKED_BETWEEN = 1500
TAIL = 1500
RATE = 1000  # values per second


def fail(msg):
    print(f"rolling_restart: FAIL: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def main():
    from confluent_kafka import Consumer, Producer

    bootstrap, topic, restarts = sys.argv[1], sys.argv[2], int(sys.argv[3])
    acked, failed, sent_at = set(), [], {}
    longest = [0.0]

    def report(err, msg):
        value = msg.value().decode()
        if err:
            failed.append((value, str(err)))
            return
        acked.add(value)
        waited = time.time() - sent_at.pop(value, time.time())
        longest[0] = max(longest[0], waited)

    seen = set()
    stop_consuming = threading.Event()

    def consume():
        c = Consumer({
            "bootstrap.servers": bootstrap,
            "group.id": "rolling",
            "auto.offset.reset": "earliest",
        })
        c.subscribe([topic])
        while not stop_consuming.is_set():
            m = c.poll(0.2)
            if m is not None and m.error() is None:
                seen.add(m.value().decode())
        c.close()

    consumer = threading.Thread(target=consume)
    consumer.start()
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    cues, since_cue, i = 0, 0, 0
    started = time.time()
    tail_from = None
    while True:
        if tail_from is not None and i >= tail_from + TAIL:
            break
        value = f"v{i}"
        sent_at[value] = time.time()
        while True:
            try:
                p.produce(topic, value=value.encode(), on_delivery=report)
                break
            except BufferError:
                p.poll(0.05)
        i += 1
        p.poll(0)
        if cues < restarts and len(acked) >= since_cue + ACKED_BETWEEN:
            p.flush(30)
            print("READY", flush=True)
            # The producer keeps sending while the test restarts a node.
            done = threading.Event()
            threading.Thread(target=lambda: (sys.stdin.readline(), done.set())).start()
            while not done.is_set():
                value = f"v{i}"
                sent_at[value] = time.time()
                try:
                    p.produce(topic, value=value.encode(), on_delivery=report)
                    i += 1
                except BufferError:
                    pass
                p.poll(1.0 / RATE)
            cues += 1
            since_cue = len(acked)
            if cues == restarts:
                tail_from = i
        ahead = started + i / RATE - time.time()
        if ahead > 0:
            time.sleep(ahead)
    left = p.flush(120)
    if left:
        fail(f"{left} values still unacknowledged after 120 s")
    deadline = time.time() + 60
    while time.time() < deadline and not acked <= seen:
        time.sleep(0.2)
    stop_consuming.set()
    consumer.join()
    print(
        f"sent {i}, acknowledged {len(acked)}, failed {len(failed)}, "
        f"consumed {len(seen & acked)} of the acknowledged, "
        f"longest produce stall {longest[0] * 1000:.0f} ms",
        flush=True,
    )
    if failed:
        fail(f"{len(failed)} deliveries failed, e.g. {failed[:3]}")
    missing = acked - seen
    if missing:
        fail(f"{len(missing)} acknowledged values never consumed, e.g. {sorted(missing)[:5]}")


main()
