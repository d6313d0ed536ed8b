// Operator paths that must never undo a durable commit decision, found by a
// review of this runtime: the periodic orphan sweep after an operator
// abandoned a decided commit; a false heuristic after a lost COMMIT reply
// and an operator's retry; and `dtx recover` given its --db URLs in another
// order than `bench --init` had them. Real SQLite participants, with faults
// injected by wrapping the real adapter's phase-two call (a database that is
// down; a reply lost after the commit was applied), and the real CLI.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createSqliteAdapter, type SqliteBranch } from '../../src/adapters/sqlite.ts';
import { DtxError } from '../../src/errors.ts';
import type { TwoPcRecord } from '../../src/protocol/twopc/types.ts';
import { createCoordinator } from '../../src/runtime/coordinator.ts';
import { openSqliteLog } from '../../src/runtime/log/sqlite.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const dir = mkdtempSync(join(tmpdir(), 'dtx-operator-safety-'));
after(() => rmSync(dir, { recursive: true, force: true }));

async function pair(name: string) {
  const a = await createSqliteAdapter({ path: join(dir, `${name}-a.sqlite`), create: true });
  const b = await createSqliteAdapter({ path: join(dir, `${name}-b.sqlite`), create: true });
  const log = await openSqliteLog<TwoPcRecord>(join(dir, `${name}-log.sqlite`), { create: true });
  return { a, b, log };
}

test('after an operator abandons a decided commit, the orphan sweep never rolls back its prepared branch', async () => {
  const { a, b, log } = await pair('abandon');
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
    orphanSweepIntervalMs: 0,
    orphanGraceMs: 50,
  });
  const txn = await c.transaction(async (tx) => {
    (await tx.branch<SqliteBranch>('a')).put('x', 1);
    (await tx.branch<SqliteBranch>('b')).put('y', 1);
    return tx.id;
  });
  await new Promise((r) => setTimeout(r, 100));
  const { stillPrepared } = await c.abandon(txn, { force: true, reason: 'b restored elsewhere' });
  assert.equal(stillPrepared.length, 1);
  bDown = false;
  await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(await c.sweepOrphans(), [], 'the sweep rolled back a branch of a durable commit');
  assert.deepEqual(
    (await b.listPrepared('dtx_')).map((p) => p.gid),
    stillPrepared,
    'the branch is still there for the operator to commit',
  );
  await c.close();
  await log.close();
  await a.close();
  await b.close();
});

test('a COMMIT whose reply was lost, then an operator retry: no false heuristic', async () => {
  const { a, b, log } = await pair('retry');
  let first = true;
  const commitPrepared = b.commitPrepared.bind(b);
  b.commitPrepared = async (gid: string) => {
    const r = await commitPrepared(gid);
    if (first) {
      first = false;
      throw new DtxError('DTX_RESOURCE_UNAVAILABLE', 'connection reset (reply lost)');
    }
    return r;
  };
  const c = await createCoordinator({
    log,
    resources: { a, b },
    timing: { commitResendMs: 2000 },
    commitBackoffMaxMs: 60_000,
    onWarning: () => undefined,
    orphanSweepIntervalMs: 0,
  });
  let id = '';
  const running = c.transaction(
    async (tx) => {
      id = tx.id;
      (await tx.branch<SqliteBranch>('a')).put('x', 1);
      (await tx.branch<SqliteBranch>('b')).put('y', 1);
    },
    { commitWaitMs: 5000 },
  );
  await new Promise((r) => setTimeout(r, 100));
  await c.retry(id);
  await running; // resolves: committed, no DTX_HEURISTIC
  assert.deepEqual(c.heuristics, []);
  await c.close();
  await log.close();
  await a.close();
  await b.close();
});

test('dtx recover with the --db URLs in another order than bench --init: refused, nothing touched', () => {
  const bin = join(root, 'bin', 'dtx.js');
  const dtx = (args: string[]) =>
    spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', cwd: root });
  const x = `sqlite:${join(dir, 'order-x.sqlite')}`;
  const y = `sqlite:${join(dir, 'order-y.sqlite')}`;
  const log = join(dir, 'order-log.sqlite');
  const init = dtx([
    'bench',
    '--db',
    x,
    '--db',
    y,
    '--log',
    log,
    '--init',
    '--txns',
    '3',
    '--accounts',
    '10',
  ]);
  assert.equal(init.status, 0, init.stderr);
  const crash = dtx([
    'bench',
    '--db',
    x,
    '--db',
    y,
    '--log',
    log,
    '--txns',
    '10',
    '--concurrency',
    '1',
    '--acknowledge',
    'durable',
    '--crash-at',
    'decided',
    '--crash-after',
    '2',
  ]);
  assert.equal(crash.signal, 'SIGKILL', crash.stderr);
  const swapped = dtx(['recover', '--db', y, '--db', x, '--log', log]);
  assert.equal(swapped.status, 2, swapped.stderr);
  assert.match(swapped.stderr, /^error: DTX_INVALID_ARGUMENT: .*order bench --init had them/m);
  const rightOrder = dtx(['recover', '--db', x, '--db', y, '--log', log, '--json']);
  assert.equal(rightOrder.status, 0, rightOrder.stderr);
  assert.equal((JSON.parse(rightOrder.stdout) as { recommitted: string[] }).recommitted.length, 1);
  const verified = dtx(['verify', '--db', x, '--db', y, '--log', log]);
  assert.equal(verified.status, 0, verified.stdout + verified.stderr);
});
