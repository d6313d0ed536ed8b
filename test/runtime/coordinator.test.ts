// The runtime coordinator over real embedded SQLite participants and a real
// SQLite log: commit, rollback on throw, abort on a NO vote, recovery of
// what a crashed coordinator left prepared, and heuristic outcomes.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { createSqliteAdapter, type SqliteAdapter, type SqliteBranch } from '../../src/adapters/sqlite.ts';
import { HeuristicError, isDtxError } from '../../src/errors.ts';
import type { TwoPcRecord } from '../../src/protocol/twopc/types.ts';
import { createCoordinator } from '../../src/runtime/coordinator.ts';
import { openSqliteLog } from '../../src/runtime/log/sqlite.ts';

const dir = mkdtempSync(join(tmpdir(), 'dtx-runtime-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;

async function setup() {
  const id = ++n;
  const a = await createSqliteAdapter({ create: true, path: join(dir, `a${id}.sqlite`) });
  const b = await createSqliteAdapter({ create: true, path: join(dir, `b${id}.sqlite`) });
  const logPath = join(dir, `log${id}.sqlite`);
  // Id c1, as the tests below name their gids by hand.
  const log = await openSqliteLog<TwoPcRecord>(logPath, { create: true, identity: { coordinatorId: 'c1' } });
  return { a, b, log, logPath };
}

async function seed(adapter: SqliteAdapter, key: string, value: number) {
  const branch = await adapter.begin(`seed_${key}_${n}`);
  branch.put(key, value);
  await branch.prepare();
  await adapter.commitPrepared(`seed_${key}_${n}`);
}

test('a transfer commits on both participants, and nothing stays prepared', async () => {
  const { a, b, log } = await setup();
  await seed(a, 'alice', 100);
  const c = await createCoordinator({ log, resources: { a, b } });
  const id = await c.transaction(async (tx) => {
    const wa = await tx.branch<SqliteBranch>('a');
    const wb = await tx.branch<SqliteBranch>('b');
    wa.put('alice', (wa.get('alice') as number) - 30);
    wb.put('shop', 30);
    return tx.id;
  });
  assert.match(id, /^c1\./);
  assert.equal(a.read('alice'), 70);
  assert.equal(b.read('shop'), 30);
  assert.deepEqual(await a.listPrepared('dtx_'), []);
  assert.deepEqual(await b.listPrepared('dtx_'), []);
  await c.close();
  await log.close();
  // The log keeps the commit and its end; a fresh coordinator has nothing to re-drive.
  const log2 = await openSqliteLog<TwoPcRecord>(join(dir, `log${n}.sqlite`));
  const records = await log2.load();
  assert.deepEqual(
    records.map((r) => r.type),
    ['commit', 'end'],
  );
  await log2.close();
  await a.close();
  await b.close();
});

test('a callback that throws rolls every branch back and rethrows', async () => {
  const { a, b, log } = await setup();
  const c = await createCoordinator({ log, resources: { a, b } });
  await assert.rejects(
    c.transaction(async (tx) => {
      (await tx.branch<SqliteBranch>('a')).put('x', 1);
      (await tx.branch<SqliteBranch>('b')).put('y', 1);
      throw new Error('business rule');
    }),
    /business rule/,
  );
  assert.equal(a.read('x'), undefined);
  assert.equal(b.read('y'), undefined);
  assert.deepEqual(await log.load(), [], 'an abort writes nothing to the coordinator log (presumed abort)');
  await c.close();
  await log.close();
  await a.close();
  await b.close();
});

test('a NO vote aborts everywhere with DTX_ABORTED carrying the cause', async () => {
  const { a, b, log } = await setup();
  await seed(b, 'rate', 1);
  const c = await createCoordinator({ log, resources: { a, b } });
  const err = await c
    .transaction(async (tx) => {
      (await tx.branch<SqliteBranch>('a')).put('x', 1);
      const wb = await tx.branch<SqliteBranch>('b');
      wb.put('y', wb.get('rate') as number);
      // Someone changes what b read before b prepares: b's prepare fails its
      // read validation and it votes NO.
      const other = await b.begin('dtx_other_b');
      other.put('rate', 2);
      await other.prepare();
      await b.commitPrepared('dtx_other_b');
    })
    .then(
      () => assert.fail('should abort'),
      (e: unknown) => e,
    );
  assert.ok(isDtxError(err, 'DTX_ABORTED'), String(err));
  assert.equal(err.retryable, true);
  assert.ok(isDtxError(err.cause, 'DTX_SERIALIZATION_FAILURE'), String(err.cause));
  assert.equal(a.read('x'), undefined, 'the YES voter was rolled back');
  assert.equal(b.read('y'), undefined);
  assert.deepEqual(await a.listPrepared('dtx_'), []);
  assert.deepEqual(await b.listPrepared('dtx_'), []);
  await c.close();
  await log.close();
  await a.close();
  await b.close();
});

test("acknowledge 'durable' answers once the decision is in the log; the commit still lands", async () => {
  const { a, b, log } = await setup();
  const c = await createCoordinator({ log, resources: { a, b }, acknowledge: 'durable' });
  await c.transaction(async (tx) => {
    (await tx.branch<SqliteBranch>('a')).put('x', 1);
    (await tx.branch<SqliteBranch>('b')).put('y', 2);
  });
  for (let i = 0; i < 100 && (a.read('x') === undefined || b.read('y') === undefined); i++) {
    await new Promise((r) => setTimeout(r, 5));
  }
  assert.equal(a.read('x'), 1);
  assert.equal(b.read('y'), 2);
  await c.close();
  await log.close();
  await a.close();
  await b.close();
});

test('recovery commits what the log decided and rolls back what it did not (presumed abort)', async () => {
  const { a, b, log, logPath } = await setup();
  // What a coordinator named c1 leaves behind when killed: t1 decided (commit
  // record durable) with both branches prepared; t2 prepared, never decided.
  for (const [adapter, key] of [
    [a, 'p'],
    [b, 'q'],
  ] as const) {
    for (const txn of ['c1.x.1', 'c1.x.2']) {
      const branch = await adapter.begin(`dtx_${txn}_${adapter === a ? 'a' : 'b'}`);
      branch.put(`${key}${txn}`, txn);
      await branch.prepare();
    }
  }
  await log.append([{ type: 'commit', txn: 'c1.x.1', participants: ['a', 'b'], client: 'app' }], true);
  await log.close();
  const log2 = await openSqliteLog<TwoPcRecord>(logPath, {});
  const c = await createCoordinator({ log: log2, resources: { a, b } });
  const report = c.recovery;
  assert.deepEqual(report.recommitted, ['c1.x.1']);
  assert.deepEqual(report.rolledBack.sort(), ['dtx_c1.x.2_a', 'dtx_c1.x.2_b']);
  assert.equal(a.read('pc1.x.1'), 'c1.x.1');
  assert.equal(b.read('qc1.x.1'), 'c1.x.1');
  assert.equal(a.read('pc1.x.2'), undefined);
  assert.deepEqual(await a.listPrepared('dtx_'), []);
  assert.deepEqual(await b.listPrepared('dtx_'), []);
  await c.close();
  await log2.close();
  await a.close();
  await b.close();
});

test('a branch resolved by hand before dtx commits it is reported as heuristic, and transaction() rejects with it', async () => {
  const { a, b, log } = await setup();
  const seen: string[] = [];
  const c = await createCoordinator({ log, resources: { a, b }, onHeuristic: (e) => seen.push(e.gid ?? '') });
  // Roll back b's branch by hand the moment it is prepared, before phase two.
  const originalPrepare = b.begin.bind(b);
  b.begin = async (gid: string) => {
    const branch = await originalPrepare(gid);
    const prepare = branch.prepare.bind(branch);
    branch.prepare = async () => {
      const vote = await prepare();
      await b.rollbackPrepared(gid);
      return vote;
    };
    return branch;
  };
  const err = await c
    .transaction(async (tx) => {
      (await tx.branch<SqliteBranch>('a')).put('x', 1);
      (await tx.branch<SqliteBranch>('b')).put('y', 1);
    })
    .then(
      () => assert.fail('a transaction with a branch rolled back by hand must not resolve as committed'),
      (e: unknown) => e,
    );
  assert.ok(err instanceof HeuristicError, String(err));
  assert.equal(err.code, 'DTX_HEURISTIC');
  assert.equal(err.decision, 'commit');
  // SQLite keeps no evidence of how a vanished branch ended: found 'unknown'.
  assert.deepEqual(
    err.branches.map((b) => [b.resource, b.found]),
    [['b', 'unknown']],
  );
  assert.equal(seen.length, 1);
  assert.match(seen[0]!, /_b$/);
  assert.equal(c.heuristics[0]!.code, 'DTX_HEURISTIC');
  await c.close();
  await log.close();
  await a.close();
  await b.close();
});

test('close() while a transaction is still doing its work: the caller gets an error, not a hang, and nothing stays prepared', async () => {
  const { a, b, log } = await setup();
  const c = await createCoordinator({ log, resources: { a, b } });
  let proceed: () => void = () => {};
  const gate = new Promise<void>((r) => (proceed = r));
  const pending = c.transaction(async (tx) => {
    (await tx.branch<SqliteBranch>('a')).put('x', 1);
    (await tx.branch<SqliteBranch>('b')).put('y', 1);
    await gate;
  });
  await new Promise((r) => setTimeout(r, 20));
  await c.close();
  proceed();
  const err = await pending.then(
    () => assert.fail('should not commit after close()'),
    (e: unknown) => e,
  );
  assert.ok(isDtxError(err, 'DTX_RESOURCE_UNAVAILABLE'), String(err));
  assert.equal(a.read('x'), undefined);
  assert.deepEqual(await a.listPrepared('dtx_'), []);
  assert.deepEqual(await b.listPrepared('dtx_'), []);
  await log.close();
  await a.close();
  await b.close();
});
