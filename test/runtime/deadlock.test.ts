// A distributed deadlock: two transfers lock the same rows in opposite order
// on two PostgreSQL clusters. Neither database sees a cycle — each sees one
// transaction waiting for another — so neither database's deadlock detector
// can break it. dtx bounds every lock wait (lock_timeout), so the cycle ends
// in a lock conflict within that bound: the transaction that times out is
// rolled back everywhere (both may, when they started waiting at the same
// moment) and retried after a jittered backoff, and both transfers commit.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { createPostgresAdapter, type PostgresAdapter } from '../../src/adapters/postgres.ts';
import type { TwoPcRecord } from '../../src/protocol/twopc/types.ts';
import { createCoordinator } from '../../src/runtime/coordinator.ts';
import { openSqliteLog } from '../../src/runtime/log/sqlite.ts';
import { type PgCluster, startPgCluster } from '../adapters/pg-cluster.ts';

const lockTimeoutMs = 1_000;
let clusters: PgCluster[] = [];
let adapters: PostgresAdapter[] = [];

before(async () => {
  clusters = await Promise.all([startPgCluster(), startPgCluster()]);
  for (const c of clusters) {
    const client = new pg.Client(c.connection);
    await client.connect();
    await client.query('CREATE TABLE acct (id int PRIMARY KEY, balance int NOT NULL)');
    await client.query('INSERT INTO acct VALUES (1, 100)');
    await client.end();
  }
  adapters = await Promise.all(
    clusters.map((c) => createPostgresAdapter({ connection: c.connection, lockTimeoutMs })),
  );
});

after(async () => {
  await Promise.allSettled(adapters.map((a) => a.close()));
  await Promise.allSettled(clusters.map((c) => c.stop()));
});

test('a cross-database lock cycle ends within the lock timeout; the loser is retried and both commit', async () => {
  const log = await openSqliteLog<TwoPcRecord>(`/tmp/dtx-deadlock-${process.pid}.sqlite`, {
    create: true,
  });
  const coordinator = await createCoordinator({ log, resources: { east: adapters[0]!, west: adapters[1]! } });
  // Both transactions take their first lock before either asks for its second.
  let firstLocks = 0;
  let release: () => void = () => {};
  const bothLocked = new Promise<void>((r) => (release = r));
  const attempts = { ab: 0, ba: 0 };
  const transfer = (first: 'east' | 'west', second: 'east' | 'west', key: 'ab' | 'ba') =>
    coordinator.transaction(
      async (tx) => {
        attempts[key]++;
        await tx.query(first, 'UPDATE acct SET balance = balance - 1 WHERE id = 1');
        if (attempts[key] === 1) {
          if (++firstLocks === 2) release();
          await bothLocked;
        }
        await tx.query(second, 'UPDATE acct SET balance = balance + 1 WHERE id = 1');
      },
      { retries: 5, backoffMs: 50 },
    );
  const started = Date.now();
  await Promise.all([transfer('east', 'west', 'ab'), transfer('west', 'east', 'ba')]);
  const elapsedMs = Date.now() - started;
  // One lock timeout to break the cycle, a short backoff, and the retries.
  assert.ok(elapsedMs < 4 * lockTimeoutMs, `the cycle took ${elapsedMs} ms to resolve`);
  assert.ok(
    attempts.ab + attempts.ba >= 3,
    `attempts: ${JSON.stringify(attempts)}: the cycle was never broken?`,
  );
  // Each transfer moved one unit out of one cluster and into the other, so both are back at 100.
  for (const c of clusters) {
    const client = new pg.Client(c.connection);
    await client.connect();
    const { rows } = await client.query('SELECT balance FROM acct WHERE id = 1');
    await client.end();
    assert.equal(rows[0].balance, 100);
  }
  assert.deepEqual(await adapters[0]!.listPrepared('dtx_'), []);
  assert.deepEqual(await adapters[1]!.listPrepared('dtx_'), []);
  await coordinator.close();
  await log.close();
  console.log(
    `deadlock resolved in ${elapsedMs} ms (lock timeout ${lockTimeoutMs} ms), attempts ${JSON.stringify(attempts)}`,
  );
});
