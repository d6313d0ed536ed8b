// Two-phase commit outcomes on the real MariaDB server: a prepared XA branch
// rolled back by hand between prepare and commit, and MariaDB's own
// XA_RBROLLBACK answer to XA COMMIT, both reach the caller as one
// HeuristicError (DTX_HEURISTIC) instead of a resolved transaction or a
// process warning repeated for ever.
//
// The other participant is SQLite, so the test needs no PostgreSQL cluster.
// Everything created here is suffixed with this process's pid and dropped at
// the end; the connections killed are only this test's own pool's.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import mysql from 'mysql2/promise';
import { createMariaDbAdapter, type MariaDbAdapter } from '../../src/adapters/mariadb.ts';
import { createSqliteAdapter, type SqliteAdapter, type SqliteBranch } from '../../src/adapters/sqlite.ts';
import { HeuristicError } from '../../src/errors.ts';
import type { TwoPcRecord } from '../../src/protocol/twopc/types.ts';
import { type Coordinator, createCoordinator } from '../../src/runtime/coordinator.ts';
import { openSqliteLog } from '../../src/runtime/log/sqlite.ts';
import { replyCuttingProxy } from '../support/proxy.ts';

const host = process.env.DTX_TEST_MARIADB_HOST ?? '127.0.0.1';
const connection = { host, port: 3306, user: 'root', password: '', database: 'test', connectionLimit: 4 };
const accounts = `h2_accounts_${process.pid}`;
const memory = `h2_memory_${process.pid}`;
const dir = mkdtempSync(join(tmpdir(), 'dtx-h2-maria-'));
const closers: (() => Promise<unknown>)[] = [];
let admin: mysql.Connection;
let n = 0;

before(async () => {
  admin = await mysql.createConnection(connection);
  await admin.query(
    `CREATE TABLE ${accounts} (id varchar(40) PRIMARY KEY, balance int NOT NULL) ENGINE=InnoDB`,
  );
  // A MEMORY table is outside XA: a branch that wrote only here is read-only to
  // the XA machinery, and MariaDB answers its XA COMMIT with XA_RBROLLBACK.
  await admin.query(`CREATE TABLE ${memory} (id varchar(40)) ENGINE=MEMORY`);
});

after(async () => {
  for (const close of closers.reverse()) await close().catch(() => undefined);
  await admin.query(`DROP TABLE IF EXISTS ${accounts}, ${memory}`);
  await admin.end();
  rmSync(dir, { recursive: true, force: true });
});

/** A MariaDB adapter over a pool of our own, whose connection ids we know (and alone may kill). */
async function mariadb(markers = true): Promise<{ m: MariaDbAdapter; threadIds: Set<number> }> {
  const pool = mysql.createPool(connection);
  const threadIds = new Set<number>();
  pool.on('connection', (c) => threadIds.add(c.threadId));
  const m = await createMariaDbAdapter({ pool, detachWaitMs: 3000, markers });
  closers.push(async () => {
    await m.close();
    await pool.end();
  });
  return { m, threadIds };
}

async function setup(
  hook: (point: string, c: Coordinator) => void,
  markers = true,
): Promise<{ c: Coordinator; m: MariaDbAdapter; s: SqliteAdapter; threadIds: Set<number> }> {
  const id = ++n;
  const s = await createSqliteAdapter({ path: join(dir, `s${id}.sqlite`), create: true });
  const { m, threadIds } = await mariadb(markers);
  const log = await openSqliteLog<TwoPcRecord>(join(dir, `log${id}.sqlite`), { create: true });
  const c: Coordinator = await createCoordinator({
    log,
    resources: { s, m },
    onWarning: () => undefined,
    faults: { point: (point) => hook(point, c) },
  });
  closers.push(async () => {
    await c.close();
    await log.close();
    await s.close();
  });
  return { c, m, s, threadIds };
}

/**
 * What an operator does to resolve a prepared XA branch by hand: end the
 * session that holds it (MariaDB keeps it attached until then), then XA
 * ROLLBACK from another session. Synchronous (the mysql client), so it can run
 * inside a fault hook; the rollback is retried while the kill takes effect.
 */
function rollbackByHand(threadIds: Set<number>, gid: string): void {
  const kills = [...threadIds].map((id) => `KILL CONNECTION ${id};`).join(' ');
  const script =
    `mysql -uroot -h${host} -e '${kills}' 2>/dev/null; ` +
    `for i in $(seq 1 50); do mysql -uroot -h${host} -e "XA ROLLBACK '${gid}'" 2>/dev/null && exit 0; sleep 0.1; done; exit 1`;
  execFileSync('bash', ['-c', script], { stdio: 'ignore' });
}

