// kafkajs (a pure-JavaScript Kafka client, a fourth client family) against
// weir, without consumer groups (kafkajs consumes only through them, which
// weir does not offer yet): create a topic and produce at once, gzip, offsets
// for a time inside a batch, DescribeConfigs defaults, metadata.
//
//     node admin.js BOOTSTRAP TOPIC
'use strict';

const assert = require('assert');
const { Kafka, CompressionTypes, ConfigResourceTypes, logLevel } = require('kafkajs');

async function main() {
  const [bootstrap, topic] = process.argv.slice(2);
  const kafka = new Kafka({ clientId: 'weir-test', brokers: [bootstrap], logLevel: logLevel.WARN });
  const admin = kafka.admin();
  await admin.connect();
  assert.strictEqual(
    await admin.createTopics({ topics: [{ topic, numPartitions: 3, replicationFactor: 1 }] }),
    true,
  );
  // At once, with no retries: CreateTopics answered after the leaders were known.
  const producer = kafka.producer({ retry: { retries: 0 } });
  await producer.connect();
  const t0 = Date.now() - 60_000;
  for (let p = 0; p < 3; p++) {
    // One batch per partition: three records 10 ms apart.
    await producer.send({
      topic,
      acks: -1,
      compression: CompressionTypes.GZIP,
      messages: [0, 1, 2].map((i) => ({
        partition: p,
        key: `k${p}-${i}`,
        value: `v${p}-${i}`,
        timestamp: String(t0 + 10 * i),
      })),
    });
  }
  const ends = await admin.fetchTopicOffsets(topic);
  assert.deepStrictEqual(
    ends.map((e) => [e.partition, e.high]).sort(),
    [[0, '3'], [1, '3'], [2, '3']],
  );
  // A time inside the batch answers the record, not the batch's first offset.
  const byTime = await admin.fetchTopicOffsetsByTimestamp(topic, t0 + 10);
  assert.deepStrictEqual(
    byTime.map((e) => [e.partition, e.offset]).sort(),
    [[0, '1'], [1, '1'], [2, '1']],
  );
  const described = await admin.describeConfigs({
    includeSynonyms: false,
    resources: [{ type: ConfigResourceTypes.TOPIC, name: topic }],
  });
  const entries = described.resources[0].configEntries;
  const cleanup = entries.find((e) => e.configName === 'cleanup.policy');
  assert.ok(cleanup && cleanup.configValue === 'delete' && cleanup.isDefault, JSON.stringify(cleanup));
  const meta = await admin.fetchTopicMetadata({ topics: [topic] });
  assert.strictEqual(meta.topics[0].partitions.length, 3);
  assert.ok(meta.topics[0].partitions.every((p) => p.leader === 1), JSON.stringify(meta));
  await producer.disconnect();
  await admin.disconnect();
  console.log('ok');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
