// The PostgreSQL log against the machine's server at 127.0.0.1:5432 (database
// `test`; override with DTX_TEST_LOG_PG_URL). Every run uses its own tables,
// dropped at the end. Covers the round trip, owners, group commit, checkpoints,
// corrupt rows, leases timed by the database clock, fencing, a broken
// connection, and identifier validation.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { twoPcRecordCodec } from '../../../src/protocol/twopc/codec.ts';
import type { TwoPcRecord } from '../../../src/protocol/twopc/types.ts';
import { isLogError, type LogError, type LogErrorReason } from '../../../src/runtime/log/errors.ts';
import {
  openPostgresLog,
  type PostgresLog,
  type PostgresLogOptions,
  tableNames,
  uniqueHolderId,
} from '../../../src/runtime/log/postgres.ts';

const url = process.env.DTX_TEST_LOG_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const run = `${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
const table = `dtx_log_t_${run}`;
const sleep = (durationMs: number) => new Promise((resolve) => setTimeout(resolve, durationMs));

let admin: pg.Client;
const opened: PostgresLog<unknown>[] = [];

async function open<R>(owner: string, options: Partial<PostgresLogOptions<R>> = {}) {
  const log = await openPostgresLog<R>(url, { owner, table, create: true, ...options });
  opened.push(log as PostgresLog<unknown>);
  return log;
}

async function rejectsWithReason(promise: Promise<unknown>, reason: LogErrorReason): Promise<LogError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(isLogError(error), `expected a LogError ${reason}, got ${String(error)}`);
    assert.equal(error.reason, reason, error.message);
    return error;
  }
  assert.fail(`expected a rejection with reason ${reason}`);
}

describe('PostgreSQL log', () => {
  before(async () => {
    admin = new pg.Client(url);
    await admin.connect();
  });

  after(async () => {
    for (const log of opened) await log.close().catch(() => undefined);
    await admin.query(`DROP TABLE IF EXISTS ${table}, ${table}_lease`);
    await admin.end();
  });

  test('append/load round trip, per owner, across a reopen', async () => {
    const a = await open<TwoPcRecord>('coord-a');
    const b = await open<TwoPcRecord>('coord-b');
    const records: TwoPcRecord[] = [
      { type: 'commit', txn: 't1', participants: ['p1', 'p2'], client: 'c1' },
      { type: 'end', txn: 't1' },
    ];
    await a.append(records, true);
    await b.append([{ type: 'prepared', txn: 't9', coordinator: 'coord-b' }], false);
    assert.deepEqual(await a.load(), records);
    assert.deepEqual(await b.load(), [{ type: 'prepared', txn: 't9', coordinator: 'coord-b' }]);
    await a.close();
    const again = await openPostgresLog<TwoPcRecord>(url, {
      owner: 'coord-a',
      table,
      decode: twoPcRecordCodec.check,
    });
    assert.deepEqual(await again.load(), records);
    await again.close();
  });

  test('strings that need escaping survive the jsonb[] parameter', async () => {
    const log = await open<unknown>('escapes');
    const tricky = ['"', '\\', '\\"', '{a,b}', 'NULL', 'new\nline', "it's", '\u00e9\ud83d\ude00', ''];
    await log.append([{ tricky }, tricky, null, 3.5, 'x'], true);
    assert.deepEqual(await log.load(), [{ tricky }, tricky, null, 3.5, 'x']);
  });

  test('order is preserved across concurrent appends, and group commit shares flushes', async () => {
    const log = await open<{ w: number; i: number }>('order');
    const expected: { w: number; i: number }[] = [];
    await Promise.all(
      Array.from({ length: 200 }, (_, i) => {
        expected.push({ w: -1, i });
        return log.append([{ w: -1, i }], true);
      }),
    );
    const oneTurn = { ...log.stats };
    await Promise.all(
      Array.from({ length: 32 }, async (_, w) => {
        for (let i = 0; i < 10; i++) {
          expected.push({ w, i });
          await log.append([{ w, i }], i % 4 !== 0);
        }
      }),
    );
    const closedLoop = {
      flushes: log.stats.flushes - oneTurn.flushes,
      records: log.stats.records - oneTurn.records,
    };
    console.log(
      `postgres group commit: 200 appends in one turn -> ${oneTurn.flushes} flushes; ` +
        `32 callers x 10 appends -> ${closedLoop.flushes} flushes for ${closedLoop.records} records`,
    );
    assert.ok(oneTurn.flushes < 200 / 4, `${oneTurn.flushes} flushes for 200 appends`);
    assert.ok(closedLoop.flushes < closedLoop.records / 4, `${closedLoop.flushes} flushes for 320 appends`);
    assert.deepEqual(await log.load(), expected);
  });

  test('a large batch keeps its order', async () => {
    const log = await open<number>('large');
    const records = Array.from({ length: 5000 }, (_, i) => i);
    await log.append(records, true);
    assert.deepEqual(await log.load(), records);
  });

  test("checkpoint replaces only its owner's records", async () => {
    const a = await open<string>('ckpt-a');
    const b = await open<string>('ckpt-b');
    await a.append(['a1', 'a2', 'a3'], true);
    await b.append(['b1'], true);
    const before = a.append(['a4'], false);
    const checkpoint = a.checkpoint(['a2']);
    const afterwards = a.append(['a5'], true);
    await Promise.all([before, checkpoint, afterwards]);
    assert.deepEqual(await a.load(), ['a2', 'a5']);
    assert.deepEqual(await b.load(), ['b1']);
  });

  test('corrupt rows: load rejects with reason corrupt and names the row', async () => {
    const owner = 'corrupt';
    const log = await openPostgresLog<TwoPcRecord>(url, {
      owner,
      table,
      create: true,
      decode: twoPcRecordCodec.check,
    });
    opened.push(log as PostgresLog<unknown>);
    await log.append([{ type: 'end', txn: 't1' }], true);
    const inserted = await admin.query<{ seq: string }>(
      `INSERT INTO ${table} (owner, record) VALUES ($1, $2) RETURNING seq::text AS seq`,
      [owner, '{"type":"vote","txn":"t1"}'],
    );
    const error = await rejectsWithReason(log.load(), 'corrupt');
    assert.equal(error.seq, inserted.rows[0]!.seq);
    assert.match(error.message, /is not a valid record: .*unknown type "vote"/);
    assert.equal(error.retryable, false);
  });

  test('records jsonb cannot hold are refused before they reach the server', async () => {
    const log = await open<string>('nul');
    await assert.rejects(log.append(['a\u0000b'], true), TypeError);
    await assert.rejects(log.append(['\udc00'], true), TypeError);
    await log.append(['still fine'], true);
    assert.deepEqual(await log.load(), ['still fine']);
  });

  test('lease: A holds it, B is refused, A lapses, B takes it; renew and release', async () => {
    const log = await open<never>('lease');
    const name = `lease-${run}`;
    assert.equal(await log.acquireLease(name, 'A', 60_000), true);
    assert.equal(await log.acquireLease(name, 'B', 60_000), false);
    assert.equal(await log.acquireLease(name, 'A', 60_000), true, 'acquiring a lease one holds renews it');
    assert.equal(await log.renewLease(name, 'B', 60_000), false);
    assert.equal(await log.renewLease(name, 'A', 300), true); // from now on, A's lease is short
    await sleep(500);
    assert.equal(await log.acquireLease(name, 'B', 60_000), true, "A's lease lapsed");
    assert.equal(await log.renewLease(name, 'A', 400), false, 'A lost it');
    assert.equal(await log.releaseLease(name, 'A'), false);
    assert.equal(await log.acquireLease(name, 'A', 400), false);
    assert.equal(await log.releaseLease(name, 'B'), true);
    assert.equal(await log.acquireLease(name, 'A', 400), true, 'a released lease is free');
    await assert.rejects(log.acquireLease(name, 'A', 0), RangeError);
    await assert.rejects(log.acquireLease('', 'A', 10), TypeError);
  });

  test('ownership: a second opener of a live owner gets DTX_LOG_BUSY naming the holder, and nothing is touched', async () => {
    const owner = 'owned-coordinator';
    const primary = await open<string>(owner, { lease: { ttlMs: 600 } });
    await primary.append(['p1'], true);
    // The opener waits out the lease once; the primary renews it, so it is live.
    const error = await rejectsWithReason(open<string>(owner, { lease: { ttlMs: 600 } }), 'locked');
    assert.equal(error.code, 'DTX_LOG_BUSY');
    assert.equal(error.retryable, true);
    assert.ok(error.message.includes(primary.ownerLease.holder), error.message);
    await primary.append(['p2'], true);
    await primary.close();
    const next = await open<string>(owner, { lease: { ttlMs: 600 } });
    assert.deepEqual(await next.load(), ['p1', 'p2']);
    assert.equal(next.identity?.protocol, '2pc');
  });

  test('fencing: once another holder has the owner lease, the old owner writes nothing and `lost` resolves', async () => {
    const owner = 'fenced-coordinator';
    const primary = await open<string>(owner, { lease: { ttlMs: 60_000 } });
    await primary.append(['p1'], true);
    // A takeover, as a standby's acquisition after the primary stalled would leave it.
    await admin.query(`UPDATE "${table}_lease" SET holder = 'standby' WHERE name = $1`, [
      primary.ownerLease.name,
    ]);
    const error = await rejectsWithReason(primary.append(['p2'], true), 'fenced');
    assert.equal(error.code, 'DTX_LOG_FENCED');
    assert.equal(error.retryable, false);
    const lost = await primary.lost;
    assert.equal(lost?.reason, 'fenced');
    await rejectsWithReason(primary.append(['p3'], false), 'fenced');
    await admin.query(`DELETE FROM "${table}_lease" WHERE name = $1`, [primary.ownerLease.name]);
    const standby = await open<string>(owner);
    assert.deepEqual(await standby.load(), ['p1']);
  });

  test('a missing owner is DTX_LOG_NOT_FOUND and creates nothing; identity mismatch is DTX_LOG_MISMATCH', async () => {
    const missing = `missing-${run}`;
    const error = await rejectsWithReason(openPostgresLog(url, { owner: missing, table }), 'notFound');
    assert.equal(error.code, 'DTX_LOG_NOT_FOUND');
    const leases = await admin.query(`SELECT 1 FROM "${table}_lease" WHERE name = $1`, [
      `dtx-log:${missing}`,
    ]);
    assert.equal(leases.rowCount, 0);
    const created = await open<string>(`saga-${run}`, { identity: { protocol: 'saga' } });
    const id = created.identity!.coordinatorId;
    assert.match(id, /^[a-z0-9]{10}$/);
    await created.close();
    const mismatch = await rejectsWithReason(
      openPostgresLog(url, { owner: `saga-${run}`, table, expect: { protocol: '2pc' } }),
      'mismatch',
    );
    assert.equal(mismatch.code, 'DTX_LOG_MISMATCH');
    const again = await openPostgresLog(url, { owner: `saga-${run}`, table });
    assert.equal(again.identity?.coordinatorId, id);
    const history = await again.history!();
    assert.deepEqual(history, []);
    await again.append(['x'], true);
    const [entry] = await again.history!();
    assert.equal(entry?.record, 'x');
    assert.ok(Math.abs(entry!.at.getTime() - Date.now()) < 60_000);
    await again.close();
  });

  test('a broken connection fails the write in flight and every later call, with reason failed', async () => {
    const applicationName = `dtx_log_broken_${run}`;
    const pool = new pg.Pool({ connectionString: url, application_name: applicationName, max: 2 });
    try {
      const log = await openPostgresLog<number>(pool, { owner: 'broken', table, create: true });
      await log.append([1], true);
      await admin.query(
        'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1',
        [applicationName],
      );
      await sleep(100);
      const error = await rejectsWithReason(log.append([2], true), 'failed');
      assert.equal(error.code, 'DTX_RESOURCE_UNAVAILABLE');
      await rejectsWithReason(log.append([3], true), 'failed');
      await log.close();
      assert.equal(pool.totalCount, 0, 'the broken connection was discarded, not returned to the pool');

      // A fresh log over the same pool recovers the acknowledged record.
      const reopened = await openPostgresLog<number>(pool, { owner: 'broken', table });
      assert.deepEqual(await reopened.load(), [1]);
      await reopened.close();
      assert.equal(pool.idleCount, 1, 'a healthy connection goes back to the pool');
    } finally {
      await pool.end();
    }
  });

  test('table names are validated and quoted; owners are checked', async () => {
    for (const bad of ['', 'A', 'a-b', 'a;drop table x', '"a"', 'a.b.c', '1a', 'a b', 'x'.repeat(53), 'é']) {
      assert.throws(() => tableNames(bad), TypeError, bad);
      await assert.rejects(openPostgresLog(url, { owner: 'o', table: bad }), TypeError);
    }
    assert.deepEqual(tableNames('public.dtx_log'), {
      display: 'public.dtx_log',
      log: '"public"."dtx_log"',
      lease: '"public"."dtx_log_lease"',
      meta: '"public"."dtx_log_meta"',
      metaText: '"public"."dtx_log_meta"',
      index: '"dtx_log_owner_seq"',
    });
    await assert.rejects(openPostgresLog(url, { owner: '', table }), TypeError);
    await assert.rejects(openPostgresLog(url, { owner: 'a\u0000', table }), TypeError);
  });

  test('an owner written before identities is refused with the fix, and adopted (records kept) with create', async () => {
    const owner = `old-${run}`;
    await admin.query(`INSERT INTO ${table} (owner, record) VALUES ($1, '5'::jsonb)`, [owner]);
    const refused = await rejectsWithReason(openPostgresLog(url, { owner, table }), 'mismatch');
    assert.match(refused.message, /records no identity/);
    const adopted = await open<number>(owner);
    assert.deepEqual(await adopted.load(), [5]);
    assert.equal(adopted.identity?.protocol, '2pc');
    await adopted.close();
  });

  test('lease holders are unique per open, and neither the log nor a released leadership keeps a process alive', async () => {
    const ids = new Set(Array.from({ length: 50 }, () => uniqueHolderId()));
    assert.equal(ids.size, 50);
    for (const id of ids) assert.match(id, /-\d+-[0-9a-f]{12}$/);
    const code = `
      const { openPostgresLog } = await import(${JSON.stringify(fileURLToPath(new URL('../../../src/runtime/log/postgres.ts', import.meta.url)))});
      const { acquireLeadership } = await import(${JSON.stringify(fileURLToPath(new URL('../../../src/runtime/lease.ts', import.meta.url)))});
      const log = await openPostgresLog(${JSON.stringify(url)}, { owner: 'alive-${run}', table: ${JSON.stringify(table)}, create: true, lease: { ttlMs: 60000 } });
      const leadership = await acquireLeadership(log, { lease: 'alive-${run}', holder: 'h', ttlMs: 60000 });
      await leadership.release();
      await log.close();
      process.stdout.write('released\\n');`;
    const startedAt = Date.now();
    const child = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
      cwd: fileURLToPath(new URL('../../../', import.meta.url)),
      encoding: 'utf8',
      timeout: 15_000,
    });
    assert.equal(child.status, 0, child.stderr);
    assert.match(child.stdout, /released/);
    // Renewals run every 20 s here: a timer left behind would hold the process that long.
    assert.ok(Date.now() - startedAt < 10_000, `the process lived ${Date.now() - startedAt} ms`);
  });

  test('an unreachable server is reported as unavailable', async () => {
    const error = await rejectsWithReason(
      openPostgresLog('postgres://postgres@127.0.0.1:1/test', { owner: 'o', table }),
      'unavailable',
    );
    assert.equal(error.retryable, true);
  });
});
