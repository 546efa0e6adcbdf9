#!/usr/bin/env python3
"""Group administration through confluent-kafka's AdminClient.

usage: admin_groups.py BOOTSTRAP TOPIC

A member consumes TOPIC in group G and commits; then the admin client lists and
describes G (Stable, one member, its assignment), cannot delete it while the
member is in it (NON_EMPTY_GROUP), and once it left: describes it Empty, resets
its offsets (AlterConsumerGroupOffsets), reads them back and deletes the group
(DeleteGroups). (OffsetDelete is not in confluent-kafka's Python API: the
server's groups.rs sends it.)
"""
import sys
import time

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def fail(msg):
    print(f"admin_groups: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def main():
    bootstrap, topic = sys.argv[1:3]
    group = f"{topic}-admin"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=-1)])[topic].result(30)
    p = Producer({"bootstrap.servers": bootstrap})
    for i in range(20):
        p.produce(topic, value=b"x", partition=i % 2)
    p.flush(30)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, "client.id": "admin-test"})
    c.subscribe([topic])
    n, deadline = 0, time.time() + 60
    while n < 20:
        if time.time() > deadline:
            fail("the member did not read every record")
        m = c.poll(0.5)
        if m is not None and not m.error():
            n += 1
    c.commit(asynchronous=False)

    listed = admin.list_consumer_groups().result(30)
    ids = {g.group_id: g for g in listed.valid}
    if group not in ids:
        fail(f"list_consumer_groups: {sorted(ids)}")
    d = admin.describe_consumer_groups([group])[group].result(30)
    if str(d.state).split(".")[-1] != "STABLE" or len(d.members) != 1:
        fail(f"describe (stable): {d.state} {d.members}")
    member = d.members[0]
    if member.client_id != "admin-test" or len(member.assignment.topic_partitions) != 2:
        fail(f"describe member: {member.client_id} {member.assignment.topic_partitions}")
    try:
        admin.delete_consumer_groups([group])[group].result(30)
        fail("a group with a member was deleted")
    except Exception as e:  # noqa: BLE001 - the refusal is the point
        if "NON_EMPTY_GROUP" not in str(e):
            fail(f"deleting a non-empty group: {e}")
    c.close()

    d = admin.describe_consumer_groups([group])[group].result(30)
    if str(d.state).split(".")[-1] != "EMPTY" or d.members:
        fail(f"describe (empty): {d.state} {d.members}")
    req = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0, 3), TopicPartition(topic, 1, 4)])
    admin.alter_consumer_group_offsets([req])[group].result(30)
    got = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(30)
    offsets = sorted((tp.partition, tp.offset) for tp in got.topic_partitions)
    if offsets != [(0, 3), (1, 4)]:
        fail(f"offsets after the reset: {offsets}")
    admin.delete_consumer_groups([group])[group].result(30)
    listed = admin.list_consumer_groups().result(30)
    if group in {g.group_id for g in listed.valid}:
        fail("the deleted group is still listed")
    print("admin_groups: ok")


if __name__ == "__main__":
    main()
