// What the 2PC coordinator API promises, under Paxos Commit: locking reads
// (`tx.read`) under the lock-order rule and `retries`, on two PostgreSQL
// databases of a throwaway cluster; and a typed DTX_UNSUPPORTED for what
// Paxos Commit does not carry out (snapshot reads, the operator API, the
// `signal` and `commitWaitMs` options) instead of a TypeError or an option
// silently ignored.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createPostgresAdapter, type PostgresAdapter } from '../../../src/adapters/postgres.ts';
import type { SqlBranch } from '../../../src/adapters/types.ts';
import { createCoordinator } from '../../../src/runtime/coordinator.ts';
import { AcceptorServer } from '../../../src/runtime/paxos-commit/acceptor-server.ts';
import type { PaxosCommitCoordinator } from '../../../src/runtime/paxos-commit/coordinator.ts';
import { rejectsWithCode } from '../../adapters/helpers.ts';
import { type PgCluster, startPgCluster } from '../../adapters/pg-cluster.ts';
import { accountDbs, tempDir, waitUntil } from './support.ts';

describe('Paxos Commit: the 2PC transaction API', () => {
  const acceptors: AcceptorServer[] = [];
  let pg: PgCluster;
  // p1 and p2: two databases of one cluster, ranked p1 < p2 (name order).
  const dbs: Record<'p1' | 'p2', PostgresAdapter> = {} as never;
  let c: PaxosCommitCoordinator;

  const balance = async (db: 'p1' | 'p2'): Promise<number> => {
    const r = await dbs[db].pool.query('SELECT balance FROM acct WHERE id = 1');
    return Number(r.rows[0].balance);
  };

  before(async () => {
    for (let i = 0; i < 3; i++)
      acceptors.push(await AcceptorServer.start({ listen: '127.0.0.1:0', dataDir: tempDir(`api${i}`) }));
    pg = await startPgCluster();
    const admin = await createPostgresAdapter({ connection: pg.connection });
    await admin.pool.query('CREATE DATABASE p2');
    await admin.close();
    for (const name of ['p1', 'p2'] as const) {
      const database = name === 'p1' ? 'postgres' : 'p2';
      // Lock waits bounded well below the test's patience, so a wait that should not happen shows.
      dbs[name] = await createPostgresAdapter({
        connection: { ...pg.connection, database },
        lockTimeoutMs: 5000,
      });
      await dbs[name].pool.query('CREATE TABLE acct (id int PRIMARY KEY, balance int NOT NULL)');
      await dbs[name].pool.query('INSERT INTO acct VALUES (1, 100)');
    }
    c = await createCoordinator({
      protocol: 'paxos-commit',
      id: 'r1',
      acceptors: acceptors.map((a) => a.url),
      resources: dbs,
    });
  });
  after(async () => {
    await c?.close();
    for (const db of Object.values(dbs)) await db.close();
    await pg?.stop();
    for (const a of acceptors) await a.close();
  });

  test('tx.read: a locking read on one database decides a write on the other; the read-only branch leaves nothing prepared', async () => {
    const seen = await c.transaction(async (tx) => {
      const { rows } = await tx.read<{ balance: number }>(
        'p1',
        'SELECT balance FROM acct WHERE id = $1',
        [1],
      );
      const b = rows[0]!.balance;
      await tx.query('p2', 'UPDATE acct SET balance = balance + $1 WHERE id = 1', [b]);
      return b;
    });
    assert.equal(seen, 100);
    assert.equal(await balance('p1'), 100);
    assert.equal(await balance('p2'), 200);
    assert.deepEqual(await dbs.p1.listPrepared(''), []);
    assert.deepEqual(await dbs.p2.listPrepared(''), []);
  });

  test('tx.read against the lock order does not wait: DTX_LOCK_CONFLICT at once, and `retries` runs the callback again', async () => {
    // Another transaction holds p1's row.
    const holder = (await dbs.p1.begin('holder_1')) as SqlBranch;
    await holder.query('UPDATE acct SET balance = balance WHERE id = 1');
    let attempts = 0;
    const backwards = () =>
      c.transaction(
        async (tx) => {
          attempts++;
          // p2 first (rank 1), then a read on p1 (rank 0): against the order, so no-wait.
          await tx.query('p2', 'UPDATE acct SET balance = balance - 1 WHERE id = 1');
          await tx.read('p1', 'SELECT balance FROM acct WHERE id = 1');
        },
        { retries: 20, backoffMs: 50, backoffMaxMs: 100 },
      );
    const t0 = Date.now();
    await rejectsWithCode(
      c.transaction(async (tx) => {
        await tx.query('p2', 'UPDATE acct SET balance = balance - 1 WHERE id = 1');
        await tx.read('p1', 'SELECT balance FROM acct WHERE id = 1');
      }),
      'DTX_LOCK_CONFLICT',
    );
    // Far below the 5 s lock timeout: it did not wait.
    assert.ok(Date.now() - t0 < 4000, `the backwards read took ${Date.now() - t0} ms`);
    assert.equal(await balance('p2'), 200, 'the failed transaction changed p2');
    // With retries it runs again after the conflict, and succeeds once the holder is gone.
    const retried = backwards();
    await waitUntil('a retry after the conflict', () => attempts >= 2, 60_000);
    await holder.rollback();
    await retried;
    assert.equal(await balance('p2'), 199);
    assert.deepEqual(await dbs.p2.listPrepared(''), []);
  });

  test('bad reads: an unknown resource, a resource without locking reads', async () => {
    const { adapters } = await accountDbs(100);
    const mixed = await createCoordinator({
      protocol: 'paxos-commit',
      id: 'r2',
      acceptors: acceptors.map((a) => a.url),
      resources: { a: adapters.a! },
    });
    try {
      const unknown = await rejectsWithCode(
        mixed.transaction((tx) => tx.read('nope', 'SELECT 1')),
        'DTX_INVALID_ARGUMENT',
      );
      assert.match(unknown.message, /no resource named "nope"/);
      const kv = await rejectsWithCode(
        mixed.transaction((tx) => tx.read('a', 'SELECT 1')),
        'DTX_INVALID_ARGUMENT',
      );
      assert.match(kv.message, /no locking reads/);
    } finally {
      await mixed.close();
    }
  });

  test('what Paxos Commit does not carry out is DTX_UNSUPPORTED, naming it', async () => {
    const anyC = c as unknown as Record<string, () => Promise<unknown>>;
    for (const method of ['snapshot', 'list', 'show', 'retry', 'resolve', 'abandon']) {
      const err = await rejectsWithCode(anyC[method]!.call(c), 'DTX_UNSUPPORTED');
      assert.match(err.message, new RegExp(`${method}\\(\\) is not available with protocol paxos-commit`));
    }
    let ran = false;
    for (const option of [{ signal: new AbortController().signal }, { commitWaitMs: 100 }]) {
      const err = await rejectsWithCode(
        c.transaction(async () => {
          ran = true;
        }, option as never),
        'DTX_UNSUPPORTED',
      );
      assert.match(err.message, new RegExp(`option ${Object.keys(option)[0]}`));
    }
    assert.equal(ran, false, 'the callback ran despite an unsupported option');
    await rejectsWithCode(
      c.transaction(async () => {}, { retries: -1 }),
      'DTX_INVALID_ARGUMENT',
    );
  });
});
