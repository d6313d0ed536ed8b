// The MariaDB adapter against the machine's MariaDB (10.5+) at 127.0.0.1:3306,
// database `test`: XA prepare/commit/rollback, row locks held while prepared,
// prepared branches surviving their connection, recovery by gid from a fresh
// adapter, and gids longer than one XID part.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import mysql, { type RowDataPacket } from 'mysql2/promise';
import {
  createMariaDbAdapter,
  type MariaDbAdapter,
  xaSurvivesDisconnect,
} from '../../src/adapters/mariadb.ts';
import { LockConflictError } from '../../src/errors.ts';
import { hostileGids, rejectsWithCode, runId } from './helpers.ts';
import { phaseTwoTests } from './sql-suite.ts';

const connection = {
  host: process.env.DTX_TEST_MARIADB_HOST ?? '127.0.0.1',
  port: Number(process.env.DTX_TEST_MARIADB_PORT ?? 3306),
  user: 'root',
  password: '',
  database: 'test',
  connectionLimit: 8,
};
const run = runId();
const prefix = `dtxt_${run}_`;
const table = `dtx_my_${run}`;
let gidSeq = 0;
const nextGid = (label: string) => `${prefix}${label}_${++gidSeq}`;

let adapter: MariaDbAdapter;
let admin: mysql.Connection;

async function balance(id: number): Promise<number> {
  const [rows] = await admin.query<RowDataPacket[]>(`SELECT balance FROM ${table} WHERE id = ?`, [id]);
  return Number(rows[0]!.balance);
}

async function xaRecoverData(): Promise<string[]> {
  const [rows] = await admin.query<RowDataPacket[]>('XA RECOVER');
  return rows.map((row) => String(row.data));
}

