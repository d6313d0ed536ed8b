// The operator API of the 2PC coordinator (TxnOperator, src/runtime/operator.ts)
// over real SQLite participants and a real SQLite log: list, show, retry, and
// the forced actions resolve and abandon — each rule that keeps an operator
// from contradicting a durable decision — plus twoPcTxnViews, the same views
// computed offline from a log's records.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { createSqliteAdapter, type SqliteBranch } from '../../src/adapters/sqlite.ts';
import { DtxError, isDtxError } from '../../src/errors.ts';
import { compactTwoPcLog } from '../../src/protocol/twopc/log.ts';
import type { TwoPcRecord } from '../../src/protocol/twopc/types.ts';
import { type Coordinator, createCoordinator } from '../../src/runtime/coordinator.ts';
import { openSqliteLog } from '../../src/runtime/log/sqlite.ts';
import { twoPcTxnViews } from '../../src/runtime/twopc-views.ts';

const dir = mkdtempSync(join(tmpdir(), 'dtx-h2-op-'));
const closers: (() => Promise<unknown>)[] = [];
after(async () => {
  for (const close of closers.reverse()) await close().catch(() => undefined);
  rmSync(dir, { recursive: true, force: true });
});
let n = 0;

/**
 * A coordinator over a and b, where b's COMMIT fails (its database "down")
 * until `b.up()`: a transfer then stays in doubt. acknowledge 'durable', so
 * transaction() answers at the decision. Back-off is long, so that only
 * `retry` can finish it quickly.
 */
async function inDoubtSetup() {
  const id = ++n;
  const a = await createSqliteAdapter({ path: join(dir, `a${id}.sqlite`), create: true });
  const b = await createSqliteAdapter({ path: join(dir, `b${id}.sqlite`), create: true });
  const logPath = join(dir, `log${id}.sqlite`);
  const log = await openSqliteLog<TwoPcRecord>(logPath, { create: true });
  let bDown = true;
  const commitPrepared = b.commitPrepared.bind(b);
  b.commitPrepared = async (gid: string) => {
    if (bDown) throw new DtxError('DTX_RESOURCE_UNAVAILABLE', 'b is down');
    return commitPrepared(gid);
  };
  const c = await createCoordinator({
    log,
    resources: { a, b },
    acknowledge: 'durable',
    timing: { commitResendMs: 20 },
    commitBackoffMaxMs: 60_000,
    onWarning: () => undefined,
  });
  closers.push(async () => {
    await c.close();
    await log.close();
    await a.close();
    await b.close();
  });
  const txn = await c.transaction(async (tx) => {
    (await tx.branch<SqliteBranch>('a')).put('x', 1);
    (await tx.branch<SqliteBranch>('b')).put('y', 1);
    return tx.id;
  });
  // Let the first COMMITs fail, so b is backing off.
  await new Promise((r) => setTimeout(r, 100));
  return { a, b, c, log, logPath, txn, up: () => (bDown = false) };
}

