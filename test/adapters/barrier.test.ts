// The branch barrier (src/adapters/barrier.ts) on real PostgreSQL, MariaDB and
// SQLite: idempotency, null compensation and hanging prevention, each checked
// against the business rows written in the same local transaction.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import mysql from 'mysql2/promise';
import pg from 'pg';
import {
  type BarrierDb,
  mariadbBarrierDb,
  postgresBarrierDb,
  sqliteBarrierDb,
  withBarrier,
} from '../../src/adapters/barrier.ts';
import { isDtxError } from '../../src/errors.ts';

const run = `${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
const dir = mkdtempSync(join(tmpdir(), 'dtx-barrier-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** One database under test: its barrier, a way to add to an account inside a barrier tx, and to read it. */
interface Harness {
  db: BarrierDb<unknown>;
  add(tx: unknown, account: string, delta: number): Promise<void>;
  balance(account: string): Promise<number>;
  barrierRows(): Promise<number>;
  close(): Promise<void>;
}

async function postgres(): Promise<Harness> {
  const pool = new pg.Pool({ host: '127.0.0.1', port: 5432, user: 'postgres', database: 'test', max: 4 });
  const table = `dtx_bar_${run}`;
  const accounts = `dtx_acc_${run}`;
  await pool.query(`CREATE TABLE ${accounts} (id TEXT PRIMARY KEY, balance INT NOT NULL)`);
  await pool.query(`INSERT INTO ${accounts} VALUES ('alice', 100)`);
  const db = postgresBarrierDb(pool, { table }) as BarrierDb<unknown>;
  return {
    db,
    async add(tx, account, delta) {
      await (tx as pg.PoolClient).query(`UPDATE ${accounts} SET balance = balance + $1 WHERE id = $2`, [
        delta,
        account,
      ]);
    },
    async balance(account) {
      const r = await pool.query(`SELECT balance FROM ${accounts} WHERE id = $1`, [account]);
      return r.rows[0].balance as number;
    },
    async barrierRows() {
      return Number((await pool.query(`SELECT count(*) AS n FROM ${table}`)).rows[0].n);
    },
    async close() {
      await pool.query(`DROP TABLE IF EXISTS ${accounts}, ${table}`);
      await pool.end();
    },
  };
}

async function mariadb(): Promise<Harness> {
  const pool = mysql.createPool({ host: '127.0.0.1', port: 3306, user: 'root', database: 'test' });
  const table = `dtx_bar_${run}`;
  const accounts = `dtx_acc_${run}`;
  await pool.query(
    `CREATE TABLE ${accounts} (id VARCHAR(32) PRIMARY KEY, balance INT NOT NULL) ENGINE=InnoDB`,
  );
  await pool.query(`INSERT INTO ${accounts} VALUES ('alice', 100)`);
  const db = mariadbBarrierDb(pool, { table }) as BarrierDb<unknown>;
  return {
    db,
    async add(tx, account, delta) {
      await (tx as mysql.PoolConnection).query(`UPDATE ${accounts} SET balance = balance + ? WHERE id = ?`, [
        delta,
        account,
      ]);
    },
    async balance(account) {
      const [rows] = await pool.query(`SELECT balance FROM ${accounts} WHERE id = ?`, [account]);
      return (rows as { balance: number }[])[0]!.balance;
    },
    async barrierRows() {
      const [rows] = await pool.query(`SELECT count(*) AS n FROM ${table}`);
      return Number((rows as { n: number }[])[0]!.n);
    },
    async close() {
      await pool.query(`DROP TABLE IF EXISTS ${accounts}, ${table}`);
      await pool.end();
    },
  };
}

async function sqlite(): Promise<Harness> {
  const conn = new Database(join(dir, `bar-${run}.sqlite`));
  conn.pragma('journal_mode = WAL');
  conn.exec(`CREATE TABLE accounts (id TEXT PRIMARY KEY, balance INT NOT NULL)`);
  conn.exec(`INSERT INTO accounts VALUES ('alice', 100)`);
  const db = sqliteBarrierDb(conn) as BarrierDb<unknown>;
  return {
    db,
    async add(tx, account, delta) {
      (tx as Database.Database)
        .prepare('UPDATE accounts SET balance = balance + ? WHERE id = ?')
        .run(delta, account);
    },
    async balance(account) {
      return (conn.prepare('SELECT balance FROM accounts WHERE id = ?').get(account) as { balance: number })
        .balance;
    },
    async barrierRows() {
      return (conn.prepare('SELECT count(*) AS n FROM dtx_barrier').get() as { n: number }).n;
    },
    async close() {
      conn.close();
    },
  };
}

for (const [name, open] of [
  ['PostgreSQL', postgres],
  ['MariaDB', mariadb],
  ['SQLite', sqlite],
] as const) {
  describe(`barrier on ${name}`, () => {
    let h: Harness;
    test('setup', async () => {
      h = await open();
    });

    test('a handler that returns nothing: a repeated call runs nothing and returns nothing; null is kept as null', async () => {
      const key = { sagaId: 's0', branchId: 'debit', op: 'action' } as const;
      assert.deepEqual(await withBarrier(h.db, key, async (tx) => h.add(tx, 'alice', -1)), {
        status: 'executed',
        result: undefined,
      });
      assert.deepEqual(await withBarrier(h.db, key, async (tx) => h.add(tx, 'alice', -1)), {
        status: 'duplicate',
        result: undefined,
      });
      const nullKey = { sagaId: 's0', branchId: 'credit', op: 'action' } as const;
      assert.deepEqual(await withBarrier(h.db, nullKey, async () => null), {
        status: 'executed',
        result: null,
      });
      assert.deepEqual(await withBarrier(h.db, nullKey, async () => 1), {
        status: 'duplicate',
        result: null,
      });
      // Put back: the tests below start from alice's 100.
      await withBarrier(h.db, { ...key, sagaId: 's0-undo' }, async (tx) => h.add(tx, 'alice', 1));
    });

    test('idempotency: a repeated action runs once and returns the first result', async () => {
      const key = { sagaId: 's1', branchId: 'debit', op: 'action' } as const;
      const first = await withBarrier(h.db, key, async (tx) => {
        await h.add(tx, 'alice', -30);
        return { debited: 30 };
      });
      assert.deepEqual(first, { status: 'executed', result: { debited: 30 } });
      const again = await withBarrier(h.db, key, async (tx) => {
        await h.add(tx, 'alice', -30);
        return { debited: 999 };
      });
      assert.deepEqual(again, { status: 'duplicate', result: { debited: 30 } });
      assert.equal(await h.balance('alice'), 70);
      // Its compensation runs once too, however often it is delivered.
      const comp = { sagaId: 's1', branchId: 'debit', op: 'compensation' } as const;
      for (let i = 0; i < 3; i++) {
        const r = await withBarrier(h.db, comp, async (tx) => h.add(tx, 'alice', 30));
        assert.equal(r.status, i === 0 ? 'executed' : 'duplicate');
      }
      assert.equal(await h.balance('alice'), 100);
    });

    test('concurrent duplicates of one call run it once', async () => {
      const key = { sagaId: 's-conc', branchId: 'debit', op: 'action' } as const;
      const results = await Promise.all(
        Array.from({ length: 4 }, () =>
          withBarrier(h.db, key, async (tx) => {
            await h.add(tx, 'alice', -5);
            return 5;
          }),
        ),
      );
      assert.equal(results.filter((r) => r.status === 'executed').length, 1);
      assert.ok(results.every((r) => r.result === 5));
      assert.equal(await h.balance('alice'), 95);
      await withBarrier(h.db, { ...key, op: 'compensation' }, async (tx) => h.add(tx, 'alice', 5));
      assert.equal(await h.balance('alice'), 100);
    });

    test('null compensation: a compensation of an action that never ran is recorded, succeeds, writes nothing', async () => {
      const before = await h.barrierRows();
      let ran = false;
      const r = await withBarrier(
        h.db,
        { sagaId: 's2', branchId: 'debit', op: 'compensation' },
        async (tx) => {
          ran = true;
          await h.add(tx, 'alice', 30);
        },
      );
      assert.deepEqual(r, { status: 'nullCompensation', result: undefined });
      assert.equal(ran, false);
      assert.equal(await h.balance('alice'), 100);
      assert.equal(await h.barrierRows(), before + 2); // the compensation, and the action blocked
    });

    test('hanging prevention: an action after its compensation is refused and writes nothing', async () => {
      await withBarrier(h.db, { sagaId: 's3', branchId: 'debit', op: 'compensation' }, async () => undefined);
      const rows = await h.barrierRows();
      await assert.rejects(
        withBarrier(h.db, { sagaId: 's3', branchId: 'debit', op: 'action' }, async (tx) => {
          await h.add(tx, 'alice', -30);
        }),
        (e) => isDtxError(e, 'DTX_BRANCH_HANGING') && !e.retryable,
      );
      assert.equal(await h.balance('alice'), 100);
      assert.equal(await h.barrierRows(), rows);
      // Same for TCC: a try after its cancel.
      const cancel = await withBarrier(h.db, { sagaId: 's3', branchId: 'seat', op: 'cancel' }, async () => 1);
      assert.equal(cancel.status, 'nullCompensation');
      await assert.rejects(
        withBarrier(h.db, { sagaId: 's3', branchId: 'seat', op: 'try' }, async (tx) =>
          h.add(tx, 'alice', -1),
        ),
        (e) => isDtxError(e, 'DTX_BRANCH_HANGING'),
      );
      assert.equal(await h.balance('alice'), 100);
    });

    test('a handler that throws rolls back its writes and the barrier row: the next call runs it', async () => {
      const key = { sagaId: 's4', branchId: 'debit', op: 'action' } as const;
      await assert.rejects(
        withBarrier(h.db, key, async (tx) => {
          await h.add(tx, 'alice', -10);
          throw new Error('boom');
        }),
        /boom/,
      );
      assert.equal(await h.balance('alice'), 100);
      const r = await withBarrier(h.db, key, async (tx) => h.add(tx, 'alice', -10));
      assert.equal(r.status, 'executed');
      assert.equal(await h.balance('alice'), 90);
    });

    test('teardown', async () => {
      await h.close();
    });
  });
}
