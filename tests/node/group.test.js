// Consumer groups with kafkajs (its own, pure-JavaScript group protocol implementation) against
// a running Sluice broker whose address is in SLUICE_BOOTSTRAP (host:port).
//
// Run: SLUICE_BOOTSTRAP=127.0.0.1:9092 node --test tests/node/group.test.js
// (tests/kafkajs.rs starts a broker and does this; `npm ci --prefix tests/node` installs kafkajs.)
//
// Two members of one group split a 4-partition topic disjointly and consume 400 keyed records
// exactly once, committing each; one member leaves and the other takes over all 4 partitions,
// resuming at the commits and consuming 100 more; the group's committed offsets then equal the
// partitions' end offsets. Every wait is bounded and fails with what it saw.

'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { Kafka, logLevel, Partitioners } = require('kafkajs');

const BOOTSTRAP = process.env.SLUICE_BOOTSTRAP;
const PARTITIONS = 4;
const FIRST = 400;
const SECOND = 100;
const TEST_TIMEOUT_MS = 85_000;
const WAIT_MS = 30_000; // bound for any single wait below
const DISCONNECT_MS = 15_000;

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// Polls `cond` (sync or async) every 50 ms until it returns truthy; fails after `ms` with
// `what` and the current state from `describe`.
async function waitFor(what, cond, describe, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > deadline) {
      assert.fail(`timed out after ${ms} ms waiting for ${what}; state: ${describe()}`);
    }
    await sleep(50);
  }
}

// Rejects if `promise` does not settle within `ms`.
function bounded(what, promise, ms) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const started = Date.now();
// Progress lines with elapsed time, shown by the test runner (and by tests/kafkajs.rs on failure).
function phase(what) {
  console.log(`[kafkajs-test +${Date.now() - started} ms] ${what}`);
}

function sorted(partitions) {
  return [...partitions].sort((a, b) => a - b);
}

// One group member: a kafkajs consumer that records what it consumes, commits each record's
// next offset before the record counts as consumed, and tracks its latest assignment.
function member(kafka, name, groupId, topic, consumed) {
  const consumer = kafka.consumer({
    groupId,
    sessionTimeout: 10_000,
    heartbeatInterval: 1_000,
    rebalanceTimeout: 20_000,
    // kafkajs heartbeats between fetches: an idle fetch must not outlast the heartbeat interval
    // by much, or rebalances wait on it (the default long poll is 5 s).
    maxWaitTimeInMs: 1_000,
    retry: { retries: 5 },
  });
  const state = {
    name,
    consumer,
    assignment: null, // partitions of `topic` from the latest GROUP_JOIN
    joins: [], // every GROUP_JOIN: { memberId, generationId?, partitions, isLeader }
    crashes: [],
    count: 0, // records consumed and committed by this member
    running: false,
  };
  consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
    const partitions = sorted(payload.memberAssignment[topic] || []);
    state.assignment = partitions;
    state.joins.push({ memberId: payload.memberId, isLeader: payload.isLeader, partitions });
  });
  consumer.on(consumer.events.CRASH, ({ payload }) => {
    state.crashes.push(`${payload.error && payload.error.name}: ${payload.error && payload.error.message}`);
  });
  state.start = async () => {
    await consumer.connect();
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    const running = consumer.run({
      autoCommit: false,
      eachMessage: async ({ partition, message }) => {
        const id = `${partition}@${message.offset}`;
        const entry = consumed.get(id);
        const record = { key: message.key.toString(), value: message.value.toString(), by: name };
        if (entry) {
          entry.push(record);
        } else {
          consumed.set(id, [record]);
        }
        await consumer.commitOffsets([
          { topic, partition, offset: (BigInt(message.offset) + 1n).toString() },
        ]);
        state.count += 1;
      },
    });
    // run() creates the group state synchronously and resolves only after the first
    // join + sync; pause before any fetch so nothing is consumed until the group is balanced.
    consumer.pause([{ topic }]);
    await running;
    state.running = true;
  };
  state.describe = () =>
    `${name}: assignment=${JSON.stringify(state.assignment)} joins=${JSON.stringify(state.joins)} ` +
    `count=${state.count} crashes=${JSON.stringify(state.crashes)}`;
  return state;
}