async function until(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs = 3_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    assert.ok(Date.now() < deadline, `timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function rejectsCode(p: Promise<unknown>, code: string): Promise<void> {
  return assert.rejects(p, (e: unknown) => isDtxError(e) && e.code === code);
}

test('list and show: an in-doubt transaction, its branches and its records', async () => {
  const { c, txn } = await inDoubtSetup();
  const inDoubt = await c.list({ state: 'in-doubt' });
  assert.deepEqual(
    inDoubt.map((s) => [s.id, s.protocol, s.state, s.branches]),
    [[txn, '2pc', 'in-doubt', { a: 'committed', b: 'prepared' }]],
  );
  assert.deepEqual(await c.list({ state: 'running' }), []);
  const detail = await c.show(txn);
  assert.equal(detail.state, 'in-doubt');
  assert.deepEqual(
    detail.records.map((r) => (r.record as TwoPcRecord).type),
    ['commit'],
  );
  await rejectsCode(c.show('c1.nope.1'), 'DTX_INVALID_ARGUMENT');
});

test('list: a transaction still doing its work is running', async () => {
  const a = await createSqliteAdapter({ path: join(dir, `run${++n}.sqlite`), create: true });
  const log = await openSqliteLog<TwoPcRecord>(join(dir, `runlog${n}.sqlite`), { create: true });
  const c: Coordinator = await createCoordinator({ log, resources: { a } });
  closers.push(async () => {
    await c.close();
    await log.close();
    await a.close();
  });
  let proceed: () => void = () => undefined;
  const gate = new Promise<void>((r) => (proceed = r));
  const pending = c.transaction(async (tx) => {
    (await tx.branch<SqliteBranch>('a')).put('k', 1);
    await gate;
  });
  await until('the branch is open', async () => (await c.list()).length === 1);
  assert.deepEqual(
    (await c.list({ state: 'running' })).map((s) => s.branches),
    [{ a: 'working' }],
  );
  proceed();
  await pending;
  assert.deepEqual(await c.list(), []);
});

test('retry re-drives phase two now, without waiting for the back-off', async () => {
  const { b, c, txn, up } = await inDoubtSetup();
  up();
  const started = Date.now();
  await c.retry(txn);
  await until('b is committed', () => b.read('y') === 1, 2_000);
  assert.ok(Date.now() - started < 2_000);
  await until('nothing is in doubt', async () => (await c.list()).length === 0);
  await rejectsCode(c.retry(txn), 'DTX_INVALID_STATE');
});

test('resolve and abandon need force: true and a reason', async () => {
  const { c, txn } = await inDoubtSetup();
  await rejectsCode(c.abandon(txn, { reason: 'x' } as never), 'DTX_INVALID_ARGUMENT');
  await rejectsCode(c.abandon(txn, { force: true, reason: '  ' }), 'DTX_INVALID_ARGUMENT');
  await rejectsCode(c.abandon(txn, { force: true, reason: 'x'.repeat(501) }), 'DTX_INVALID_ARGUMENT');
  await rejectsCode(
    c.resolve(txn, { force: true, reason: 'r', outcome: 'maybe' as never }),
    'DTX_INVALID_ARGUMENT',
  );
});

test('resolve never contradicts a durable decision', async () => {
  const { c, txn } = await inDoubtSetup();
  // Decided COMMIT: cannot be resolved as aborted.
  const err = await c.resolve(txn, { force: true, reason: 'b is gone', outcome: 'aborted' }).then(
    () => assert.fail('resolved a committed transaction as aborted'),
    (e: unknown) => e,
  );
  assert.ok(isDtxError(err, 'DTX_INVALID_STATE'), String(err));
  assert.match((err as Error).message, /decided COMMIT/);
  assert.equal((await c.list({ state: 'in-doubt' })).length, 1, 'nothing changed');
  // No commit record: cannot be resolved as committed.
  await rejectsCode(
    c.resolve('c1.none.1', { force: true, reason: 'r', outcome: 'committed' }),
    'DTX_INVALID_STATE',
  );
});

test('resolve committed: the operator committed the rest by hand; the log records it, with the reason', async () => {
  const { b, c, txn } = await inDoubtSetup();
  const gidB = c.gidFor(txn, 'b');
  const result = await c.resolve(txn, { force: true, reason: 'committed b by hand', outcome: 'committed' });
  assert.deepEqual(result.stillPrepared, [gidB]);
  assert.deepEqual(await c.list(), []);
  const detail = await c.show(txn);
  assert.equal(detail.state, 'resolved');
  assert.equal(detail.reason, 'committed b by hand');
  // The operator's own commit of b (the coordinator no longer retries it).
  await b.commitPrepared.call(b, gidB).catch(() => undefined);
  assert.deepEqual(detail.records.at(-1)?.record, {
    type: 'end',
    txn,
    operator: 'resolved',
    reason: 'committed b by hand',
  });
});

test('abandon an in-doubt transaction: retries stop, the prepared branch is listed, and a restart never presumes it aborted', async () => {
  const { a, b, c, log, txn, logPath, up } = await inDoubtSetup();
  const gidB = c.gidFor(txn, 'b');
  const { stillPrepared } = await c.abandon(txn, { force: true, reason: 'b restored from backup' });
  assert.deepEqual(stillPrepared, [gidB]);
  up();
  await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(await b.listPrepared('dtx_'), [
    { gid: gidB, preparedAt: (await b.listPrepared('dtx_'))[0]?.preparedAt },
  ]);
  assert.equal(b.read('y'), undefined, 'no more COMMITs after abandon');
  await c.close();
  await log.close();
  // A fresh coordinator on the same log: nothing re-driven, and b's branch
  // (decided COMMIT) is left for the operator, not rolled back.
  const log2 = await openSqliteLog<TwoPcRecord>(logPath, { create: true });
  const c2 = await createCoordinator({ log: log2, resources: { a, b } });
  const report = c2.recovery;
  assert.deepEqual(report.recommitted, []);
  assert.deepEqual(report.rolledBack, []);
  assert.equal((await b.listPrepared('dtx_')).length, 1);
  const detail = await c2.show(txn);
  assert.equal(detail.state, 'abandoned');
  assert.equal(detail.reason, 'b restored from backup');
  assert.deepEqual(detail.branches, { a: 'unknown', b: 'unknown' });
  await c2.close();
  await log2.close();
});

test('resolve aborted: an undecided transaction is aborted now, and its caller gets DTX_ABORTED', async () => {
  const a = await createSqliteAdapter({ path: join(dir, `ab${++n}.sqlite`), create: true });
  const log = await openSqliteLog<TwoPcRecord>(join(dir, `ablog${n}.sqlite`), { create: true });
  let release: () => void = () => undefined;
  const held = new Promise<void>((r) => (release = r));
  const begin = a.begin.bind(a);
  a.begin = async (gid: string) => {
    const branch = await begin(gid);
    const prepare = branch.prepare.bind(branch);
    // A prepare that hangs: the transaction stays undecided.
    branch.prepare = async () => {
      await held;
      return prepare();
    };
    return branch;
  };
  const c = await createCoordinator({ log, resources: { a }, timing: { voteTimeoutMs: 60_000 } });
  closers.push(async () => {
    release();
    await c.close();
    await log.close();
    await a.close();
  });
  const pending = c.transaction(async (tx) => {
    (await tx.branch<SqliteBranch>('a')).put('k', 1);
  });
  // Settled as soon as the operator acts, before this test looks at it.
  const outcome = pending.then(
    () => null,
    (e: unknown) => e,
  );
  await until('the vote is awaited', async () =>
    (await c.list({ state: 'running' })).some((s) => s.branches.a === 'preparing'),
  );
  const [summary] = await c.list({ state: 'running' });
  await rejectsCode(
    c.resolve(summary!.id, { force: true, reason: 'r', outcome: 'committed' }),
    'DTX_INVALID_STATE',
  );
  await c.resolve(summary!.id, { force: true, reason: 'prepare hangs', outcome: 'aborted' });
  assert.ok(isDtxError(await outcome, 'DTX_ABORTED'), String(await outcome));
  release();
  await until('the branch is rolled back', async () => (await a.listPrepared('dtx_')).length === 0);
  assert.equal(a.read('k'), undefined);
  assert.equal((await c.show(summary!.id)).state, 'resolved');
});

test('twoPcTxnViews: the views of a log, offline', () => {
  const at = new Date('2026-01-02T03:04:05Z');
  const views = twoPcTxnViews([
    { at, record: { type: 'commit', txn: 't1', participants: ['a', 'b'], client: 'app' } },
    { at: null, record: { type: 'commit', txn: 't2', participants: ['a'], client: 'app' } },
    { at, record: { type: 'end', txn: 't1' } },
    { at: null, record: { type: 'commit', txn: 't3', participants: ['a', 'b'], client: 'app' } },
    { at: null, record: { type: 'end', txn: 't3', operator: 'abandoned', reason: 'why' } },
    { at: null, record: { type: 'end', txn: 't4', operator: 'resolved', reason: 'aborted it' } },
  ]);
  assert.deepEqual(
    views.map((v) => [v.id, v.state, v.reason, v.branches, v.startedAt, v.records.length]),
    [
      ['t1', 'committed', null, { a: 'committed', b: 'committed' }, at.toISOString(), 2],
      ['t2', 'in-doubt', null, { a: 'prepared' }, null, 1],
      ['t3', 'abandoned', 'why', { a: 'unknown', b: 'unknown' }, null, 2],
      ['t4', 'resolved', 'aborted it', {}, null, 1],
    ],
  );
  assert.equal(views[0]!.records[0]!.at, at.toISOString());
});

test('a checkpoint keeps the commit and end of a transaction an operator ended, and drops ordinary finished ones', () => {
  const kept = compactTwoPcLog([
    { type: 'commit', txn: 't1', participants: ['a'], client: 'app' },
    { type: 'end', txn: 't1' },
    { type: 'commit', txn: 't2', participants: ['a', 'b'], client: 'app', evidence: { a: '42' } },
    { type: 'end', txn: 't2', operator: 'abandoned', reason: 'b restored' },
    { type: 'commit', txn: 't3', participants: ['a'], client: 'app' },
    { type: 'end', txn: 't4', operator: 'resolved', reason: 'aborted while voting' },
  ]);
  assert.deepEqual(kept, [
    { type: 'commit', txn: 't2', participants: ['a', 'b'], client: 'app', evidence: { a: '42' } },
    { type: 'end', txn: 't2', operator: 'abandoned', reason: 'b restored' },
    { type: 'commit', txn: 't3', participants: ['a'], client: 'app' },
  ]);
});
