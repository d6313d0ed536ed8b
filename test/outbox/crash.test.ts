// Exactly-once across crashes, with real processes and a broker of the
// tests' own (so it can be killed): a `dtx relay` SIGKILLed between
// JetStream's ack and marking the row sent (the republish is deduplicated);
// a consumer SIGKILLed between its commit and its ack (the redelivery is
// skipped); the broker SIGKILLed and restarted under a running relay (it
// backs off, says so once, and resumes, losing and doubling nothing); and N
// transfers through random kills of relays and consumers, after which every
// committed transfer is applied exactly once and no rolled-back one at all.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { consume } from '../../src/runtime/outbox/inbox.ts';
import { startRelay } from '../../src/runtime/outbox/relay.ts';
import { Prng } from '../../src/sim/prng.ts';
import { runId } from '../adapters/helpers.ts';
import { openTestDb, type TestDb } from './dialects.ts';
import { type Child, spawnConsumer, spawnRelay } from './processes.ts';
import { createStream, natsConnect, type OwnNats, sleep, startOwnNats, waitFor } from './support.ts';

const pgUrl = 'postgres://postgres@127.0.0.1:5432/test';
const quiet = () => undefined;

async function streamCount(nc: NatsConnection, stream: string): Promise<number> {
  return (await (await jetstreamManager(nc)).streams.info(stream)).state.messages;
}

/** Asserts each of `committed` has exactly one effect and nothing else has any. */
function assertExactlyOnce(effects: Map<string, number>, committed: readonly string[]) {
  for (const id of committed) assert.equal(effects.get(id), 1, `${id} applied ${effects.get(id) ?? 0} times`);
  const extra = [...effects.keys()].filter((id) => !committed.includes(id));
  assert.deepEqual(extra, [], 'effects of messages that were never committed');
}

