// The saga runtime's acceptance scenarios with real processes' building
// blocks (a real SQLite log, real timers, local branch functions): a
// compensation that fails twice then succeeds, one that fails past its limit
// (the saga is visibly stuck, with the reason, also after a restart), the saga
// timeout triggering compensation, and concurrent branches compensated in
// reverse order of the order graph.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import {
  type BranchContext,
  createSagaOrchestrator,
  openSagaLog,
  refuse,
  type SagaDefinition,
} from '../../../src/runtime/saga/orchestrator.ts';

const dir = mkdtempSync(join(tmpdir(), 'dtx-saga-scenarios-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const timing = { retryBaseMs: 5, retryCapMs: 20, compensationAttemptsMax: 4 };

function def(
  name: string,
  calls: string[],
  behave: (step: string, ctx: BranchContext) => void | Promise<void>,
  after?: Record<string, string[]>,
): SagaDefinition {
  const fn = (step: string) => async (ctx: BranchContext) => {
    calls.push(`${step}:${ctx.op}`);
    await behave(step, ctx);
  };
  const steps = Object.keys(after ?? { a: [], b: [], c: [] });
  return {
    name,
    steps: steps.map((s) => ({
      name: s,
      action: fn(s),
      compensation: fn(s),
      ...(after ? { after: after[s] } : {}),
    })),
  };
}

test('a compensation that fails twice and then succeeds: the saga ends compensated', async () => {
  const log = await openSagaLog({ sqlite: join(dir, 'twice.sqlite'), create: true });
  const o = await createSagaOrchestrator({ log, timing });
  const calls: string[] = [];
  let failures = 0;
  const d = def('twice', calls, (step, ctx) => {
    if (step === 'c' && ctx.op === 'action') refuse('sold out');
    if (step === 'a' && ctx.op === 'compensation' && failures++ < 2) throw new Error('refund service down');
  });
  const id = await o.start(d, { idempotencyKey: 'k' });
  const r = await o.result(id);
  assert.equal(r.outcome, 'compensated');
  assert.equal(calls.filter((c) => c === 'a:compensation').length, 3);
  await o.close();
  await log.close();
});

test('a compensation failing past its limit leaves the saga visibly stuck, with the reason, across a restart', async () => {
  const path = join(dir, 'stuck.sqlite');
  const log = await openSagaLog({ sqlite: path, create: true });
  const calls: string[] = [];
  const d = def('stuck', calls, (step, ctx) => {
    if (step === 'c' && ctx.op === 'action') refuse('sold out');
    if (step === 'a' && ctx.op === 'compensation') throw new Error('refund service down');
  });
  const o = await createSagaOrchestrator({ log, timing, definitions: [d] });
  const id = await o.start(d, { idempotencyKey: 'k' });
  const r = await o.result(id);
  assert.equal(r.outcome, 'stuck');
  assert.match(r.reason ?? '', /a/);
  assert.equal(calls.filter((c) => c === 'a:compensation').length, timing.compensationAttemptsMax);
  assert.equal(o.status(id).state, 'stuck');
  await o.close();
  await log.close();
  // Stuck is durable: a restarted orchestrator still reports it, and does not silently drop it.
  const log2 = await openSagaLog({ sqlite: path });
  const o2 = await createSagaOrchestrator({ log: log2, timing, definitions: [d] });
  assert.equal(o2.status(id).state, 'stuck');
  await o2.close();
  await log2.close();
});

test('the saga timeout fails a saga whose step hangs: completed steps are compensated', async () => {
  const log = await openSagaLog({ sqlite: join(dir, 'timeout.sqlite'), create: true });
  const o = await createSagaOrchestrator({ log, timing: { ...timing, sagaTimeoutMs: 100 } });
  const calls: string[] = [];
  const d = def('timeout', calls, async (step, ctx) => {
    if (step === 'b' && ctx.op === 'action') await new Promise((r) => setTimeout(r, 400));
  });
  const started = Date.now();
  const id = await o.start({ ...d, timeoutMs: 100 }, { idempotencyKey: 'k' });
  const r = await o.result(id);
  assert.equal(r.outcome, 'compensated');
  assert.ok(calls.includes('a:compensation'), calls.join(','));
  assert.ok(!calls.includes('c:action'), 'no step may start after the timeout');
  assert.ok(Date.now() - started < 3_000);
  await o.close();
  await log.close();
});

test('concurrent branches: compensation respects the order graph', async () => {
  const log = await openSagaLog({ sqlite: join(dir, 'graph.sqlite'), create: true });
  const o = await createSagaOrchestrator({ log, timing });
  const calls: string[] = [];
  // a, then b and c concurrently, then d; d refuses.
  const d = def(
    'graph',
    calls,
    (step, ctx) => {
      if (step === 'd' && ctx.op === 'action') refuse('no');
    },
    { a: [], b: ['a'], c: ['a'], d: ['b', 'c'] },
  );
  const id = await o.start(d, { idempotencyKey: 'k' });
  assert.equal((await o.result(id)).outcome, 'compensated');
  const order = (c: string) => calls.indexOf(c);
  assert.ok(order('b:action') > order('a:action') && order('c:action') > order('a:action'));
  assert.ok(order('a:compensation') > order('b:compensation'), calls.join(','));
  assert.ok(order('a:compensation') > order('c:compensation'), calls.join(','));
  await o.close();
  await log.close();
});
