// Unit tests of the TCC coordinator (src/protocol/tcc) with the shared
// barrier-guarded service (src/protocol/branch/service.ts), driven by a
// scripted cluster: try on every branch, then confirm all or cancel all.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  type Handler,
  type ServiceRecord,
  type ServiceState,
  sagaService,
} from '../src/protocol/branch/service.ts';
import type { BranchMsg } from '../src/protocol/branch/types.ts';
import { type TccCoordinatorState, tccCoordinator } from '../src/protocol/tcc/coordinator.ts';
import type { TccConfig, TccMsg, TccPlan, TccPlanBranch, TccRecord } from '../src/protocol/tcc/types.ts';
import { parsePayload } from '../src/sim/branch/booking.ts';
import { ScriptedCluster } from '../src/sim/saga/script.ts';

const flag = (payload: string, name: string) => parsePayload(payload).get(name) ?? 0;

/**
 * `reserve` (try) holds `held:<txn>:<branch>`; `commit` (confirm) turns it into
 * `final:...`; `release` (cancel) gives it back. Payload flags: `fail=1`
 * refuses the try, `pending=k` answers the first k tries `ongoing`, `cfail=k`
 * fails the first k confirms.
 */
const handlers: Record<string, Handler> = {
  reserve: (ctx) => {
    if (flag(ctx.payload, 'fail') === 1) return { result: 'failure', reason: 'sold out' };
    if (ctx.attempt <= flag(ctx.payload, 'pending')) return { result: 'ongoing', reason: 'pending' };
    return { result: 'success', writes: [{ key: `held:${ctx.txn}:${ctx.branch}`, delta: 1 }] };
  },
  commit: (ctx) => {
    if (ctx.attempt <= flag(ctx.payload, 'cfail')) return { result: 'failure', reason: 'confirm failed' };
    const k = `${ctx.txn}:${ctx.branch}`;
    return {
      result: 'success',
      writes: [
        { key: `held:${k}`, delta: -1 },
        { key: `final:${k}`, delta: 1 },
      ],
    };
  },
  release: (ctx) => ({ result: 'success', writes: [{ key: `held:${ctx.txn}:${ctx.branch}`, delta: -1 }] }),
};

function cluster(services: string[], config: Partial<TccConfig> = {}) {
  return new ScriptedCluster<TccMsg>(
    { id: 'coord', role: tccCoordinator, config },
    services.map((id) => ({ id, role: sagaService, config: { handlers, initialRows: [], barrier: true } })),
  );
}

const branch = (name: string, service: string, payload = ''): TccPlanBranch => ({
  branch: name,
  service,
  try: 'reserve',
  confirm: 'commit',
  cancel: 'release',
  payload,
});

const def3 = (payloads: Record<string, string> = {}, timeoutMs?: number): TccPlan => ({
  branches: ['a', 'b', 'c'].map((b, i) => branch(b, `S${i + 1}`, payloads[b] ?? '')),
  ...(timeoutMs !== undefined ? { timeoutMs } : {}),
});

const begin = (c: ScriptedCluster<TccMsg>, def: TccPlan, txn = 't1') =>
  c.request('coord', { type: 'BEGIN', txn, def, entropy: 3 });
const log = (c: ScriptedCluster<TccMsg>) => c.node('coord').log as TccRecord[];
const rows = (c: ScriptedCluster<TccMsg>, id: string) => c.state<ServiceState>(id).rows;
const ops = (c: ScriptedCluster<TccMsg>, op: string) =>
  c.sent.filter((e) => e.msg.type === 'CALL' && e.msg.op === op).map((e) => e.to);

test('every try succeeds: confirm all, after the forced decision', () => {
  const c = cluster(['S1', 'S2', 'S3']);
  begin(c, def3());
  assert.deepEqual(ops(c, 'try'), ['S1', 'S2', 'S3'], 'all tries leave at once, after the begin record');
  c.deliver((e) => e.to !== 'coord');
  c.deliver((e) => e.to === 'coord' && e.from !== 'S3');
  assert.deepEqual(ops(c, 'confirm'), [], 'no confirm before every try has answered');
  c.run();
  assert.deepEqual(ops(c, 'confirm'), ['S1', 'S2', 'S3']);
  assert.deepEqual(
    log(c).map((r) => [r.type, r.type === 'begin' || r.type === 'decision' || r.type === 'end']),
    [
      ['begin', true],
      ['tried', false],
      ['tried', false],
      ['tried', false],
      ['decision', true],
      ['settled', false],
      ['settled', false],
      ['settled', false],
      ['end', true],
    ],
  );
  // The decision is forced and the confirms wait for it, in the same step.
  const decisionStep = c.steps.find((s) =>
    s.effects.some((e) => e.type === 'persist' && (e.record as TccRecord).type === 'decision'),
  )!;
  const forced = decisionStep.effects.filter((e) => e.type === 'persist' && e.force).length;
  assert.equal(forced, 1);
  assert.ok(decisionStep.effects.every((e) => e.type !== 'send'));
  assert.equal(c.reports[0]?.outcome, 'completed');
  for (const [i, b] of ['a', 'b', 'c'].entries()) {
    assert.equal(rows(c, `S${i + 1}`).get(`final:t1:${b}`), 1);
    assert.equal(rows(c, `S${i + 1}`).get(`held:t1:${b}`), 0);
  }
});

