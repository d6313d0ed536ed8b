// The outbox and the inbox on each database, against the machine's NATS with
// JetStream (a stream per test): only committed messages arrive; bad input is
// refused before it reaches SQL; a message already recorded in the inbox is
// skipped; two relays on one outbox keep every key in order and never publish
// a row twice; a message that keeps failing is dead-lettered after N deliveries.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { OutboxPayload } from '../../src/adapters/outbox.ts';
import { DtxError } from '../../src/errors.ts';
import { consume, type InboxConsumer } from '../../src/runtime/outbox/inbox.ts';
import { type Relay, startRelay } from '../../src/runtime/outbox/relay.ts';
import { rejectsWithCode, runId } from '../adapters/helpers.ts';
import { openTestDb, type TestDb } from './dialects.ts';
import { createStream, deleteStream, natsConnect, sharedNatsUrl, sleep, waitFor } from './support.ts';

async function streamCount(nc: NatsConnection, stream: string): Promise<number> {
  const jsm = await jetstreamManager(nc);
  return (await jsm.streams.info(stream)).state.messages;
}

for (const kind of ['postgres', 'mariadb', 'sqlite'] as const) {
  describe(`outbox and inbox on ${kind}`, () => {
    const run = runId();
    let db: TestDb;
    let nc: NatsConnection;
    let streamSeq = 0;
    const streams: string[] = [];
    const quiet = () => undefined;

    /** A fresh stream and outbox rows that only this test publishes to it. */
    async function newStream(): Promise<string> {
      const name = `OB_${kind}_${run}_${++streamSeq}`.toUpperCase();
      streams.push(name);
      return createStream(nc, name);
    }

    before(async () => {
      db = await openTestDb(kind, run);
      nc = await natsConnect(sharedNatsUrl);
    });

    after(async () => {
      for (const s of streams) await deleteStream(nc, s);
      await nc?.close();
      await db?.dispose();
    });

    test('only committed messages are published; each is applied once at the consumer', async () => {
      const stream = await newStream();
      const committed: string[] = [];
      for (let i = 0; i < 6; i++) {
        const id = `${stream}-o${i}`;
        const rollBack = i % 3 === 2;
        await db
          .produce(async (t) => {
            await t.order(id);
            await t.publish(`${stream}.orders`, { orderId: id }, { id });
            if (rollBack) throw new Error('business rule says no');
          })
          .catch((e: Error) => assert.equal(e.message, 'business rule says no'));
        if (!rollBack) committed.push(id);
      }
      assert.equal(await db.outbox.unsentCount(), 4);
      const relay = await startRelay({ db: db.outbox, nats: nc, stream, pollMs: 20, log: quiet });
      const consumer = await consume(
        { nats: nc, stream, durable: 'c', db: db.inbox, log: quiet },
        async (m, tx) => db.applyEffect(tx, m.json<{ orderId: string }>().orderId),
      );
      try {
        await waitFor('4 applied', () => consumer.stats().applied === 4);
        await waitFor('outbox drained', async () => (await db.outbox.unsentCount()) === 0);
        await sleep(300); // room for anything extra to show up
        const effects = await db.effects();
        assert.deepEqual([...effects.keys()].sort(), committed.sort());
        for (const [id, n] of effects) assert.equal(n, 1, `${id} applied ${n} times`);
        assert.equal(await streamCount(nc, stream), 4);
        assert.equal(relay.stats().duplicates, 0);
        const entry = await db.inbox.entry(committed[0]!);
        assert.equal(entry?.state, 'done');
      } finally {
        await relay.stop();
        await consumer.stop();
      }
    });

    test('bad subjects, ids, keys, payloads and a reused id are refused with DTX_INVALID_ARGUMENT', async () => {
      const bad: [string, unknown, { id?: string; key?: string }?][] = [
        ['orders.*', 1],
        ['orders.>', 1],
        ['orders..x', 1],
        ["orders'; DROP TABLE x; --", 1],
        ['', 1],
        ['orders', 1, { id: "a'b" }],
        ['orders', 1, { id: '' }],
        ['orders', 1, { id: 'x'.repeat(129) }],
        ['orders', 1, { key: 'line\nbreak' }],
        ['orders', 1, { key: '' }],
        ['orders', () => 1],
        ['orders', new Uint8Array(1_000_001)],
      ];
      for (const [subject, payload, opts] of bad) {
        await rejectsWithCode(
          db.produce(async (t) => {
            await t.publish(subject, payload as OutboxPayload, opts);
          }),
          'DTX_INVALID_ARGUMENT',
        );
      }
      const stream = await newStream();
      const id = `dup-${run}`;
      await db.produce(async (t) => void (await t.publish(`${stream}.orders`, 1, { id })));
      const e = await rejectsWithCode(
        db.produce(async (t) => void (await t.publish(`${stream}.orders`, 2, { id }))),
        'DTX_INVALID_ARGUMENT',
      );
      assert.match(e.message, /already in the outbox/);
      // Nothing else was written, and the first message is still there, once.
      assert.equal(await db.outbox.unsentCount(), 1);
      const relay = await startRelay({ db: db.outbox, nats: nc, stream, pollMs: 20, log: quiet });
      await waitFor('outbox drained', async () => (await db.outbox.unsentCount()) === 0);
      await relay.stop();
      assert.equal(await streamCount(nc, stream), 1);
    });

    test('a message the inbox already recorded is skipped: its effect stays applied once', async () => {
      const stream = await newStream();
      const id = `${stream}-x`;
      // As if an earlier consumer committed the effect and died before its ack.
      await db.inbox.transaction(async (tx, sql) => {
        assert.ok(
          await sql.record({ id, subject: `${stream}.orders`, streamSeq: 1, deliveries: 1, state: 'done' }),
        );
        await db.applyEffect(tx, id);
      });
      await db.produce(async (t) => void (await t.publish(`${stream}.orders`, { orderId: id }, { id })));
      await db.produce(
        async (t) => void (await t.publish(`${stream}.orders`, { orderId: `${id}2` }, { id: `${id}2` })),
      );
      const relay = await startRelay({ db: db.outbox, nats: nc, stream, pollMs: 20, log: quiet });
      const consumer = await consume(
        { nats: nc, stream, durable: 'c', db: db.inbox, log: quiet },
        async (m, tx) => db.applyEffect(tx, m.json<{ orderId: string }>().orderId),
      );
      try {
        await waitFor('both handled', () => consumer.stats().applied + consumer.stats().skipped === 2);
        assert.deepEqual(consumer.stats(), { applied: 1, skipped: 1, retried: 0, deadLettered: 0 });
        const effects = await db.effects();
        assert.equal(effects.get(id), 1);
        assert.equal(effects.get(`${id}2`), 1);
      } finally {
        await relay.stop();
        await consumer.stop();
      }
    });

    test('two relays on one outbox: every key in order, no row published twice', async () => {
      const stream = await newStream();
      const keys = ['k1', 'k2', 'k3'];
      const total = 60;
      for (let i = 0; i < total; i++) {
        const key = keys[i % keys.length]!;
        await db.produce(
          async (t) =>
            void (await t.publish(`${stream}.${key}`, { key, n: i }, { id: `${stream}-${i}`, key })),
        );
      }
      const seen: { key: string; n: number }[] = [];
      const consumer = await consume(
        { nats: nc, stream, durable: 'c', db: db.inbox, log: quiet },
        async (m) => {
          seen.push(m.json());
        },
      );
      const relays: Relay[] = [];
      for (const relayId of ['ra', 'rb']) {
        relays.push(
          await startRelay({ db: db.outbox, nats: nc, stream, relayId, batch: 4, pollMs: 10, log: quiet }),
        );
      }
      try {
        await waitFor('all consumed', () => seen.length >= total);
        await sleep(300);
        assert.equal(seen.length, total);
        for (const key of keys) {
          const ns = seen.filter((s) => s.key === key).map((s) => s.n);
          assert.deepEqual(
            ns,
            [...ns].sort((a, b) => a - b),
            `key ${key} out of order`,
          );
        }
        const stats = relays.map((r) => r.stats());
        assert.equal(stats[0]!.published + stats[1]!.published, total);
        assert.equal(stats[0]!.duplicates + stats[1]!.duplicates, 0, 'a row was published by both relays');
        assert.equal(await streamCount(nc, stream), total);
      } finally {
        for (const r of relays) await r.stop();
        await consumer.stop();
      }
    });

    test('sent rows are pruned after the retention; unsent ones never', async () => {
      const stream = await newStream();
      for (let i = 0; i < 3; i++) {
        await db.produce(
          async (t) => void (await t.publish(`${stream}.orders`, i, { id: `${stream}-${i}` })),
        );
      }
      const first = await startRelay({ db: db.outbox, nats: nc, stream, pollMs: 20, log: quiet });
      await waitFor('outbox drained', async () => (await db.outbox.unsentCount()) === 0);
      await first.stop();
      await sleep(20);
      // An unsent row (no stream takes its subject, so it stays unsent) must survive the prune.
      await db.produce(async (t) => void (await t.publish(`nostream.${stream}`, 1)));
      const second = await startRelay({
        db: db.outbox,
        nats: nc,
        stream,
        retentionMs: 10,
        pollMs: 20,
        publishTimeoutMs: 200,
        log: quiet,
      });
      await waitFor('a round', () => second.stats().rounds > 0);
      await second.stop();
      assert.ok(second.stats().pruned >= 3, `pruned ${second.stats().pruned}`);
      assert.equal(await db.outbox.unsentCount(), 1);
      assert.equal((await db.outbox.scan(10)).length, 1);
      // Leave nothing unsent for the next test's relays.
      const [row] = await db.outbox.scan(1);
      await db.outbox.markSent([row!.seq], Date.now());
    });

    test('a message whose handler keeps failing is dead-lettered after N deliveries, visibly', async () => {
      const stream = await newStream();
      const deadStream = `${stream}_DEAD`;
      streams.push(deadStream);
      const jsm = await jetstreamManager(nc);
      const deadSubject = `dead.${stream}`;
      await jsm.streams.add({ name: deadStream, subjects: [deadSubject] });
      const poison = `${stream}-poison`;
      for (const id of [`${stream}-a`, poison, `${stream}-b`]) {
        await db.produce(async (t) => void (await t.publish(`${stream}.orders`, { orderId: id }, { id })));
      }
      const lines: string[] = [];
      const relay = await startRelay({ db: db.outbox, nats: nc, stream, pollMs: 20, log: quiet });
      let consumer: InboxConsumer | undefined;
      try {
        consumer = await consume(
          {
            nats: nc,
            stream,
            durable: 'c',
            db: db.inbox,
            attemptsMax: 3,
            deadLetterSubject: deadSubject,
            log: (l) => lines.push(l),
          },
          async (m, tx) => {
            const { orderId } = m.json<{ orderId: string }>();
            await db.applyEffect(tx, orderId);
            if (orderId === poison) throw new DtxError('DTX_INVALID_ARGUMENT', 'cannot apply this order');
          },
        );
        const c = consumer;
        await waitFor('the poison message dead-lettered', () => c.stats().deadLettered === 1);
        await waitFor('the others applied', () => c.stats().applied === 2);
        assert.equal(c.stats().retried, 2);
        const entry = await db.inbox.entry(poison);
        assert.equal(entry?.state, 'dead');
        assert.equal(entry?.deliveries, 3);
        assert.match(entry?.error ?? '', /cannot apply this order/);
        assert.equal(lines.filter((l) => l.includes('dead-lettered')).length, 1);
        assert.equal((await jsm.streams.info(deadStream)).state.messages, 1);
        const dead = await jsm.streams.getMessage(deadStream, { seq: 1 });
        assert.equal(dead?.header.get('Dtx-Original-Subject'), `${stream}.orders`);
        // Its failed attempts rolled back their effects.
        assert.equal((await db.effects()).get(poison), undefined);
      } finally {
        await relay.stop();
        await consumer?.stop();
      }
    });
  });
}
