// The PostgreSQL adapter against real servers: a throwaway cluster with
// max_prepared_transactions = 64 (started and removed by this file) for the
// two-phase-commit paths, and the machine's own server at 127.0.0.1:5432, which
// runs with max_prepared_transactions = 0, for the typed "disabled" error.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { createPostgresAdapter, type PostgresAdapter } from '../../src/adapters/postgres.ts';
import { LockConflictError, PreparedTxnsDisabledError } from '../../src/errors.ts';
import { hostileGids, rejectsWithCode, runId } from './helpers.ts';
import { type PgCluster, startPgCluster } from './pg-cluster.ts';
import { phaseTwoTests } from './sql-suite.ts';

const run = runId();
const prefix = `dtxt_${run}_`;
const table = `dtx_pg_${run}`;
let gidSeq = 0;
const nextGid = (label: string) => `${prefix}${label}_${++gidSeq}`;

let cluster: PgCluster;
let adapter: PostgresAdapter;
let admin: pg.Client;

async function balance(id: number): Promise<number> {
  const result = await admin.query<{ balance: number }>(`SELECT balance FROM ${table} WHERE id = $1`, [id]);
  return result.rows[0]!.balance;
}

describe('PostgreSQL adapter, two-phase commit (throwaway cluster)', () => {
  before(async () => {
    cluster = await startPgCluster();
    admin = new pg.Client(cluster.connection);
    await admin.connect();
    await admin.query(`CREATE TABLE ${table} (id int PRIMARY KEY, balance int NOT NULL)`);
    await admin.query(`INSERT INTO ${table} SELECT g, 100 FROM generate_series(1, 20) g`);
    adapter = await createPostgresAdapter({ connection: cluster.connection, lockTimeoutMs: 5000 });
  });

  after(async () => {
    // Leave nothing prepared behind, even when a test failed half-way.
    try {
      if (adapter !== undefined) {
        const cleanup = await createPostgresAdapter({ connection: cluster.connection });
        for (const { gid } of await cleanup.listPrepared(prefix)) await cleanup.rollbackPrepared(gid);
        await cleanup.close();
        await adapter.close();
      }
      await admin?.end();
    } finally {
      await cluster?.stop();
    }
  });

  test('prepare -> commitPrepared applies the work, once', async () => {
    const gid = nextGid('commit');
    const branch = await adapter.begin(gid);
    assert.equal(branch.state, 'active');
    const updated = await branch.query(`UPDATE ${table} SET balance = balance - 30 WHERE id = $1`, [1]);
    assert.equal(updated.rowCount, 1);
    const seen = await branch.query<{ balance: number }>(`SELECT balance FROM ${table} WHERE id = $1`, [1]);
    assert.equal(seen.rows[0]?.balance, 70);

    assert.equal(await branch.prepare(), 'yes');
    assert.equal(branch.state, 'prepared');
    const listed = await adapter.listPrepared(prefix);
    assert.ok(listed.some((b) => b.gid === gid && b.preparedAt instanceof Date));
    assert.equal(await balance(1), 100, 'prepared work is not visible yet');

    assert.equal(await adapter.commitPrepared(gid), 'done');
    assert.equal(await balance(1), 70);
    assert.equal(await adapter.commitPrepared(gid), 'unknown', 'second commit is idempotent');
    assert.equal(await adapter.rollbackPrepared(gid), 'unknown');
    assert.ok(!(await adapter.listPrepared(prefix)).some((b) => b.gid === gid));
  });

  phaseTwoTests({ adapter: () => adapter, table, nextGid, balance });

  test('a branch that wrote nothing votes readOnly and leaves nothing prepared', async () => {
    const gid = nextGid('ro');
    const branch = await adapter.begin(gid);
    await branch.query(`SELECT * FROM ${table} WHERE id = 3`);
    assert.equal(await branch.prepare(), 'readOnly');
    assert.equal(branch.state, 'readOnly');
    assert.ok(!(await adapter.listPrepared(prefix)).some((b) => b.gid === gid));
    assert.equal(await adapter.commitPrepared(gid), 'unknown');
  });

  test('a branch that changed rows prepares in one round trip and still learns its transaction id', async () => {
    // Counts what the branch's connection sends, from checkout on.
    const pool = new pg.Pool(cluster.connection);
    const sent: string[] = [];
    pool.on('acquire', (client) => {
      const query = client.query.bind(client) as (...args: unknown[]) => unknown;
      (client as { query: unknown }).query = (...args: unknown[]) => {
        sent.push(String(args[0]));
        return query(...args);
      };
    });
    const counting = await createPostgresAdapter({ pool, checkPrerequisites: false });
    try {
      const gid = nextGid('onetrip');
      const branch = await counting.begin(gid);
      await branch.query(`UPDATE ${table} SET balance = balance + 1 WHERE id = $1`, [20]);
      sent.length = 0;
      assert.equal(await branch.prepare(), 'yes');
      assert.equal(sent.length, 1, `prepare sent ${JSON.stringify(sent)}`);
      assert.match(branch.evidence ?? '', /^[0-9]+$/);
      assert.equal(await counting.commitPrepared(gid), 'done');
      assert.equal(await counting.fateOf(gid, branch.evidence), 'committed');

      // An UPDATE that matched no row changed nothing: the probe decides, and the vote is readOnly.
      const ro = await counting.begin(nextGid('onetrip_ro'));
      await ro.query(`UPDATE ${table} SET balance = 0 WHERE id = $1`, [-1]);
      assert.equal(await ro.prepare(), 'readOnly');
    } finally {
      await counting.close();
      await pool.end();
    }
  });

  test('readOnlyVote: false prepares read-only branches too', async () => {
    const strict = await createPostgresAdapter({ connection: cluster.connection, readOnlyVote: false });
    try {
      const gid = nextGid('rostrict');
      const branch = await strict.begin(gid);
      await branch.query('SELECT 1');
      assert.equal(await branch.prepare(), 'yes');
      assert.equal(await strict.commitPrepared(gid), 'done');
    } finally {
      await strict.close();
    }
  });

  test('a prepared branch keeps its row lock until COMMIT PREPARED', async () => {
    const gid = nextGid('lock');
    const branch = await adapter.begin(gid);
    await branch.query(`UPDATE ${table} SET balance = balance + 1 WHERE id = 4`);
    assert.equal(await branch.prepare(), 'yes');

    // A plain session gives up after lock_timeout.
    const other = new pg.Client(cluster.connection);
    await other.connect();
    try {
      await other.query("SET lock_timeout = '200ms'");
      await assert.rejects(other.query(`UPDATE ${table} SET balance = 0 WHERE id = 4`), { code: '55P03' });

      // A dtx branch gets a typed, retryable lock conflict and is rolled back.
      const impatient = await createPostgresAdapter({ connection: cluster.connection, lockTimeoutMs: 200 });
      try {
        const loser = await impatient.begin(nextGid('lockloser'));
        const error = await rejectsWithCode(
          loser.query(`UPDATE ${table} SET balance = 0 WHERE id = 4`),
          'DTX_LOCK_CONFLICT',
        );
        assert.ok(error instanceof LockConflictError);
        assert.equal(error.retryable, true);
        assert.equal(loser.state, 'rolledBack');
        await rejectsWithCode(loser.query('SELECT 1'), 'DTX_INVALID_STATE');
      } finally {
        await impatient.close();
      }

      assert.equal(await adapter.commitPrepared(gid), 'done');
      const after = await other.query(`UPDATE ${table} SET balance = balance + 10 WHERE id = 4`);
      assert.equal(after.rowCount, 1);
      assert.equal(await balance(4), 111);
    } finally {
      await other.end();
    }
  });

  test('a fresh adapter finds prepared branches by prefix and resolves them by gid alone', async () => {
    const first = await createPostgresAdapter({ connection: cluster.connection });
    const gidA = nextGid('recoverA');
    const gidB = nextGid('recoverB');
    for (const [gid, id] of [
      [gidA, 5],
      [gidB, 6],
    ] as const) {
      const branch = await first.begin(gid);
      await branch.query(`UPDATE ${table} SET balance = 1 WHERE id = $1`, [id]);
      assert.equal(await branch.prepare(), 'yes');
    }
    await first.close(); // the "crash": all of its connections are gone

    const recovery = await createPostgresAdapter({ connection: cluster.connection });
    try {
      const found = (await recovery.listPrepared(`${prefix}recover`)).map((b) => b.gid);
      assert.deepEqual(found, [gidA, gidB]);
      assert.equal(await recovery.commitPrepared(gidA), 'done');
      assert.equal(await recovery.rollbackPrepared(gidB), 'done');
      assert.equal(await balance(5), 1);
      assert.equal(await balance(6), 100);
      assert.deepEqual(await recovery.listPrepared(`${prefix}recover`), []);
    } finally {
      await recovery.close();
    }
  });

  test('listPrepared only shows the current database; resolving from another one fails loudly', async () => {
    const otherDb = `dtx_other_${run}`;
    await admin.query(`CREATE DATABASE ${otherDb}`);
    const elsewhere = await createPostgresAdapter({
      connection: { ...cluster.connection, database: otherDb },
    });
    const gid = nextGid('otherdb');
    try {
      const branch = await adapter.begin(gid);
      await branch.query(`UPDATE ${table} SET balance = balance WHERE id = 7`);
      assert.equal(await branch.prepare(), 'yes');
      assert.deepEqual(await elsewhere.listPrepared(prefix), []);
      // Not 'unknown': the branch exists, it is just not this database's to finish.
      await rejectsWithCode(elsewhere.commitPrepared(gid), 'DTX_QUERY_FAILED');
      assert.equal(await adapter.commitPrepared(gid), 'done');
    } finally {
      await elsewhere.close();
      await admin.query(`DROP DATABASE ${otherDb}`);
    }
  });

  test('a gid already prepared cannot be prepared again', async () => {
    const gid = nextGid('dup');
    const first = await adapter.begin(gid);
    await first.query(`UPDATE ${table} SET balance = balance + 1 WHERE id = 8`);
    assert.equal(await first.prepare(), 'yes');
    const second = await adapter.begin(gid);
    await second.query(`UPDATE ${table} SET balance = balance + 1 WHERE id = 9`);
    await rejectsWithCode(second.prepare(), 'DTX_DUPLICATE_GID');
    assert.equal(second.state, 'rolledBack');
    assert.equal(await adapter.rollbackPrepared(gid), 'done');
    assert.equal(await balance(9), 100);
  });

  test('a failed statement rolls the branch back; later calls are refused', async () => {
    const branch = await adapter.begin(nextGid('fail'));
    await branch.query(`UPDATE ${table} SET balance = 0 WHERE id = 10`);
    const error = await rejectsWithCode(branch.query('SELECT * FROM no_such_table'), 'DTX_QUERY_FAILED');
    assert.equal((error.cause as { code?: string }).code, '42P01');
    assert.equal(branch.state, 'rolledBack');
    await rejectsWithCode(branch.prepare(), 'DTX_INVALID_STATE');
    await branch.rollback(); // no-op
    assert.equal(await balance(10), 100);
  });

  test('a prepare queued behind a failing query is refused, never a silent yes', async () => {
    const gid = nextGid('queued');
    const branch = await adapter.begin(gid);
    const failing = branch.query('SELECT 1/0');
    const preparing = branch.prepare();
    await rejectsWithCode(failing, 'DTX_QUERY_FAILED');
    await rejectsWithCode(preparing, 'DTX_INVALID_STATE');
    assert.ok(!(await adapter.listPrepared(prefix)).some((b) => b.gid === gid));
  });

  test('transaction control sent through query() ends the branch with an error, never a yes vote', async () => {
    const gid = nextGid('escape');
    const branch = await adapter.begin(gid);
    await rejectsWithCode(branch.query('ROLLBACK'), 'DTX_INVALID_STATE');
    assert.equal(branch.state, 'rolledBack');
    await rejectsWithCode(branch.prepare(), 'DTX_INVALID_STATE');
    assert.ok(!(await adapter.listPrepared(prefix)).some((b) => b.gid === gid));
  });

  test('state rules: no query after prepare, no local rollback of a prepared branch', async () => {
    const gid = nextGid('state');
    const branch = await adapter.begin(gid);
    await branch.query(`UPDATE ${table} SET balance = balance WHERE id = 11`);
    assert.equal(await branch.prepare(), 'yes');
    await rejectsWithCode(branch.query('SELECT 1'), 'DTX_INVALID_STATE');
    await rejectsWithCode(branch.prepare(), 'DTX_INVALID_STATE');
    await rejectsWithCode(branch.rollback(), 'DTX_INVALID_STATE');
    assert.equal(await adapter.rollbackPrepared(gid), 'done');
  });

  test('rollback of an active branch releases its locks at once', async () => {
    const branch = await adapter.begin(nextGid('local'));
    await branch.query(`UPDATE ${table} SET balance = 0 WHERE id = 12`);
    await branch.rollback();
    assert.equal(branch.state, 'rolledBack');
    await admin.query("SET lock_timeout = '200ms'");
    await admin.query(`UPDATE ${table} SET balance = balance WHERE id = 12`);
    await admin.query('RESET lock_timeout');
    assert.equal(await balance(12), 100);
  });

  test('gids: the full allowed alphabet and the 199-byte limit round-trip; hostile ones are refused', async () => {
    const gids = [nextGid('A-b.c:D_e'), `${prefix}${'x'.repeat(199 - prefix.length)}`];
    assert.equal(gids[1]!.length, 199);
    for (const gid of gids) {
      const branch = await adapter.begin(gid);
      await branch.query(`UPDATE ${table} SET balance = balance WHERE id = 13`);
      assert.equal(await branch.prepare(), 'yes');
      assert.ok((await adapter.listPrepared(prefix)).some((b) => b.gid === gid));
      assert.equal(await adapter.commitPrepared(gid), 'done');
    }
    for (const gid of [...hostileGids, `${prefix}${'x'.repeat(200 - prefix.length)}`]) {
      await rejectsWithCode(adapter.begin(gid), 'DTX_INVALID_GID');
    }
    // The table survived every injection attempt.
    assert.equal(await balance(13), 100);
  });

  test('a closed adapter refuses work', async () => {
    const closing = await createPostgresAdapter({ connection: cluster.connection });
    const branch = await closing.begin(nextGid('closing'));
    await branch.query(`UPDATE ${table} SET balance = 0 WHERE id = 14`);
    await closing.close();
    assert.equal(branch.state, 'rolledBack', 'close rolls active branches back');
    await rejectsWithCode(closing.begin(nextGid('closed')), 'DTX_INVALID_STATE');
    assert.equal(await balance(14), 100);
  });
});

