"""confluent-kafka's AdminClient against weir: create a topic with a config,
then DescribeConfigs for it and for the broker (issue 16 items 3 and 4).

    python3 describe_configs.py BOOTSTRAP TOPIC
"""

import sys

from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic


def main():
    bootstrap, topic = sys.argv[1], sys.argv[2]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = NewTopic(topic, num_partitions=2, replication_factor=1,
                   config={"message.timestamp.type": "LogAppendTime"})
    for f in admin.create_topics([new], operation_timeout=10).values():
        f.result()
    # CreateTopics answered once leaders were known: Metadata shows them now.
    md = admin.list_topics(topic, timeout=10)
    leaders = sorted(p.leader for p in md.topics[topic].partitions.values())
    assert leaders == [1, 1], f"leaders right after create: {leaders}"

    res = admin.describe_configs([ConfigResource("topic", topic)])
    configs = list(res.values())[0].result(timeout=10)
    ts = configs["message.timestamp.type"]
    assert ts.value == "LogAppendTime" and not ts.is_default, ts
    cleanup = configs["cleanup.policy"]
    assert cleanup.value == "delete" and cleanup.is_default, cleanup
    assert configs["max.message.bytes"].value == "1048576", configs["max.message.bytes"]

    res = admin.describe_configs([ConfigResource("broker", "1")])
    broker = list(res.values())[0].result(timeout=10)
    assert broker["broker.id"].value == "1", broker["broker.id"]
    assert broker["auto.create.topics.enable"].is_read_only
    print("ok", len(configs), "topic configs,", len(broker), "broker configs")


if __name__ == "__main__":
    main()
