// Deadlines on transaction(): `timeoutMs` and an AbortSignal end the wait
// before the decision by aborting everywhere (DTX_TIMEOUT, DTX_CANCELLED), and
// never turn a durable commit into anything but a commit. Real SQLite
// participants and log; the after-decision case with a real PostgreSQL server
// going down is in heuristics-pg.test.ts.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { createSqliteAdapter, type SqliteAdapter, type SqliteBranch } from '../../src/adapters/sqlite.ts';
import { isDtxError } from '../../src/errors.ts';
import type { TwoPcRecord } from '../../src/protocol/twopc/types.ts';
import { type Coordinator, createCoordinator } from '../../src/runtime/coordinator.ts';
import { openSqliteLog } from '../../src/runtime/log/sqlite.ts';

const dir = mkdtempSync(join(tmpdir(), 'dtx-h2-deadline-'));
const closers: (() => Promise<unknown>)[] = [];
after(async () => {
  for (const close of closers.reverse()) await close().catch(() => undefined);
  rmSync(dir, { recursive: true, force: true });
});
let n = 0;

/** A coordinator over a and b; `hangPrepare` makes b's prepare wait until released. */
async function setup(options: { hangPrepare?: boolean } = {}) {
  const id = ++n;
  const a = await createSqliteAdapter({ path: join(dir, `a${id}.sqlite`), create: true });
  const b = await createSqliteAdapter({ path: join(dir, `b${id}.sqlite`), create: true });
  const log = await openSqliteLog<TwoPcRecord>(join(dir, `log${id}.sqlite`), { create: true });
  let release: () => void = () => undefined;
  const held = new Promise<void>((r) => (release = r));
  if (options.hangPrepare === true) {
    const begin = b.begin.bind(b);
    b.begin = async (gid: string) => {
      const branch = await begin(gid);
      const prepare = branch.prepare.bind(branch);
      branch.prepare = async () => {
        await held;
        return prepare();
      };
      return branch;
    };
  }
  const c: Coordinator = await createCoordinator({
    log,
    resources: { a, b },
    timing: { voteTimeoutMs: 60_000 },
  });
  closers.push(async () => {
    release();
    await c.close();
    await log.close();
    await a.close();
    await b.close();
  });
  return { a, b, c, release };
}

async function nothingLeft(a: SqliteAdapter, b: SqliteAdapter): Promise<void> {
  const deadline = Date.now() + 3_000;
  while ((await a.listPrepared('dtx_')).length + (await b.listPrepared('dtx_')).length > 0) {
    assert.ok(Date.now() < deadline, 'a branch stayed prepared');
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.equal(a.read('x'), undefined);
  assert.equal(b.read('y'), undefined);
}

test('timeoutMs during the work: DTX_TIMEOUT, every branch rolled back, later work refused', async () => {
  const { a, b, c } = await setup();
  let lateOpen: unknown;
  const started = Date.now();
  const err = await c
    .transaction(
      async (tx) => {
        (await tx.branch<SqliteBranch>('a')).put('x', 1);
        await new Promise((r) => setTimeout(r, 300));
        // The deadline has passed: opening another branch now is refused.
        lateOpen = await tx.branch('b').then(
          () => 'opened',
          (e: unknown) => e,
        );
      },
      { timeoutMs: 100 },
    )
    .then(
      () => assert.fail('should time out'),
      (e: unknown) => e,
    );
  assert.ok(isDtxError(err, 'DTX_TIMEOUT'), String(err));
  assert.ok(Date.now() - started < 250, `took ${Date.now() - started} ms`);
  await new Promise((r) => setTimeout(r, 300));
  assert.ok(isDtxError(lateOpen, 'DTX_TIMEOUT'), String(lateOpen));
  await nothingLeft(a, b);
});

test('an AbortSignal during the prepare phase: DTX_CANCELLED, and the transaction is aborted everywhere', async () => {
  const { a, b, c, release } = await setup({ hangPrepare: true });
  const controller = new AbortController();
  const pending = c
    .transaction(
      async (tx) => {
        (await tx.branch<SqliteBranch>('a')).put('x', 1);
        (await tx.branch<SqliteBranch>('b')).put('y', 1);
      },
      { signal: controller.signal },
    )
    .then(
      () => null,
      (e: unknown) => e,
    );
  const deadline = Date.now() + 3_000;
  while (!(await c.list({ state: 'running' })).some((s) => s.branches.b === 'preparing')) {
    assert.ok(Date.now() < deadline);
    await new Promise((r) => setTimeout(r, 5));
  }
  controller.abort('user went away');
  const err = await pending;
  assert.ok(isDtxError(err, 'DTX_CANCELLED'), String(err));
  assert.match(String((err as Error).message), /user went away/);
  release();
  await nothingLeft(a, b);
});

test('a signal already aborted: DTX_CANCELLED before any work', async () => {
  const { c } = await setup();
  let ran = false;
  const err = await c
    .transaction(
      async () => {
        ran = true;
      },
      { signal: AbortSignal.abort() },
    )
    .then(
      () => null,
      (e: unknown) => e,
    );
  assert.ok(isDtxError(err, 'DTX_CANCELLED'), String(err));
  assert.equal(ran, false);
});

test('timeoutMs and commitWaitMs must be positive integers', async () => {
  const { c } = await setup();
  for (const options of [{ timeoutMs: 0 }, { timeoutMs: -1 }, { timeoutMs: 1.5 }, { commitWaitMs: 0 }]) {
    await assert.rejects(
      c.transaction(async () => undefined, options),
      (e: unknown) => isDtxError(e, 'DTX_INVALID_ARGUMENT'),
    );
  }
});

test('a deadline that fires after the commit decision does not undo it', async () => {
  const { a, b, c } = await setup();
  // Generous deadline: the transaction commits well within it, and the timer
  // that fires later changes nothing (and keeps no process alive).
  await c.transaction(
    async (tx) => {
      (await tx.branch<SqliteBranch>('a')).put('x', 1);
      (await tx.branch<SqliteBranch>('b')).put('y', 1);
    },
    { timeoutMs: 200 },
  );
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(a.read('x'), 1);
  assert.equal(b.read('y'), 1);
});