describe('PostgreSQL adapter against a server with max_prepared_transactions = 0', () => {
  const machine = { host: '127.0.0.1', port: 5432, user: 'postgres', database: 'test' };

  test('checkPrerequisites and begin fail with a typed error that says how to fix it', async () => {
    const server = await createPostgresAdapter({ connection: machine });
    try {
      const error = await rejectsWithCode(server.checkPrerequisites(), 'DTX_PREPARED_TXNS_DISABLED');
      assert.ok(error instanceof PreparedTxnsDisabledError);
      assert.equal(error.retryable, false);
      assert.match(error.message, /max_prepared_transactions/);
      assert.match(error.message, /restart/);
      await rejectsWithCode(server.begin(`${prefix}disabled_1`), 'DTX_PREPARED_TXNS_DISABLED');
    } finally {
      await server.close();
    }
  });

  test("the server's own 'prepared transactions are disabled' error becomes the same typed error", async () => {
    const server = await createPostgresAdapter({ connection: machine, checkPrerequisites: false });
    try {
      const branch = await server.begin(`${prefix}disabled_2`);
      await branch.query('SELECT txid_current()'); // takes a transaction id, so the vote cannot be readOnly
      const error = await rejectsWithCode(branch.prepare(), 'DTX_PREPARED_TXNS_DISABLED');
      assert.ok(error instanceof PreparedTxnsDisabledError);
      assert.match(String((error.cause as Error).message), /prepared transactions are disabled/);
      assert.equal(branch.state, 'rolledBack');
      // The connection went back to the pool usable.
      const next = await server.begin(`${prefix}disabled_3`);
      assert.deepEqual((await next.query('SELECT 1 AS one')).rows, [{ one: 1 }]);
      await next.rollback();
      assert.deepEqual(await server.listPrepared(prefix), []);
    } finally {
      await server.close();
    }
  });
});
