// kafkajs's idempotent producer (`idempotent: true`) against weir: it
// initialises a producer id, sends 600 values to a 3-partition topic in
// several requests, and every value is read back exactly once, each batch
// carrying the producer id it was sent with.
//
// usage: node idempotent.js BOOTSTRAP[,BOOTSTRAP...] TOPIC
const { Kafka, logLevel } = require("kafkajs");

const [bootstrap, topic] = process.argv.slice(2);
const PARTITIONS = 3;
const N = 600;
const kafka = new Kafka({ brokers: bootstrap.split(","), clientId: "weir-idempotent", logLevel: logLevel.NOTHING });

function fail(msg) {
  console.error(`idempotent.js: FAIL: ${msg}`);
  process.exit(1);
}

(async () => {
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: PARTITIONS }], waitForLeaders: true });
  await admin.disconnect();

  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const values = [];
  for (let i = 0; i < N; i++) values.push(`kafkajs-${i}`);
  for (let from = 0; from < N; from += 50) {
    const messages = values.slice(from, from + 50).map((value, k) => ({ value, partition: (from + k) % PARTITIONS }));
    await producer.send({ topic, acks: -1, messages });
  }
  await producer.disconnect();

  const got = [];
  const producerIds = new Set();
  const consumer = kafka.consumer({ groupId: `${topic}-check` });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    eachBatch: async ({ batch }) => {
      for (const m of batch.messages) {
        got.push(m.value.toString());
      }
      if (batch.messages.length) producerIds.add(String(batch.messages[0].batchContext?.producerId));
    },
  });
  const deadline = Date.now() + 60000;
  while (got.length < N && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  // Anything beyond N would be a duplicate: give it a moment to arrive.
  await new Promise((r) => setTimeout(r, 500));
  await consumer.disconnect();

  const counts = {};
  for (const v of got) counts[v] = (counts[v] || 0) + 1;
  const missing = values.filter((v) => !counts[v]);
  const twice = Object.entries(counts).filter(([, n]) => n > 1);
  if (missing.length || twice.length || got.length !== N) {
    fail(`read ${got.length} values: ${missing.length} missing, ${twice.length} more than once`);
  }
  const ids = [...producerIds];
  if (ids.length !== 1 || !(Number(ids[0]) >= 0)) fail(`batches carry producer ids ${JSON.stringify(ids)}, expected one id >= 0`);
  console.log(`idempotent.js: ok (producer id ${ids[0]})`);
})().catch((e) => fail(e.stack || String(e)));