/** Ends the sessions of our pool, which detaches a prepared branch (it stays prepared). */
function killOwnSessions(threadIds: Set<number>): void {
  const kills = [...threadIds].map((id) => `KILL CONNECTION ${id};`).join(' ');
  execFileSync('bash', ['-c', `mysql -uroot -h${host} -e '${kills}' 2>/dev/null; sleep 0.2`], {
    stdio: 'ignore',
  });
}

test('MariaDB: an operator rolls back one prepared XA branch between prepare and commit: transaction() rejects with HeuristicError', async () => {
  let txnId = '';
  const { c, s, threadIds } = await setup((point, coordinator) => {
    if (point === 'prepared:all') rollbackByHand(threadIds, coordinator.gidFor(txnId, 'm'));
  });
  const err = await c
    .transaction(async (tx) => {
      txnId = tx.id;
      (await tx.branch<SqliteBranch>('s')).put('k', 1);
      await tx.query('m', `INSERT INTO ${accounts} VALUES (?, 1)`, ['manual']);
    })
    .then(
      () => assert.fail('resolved as committed although a branch was rolled back by hand'),
      (e: unknown) => e,
    );
  assert.ok(err instanceof HeuristicError, String(err));
  assert.equal(err.decision, 'commit');
  assert.deepEqual(
    err.branches.map((b) => [b.resource, b.gid]),
    [['m', c.gidFor(txnId, 'm')]],
  );
  assert.equal(c.heuristics.length, 1);
  assert.equal(s.read('k'), 1);
  const [rows] = await admin.query<mysql.RowDataPacket[]>(`SELECT * FROM ${accounts} WHERE id = 'manual'`);
  assert.equal(rows.length, 0);
});

test("MariaDB's own XA_RBROLLBACK on XA COMMIT maps to the same HeuristicError, not a warning repeated for ever", async () => {
  // Without markers: a marker row (InnoDB) would make the branch transactional,
  // and it is a branch that wrote only outside XA that gets XA_RBROLLBACK.
  const { c, s, threadIds } = await setup((point) => {
    // Detach the branch from its session, so that XA COMMIT runs from another one.
    if (point === 'prepared:all') killOwnSessions(threadIds);
  }, false);
  const err = await c
    .transaction(async (tx) => {
      (await tx.branch<SqliteBranch>('s')).put('k', 2);
      await tx.query('m', `INSERT INTO ${memory} VALUES (?)`, ['rb']);
    })
    .then(
      () => assert.fail('resolved as committed although MariaDB rolled the branch back'),
      (e: unknown) => e,
    );
  assert.ok(err instanceof HeuristicError, String(err));
  assert.deepEqual(
    err.branches.map((b) => [b.resource, b.found]),
    [['m', 'rolledBack']],
  );
  assert.match(err.message, /rolledBack/);
  assert.equal(s.read('k'), 2);
  assert.deepEqual(await c.list(), []);
});

test('MariaDB: an XA COMMIT applied but whose reply was lost is recognised by its marker row, not reported as heuristic', async () => {
  const proxy = await replyCuttingProxy({ host, port: 3306 }, { inRequest: 'XA COMMIT' });
  closers.push(() => proxy.close());
  const s = await createSqliteAdapter({ path: join(dir, `lost${++n}.sqlite`), create: true });
  const pool = mysql.createPool({ ...connection, host: '127.0.0.1', port: proxy.port });
  const m = await createMariaDbAdapter({ pool, detachWaitMs: 3000 });
  const log = await openSqliteLog<TwoPcRecord>(join(dir, `lostlog${n}.sqlite`), { create: true });
  const c = await createCoordinator({
    log,
    resources: { s, m },
    timing: { commitResendMs: 50 },
    onWarning: () => undefined,
    faults: {
      point(point) {
        if (point === 'prepared:all') proxy.arm();
      },
    },
  });
  closers.push(async () => {
    await c.close();
    await log.close();
    await m.close();
    await pool.end();
    await s.close();
  });
  await c.transaction(async (tx) => {
    (await tx.branch<SqliteBranch>('s')).put('k', 3);
    await tx.query('m', `INSERT INTO ${accounts} VALUES (?, 1)`, ['lostreply']);
  });
  assert.equal(proxy.cuts(), 1, 'the reply to XA COMMIT was cut');
  assert.deepEqual(c.heuristics, []);
  const [rows] = await admin.query<mysql.RowDataPacket[]>(`SELECT * FROM ${accounts} WHERE id = 'lostreply'`);
  assert.equal(rows.length, 1);
});

