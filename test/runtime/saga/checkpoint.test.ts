// Log checkpoints of the saga and TCC orchestrators: the log stays bounded by
// what is open plus the retained outcomes, a saga in flight across many
// checkpoints is recovered whole after a restart, a retained outcome still
// answers (and its idempotency key still runs nothing), and an outcome past
// the retention is forgotten, as documented.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { isDtxError } from '../../../src/errors.ts';
import {
  type BranchContext,
  createSagaOrchestrator,
  openSagaLog,
  type SagaDefinition,
} from '../../../src/runtime/saga/orchestrator.ts';
import {
  createTccOrchestrator,
  openTccLog,
  type TccDefinition,
} from '../../../src/runtime/tcc/orchestrator.ts';

const dir = mkdtempSync(join(tmpdir(), 'dtx-saga-ckpt-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function counting(calls: string[], gate?: Promise<void>, name = 'count'): SagaDefinition {
  const fn = (what: string) => async (ctx: BranchContext) => {
    calls.push(`${what}:${ctx.op}:${ctx.sagaId}`);
    if (gate !== undefined && what === 'b' && ctx.op === 'action') await gate;
  };
  return {
    name,
    steps: ['a', 'b', 'c'].map((s) => ({ name: s, action: fn(s), compensation: fn(s) })),
  };
}

test('saga log: bounded by checkpoints; a long saga survives them and a restart; retention as documented', async () => {
  const path = join(dir, 'saga.sqlite');
  // The long saga's action waits on a gate: its unanswered attempts must not
  // run out (and compensate it) however slowly the 120 others run on a busy machine.
  const timing = { retryBaseMs: 5, retainFinished: 10, actionAttemptsMax: 1_000_000 };
  const log = await openSagaLog({ sqlite: path, create: true });
  const o = await createSagaOrchestrator({ log, timing, checkpointEvery: 20 });
  const calls: string[] = [];
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  const long = await o.start(counting(calls, gate, 'long'), { idempotencyKey: 'long' });
  const done: string[] = [];
  for (let i = 0; i < 120; i++) {
    const id = await o.start(counting(calls), { idempotencyKey: `k${i}` });
    assert.equal((await o.result(id)).outcome, 'completed');
    done.push(id);
  }
  assert.equal(o.status(long).state, 'running');
  await o.close();
  await log.close();
  open();

  // Without checkpoints the log would hold ~7 records per saga (over 800).
  const reopened = await openSagaLog({ sqlite: path });
  const records = await reopened.load();
  assert.ok(records.length < 60, `${records.length} records left in the log`);
  assert.ok(
    records.some((r) => r.txn === long && r.type === 'begin'),
    'the open saga lost its begin',
  );

  const calls2: string[] = [];
  const o2 = await createSagaOrchestrator({
    log: reopened,
    timing,
    definitions: [counting(calls2), counting(calls2, undefined, 'long')],
  });
  assert.deepEqual(await o2.result(long), { sagaId: long, outcome: 'completed', reason: null });
  assert.deepEqual(
    calls2.map((c) => c.split(':').slice(0, 2).join(':')),
    ['b:action', 'c:action'],
    'the restarted orchestrator resumes the long saga where it was, and only it',
  );
  // The newest outcomes are retained: answered, and their keys run nothing again.
  const newest = done[done.length - 1]!;
  assert.equal(o2.status(newest).state, 'completed');
  assert.equal(await o2.start(counting(calls2), { idempotencyKey: 'k119' }), newest);
  assert.equal(calls2.length, 2);
  // The oldest are forgotten (retainFinished 10).
  assert.equal(o2.status(done[0]!).state, 'unknown');
  await o2.close();
  await reopened.close();
});

test('an id past the retention runs again, and a checkpoint keeps that run whole across a restart', async () => {
  const path = join(dir, 'again.sqlite');
  const timing = { retryBaseMs: 5, retainFinished: 1 };
  const log = await openSagaLog({ sqlite: path, create: true });
  const o = await createSagaOrchestrator({ log, timing, checkpointEvery: 3 });
  const calls: string[] = [];
  const a = await o.start(counting(calls, undefined, 'again'), { idempotencyKey: 'A' });
  assert.equal((await o.result(a)).outcome, 'completed');
  const b = await o.start(counting(calls), { idempotencyKey: 'B' });
  assert.equal((await o.result(b)).outcome, 'completed');
  assert.equal(o.status(a).state, 'unknown', 'A is past the retention of 1');
  // A again: held at its step b while more appends (and checkpoints) go by.
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  assert.equal(await o.start(counting(calls, gate, 'again'), { idempotencyKey: 'A' }), a);
  await new Promise((resolve) => setTimeout(resolve, 50));
  for (const key of ['C', 'D']) {
    const id = await o.start(counting(calls), { idempotencyKey: key });
    assert.equal((await o.result(id)).outcome, 'completed');
  }
  assert.equal(o.status(a).state, 'running');
  await o.close();
  await log.close();
  open();
  const reopened = await openSagaLog({ sqlite: path });
  const calls2: string[] = [];
  const o2 = await createSagaOrchestrator({
    log: reopened,
    timing,
    definitions: [counting(calls2), counting(calls2, undefined, 'again')],
  });
  assert.equal(o2.status(a).state, 'running', 'the second run of A was lost by a checkpoint');
  assert.equal((await o2.result(a)).outcome, 'completed');
  await o2.close();
  await reopened.close();
});

test('tcc log: bounded by checkpoints too', async () => {
  const path = join(dir, 'tcc.sqlite');
  const log = await openTccLog({ sqlite: path, create: true });
  const o = await createTccOrchestrator({
    log,
    timing: { retryBaseMs: 5, retainFinished: 5 },
    checkpointEvery: 10,
  });
  const noop = async () => undefined;
  const def: TccDefinition = {
    name: 'pay',
    branches: [
      { name: 'x', try: noop, confirm: noop, cancel: noop },
      { name: 'y', try: noop, confirm: noop, cancel: noop },
    ],
  };
  for (let i = 0; i < 60; i++) {
    const id = await o.start(def, { idempotencyKey: `t${i}` });
    assert.equal((await o.result(id)).outcome, 'completed');
  }
  await o.close();
  await log.close();
  const reopened = await openTccLog({ sqlite: path });
  const records = await reopened.load();
  assert.ok(records.length < 40, `${records.length} records left in the log`);
  await reopened.close();
});

test('bad retention settings are refused with a typed error', async () => {
  const log = await openSagaLog({ sqlite: join(dir, 'bad.sqlite'), create: true });
  await assert.rejects(createSagaOrchestrator({ log, timing: { retainFinished: -1 } }), (e) =>
    isDtxError(e, 'DTX_INVALID_ARGUMENT'),
  );
  await assert.rejects(createSagaOrchestrator({ log, checkpointEvery: 0 }), (e) =>
    isDtxError(e, 'DTX_INVALID_ARGUMENT'),
  );
  await log.close();
});