describe('outbox crashes', () => {
  let nats: OwnNats;
  let nc: NatsConnection;
  const dbs: TestDb[] = [];
  const children: Child[] = [];

  before(async () => {
    nats = await startOwnNats();
    nc = await natsConnect(nats.url);
  });

  after(async () => {
    for (const c of children) await c.kill9();
    await nc?.close();
    for (const db of dbs) await db.dispose();
    await nats?.dispose();
  });

  async function setup(prefix: string) {
    const run = runId();
    const db = await openTestDb('postgres', run);
    dbs.push(db);
    const stream = await createStream(nc, `${prefix}_${run}`.toUpperCase());
    return { run, db, stream };
  }

  const relayArgs = (run: string, stream: string, extra: string[] = []) => [
    '--db',
    pgUrl,
    '--nats',
    nats.url,
    '--stream',
    stream,
    '--table',
    `dtx_ob_${run}`,
    '--lease-ms',
    '3000',
    ...extra,
  ];

  async function produce(db: TestDb, stream: string, ids: string[]) {
    for (const id of ids) {
      await db.produce(async (t) => {
        await t.order(id);
        await t.publish(`${stream}.orders`, { orderId: id }, { id });
      });
    }
  }

  test('relay SIGKILLed after the ack, before marking sent: the republish is deduplicated, applied once', async () => {
    const { run, db, stream } = await setup('RK');
    const ids = [1, 2, 3, 4, 5].map((i) => `${stream}-${i}`);
    await produce(db, stream, ids);
    const first = spawnRelay(relayArgs(run, stream, ['--batch', '1', '--crash-after-acks', '3']));
    children.push(first);
    await first.waitForOutput('crash point after ack 3');
    assert.equal((await first.exited).signal, 'SIGKILL');
    // Three in the stream, the third not marked sent.
    assert.equal(await streamCount(nc, stream), 3);
    assert.equal(await db.outbox.unsentCount(), 3);
    const second = spawnRelay(relayArgs(run, stream));
    children.push(second);
    await waitFor('outbox drained', async () => (await db.outbox.unsentCount()) === 0);
    await second.stop();
    // It published the three unsent rows; JetStream dropped the third as a duplicate.
    assert.match(second.stderr(), /3 published \(1 duplicates dropped by the stream\)/);
    assert.equal(await streamCount(nc, stream), 5);
    const consumer = await consume(
      { nats: nc, stream, durable: 'c', db: db.inbox, log: quiet },
      async (m, tx) => db.applyEffect(tx, m.json<{ orderId: string }>().orderId),
    );
    await waitFor('5 applied', () => consumer.stats().applied === 5);
    await consumer.stop();
    assertExactlyOnce(await db.effects(), ids);
  });

  test('consumer SIGKILLed between commit and ack: the redelivered message is skipped, applied once', async () => {
    const { run, db, stream } = await setup('CK');
    const ids = [1, 2, 3].map((i) => `${stream}-${i}`);
    await produce(db, stream, ids);
    const relay = await startRelay({ db: db.outbox, nats: nc, stream, log: quiet });
    const cfg = {
      nats: nats.url,
      stream,
      durable: 'c',
      kind: 'postgres' as const,
      inboxTable: `dtx_ib_${run}`,
      effectsTable: `effects_${run}`,
      ackWaitMs: 1500,
    };
    try {
      const first = spawnConsumer({ ...cfg, crashAfterCommits: 1 });
      children.push(first);
      await first.waitForOutput('crash point: committed, not acked');
      assert.equal((await first.exited).signal, 'SIGKILL');
      const afterCrash = await db.effects();
      assert.equal(afterCrash.get(ids[0]!), 1, 'the first message committed before the kill');
      const second = spawnConsumer(cfg);
      children.push(second);
      await waitFor('all applied', async () => (await db.effects()).size === 3);
      await second.stop();
      const stats = JSON.parse(second.stdout().trim().split('\n').at(-1)!) as {
        applied: number;
        skipped: number;
      };
      // At least once: on a loaded machine an ack can take longer than
      // ackWaitMs, and the stream redelivers that message again; the inbox
      // skips every such copy, so only `applied` must be exact.
      assert.ok(stats.skipped >= 1, `the redelivered message was skipped (skipped ${stats.skipped})`);
      assert.equal(stats.applied, 2);
      assertExactlyOnce(await db.effects(), ids);
    } finally {
      await relay.stop();
    }
  });

  test('broker SIGKILLed and restarted: the relay backs off, says so once, resumes; nothing lost or doubled', async () => {
    const { db, stream } = await setup('BK');
    const lines: string[] = [];
    const relay = await startRelay({
      db: db.outbox,
      nats: nc,
      stream,
      leaseMs: 3000,
      log: (l) => lines.push(l),
    });
    const consumer = await consume(
      { nats: nc, stream, durable: 'c', db: db.inbox, log: quiet },
      async (m, tx) => db.applyEffect(tx, m.json<{ orderId: string }>().orderId),
    );
    try {
      const before = Array.from({ length: 20 }, (_, i) => `${stream}-a${i}`);
      await produce(db, stream, before);
      await waitFor('first half applied', () => consumer.stats().applied === 20);
      await nats.kill();
      const during = Array.from({ length: 20 }, (_, i) => `${stream}-b${i}`);
      await produce(db, stream, during);
      await waitFor('the relay backing off', () => relay.stats().backingOff);
      await waitFor('several failed rounds', () => relay.stats().failures >= 3);
      assert.equal(lines.filter((l) => l.includes('backing off')).length, 1, lines.join('\n'));
      await nats.start();
      await waitFor('second half applied', () => consumer.stats().applied === 40, 90_000);
      await waitFor('outbox drained', async () => (await db.outbox.unsentCount()) === 0);
      assert.equal(lines.filter((l) => l.includes('recovered')).length, 1, lines.join('\n'));
      assert.equal(lines.filter((l) => l.includes('backing off')).length, 1, lines.join('\n'));
      assert.equal(await streamCount(nc, stream), 40);
      assertExactlyOnce(await db.effects(), [...before, ...during]);
    } finally {
      await relay.stop();
      await consumer.stop();
    }
  });

  test('exactly once end to end: transfers through random kills of relays and consumers', async (t) => {
    const seed = Number(process.env.DTX_TEST_SEED ?? Date.now() % 1_000_000);
    const rng = new Prng(seed);
    const note = `seed ${seed} (rerun with DTX_TEST_SEED=${seed})`;
    const { run, db, stream } = await setup('E2E');
    // The consumer's service keeps its books in MariaDB; the producer's in PostgreSQL.
    const consumerRun = runId();
    const consumerDb = await openTestDb('mariadb', consumerRun);
    dbs.push(consumerDb);
    const cfg = {
      nats: nats.url,
      stream,
      durable: 'c',
      kind: 'mariadb' as const,
      inboxTable: `dtx_ib_${consumerRun}`,
      effectsTable: `effects_${consumerRun}`,
      ackWaitMs: 1500,
    };
    const transfers = 150;
    const committed: string[] = [];
    let kills = 0;
    let producing = true;
    const relays: (Child | undefined)[] = [undefined, undefined];
    let consumer: Child | undefined;

    // Chaos: every 0.4-1.6 s, SIGKILL one of the two relays or the consumer
    // (and one consumer start in two kills itself right after a commit), at
    // least 8 times and until the producer is done.
    const chaos = (async () => {
      while (producing || kills < 8) {
        for (let i = 0; i < relays.length; i++) {
          if (relays[i] === undefined) {
            relays[i] = spawnRelay(relayArgs(run, stream, ['--batch', '8', '--relay-id', `r${i}-${kills}`]));
            children.push(relays[i]!);
          }
        }
        if (consumer === undefined) {
          const crashAfterCommits = rng.next() < 0.5 ? 1 + rng.int(5) : undefined;
          consumer = spawnConsumer(crashAfterCommits === undefined ? cfg : { ...cfg, crashAfterCommits });
          children.push(consumer);
          const c = consumer;
          void c.exited.then(() => {
            if (consumer === c) consumer = undefined;
          });
        }
        await sleep(400 + rng.int(1200));
        // Kill only processes that are up and working, so that kills land in
        // the middle of publishing and consuming rather than during start-up.
        const up = (c: Child | undefined) =>
          c !== undefined && (c.stderr().includes('dtx relay: relaying') || c.stdout().includes('ready'));
        const victim = rng.int(3);
        if (victim < 2 && up(relays[victim])) {
          kills++;
          await relays[victim]?.kill9();
          relays[victim] = undefined;
        } else if (victim === 2 && up(consumer)) {
          kills++;
          await consumer?.kill9();
          consumer = undefined;
        }
      }
    })();

    for (let i = 0; i < transfers; i++) {
      const id = `${stream}-t${i}`;
      const rollBack = rng.next() < 0.25;
      await db
        .produce(async (t) => {
          await t.order(id);
          await t.publish(`${stream}.transfers`, { orderId: id }, { id, key: `acct-${i % 7}` });
          if (rollBack) throw new Error('rolled back');
        })
        .catch(() => undefined);
      if (!rollBack) committed.push(id);
      await sleep(rng.int(60));
    }
    producing = false;
    await chaos;
    const appliedDuringChaos = (await consumerDb.effects()).size;
    const crashesAtCommit = children.filter((c) => c.stdout().includes('crash point')).length;
    // Heal: one relay and one consumer run undisturbed until everything is in.
    for (const r of relays) await r?.kill9();
    await consumer?.kill9();
    const relay = spawnRelay(relayArgs(run, stream));
    const last = spawnConsumer(cfg);
    children.push(relay, last);
    try {
      await waitFor(
        `every committed transfer applied (${note})`,
        async () => (await consumerDb.effects()).size >= committed.length,
        120_000,
      );
      await sleep(2_000); // a late duplicate would land now
      t.diagnostic(
        `${note}: ${committed.length}/${transfers} committed, ${kills} SIGKILLs, ${crashesAtCommit} consumer kills between commit and ack, ` +
          `${appliedDuringChaos} applied before the heal, ${await streamCount(nc, stream)} messages in the stream`,
      );
      const effects = await consumerDb.effects();
      try {
        assertExactlyOnce(effects, committed);
      } catch (error) {
        throw new Error(`${note}: ${(error as Error).message}`);
      }
      assert.equal(
        await streamCount(nc, stream),
        committed.length,
        'the stream holds each committed transfer once',
      );
      assert.ok(kills >= 8, `only ${kills} kills happened`);
      assert.equal(await db.outbox.unsentCount(), 0);
    } finally {
      await relay.stop();
      await last.stop();
    }
  });
});