test('MariaDB: recovery tells a branch it committed before the crash from one rolled back by hand (marker rows)', async () => {
  const txn = `c1.crash${Date.now().toString(36)}${process.pid}.1`;
  // Whatever happens below (registered first, so it runs after the adapters closed and
  // detached their branches), leave none of this test's branches prepared on the shared server.
  closers.push(async () => {
    for (const gid of [`dtx_${txn}_m`, `dtx_${txn}_m2`]) {
      await admin.query(`XA ROLLBACK '${gid}'`).catch(() => undefined);
    }
  });
  const { m } = await mariadb();
  const { m: m2 } = await mariadb();
  const evidence: Record<string, string> = {};
  for (const [name, adapterOf] of [
    ['m', m],
    ['m2', m2],
  ] as const) {
    const branch = await adapterOf.begin(`dtx_${txn}_${name}`);
    await branch.query(`INSERT INTO ${accounts} VALUES (?, 1)`, [`${txn}-${name}`]);
    assert.equal(await branch.prepare(), 'yes');
    assert.match(branch.evidence ?? '', /^marker:[0-9]+$/, 'a branch that wrote leaves a marker');
    evidence[name] = branch.evidence ?? '';
  }
  const logPath = join(dir, `crashlog${++n}.sqlite`);
  const log = await openSqliteLog<TwoPcRecord>(logPath, { create: true });
  await log.append([{ type: 'commit', txn, participants: ['m', 'm2'], client: 'app', evidence }], true);
  // Before the crash the coordinator committed m's branch; afterwards an operator rolled m2's back.
  assert.equal(await m.commitPrepared(`dtx_${txn}_m`), 'done');
  assert.equal(await m2.rollbackPrepared(`dtx_${txn}_m2`), 'done');
  const c = await createCoordinator({ log, resources: { m, m2 } });
  closers.push(async () => {
    await c.close();
    await log.close();
  });
  const report = c.recovery;
  assert.deepEqual(report.recommitted, [txn]);
  assert.deepEqual(
    report.heuristics.map((h) => h.branches.map((b) => [b.resource, b.found])),
    [[['m2', 'rolledBack']]],
  );
});

test('MariaDB markers: purged after their retention, leaving a watermark, so a purged branch is unknown, never "rolled back"', async () => {
  // A database of this test's own: a purge deletes every old marker in it.
  const database = `h2_markers_${process.pid}`;
  await admin.query(`CREATE DATABASE ${database}`);
  const pool = mysql.createPool({ ...connection, database });
  const m = await createMariaDbAdapter({ pool, markerRetentionMs: 0 });
  closers.push(async () => {
    await m.close();
    await pool.end();
    await admin.query(`DROP DATABASE IF EXISTS ${database}`);
  });
  await pool.query('CREATE TABLE t (id varchar(64) PRIMARY KEY) ENGINE=InnoDB');
  const prepared = async (tag: string) => {
    const gid = `dtx_h2purge${tag}${Date.now().toString(36)}`;
    const branch = await m.begin(gid);
    await branch.query('INSERT INTO t VALUES (?)', [gid]);
    assert.equal(await branch.prepare(), 'yes');
    return { gid, evidence: branch.evidence };
  };
  // The first prepare creates the marker table and starts a purge in the
  // background, which (with a retention of 0) could take the marker of the
  // branch committed next before this test asks for its fate: get both done
  // first, and the next purge is not due for minutes.
  const warmUp = await prepared('w');
  await m.rollbackPrepared(warmUp.gid);
  await m.purgeMarkers();
  const committed = await prepared('c');
  assert.equal(await m.commitPrepared(committed.gid), 'done');
  assert.equal(await m.fateOf(committed.gid, committed.evidence), 'committed');
  await new Promise((r) => setTimeout(r, 5));
  await m.purgeMarkers();
  const [left] = await pool.query<mysql.RowDataPacket[]>('SELECT gid FROM dtx_xa_marker');
  assert.deepEqual(
    left.map((r) => r.gid),
    ['~purged'],
  );
  // Its marker is gone, and the watermark says it may have been purged: unknown, not rolled back.
  assert.equal(await m.fateOf(committed.gid, committed.evidence), 'unknown');
  // A branch prepared after the purge and rolled back is still told apart.
  await new Promise((r) => setTimeout(r, 5));
  const rolledBack = await prepared('r');
  assert.equal(await m.rollbackPrepared(rolledBack.gid), 'done');
  assert.equal(await m.fateOf(rolledBack.gid, rolledBack.evidence), 'rolledBack');
  assert.equal(await m.fateOf(rolledBack.gid, 'marker'), 'unknown', 'malformed evidence is no evidence');
});