test('a refused try cancels every other branch (never the refused one) and records why', () => {
  const c = cluster(['S1', 'S2', 'S3']);
  begin(c, def3({ b: 'fail=1' }));
  c.run();
  assert.deepEqual(ops(c, 'try'), ['S1', 'S2', 'S3'], 'the refusal is not retried');
  assert.deepEqual(ops(c, 'cancel').sort(), ['S1', 'S3']);
  assert.deepEqual(ops(c, 'confirm'), []);
  assert.deepEqual(
    log(c).find((r) => r.type === 'decision'),
    { type: 'decision', txn: 't1', decision: 'cancel', reason: 'b refused: sold out' },
  );
  assert.equal(c.reports[0]?.outcome, 'compensated');
  assert.equal(c.reports[0]?.reason, 'b refused: sold out');
  assert.equal(rows(c, 'S1').get('held:t1:a'), 0);
  assert.equal(rows(c, 'S2').get('held:t1:b'), undefined);
});

test('a late try after its cancel is refused, and the cancel without try was a no-op', () => {
  const c = cluster(['S1', 'S2']);
  begin(c, { branches: [branch('a', 'S1'), branch('b', 'S2', 'fail=1')] });
  const late = c.drop((e) => e.to === 'S1'); // a's try is delayed in the network
  c.run();
  assert.equal(c.reports[0]?.outcome, 'compensated');
  assert.deepEqual(ops(c, 'cancel'), ['S1'], 'a is cancelled although its try never answered');
  const s1 = c.node('S1').log as ServiceRecord[];
  assert.deepEqual(
    s1.map((r) => [r.op, r.kind, r.blocks, r.writes.length]),
    [['cancel', 'noop', 'try', 0]],
  );
  c.inflight.push(...late);
  c.run();
  const reply = c
    .sentOf('REPLY', 'coord')
    .find((m) => m.type === 'REPLY' && m.op === 'try' && m.branch === 'a');
  assert.equal(reply?.type === 'REPLY' && reply.result, 'failure');
  assert.match(reply?.type === 'REPLY' ? reply.reason : '', /hanging/);
  assert.equal(rows(c, 'S1').get('held:t1:a'), undefined, 'the late try reserved nothing');
  assert.equal((c.node('S1').log as ServiceRecord[]).length, 1);
});

test('cancel without try is a recorded no-op at the service', () => {
  const st = sagaService.init('S1', { handlers, initialRows: [], barrier: true });
  const call = (op: 'try' | 'cancel' | 'confirm'): BranchMsg => ({
    type: 'CALL',
    txn: 't9',
    branch: 'x',
    op,
    handler: op === 'try' ? 'reserve' : op === 'cancel' ? 'release' : 'commit',
    payload: '',
    attempt: 1,
  });
  const r = sagaService.step(st, { type: 'receive', from: 'coord', msg: call('cancel') });
  assert.deepEqual(
    r.effects.map((e) => e.type),
    ['persist', 'sendAfterPersist'],
  );
  assert.equal(st.rows.size, 0);
  assert.equal(st.stats.nullCompensations, 1);
  // A confirm without a successful try is refused and not recorded.
  const conf = sagaService.step(st, { type: 'receive', from: 'coord', msg: call('confirm') });
  assert.ok(conf.effects.every((e) => e.type !== 'persist'));
  assert.match(JSON.stringify(conf.effects), /confirm without a successful try/);
});

test('an ongoing try is retried with backoff until it answers', () => {
  const c = cluster(['S1', 'S2'], { retryBaseMs: 5, retryFactor: 2 });
  begin(c, { branches: [branch('a', 'S1'), branch('b', 'S2', 'pending=2')] });
  c.run();
  const delays = [c.node('coord').timers.get('retry|b|t1')];
  c.fire('coord', 'retry|b|t1');
  c.run();
  delays.push(c.node('coord').timers.get('retry|b|t1'));
  c.fire('coord', 'retry|b|t1');
  c.run();
  assert.deepEqual(delays, [5, 10]);
  assert.equal(c.reports[0]?.outcome, 'completed');
});