async function produce(producer, topic, from, to) {
  const messages = [];
  for (let i = from; i < to; i++) {
    messages.push({ key: `key-${i}`, value: `value-${i}` });
  }
  for (let i = 0; i < messages.length; i += 100) {
    await producer.send({ topic, acks: -1, messages: messages.slice(i, i + 100) });
  }
}

test('kafkajs: two members split, commit, and one takes over', { timeout: TEST_TIMEOUT_MS }, async () => {
  assert.ok(BOOTSTRAP, 'SLUICE_BOOTSTRAP (host:port of a running broker) must be set');
  const suffix = crypto.randomBytes(4).toString('hex');
  const topic = `kafkajs-group-${suffix}`;
  const groupId = `kafkajs-g-${suffix}`;
  const kafka = new Kafka({
    clientId: 'sluice-kafkajs-test',
    brokers: [BOOTSTRAP],
    logLevel: logLevel.WARN,
    connectionTimeout: 5_000,
    requestTimeout: 15_000,
    retry: { retries: 5 },
  });
  const admin = kafka.admin();
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
  // `${partition}@${offset}` -> every delivery of that record
  const consumed = new Map();
  const a = member(kafka, 'a', groupId, topic, consumed);
  const b = member(kafka, 'b', groupId, topic, consumed);
  const state = () => `${a.describe()}; ${b.describe()}; distinct records=${consumed.size}`;

  try {
    await admin.connect();
    const created = await admin.createTopics({
      topics: [{ topic, numPartitions: PARTITIONS, replicationFactor: 1 }],
      waitForLeaders: true,
      timeout: 15_000,
    });
    assert.equal(created, true, `createTopics(${topic}) reported the topic as not created`);
    const metadata = await admin.fetchTopicMetadata({ topics: [topic] });
    assert.equal(metadata.topics[0].partitions.length, PARTITIONS, JSON.stringify(metadata));

    phase(`created ${topic} with ${PARTITIONS} partitions`);
    await producer.connect();
    await produce(producer, topic, 0, FIRST);
    const ends = await admin.fetchTopicOffsets(topic);
    assert.equal(
      ends.reduce((sum, p) => sum + Number(p.high), 0),
      FIRST,
      `end offsets after producing ${FIRST}: ${JSON.stringify(ends)}`,
    );

    phase(`produced ${FIRST} records; end offsets ${JSON.stringify(ends.map((p) => p.high))}`);

    // Both members join; nothing is fetched until their assignments split the topic.
    await bounded('member a start (connect, join, sync)', a.start(), WAIT_MS);
    await bounded('member b start (connect, join, sync)', b.start(), WAIT_MS);
    await waitFor(
      'both members to hold disjoint assignments covering all partitions',
      () => {
        if (!a.assignment || !b.assignment) return false;
        if (a.assignment.length === 0 || b.assignment.length === 0) return false;
        const union = sorted([...a.assignment, ...b.assignment]);
        return JSON.stringify(union) === JSON.stringify([0, 1, 2, 3]);
      },
      state,
    );
    const split = { a: a.assignment, b: b.assignment };
    phase(`group balanced: ${JSON.stringify(split)}`);

    a.consumer.resume([{ topic }]);
    b.consumer.resume([{ topic }]);
    await waitFor(`all ${FIRST} records consumed and committed`, () => a.count + b.count >= FIRST, state);
    phase(`consumed ${FIRST} (a ${a.count}, b ${b.count})`);
    // Give a duplicate delivery a moment to show up before judging exactly-once.
    await sleep(500);
    assert.deepEqual(
      { a: a.assignment, b: b.assignment },
      split,
      `assignments changed while consuming: ${state()}`,
    );
    assert.ok(a.count > 0 && b.count > 0, `both members should have consumed: ${state()}`);
    const duplicates = [...consumed].filter(([, deliveries]) => deliveries.length > 1);
    assert.deepEqual(duplicates, [], `records delivered more than once: ${JSON.stringify(duplicates)}`);
    assert.equal(consumed.size, FIRST, state());
    for (const [id, [record]] of consumed) {
      const partition = Number(id.split('@')[0]);
      const owner = split.a.includes(partition) ? 'a' : 'b';
      assert.equal(record.by, owner, `record ${id} consumed by ${record.by}, not by the owner ${owner}`);
      assert.equal(record.value, record.key.replace('key-', 'value-'), `record ${id}: ${JSON.stringify(record)}`);
    }
    const keys = new Set([...consumed.values()].map(([record]) => record.key));
    assert.equal(keys.size, FIRST, 'every produced key consumed once');

    // The commits are visible to the admin API while both members are in the group.
    const committedAfterFirst = await admin.fetchOffsets({ groupId, topics: [topic] });
    const endByPartition = Object.fromEntries(ends.map((p) => [p.partition, p.high]));
    const committedByPartition = (fetched) =>
      Object.fromEntries(fetched[0].partitions.map((p) => [p.partition, p.offset]));
    assert.deepEqual(
      committedByPartition(committedAfterFirst),
      endByPartition,
      `committed offsets after ${FIRST} records`,
    );

    // b leaves (LeaveGroup); a must take over every partition and resume at the commits.
    const bCountAtLeave = b.count;
    await bounded('member b disconnect', b.consumer.disconnect(), DISCONNECT_MS);
    phase('member b left');
    await produce(producer, topic, FIRST, FIRST + SECOND);
    phase(`produced ${SECOND} more`);
    await waitFor(
      'member a to be assigned all partitions after b left',
      () => a.assignment && a.assignment.length === PARTITIONS,
      state,
    );
    assert.deepEqual(a.assignment, [0, 1, 2, 3], state());
    phase('member a took over all partitions');
    await waitFor(
      `all ${FIRST + SECOND} records consumed`,
      () => a.count + b.count >= FIRST + SECOND,
      state,
    );
    phase(`consumed ${FIRST + SECOND} (a ${a.count}, b ${b.count})`);
    await sleep(500);
    assert.equal(b.count, bCountAtLeave, `b consumed after leaving: ${state()}`);
    const duplicatesAfter = [...consumed].filter(([, deliveries]) => deliveries.length > 1);
    assert.deepEqual(
      duplicatesAfter,
      [],
      `records delivered more than once after takeover: ${JSON.stringify(duplicatesAfter)}`,
    );
    assert.equal(consumed.size, FIRST + SECOND, state());
    const late = [...consumed.values()].filter(([record]) => Number(record.key.slice(4)) >= FIRST);
    assert.equal(late.length, SECOND, state());
    assert.ok(late.every(([record]) => record.by === 'a'), `late records not all consumed by a: ${state()}`);

    // Committed offsets equal end offsets on every partition.
    const finalEnds = await admin.fetchTopicOffsets(topic);
    const finalEndByPartition = Object.fromEntries(finalEnds.map((p) => [p.partition, p.high]));
    assert.equal(
      Object.values(finalEndByPartition).reduce((sum, o) => sum + Number(o), 0),
      FIRST + SECOND,
      JSON.stringify(finalEnds),
    );
    const committed = await admin.fetchOffsets({ groupId, topics: [topic] });
    assert.deepEqual(committedByPartition(committed), finalEndByPartition, 'committed offsets at the end');
    phase(`committed offsets equal end offsets ${JSON.stringify(finalEndByPartition)}`);
  } finally {
    // Bounded cleanup, so a stuck client cannot keep the process alive.
    const closes = [a.consumer, b.consumer, producer, admin].map((client) =>
      bounded('disconnect', client.disconnect(), DISCONNECT_MS).catch((e) => {
        console.error(`cleanup: ${e.message}`);
      }),
    );
    await Promise.all(closes);
  }
});
