// kafkajs consumer groups against weir: three members of one group on a
// 6-partition topic get two partitions each and together read every record
// once; one member disconnects and the other two take over its partitions,
// nothing skipped; all commit and leave, and a new member resumes at the
// committed offsets (as the admin client reads them).
//
// usage: node groups.js BOOTSTRAP TOPIC
const { Kafka, logLevel } = require("kafkajs");

const [bootstrap, topic] = process.argv.slice(2);
const PARTITIONS = 6;
const N = 600;
const kafka = new Kafka({ brokers: [bootstrap], clientId: "weir-groups", logLevel: logLevel.NOTHING });

function fail(msg) {
  console.error(`groups.js: FAIL: ${msg}`);
  process.exit(1);
}

async function waitFor(what, cond, ms = 60000) {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) fail(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function produce(from, to) {
  const p = kafka.producer();
  await p.connect();
  const byPartition = {};
  for (let i = from; i < to; i++) (byPartition[i % PARTITIONS] ||= []).push({ value: `v${i}` });
  for (const [partition, messages] of Object.entries(byPartition)) {
    await p.send({ topic, acks: -1, messages: messages.map((m) => ({ ...m, partition: Number(partition) })) });
  }
  await p.disconnect();
}

async function member(group, seen, assigned, i) {
  const c = kafka.consumer({ groupId: group, sessionTimeout: 10000, heartbeatInterval: 500 });
  c.on(c.events.GROUP_JOIN, (e) => {
    assigned[i] = (e.payload.memberAssignment[topic] || []).slice().sort();
  });
  await c.connect();
  await c.subscribe({ topic, fromBeginning: true });
  await c.run({
    autoCommit: true,
    autoCommitInterval: 200,
    eachMessage: async ({ partition, message }) => {
      const key = `${partition}/${message.offset}`;
      (seen[key] ||= []).push(i);
    },
  });
  return c;
}

(async () => {
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: PARTITIONS }], waitForLeaders: true });
  await admin.disconnect();
  await produce(0, N);
  const group = `${topic}-g`;

  // 1. Three members, two partitions each, every record once.
  const seen = {};
  const assigned = {};
  const members = [];
  for (let i = 0; i < 3; i++) members.push(await member(group, seen, assigned, i));
  await waitFor("every record read", () => Object.keys(seen).length >= N);
  await waitFor("two partitions each", () => [0, 1, 2].every((i) => (assigned[i] || []).length === 2));
  const twice = Object.entries(seen).filter(([, who]) => who.length > 1);
  if (twice.length) fail(`${twice.length} records read twice in a stable group`);

  // 2. One member leaves; the others take over; nothing skipped.
  await members[2].disconnect();
  await produce(N, 2 * N);
  const per = N / PARTITIONS;
  await waitFor("records produced after the third left", () => {
    for (let p = 0; p < PARTITIONS; p++) for (let o = per; o < 2 * per; o++) if (!seen[`${p}/${o}`]) return false;
    return true;
  });

  // 3. Leave; a new member resumes at the committed offsets.
  await members[0].disconnect();
  await members[1].disconnect();
  await produce(2 * N, 3 * N);
  const reader = kafka.admin();
  await reader.connect();
  const [offsets] = await reader.fetchOffsets({ groupId: group, topics: [topic] });
  await reader.disconnect();
  const committed = {};
  for (const { partition, offset } of offsets.partitions) committed[partition] = Number(offset);
  const fresh = {};
  const freshAssigned = {};
  const c = await member(group, fresh, freshAssigned, 9);
  await waitFor("the new member reads every partition", () => {
    const firsts = {};
    for (const key of Object.keys(fresh)) {
      const [p, o] = key.split("/").map(Number);
      firsts[p] = Math.min(firsts[p] ?? Infinity, o);
    }
    return Object.keys(firsts).length === PARTITIONS;
  });
  const firsts = {};
  for (const key of Object.keys(fresh)) {
    const [p, o] = key.split("/").map(Number);
    firsts[p] = Math.min(firsts[p] ?? Infinity, o);
  }
  for (let p = 0; p < PARTITIONS; p++) {
    if (!(committed[p] >= per)) fail(`partition ${p}: committed ${committed[p]}, below what was read`);
    if (firsts[p] !== committed[p]) fail(`partition ${p}: the new member started at ${firsts[p]}, not at the committed ${committed[p]}`);
  }
  await c.disconnect();
  console.log("groups.js: ok");
})().catch((e) => fail(e.stack || String(e)));