test('a try unanswered past tryAttemptsMax, or past the timeout, cancels', () => {
  const c = cluster(['S1', 'S2'], { tryAttemptsMax: 2 });
  begin(c, { branches: [branch('a', 'S1'), branch('b', 'S2')] });
  const toB = (e: { to: string; msg: TccMsg }) =>
    e.to === 'S2' && e.msg.type === 'CALL' && e.msg.op === 'try';
  c.run(toB);
  for (let i = 0; i < 2; i++) {
    assert.ok(c.fire('coord', 'retry|b|t1'));
    c.drop(toB);
  }
  c.run();
  assert.equal(c.reports[0]?.outcome, 'compensated');
  assert.match(c.reports[0]?.reason ?? '', /b gave no result in 2 attempts/);
  assert.deepEqual(ops(c, 'cancel').sort(), ['S1', 'S2']);

  const d = cluster(['S1']);
  begin(d, { branches: [branch('a', 'S1', 'pending=99')], timeoutMs: 250 });
  d.run();
  assert.ok(d.fire('coord', 'timeout|t1'));
  d.run();
  assert.equal(d.reports[0]?.reason, 'timed out after 250 ms');
});

test('a confirm failing twice then succeeding completes; failing past its limit leaves it visibly stuck', () => {
  const c = cluster(['S1', 'S2']);
  begin(c, { branches: [branch('a', 'S1', 'cfail=2'), branch('b', 'S2')] });
  c.run();
  for (let i = 0; i < 2; i++) {
    assert.ok(c.fire('coord', 'retry|a|t1'));
    c.run();
  }
  assert.equal(c.reports[0]?.outcome, 'completed');

  const d = cluster(['S1', 'S2'], { phaseTwoAttemptsMax: 3 });
  begin(d, { branches: [branch('a', 'S1', 'cfail=99'), branch('b', 'S2')] });
  d.run();
  while (d.fire('coord', 'retry|a|t1')) d.run();
  const stuck = log(d).find((r) => r.type === 'stuck');
  assert.ok(stuck?.type === 'stuck');
  assert.match(stuck.reason, /confirm commit of a failed 3 times \(last answer: confirm failed\)/);
  assert.equal(d.reports.at(-1)?.outcome, 'stuck');
  assert.equal(d.state<TccCoordinatorState>('coord').txns.get('t1')?.status, 'stuck');
  d.crash('coord');
  d.restart('coord');
  assert.equal(d.reports.at(-1)?.outcome, 'stuck', 'reported again after a restart');
});

test('a hard-stopped transaction resumes on an operator retry (logged) and completes', () => {
  const d = cluster(['S1', 'S2'], { phaseTwoAttemptsMax: 2, stuckAfterAttempts: 1 });
  begin(d, { branches: [branch('a', 'S1', 'cfail=2'), branch('b', 'S2')] });
  d.run();
  while (d.fire('coord', 'retry|a|t1')) d.run();
  assert.equal(d.state<TccCoordinatorState>('coord').txns.get('t1')?.status, 'stuck');
  const retry = { type: 'OPERATOR', txn: 't1', action: 'retry', reason: 'capture service is back' } as const;
  assert.equal(tccCoordinator.operatorProblem(d.state<TccCoordinatorState>('coord'), retry), null);
  assert.match(
    tccCoordinator.operatorProblem(d.state<TccCoordinatorState>('coord'), {
      type: 'OPERATOR',
      txn: 't1',
      action: 'resolve',
      outcome: 'compensated',
      reason: 'x',
    }) ?? '',
    /decided confirm/,
  );
  d.input('coord', { type: 'receive', from: 'ops', msg: retry });
  d.run();
  // The third attempt, sent at once, succeeds.
  assert.equal(d.reports.at(-1)?.outcome, 'completed');
  d.crash('coord');
  d.restart('coord');
  assert.equal(d.state<TccCoordinatorState>('coord').txns.size, 0);
  const stucks = log(d).filter((r) => r.type === 'stuck');
  assert.deepEqual(
    stucks.map((r) => r.type === 'stuck' && r.retrying === true),
    [true, false, true],
    'the alert, the hard stop, the resume',
  );
});

test('recovery re-sends the logged decision; the barrier absorbs the repeats', () => {
  const c = cluster(['S1', 'S2']);
  begin(c, { branches: [branch('a', 'S1'), branch('b', 'S2')] });
  c.deliver(); // tries run
  c.deliver(); // answers: decision confirm, confirms out
  c.deliver((e) => e.to === 'S1'); // a confirms; b's confirm is still in flight
  c.crash('coord');
  c.restart('coord');
  c.run();
  assert.equal(c.reports[0]?.outcome, 'completed');
  assert.equal(rows(c, 'S1').get('final:t1:a'), 1);
  assert.equal(rows(c, 'S2').get('final:t1:b'), 1);
});

test('recovery during the tries asks again and decides from the answers', () => {
  const c = cluster(['S1', 'S2']);
  begin(c, { branches: [branch('a', 'S1'), branch('b', 'S2', 'fail=1')] });
  c.deliver(); // both tries run, the answers are in flight
  c.crash('coord'); // and lost; the lazy `tried` records never existed
  assert.deepEqual(
    log(c).map((r) => r.type),
    ['begin'],
  );
  c.restart('coord');
  c.run();
  assert.equal(c.reports[0]?.outcome, 'compensated');
  assert.equal(rows(c, 'S1').get('held:t1:a'), 0);
  assert.equal(c.state<ServiceState>('S2').stats.duplicates, 1, 'the refusal was repeated from the record');
});
