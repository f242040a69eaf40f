// Transactions with kafkajs (its own, pure-JavaScript implementation of the transactional
// producer) against a running Sluice broker whose address is in SLUICE_BOOTSTRAP (host:port).
//
// Run: SLUICE_BOOTSTRAP=127.0.0.1:9092 node --test tests/node/txn.test.js
// (tests/kafkajs.rs starts a broker and does this.)
//
// Commit, abort, commit again with sendOffsets in each: a read_committed consumer
// (readUncommitted: false) sees only the committed records, a read_uncommitted one all of them,
// and the group's committed offset is the last committed transaction's. A second producer with
// the same transactional id fences the first. Every wait is bounded.

'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { Kafka, logLevel } = require('kafkajs');

const BOOTSTRAP = process.env.SLUICE_BOOTSTRAP;
const TEST_TIMEOUT_MS = 85_000;
const WAIT_MS = 30_000;

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function kafka() {
  return new Kafka({
    clientId: 'sluice-txn-test',
    brokers: [BOOTSTRAP],
    logLevel: logLevel.NOTHING,
    retry: { retries: 20, initialRetryTime: 100, maxRetryTime: 1000 },
  });
}

// Reads partition 0 of `topic` from the beginning until `expect` values came and nothing new
// arrived for `quietMs`.
async function readValues(k, topic, readUncommitted, expect, quietMs = 1000) {
  const consumer = k.consumer({
    groupId: `reader-${crypto.randomUUID()}`,
    readUncommitted,
    maxWaitTimeInMs: 100,
  });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const out = [];
  let lastNew = Date.now();
  await consumer.run({
    autoCommit: false,
    eachMessage: async ({ message }) => {
      out.push(message.value.toString());
      lastNew = Date.now();
    },
  });
  const deadline = Date.now() + WAIT_MS;
  while (Date.now() < deadline) {
    if (out.length >= expect && Date.now() - lastNew >= quietMs) break;
    await sleep(50);
  }
  await consumer.disconnect();
  return out;
}

const vals = (prefix, n) => Array.from({ length: n }, (_, i) => `${prefix}-${i}`);

test('kafkajs transactions: commit, abort, commit; sendOffsets; fencing', { timeout: TEST_TIMEOUT_MS }, async () => {
  assert.ok(BOOTSTRAP, 'SLUICE_BOOTSTRAP is not set');
  const k = kafka();
  const topic = `js-txn-${crypto.randomUUID().slice(0, 8)}`;
  const group = `${topic}-group`;
  const admin = k.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });

  const txnId = `js-${topic}`;
  const producer = k.producer({ transactionalId: txnId, idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  let offset = 0;
  for (const [prefix, commit] of [['c1', true], ['a', false], ['c2', true]]) {
    const txn = await producer.transaction();
    await txn.send({ topic, messages: vals(prefix, 4).map((value) => ({ value, partition: 0 })) });
    offset += 4;
    await txn.sendOffsets({
      consumerGroupId: group,
      topics: [{ topic, partitions: [{ partition: 0, offset: String(offset) }] }],
    });
    if (commit) await txn.commit();
    else await txn.abort();
  }

  assert.deepEqual(await readValues(k, topic, false, 8), [...vals('c1', 4), ...vals('c2', 4)]);
  assert.deepEqual(await readValues(k, topic, true, 12), [...vals('c1', 4), ...vals('a', 4), ...vals('c2', 4)]);

  const committed = await admin.fetchOffsets({ groupId: group, topics: [topic] });
  assert.equal(committed[0].partitions[0].offset, '12', JSON.stringify(committed));

  // A second instance fences the first: the first's open transaction is aborted.
  const zombieTxn = await producer.transaction();
  await zombieTxn.send({ topic, messages: [{ value: 'zombie', partition: 0 }] });
  const second = k.producer({ transactionalId: txnId, idempotent: true, maxInFlightRequests: 1 });
  await second.connect();
  // kafkajs initialises its producer id with the first transaction: this fences the first.
  const live = await second.transaction();
  await assert.rejects(zombieTxn.commit(), /fenced|epoch|INVALID_PRODUCER_EPOCH|PRODUCER_FENCED/i);
  await live.send({ topic, messages: [{ value: 'live', partition: 0 }] });
  await live.commit();
  assert.deepEqual(await readValues(k, topic, false, 9), [...vals('c1', 4), ...vals('c2', 4), 'live']);

  await producer.disconnect().catch(() => {});
  await second.disconnect();
  await admin.disconnect();
});
