// Operators can act on sagas and TCC transactions (issue 9, items 6 and 7):
// list, show, resolve and abandon — refused without `force` and a reason, or
// when they would contradict what the log decided, and recorded in the log
// when carried out — the pure views `dtx txn list` reads a log with, and
// deadlines on `result()`, which end only the wait, never the run.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import type { SagaRecord } from '../../../src/protocol/saga/types.ts';
import { sagaTxnViews, tccTxnViews } from '../../../src/runtime/branch/views.ts';
import { wrapLog } from '../../../src/runtime/log/wrap.ts';
import {
  createSagaOrchestrator,
  openSagaLog,
  refuse,
  type SagaDefinition,
} from '../../../src/runtime/saga/orchestrator.ts';
import {
  createTccOrchestrator,
  openTccLog,
  type TccDefinition,
} from '../../../src/runtime/tcc/orchestrator.ts';

const dir = mkdtempSync(join(tmpdir(), 'dtx-saga-operator-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const code = (c: string, pattern?: RegExp) => (e: unknown) =>
  (e as { code?: string }).code === c && (pattern === undefined || pattern.test((e as Error).message));

/** a, then b which refuses; a's compensation fails for ever (until resolved by hand). */
const brokenUndo: SagaDefinition = {
  name: 'broken',
  steps: [
    {
      name: 'a',
      action: async () => undefined,
      compensation: async () => {
        throw new Error('refund service gone');
      },
    },
    { name: 'b', action: async () => refuse('sold out'), compensation: async () => undefined },
  ],
};

/** a single step whose action waits for `gate`. */
function gated(name: string, gate: Promise<void>): SagaDefinition {
  return {
    name,
    steps: [{ name: 'a', action: () => gate, compensation: async () => undefined }],
  };
}

const timing = { retryBaseMs: 2, retryCapMs: 10 };

test('resolve is refused without force or a reason, or against the log; resolved compensated, it is recorded and listed', async () => {
  const path = join(dir, 'resolve.sqlite');
  const log = await openSagaLog({ sqlite: path, create: true });
  const o = await createSagaOrchestrator({ log, timing });
  const id = await o.start(brokenUndo, { idempotencyKey: 'k' });
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(o.status(id).state, 'compensating');
  const reason = 'refunded by hand, ticket OPS-7';
  await assert.rejects(
    o.resolve(id, { outcome: 'compensated', reason } as never),
    code('DTX_INVALID_ARGUMENT', /force/),
  );
  await assert.rejects(
    o.resolve(id, { outcome: 'compensated', force: true, reason: ' ' }),
    code('DTX_INVALID_ARGUMENT', /reason/),
  );
  // Compensation has been decided: it cannot be resolved completed.
  await assert.rejects(
    o.resolve(id, { outcome: 'completed', force: true, reason }),
    code('DTX_INVALID_STATE', /compensating/),
  );
  await assert.rejects(o.abandon('nope', { force: true, reason }), code('DTX_INVALID_ARGUMENT'));
  await o.resolve(id, { outcome: 'compensated', force: true, reason });
  const r = await o.result(id);
  assert.equal(r.outcome, 'compensated');
  assert.match(r.reason ?? '', /resolved by an operator: refunded by hand, ticket OPS-7/);
  assert.deepEqual(
    (await o.list({ state: 'resolved' })).map((t) => t.id),
    [id],
  );
  const shown = await o.show(id);
  const end = shown.records.at(-1)!.record as Extract<SagaRecord, { type: 'end' }>;
  assert.deepEqual(end.operator, { action: 'resolve', reason });
  // Every record carries the time the log store wrote it.
  for (const r of shown.records)
    assert.ok(r.at !== null && !Number.isNaN(Date.parse(r.at)), JSON.stringify(r));
  // Once ended, nothing more.
  await assert.rejects(o.abandon(id, { force: true, reason }), code('DTX_INVALID_STATE', /ended already/));
  await o.close();
  await log.close();
  // A restart knows how it ended, and from whom.
  const log2 = await openSagaLog({ sqlite: path, create: true });
  const o2 = await createSagaOrchestrator({ log: log2, timing, definitions: [brokenUndo] });
  assert.equal(o2.status(id).state, 'compensated');
  assert.match((await o2.result(id)).reason ?? '', /resolved by an operator/);
  await o2.close();
  await log2.close();
});

test('abandon ends a running saga as it stands; resolve completed is allowed while it goes forward', async () => {
  const log = await openSagaLog({ sqlite: join(dir, 'abandon.sqlite'), create: true });
  const o = await createSagaOrchestrator({ log, timing });
  const never = new Promise<void>(() => undefined);
  const id1 = await o.start(gated('gated1', never), { idempotencyKey: 'k' });
  const id2 = await o.start(gated('gated2', never), { idempotencyKey: 'k' });
  await o.abandon(id1, { force: true, reason: 'customer cancelled by phone' });
  assert.deepEqual(await o.result(id1), {
    sagaId: id1,
    outcome: 'abandoned',
    reason: 'abandoned by an operator: customer cancelled by phone',
  });
  await o.resolve(id2, { outcome: 'completed', force: true, reason: 'shipped by hand' });
  assert.equal((await o.result(id2)).outcome, 'completed');
  const states = Object.fromEntries((await o.list()).map((t) => [t.id, t.state]));
  assert.deepEqual(states, { [id1]: 'abandoned', [id2]: 'resolved' });
  await o.close();
  await log.close();
});

test('TCC: resolve may not contradict the decision; abandon and resolve cancelled are recorded', async () => {
  const log = await openTccLog({ sqlite: join(dir, 'tcc.sqlite'), create: true });
  const o = await createTccOrchestrator({ log, timing });
  const down = async () => {
    throw new Error('service down');
  };
  const def = (name: string, refuseTry: boolean): TccDefinition => ({
    name,
    branches: [
      {
        name: 'x',
        try: async () => (refuseTry ? refuse('no funds') : undefined),
        confirm: async () => undefined,
        cancel: async () => undefined,
      },
      // y's confirm and cancel never succeed: only an operator ends these.
      { name: 'y', try: async () => undefined, confirm: down, cancel: down },
    ],
  });
  const cancelling = await o.start(def('cancelling', true), { idempotencyKey: 'k' });
  const confirming = await o.start(def('confirming', false), { idempotencyKey: 'k' });
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(o.status(cancelling).state, 'compensating');
  assert.equal(o.status(confirming).state, 'running');
  const force = { force: true as const, reason: 'settled with the bank' };
  await assert.rejects(
    o.resolve(cancelling, { outcome: 'confirmed', ...force }),
    code('DTX_INVALID_STATE', /decided cancel/),
  );
  await assert.rejects(
    o.resolve(confirming, { outcome: 'cancelled', ...force }),
    code('DTX_INVALID_STATE', /decided confirm/),
  );
  await o.resolve(cancelling, { outcome: 'cancelled', ...force });
  await o.abandon(confirming, force);
  assert.equal((await o.result(cancelling)).outcome, 'compensated');
  assert.equal((await o.result(confirming)).outcome, 'abandoned');
  const listed = Object.fromEntries((await o.list()).map((t) => [t.id, t.state]));
  assert.deepEqual(listed, { [cancelling]: 'resolved', [confirming]: 'abandoned' });
  const shown = await o.show(confirming);
  const types = shown.records.map((v) => (v.record as { type: string }).type);
  assert.equal(types[0], 'begin');
  assert.ok(types.includes('decision'));
  assert.deepEqual((shown.records.at(-1)!.record as { operator?: unknown }).operator, {
    action: 'abandon',
    reason: 'settled with the bank',
  });
  await o.close();
  await log.close();
});

test('sagaTxnViews and tccTxnViews read a log offline, with the times the store gives', () => {
  const t = (s: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, s));
  const def = {
    steps: [
      {
        branch: 'a',
        service: 'local',
        action: 'v@1/a/action',
        compensation: 'v@1/a/compensation',
        payload: 'null',
      },
      {
        branch: 'b',
        service: 'local',
        action: 'v@1/b/action',
        compensation: 'v@1/b/compensation',
        payload: 'null',
      },
    ],
  };
  const saga: { at: Date | null; record: SagaRecord }[] = [
    { at: t(0), record: { type: 'begin', txn: 's1', client: 'app', def, entropy: 1 } },
    { at: t(1), record: { type: 'start', txn: 's1', branch: 'a', op: 'action' } },
    {
      at: t(2),
      record: { type: 'result', txn: 's1', branch: 'a', op: 'action', result: 'success', reason: '' },
    },
    { at: t(3), record: { type: 'start', txn: 's1', branch: 'b', op: 'action' } },
    {
      at: t(4),
      record: { type: 'result', txn: 's1', branch: 'b', op: 'action', result: 'failure', reason: 'no' },
    },
    { at: t(5), record: { type: 'rollback', txn: 's1', reason: 'b refused: no' } },
    { at: t(6), record: { type: 'start', txn: 's1', branch: 'a', op: 'compensate' } },
    {
      at: t(9),
      record: { type: 'stuck', txn: 's1', client: 'app', branch: 'a', reason: 'down', retrying: true },
    },
    { at: null, record: { type: 'end', txn: 's0', client: 'app', outcome: 'completed', reason: '' } },
  ];
  const views = sagaTxnViews(saga);
  assert.deepEqual(
    views.map(({ records, ...v }) => ({ ...v, n: records.length })),
    [
      {
        id: 's1',
        protocol: 'saga',
        state: 'stuck',
        startedAt: '2026-01-01T00:00:00.000Z',
        reason: 'down',
        branches: { a: 'compensating', b: 'refused' },
        n: 8,
      },
      { id: 's0', protocol: 'saga', state: 'completed', startedAt: null, reason: null, branches: {}, n: 1 },
    ],
  );
  assert.equal(views[0]!.records[7]!.at, '2026-01-01T00:00:09.000Z');
  const tcc = tccTxnViews([
    {
      at: t(0),
      record: {
        type: 'begin',
        txn: 't1',
        client: 'app',
        def: {
          branches: [{ branch: 'x', service: 'local', try: 'a', confirm: 'b', cancel: 'c', payload: 'null' }],
        },
        entropy: 1,
      },
    },
    { at: t(1), record: { type: 'tried', txn: 't1', branch: 'x', result: 'success', reason: '' } },
    { at: t(2), record: { type: 'decision', txn: 't1', decision: 'confirm', reason: '' } },
    { at: t(3), record: { type: 'settled', txn: 't1', branch: 'x' } },
    { at: t(4), record: { type: 'end', txn: 't1', client: 'app', outcome: 'completed', reason: '' } },
  ]);
  assert.equal(tcc[0]!.state, 'completed');
  assert.deepEqual(tcc[0]!.branches, { x: 'confirmed' });
});

test('result() deadlines: DTX_TIMEOUT or DTX_CANCELLED end the wait, and the saga carries on to its end', async () => {
  const log = await openSagaLog({ sqlite: join(dir, 'deadline.sqlite'), create: true });
  // The gated action's unanswered attempts must not run out (and compensate
  // the saga) however slowly this runs on a busy machine.
  const o = await createSagaOrchestrator({ log, timing: { ...timing, actionAttemptsMax: 1_000_000 } });
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  const id = await o.start(gated('deadline', gate), { idempotencyKey: 'k' });
  const t0 = Date.now();
  await assert.rejects(o.result(id, { timeoutMs: 40 }), code('DTX_TIMEOUT', /carries on/));
  assert.ok(Date.now() - t0 >= 35);
  const controller = new AbortController();
  const waiting = o.result(id, { signal: controller.signal });
  controller.abort();
  await assert.rejects(waiting, code('DTX_CANCELLED'));
  await assert.rejects(o.result(id, { signal: AbortSignal.abort() }), code('DTX_CANCELLED'));
  await assert.rejects(o.result(id, { timeoutMs: -1 }), code('DTX_INVALID_ARGUMENT'));
  assert.equal(o.status(id).state, 'running');
  open();
  assert.equal((await o.result(id, { timeoutMs: 2000 })).outcome, 'completed');
  await o.close();
  await log.close();
});

test('TCC result() deadlines end the wait only', async () => {
  const log = await openTccLog({ sqlite: join(dir, 'tcc-deadline.sqlite'), create: true });
  // Slow retries: the try is not given up on while the test waits.
  const o = await createTccOrchestrator({ log, timing: { retryBaseMs: 1000 } });
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  const id = await o.start(
    {
      name: 'tccdeadline',
      branches: [
        { name: 'x', try: () => gate, confirm: async () => undefined, cancel: async () => undefined },
      ],
    },
    { idempotencyKey: 'k' },
  );
  await assert.rejects(o.result(id, { timeoutMs: 30 }), code('DTX_TIMEOUT'));
  await assert.rejects(o.result(id, { signal: AbortSignal.timeout(20) }), code('DTX_CANCELLED'));
  open();
  assert.equal((await o.result(id)).outcome, 'completed');
  await o.close();
  await log.close();
});

test('show() of a saga begun in this process answers from its records without reading the log, the same as from the log', async () => {
  const path = join(dir, 'show-index.sqlite');
  const log = await openSagaLog({ sqlite: path, create: true });
  let loads = 0;
  // Reading the whole log is load() or history(): count both.
  const counting = wrapLog(log, {
    load: () => {
      loads += 1;
      return log.load();
    },
  });
  counting.history = () => {
    loads += 1;
    return log.history!();
  };
  const o = await createSagaOrchestrator({ log: counting, timing });
  const done = async () => undefined;
  const def: SagaDefinition = {
    name: 'indexed',
    steps: [
      { name: 'a', action: done, compensation: done },
      { name: 'b', action: done, compensation: done },
    ],
  };
  const ids: string[] = [];
  for (let i = 0; i < 20; i++) ids.push(await o.start(def, { idempotencyKey: `k${i}` }));
  for (const id of ids) assert.equal((await o.result(id)).outcome, 'completed');
  const loadsBefore = loads;
  const shown = await o.show(ids[7]!);
  assert.equal(loads, loadsBefore, 'show() read the whole log');
  assert.equal(shown.state, 'completed');
  assert.deepEqual(
    shown.records.map((r) => (r.record as SagaRecord).type),
    ['begin', 'start', 'result', 'start', 'result', 'end'],
  );
  for (const r of shown.records) assert.ok(r.at !== null && !Number.isNaN(Date.parse(r.at)));
  // The same view as one built from the log (times aside).
  const fromLog = sagaTxnViews(await log.history!()).find((v) => v.id === ids[7]);
  const strip = (v: typeof shown) => ({ ...v, startedAt: null, records: v.records.map((r) => r.record) });
  assert.deepEqual(strip(shown), strip(fromLog!));
  await o.close();
  await log.close();
});