describe('MariaDB adapter, XA two-phase commit', () => {
  before(async () => {
    admin = await mysql.createConnection(connection);
    await admin.query(`CREATE TABLE ${table} (id INT PRIMARY KEY, balance INT NOT NULL) ENGINE=InnoDB`);
    const values = Array.from({ length: 20 }, (_, i) => [i + 1, 100]);
    await admin.query(`INSERT INTO ${table} (id, balance) VALUES ?`, [values]);
    adapter = await createMariaDbAdapter({ connection, lockWaitTimeoutSeconds: 5 });
  });

  after(async () => {
    try {
      await adapter?.close();
      const cleanup = await createMariaDbAdapter({ connection, detachWaitMs: 3000 });
      for (const { gid } of await cleanup.listPrepared(prefix)) await cleanup.rollbackPrepared(gid);
      await cleanup.close();
    } finally {
      await admin?.query(`DROP TABLE IF EXISTS ${table}`);
      await admin?.end();
    }
  });

  test('prepare -> commitPrepared applies the work, once', async () => {
    const gid = nextGid('commit');
    const branch = await adapter.begin(gid);
    const updated = await branch.query(`UPDATE ${table} SET balance = balance - 30 WHERE id = ?`, [1]);
    assert.equal(updated.rowCount, 1);
    const seen = await branch.query<{ balance: number }>(`SELECT balance FROM ${table} WHERE id = ?`, [1]);
    assert.equal(Number(seen.rows[0]?.balance), 70);

    assert.equal(await branch.prepare(), 'yes');
    assert.equal(branch.state, 'prepared');
    assert.ok((await adapter.listPrepared(prefix)).some((b) => b.gid === gid));
    assert.ok((await xaRecoverData()).includes(gid));
    assert.equal(await balance(1), 100, 'prepared work is not visible yet');

    assert.equal(await adapter.commitPrepared(gid), 'done');
    assert.equal(await balance(1), 70);
    assert.equal(await adapter.commitPrepared(gid), 'unknown', 'second commit is idempotent');
    assert.equal(await adapter.rollbackPrepared(gid), 'unknown');
  });

  phaseTwoTests({ adapter: () => adapter, table, nextGid, balance });

  test('a branch that changed no row votes readOnly and is never XA-prepared', async () => {
    const gid = nextGid('ro');
    const branch = await adapter.begin(gid);
    await branch.query(`SELECT * FROM ${table} WHERE id = 3 FOR UPDATE`);
    await branch.query(`UPDATE ${table} SET balance = balance WHERE id = 3`); // matches, changes nothing
    assert.equal(await branch.prepare(), 'readOnly');
    assert.ok(!(await xaRecoverData()).includes(gid));
    assert.equal(await adapter.commitPrepared(gid), 'unknown');
  });

  test('a prepared branch keeps its row lock until XA COMMIT', async () => {
    const gid = nextGid('lock');
    const branch = await adapter.begin(gid);
    await branch.query(`UPDATE ${table} SET balance = balance + 1 WHERE id = 4`);
    assert.equal(await branch.prepare(), 'yes');

    const other = await mysql.createConnection(connection);
    try {
      await other.query('SET SESSION innodb_lock_wait_timeout = 1');
      await assert.rejects(other.query(`UPDATE ${table} SET balance = 0 WHERE id = 4`), { errno: 1205 });

      const impatient = await createMariaDbAdapter({ connection, lockWaitTimeoutSeconds: 1 });
      try {
        const loser = await impatient.begin(nextGid('lockloser'));
        const error = await rejectsWithCode(
          loser.query(`UPDATE ${table} SET balance = 0 WHERE id = 4`),
          'DTX_LOCK_CONFLICT',
        );
        assert.ok(error instanceof LockConflictError);
        assert.equal(error.retryable, true);
        assert.equal(loser.state, 'rolledBack');
      } finally {
        await impatient.close();
      }

      assert.equal(await adapter.commitPrepared(gid), 'done');
      const [result] = await other.query<mysql.ResultSetHeader>(
        `UPDATE ${table} SET balance = balance + 10 WHERE id = 4`,
      );
      assert.equal(result.affectedRows, 1);
      assert.equal(await balance(4), 111);
    } finally {
      await other.end();
    }
  });

  test('a prepared branch survives its connection closing and is committed from another one', async () => {
    const first = await createMariaDbAdapter({ connection });
    const gid = nextGid('detach');
    const branch = await first.begin(gid);
    await branch.query(`UPDATE ${table} SET balance = 55 WHERE id = 5`);
    assert.equal(await branch.prepare(), 'yes');
    await first.close(); // closes the connection that prepared it

    // Seen from a plain connection...
    assert.ok((await xaRecoverData()).includes(gid));
    // ...and resolvable by gid alone from a fresh adapter.
    const recovery = await createMariaDbAdapter({ connection });
    try {
      assert.deepEqual(
        (await recovery.listPrepared(`${prefix}detach`)).map((b) => b.gid),
        [gid],
      );
      assert.equal(await recovery.commitPrepared(gid), 'done');
      assert.equal(await balance(5), 55);
      assert.equal(await recovery.commitPrepared(gid), 'unknown');
    } finally {
      await recovery.close();
    }
  });

  test('a branch still attached to a live session is busy elsewhere, not unknown', async () => {
    const gid = nextGid('attached');
    const branch = await adapter.begin(gid);
    await branch.query(`UPDATE ${table} SET balance = 66 WHERE id = 6`);
    assert.equal(await branch.prepare(), 'yes'); // `adapter` keeps the preparing session open

    const elsewhere = await createMariaDbAdapter({ connection, detachWaitMs: 150 });
    try {
      const error = await rejectsWithCode(elsewhere.commitPrepared(gid), 'DTX_BRANCH_BUSY');
      assert.equal(error.retryable, true);
      assert.equal(await balance(6), 100);
    } finally {
      await elsewhere.close();
    }
    assert.equal(await adapter.commitPrepared(gid), 'done');
    assert.equal(await balance(6), 66);
  });

  test('gids longer than 64 bytes use the bqual; 128 is the limit', async () => {
    const gid = `${prefix}${'L'.repeat(128 - prefix.length)}`;
    assert.equal(gid.length, 128);
    const branch = await adapter.begin(gid);
    await branch.query(`UPDATE ${table} SET balance = 77 WHERE id = 7`);
    assert.equal(await branch.prepare(), 'yes');
    const [rows] = await admin.query<RowDataPacket[]>('XA RECOVER');
    const row = rows.find((r) => String(r.data) === gid);
    assert.ok(row, 'listed by XA RECOVER');
    assert.equal(Number(row.gtrid_length), 64);
    assert.equal(Number(row.bqual_length), 64);
    assert.ok((await adapter.listPrepared(prefix)).some((b) => b.gid === gid));
    await adapter.close(); // detach it, then resolve from a fresh adapter
    adapter = await createMariaDbAdapter({ connection, lockWaitTimeoutSeconds: 5 });
    assert.equal(await adapter.commitPrepared(gid), 'done');
    assert.equal(await balance(7), 77);
    await rejectsWithCode(adapter.begin(`${gid}x`), 'DTX_INVALID_GID');
  });

  test('a gid already prepared cannot be started again', async () => {
    const gid = nextGid('dup');
    const first = await adapter.begin(gid);
    await first.query(`UPDATE ${table} SET balance = balance + 1 WHERE id = 8`);
    assert.equal(await first.prepare(), 'yes');
    await rejectsWithCode(adapter.begin(gid), 'DTX_DUPLICATE_GID');
    assert.equal(await adapter.rollbackPrepared(gid), 'done');
  });

  test('a failed statement rolls the branch back; later calls are refused', async () => {
    const branch = await adapter.begin(nextGid('fail'));
    await branch.query(`UPDATE ${table} SET balance = 0 WHERE id = 9`);
    const error = await rejectsWithCode(branch.query('SELECT * FROM no_such_table_dtx'), 'DTX_QUERY_FAILED');
    assert.equal((error.cause as { errno?: number }).errno, 1146);
    assert.equal(branch.state, 'rolledBack');
    await rejectsWithCode(branch.prepare(), 'DTX_INVALID_STATE');
    assert.equal(await balance(9), 100);
  });

  test('transaction control sent through query() is refused by the server and ends the branch', async () => {
    const branch = await adapter.begin(nextGid('escape'));
    await branch.query(`UPDATE ${table} SET balance = 0 WHERE id = 13`);
    const error = await rejectsWithCode(branch.query('COMMIT'), 'DTX_QUERY_FAILED');
    assert.equal((error.cause as { errno?: number }).errno, 1399); // XAER_RMFAIL
    assert.equal(branch.state, 'rolledBack');
    assert.equal(await balance(13), 100);
  });

  test('state rules and local rollback', async () => {
    const gid = nextGid('state');
    const branch = await adapter.begin(gid);
    await branch.query(`UPDATE ${table} SET balance = balance + 1 WHERE id = 10`);
    assert.equal(await branch.prepare(), 'yes');
    await rejectsWithCode(branch.query('SELECT 1'), 'DTX_INVALID_STATE');
    await rejectsWithCode(branch.rollback(), 'DTX_INVALID_STATE');
    assert.equal(await adapter.rollbackPrepared(gid), 'done');

    const local = await adapter.begin(nextGid('local'));
    await local.query(`UPDATE ${table} SET balance = 0 WHERE id = 11`);
    await local.rollback();
    assert.equal(local.state, 'rolledBack');
    assert.equal(await balance(11), 100);
  });

  test('the allowed alphabet round-trips; hostile gids are refused', async () => {
    const gid = nextGid('A-b.c:D_e');
    const branch = await adapter.begin(gid);
    await branch.query(`UPDATE ${table} SET balance = balance + 1 WHERE id = 12`);
    assert.equal(await branch.prepare(), 'yes');
    assert.ok((await adapter.listPrepared(prefix)).some((b) => b.gid === gid));
    assert.equal(await adapter.commitPrepared(gid), 'done');
    for (const hostile of hostileGids) await rejectsWithCode(adapter.begin(hostile), 'DTX_INVALID_GID');
    assert.equal(await balance(12), 101);
  });
});

describe('MariaDB server prerequisites', () => {
  test('prepared XA must survive disconnects: MariaDB 10.5+, MySQL 5.7.7+', () => {
    assert.ok(xaSurvivesDisconnect('10.11.19-MariaDB-0+deb12u1'));
    assert.ok(xaSurvivesDisconnect('10.5.0-MariaDB'));
    assert.ok(xaSurvivesDisconnect('11.4.2-MariaDB-log'));
    assert.equal(xaSurvivesDisconnect('10.4.32-MariaDB'), false);
    assert.equal(xaSurvivesDisconnect('5.5.5-10.3.39-MariaDB'), false);
    assert.ok(xaSurvivesDisconnect('8.0.36'));
    assert.ok(xaSurvivesDisconnect('5.7.7-log'));
    assert.equal(xaSurvivesDisconnect('5.7.6'), false);
    assert.equal(xaSurvivesDisconnect('garbage'), false);
  });

  test("this machine's server passes the check", async () => {
    const checker = await createMariaDbAdapter({ connection });
    try {
      await checker.checkPrerequisites();
    } finally {
      await checker.close();
    }
  });
});
