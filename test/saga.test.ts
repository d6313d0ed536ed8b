// Unit tests of the saga cores (src/protocol/saga): the orchestrator
// (Garcia-Molina & Salem, "Sagas", SIGMOD 1987) and the barrier-guarded
// service, driven by a scripted cluster: writes durable at once, messages
// delivered, dropped and reordered by the test, timers fired by the test.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  type Handler,
  type ServiceConfig,
  type ServiceRecord,
  type ServiceState,
  sagaService,
} from '../src/protocol/branch/service.ts';
import { type BranchMsg, backoffMs, defaultRetryConfig } from '../src/protocol/branch/types.ts';
import type { SagaOrchestratorState } from '../src/protocol/saga/orchestrator.ts';
import { sagaOrchestrator } from '../src/protocol/saga/orchestrator.ts';
import {
  checkSagaPlan,
  type SagaConfig,
  type SagaMsg,
  type SagaPlan,
  type SagaPlanStep,
  type SagaRecord,
} from '../src/protocol/saga/types.ts';
import { parsePayload } from '../src/sim/branch/booking.ts';
import { ScriptedCluster } from '../src/sim/saga/script.ts';

// ------------------------------------------------------------------ harness

const flag = (payload: string, name: string) => parsePayload(payload).get(name) ?? 0;

/**
 * Test handlers, steered by the payload: `fail=1` refuses the action,
 * `pending=k` answers `ongoing` to the first k attempts, `cfail=k` fails the
 * first k attempts of the compensation. The action adds 1 to `done:<txn>:<branch>`,
 * the compensation takes it back.
 */
const handlers: Record<string, Handler> = {
  do: (ctx) => {
    if (flag(ctx.payload, 'fail') === 1) return { result: 'failure', reason: 'refused by the test' };
    if (ctx.attempt <= flag(ctx.payload, 'pending')) return { result: 'ongoing', reason: 'pending' };
    return { result: 'success', writes: [{ key: `done:${ctx.txn}:${ctx.branch}`, delta: 1 }] };
  },
  undo: (ctx) => {
    if (ctx.attempt <= flag(ctx.payload, 'cfail'))
      return { result: 'failure', reason: 'compensation failed' };
    return { result: 'success', writes: [{ key: `done:${ctx.txn}:${ctx.branch}`, delta: -1 }] };
  },
};

const serviceConfig = (barrier = true): Partial<ServiceConfig> => ({ handlers, initialRows: [], barrier });

function cluster(services: string[], config: Partial<SagaConfig> = {}, barrier = true) {
  return new ScriptedCluster<SagaMsg>(
    { id: 'orch', role: sagaOrchestrator, config },
    services.map((id) => ({ id, role: sagaService, config: serviceConfig(barrier) })),
  );
}

function step(branch: string, service: string, payload = '', rest: Partial<SagaPlanStep> = {}): SagaPlanStep {
  return { branch, service, action: 'do', compensation: 'undo', payload, ...rest };
}

const begin = (c: ScriptedCluster<SagaMsg>, def: SagaPlan, txn = 's1', entropy = 7) =>
  c.request('orch', { type: 'BEGIN', txn, def, entropy });

const orchLog = (c: ScriptedCluster<SagaMsg>) => c.node('orch').log as SagaRecord[];
const rows = (c: ScriptedCluster<SagaMsg>, id: string) => c.state<ServiceState>(id).rows;
const calls = (c: ScriptedCluster<SagaMsg>, op?: string) =>
  c.sent
    .filter(
      (e) => e.msg.type === 'CALL' && (op === undefined || (e.msg as BranchMsg & { op: string }).op === op),
    )
    .map((e) => `${(e.msg as { branch: string }).branch}:${(e.msg as { op: string }).op}`);
/** The orchestrator steps that sent a call, each as the list of `branch:op` it sent. */
const callSteps = (c: ScriptedCluster<SagaMsg>, op: string) =>
  c.steps
    .filter((s) => s.node === 'orch')
    .map((s) =>
      s.effects
        .filter((e) => e.type === 'sendAfterPersist' && (e.msg as SagaMsg).type === 'CALL')
        .map((e) => (e as { msg: { branch: string; op: string } }).msg)
        .filter((m) => m.op === op)
        .map((m) => m.branch),
    )
    .filter((b) => b.length > 0);

const seq4 = (payloads: Record<string, string> = {}): SagaPlan => ({
  steps: ['a', 'b', 'c', 'd'].map((b, i) => step(b, `S${i + 1}`, payloads[b] ?? '')),
});

// ------------------------------------------------------------ orchestrator

test('all steps succeed: every start and result is forced before the next call leaves', () => {
  const c = cluster(['S1', 'S2', 'S3', 'S4']);
  begin(c, seq4());
  c.run();
  assert.deepEqual(
    c.reports.map((r) => [r.txn, r.outcome, r.reason]),
    [['s1', 'completed', null]],
  );
  assert.deepEqual(
    orchLog(c).map((r) => (r.type === 'start' || r.type === 'result' ? `${r.type} ${r.branch}` : r.type)),
    [
      'begin',
      'start a',
      'result a',
      'start b',
      'result b',
      'start c',
      'result c',
      'start d',
      'result d',
      'end',
    ],
  );
  // Every orchestrator write is forced; every call waits for it (after persist),
  // and a branch's first call leaves in the very step that logged its start.
  for (const s of c.steps.filter((x) => x.node === 'orch')) {
    for (const e of s.effects) {
      if (e.type === 'persist') assert.equal(e.force, true);
      if (e.type === 'send')
        assert.notEqual((e.msg as SagaMsg).type, 'CALL', 'a call that did not wait for the log');
    }
    const started = s.effects.flatMap((e) =>
      e.type === 'persist' && (e.record as SagaRecord).type === 'start'
        ? [(e.record as { branch: string }).branch]
        : [],
    );
    const called = s.effects.flatMap((e) =>
      e.type === 'sendAfterPersist' ? [(e.msg as { branch: string }).branch] : [],
    );
    assert.deepEqual(called, started);
  }
  // The client hears only after the end record is durable.
  const last = c.steps.filter((s) => s.node === 'orch').at(-1)!;
  const kinds = last.effects.map((e) => e.type);
  assert.ok(kinds.indexOf('persist') < kinds.indexOf('reportSaga'));
  assert.equal(last.effects.find((e) => e.type === 'reportSaga')!.afterPersist, true);
  for (const [i, b] of ['a', 'b', 'c', 'd'].entries())
    assert.equal(rows(c, `S${i + 1}`).get(`done:s1:${b}`), 1);
  assert.equal(c.state<SagaOrchestratorState>('orch').sagas.size, 0);
});

test('a refusal in the middle compensates the completed steps in reverse order and records why (§1)', () => {
  const c = cluster(['S1', 'S2', 'S3', 'S4']);
  begin(c, seq4({ c: 'fail=1' }));
  c.run();
  assert.deepEqual(calls(c, 'action'), ['a:action', 'b:action', 'c:action'], 'c refused once, never retried');
  // b is undone before a: a's compensation leaves only once b's is acknowledged.
  assert.deepEqual(callSteps(c, 'compensate'), [['b'], ['a']]);
  const rollback = orchLog(c).find((r) => r.type === 'rollback');
  assert.deepEqual(rollback, { type: 'rollback', txn: 's1', reason: 'c refused: refused by the test' });
  assert.deepEqual(
    orchLog(c).find((r) => r.type === 'result' && r.branch === 'c'),
    {
      type: 'result',
      txn: 's1',
      branch: 'c',
      op: 'action',
      result: 'failure',
      reason: 'refused by the test',
    },
  );
  assert.equal(c.reports.length, 1);
  assert.equal(c.reports[0]!.outcome, 'compensated');
  assert.equal(c.reports[0]!.reason, 'c refused: refused by the test');
  assert.equal(rows(c, 'S1').get('done:s1:a'), 0);
  assert.equal(rows(c, 'S2').get('done:s1:b'), 0);
  assert.equal(rows(c, 'S3').get('done:s1:c'), undefined);
  // The refused step is not compensated: its refusal wrote nothing.
  assert.ok(!calls(c, 'compensate').includes('c:compensate'));
});

test('ongoing, then success on retry, with exponential backoff', () => {
  const c = cluster(['S1', 'S2'], { retryBaseMs: 10, retryFactor: 3, retryCapMs: 1000 });
  begin(c, { steps: [step('a', 'S1'), step('b', 'S2', 'pending=2')] });
  c.run();
  const delays: number[] = [c.node('orch').timers.get('retry|b|s1')!];
  assert.equal(c.reports.length, 0);
  assert.ok(c.fire('orch', 'retry|b|s1'));
  c.run();
  delays.push(c.node('orch').timers.get('retry|b|s1')!);
  assert.ok(c.fire('orch', 'retry|b|s1'));
  c.run();
  assert.deepEqual(delays, [10, 30]);
  assert.deepEqual(
    c.sentOf('CALL', 'S2').map((m) => m.type === 'CALL' && m.attempt),
    [1, 2, 3],
  );
  assert.deepEqual(
    c.sentOf('REPLY').map((m) => m.type === 'REPLY' && `${m.branch}:${m.result}`),
    ['a:success', 'b:ongoing', 'b:ongoing', 'b:success'],
  );
  assert.equal(c.reports[0]?.outcome, 'completed');
  assert.equal(c.node('orch').timers.size, 0);
});

test('a compensation failing twice, then succeeding, completes the rollback', () => {
  const c = cluster(['S1', 'S2']);
  begin(c, { steps: [step('a', 'S1', 'cfail=2'), step('b', 'S2', 'fail=1')] });
  c.run();
  for (let i = 0; i < 2; i++) {
    assert.ok(c.fire('orch', 'retry|a|s1'));
    c.run();
  }
  assert.deepEqual(
    c
      .sentOf('REPLY', 'orch')
      .filter((m) => m.type === 'REPLY' && m.op === 'compensate')
      .map((m) => m.type === 'REPLY' && m.result),
    ['failure', 'failure', 'success'],
  );
  assert.equal(c.reports[0]?.outcome, 'compensated');
  assert.equal(rows(c, 'S1').get('done:s1:a'), 0);
});

test('a compensation failing past its limit leaves the saga visibly stuck, with the reason', () => {
  const c = cluster(['S1', 'S2'], { compensationAttemptsMax: 4 });
  begin(c, { steps: [step('a', 'S1', 'cfail=99'), step('b', 'S2', 'fail=1')] });
  c.run();
  let fired = 0;
  while (c.fire('orch', 'retry|a|s1')) {
    fired++;
    c.run();
  }
  assert.equal(fired, 4, 'three retries, then the fourth expiry gives up');
  assert.equal(c.sentOf('CALL', 'S1').filter((m) => m.type === 'CALL' && m.op === 'compensate').length, 4);
  const stuck = orchLog(c).find((r) => r.type === 'stuck');
  assert.ok(stuck !== undefined && stuck.type === 'stuck');
  assert.equal(stuck.branch, 'a');
  assert.match(stuck.reason, /compensation undo of a failed 4 times \(last answer: compensation failed\)/);
  assert.equal(c.reports.at(-1)?.outcome, 'stuck');
  assert.equal(c.reports.at(-1)?.reason, stuck.reason);
  // Still there for an operator to see, and nothing left running.
  const run = c.state<SagaOrchestratorState>('orch').sagas.get('s1');
  assert.equal(run?.status, 'stuck');
  assert.equal(c.node('orch').timers.size, 0);
  assert.ok(!orchLog(c).some((r) => r.type === 'end'));
  // A restart keeps it stuck and reports it again; it is never silently dropped.
  c.crash('orch');
  c.restart('orch');
  assert.equal(c.state<SagaOrchestratorState>('orch').sagas.get('s1')?.status, 'stuck');
  assert.equal(c.reports.at(-1)?.outcome, 'stuck');
  assert.equal(c.inflight.length, 0);
});

test('past stuckAfterAttempts the saga is alerted stuck (record forced before the report) and keeps retrying to its end', () => {
  const c = cluster(['S1', 'S2'], { stuckAfterAttempts: 3 });
  begin(c, { steps: [step('a', 'S1', 'cfail=6'), step('b', 'S2', 'fail=1')] });
  c.run();
  for (let i = 0; i < 6; i++) {
    assert.ok(c.fire('orch', 'retry|a|s1'), `retry ${i + 1} armed`);
    c.run();
  }
  const stucks = orchLog(c).filter((r) => r.type === 'stuck');
  assert.equal(stucks.length, 1, 'alerted once');
  assert.ok(stucks[0]!.type === 'stuck' && stucks[0]!.retrying === true);
  assert.match(stucks[0]!.reason, /compensation undo of a failed 3 times .*still retrying/);
  assert.deepEqual(
    c.reports.map((r) => [r.outcome, r.retrying ?? false]),
    [
      ['stuck', true],
      ['compensated', false],
    ],
  );
  assert.equal(rows(c, 'S1').get('done:s1:a'), 0);
  assert.equal(c.node('orch').timers.size, 0);
});

test('an operator resolve is refused against the log; abandon ends the saga with the reason in its end record', () => {
  const c = cluster(['S1', 'S2']);
  begin(c, { steps: [step('a', 'S1', 'cfail=99'), step('b', 'S2', 'fail=1')] });
  c.run();
  const operator = (msg: Record<string, unknown>) =>
    c.input('orch', {
      type: 'receive',
      from: 'ops',
      msg: { type: 'OPERATOR', txn: 's1', ...msg } as SagaMsg,
    });
  const problem = (msg: Record<string, unknown>) =>
    sagaOrchestrator.operatorProblem(c.state<SagaOrchestratorState>('orch'), {
      type: 'OPERATOR',
      txn: 's1',
      ...msg,
    } as never);
  assert.match(problem({ action: 'resolve', outcome: 'completed', reason: 'x' }) ?? '', /compensating/);
  assert.match(problem({ action: 'abandon', reason: '' }) ?? '', /reason is required/);
  // Refused input changes nothing.
  operator({ action: 'resolve', outcome: 'completed', reason: 'x' });
  assert.ok(!orchLog(c).some((r) => r.type === 'end'));
  operator({ action: 'abandon', reason: 'refunded by hand' });
  const end = orchLog(c).at(-1)!;
  assert.deepEqual(end, {
    type: 'end',
    txn: 's1',
    client: 'client',
    outcome: 'abandoned',
    reason: 'refunded by hand',
    operator: { action: 'abandon', reason: 'refunded by hand' },
  });
  assert.equal(c.reports.at(-1)?.outcome, 'abandoned');
  assert.equal(c.node('orch').timers.size, 0);
  assert.match(problem({ action: 'retry', reason: 'x' }) ?? '', /ended already/);
  c.crash('orch');
  c.restart('orch');
  assert.equal(c.state<SagaOrchestratorState>('orch').sagas.size, 0);
});

test('concurrent branches start together and are compensated in reverse order of the graph (§4)', () => {
  // seat ∥ pay, then ticket after both, then mail after ticket (mail refuses).
  const c = cluster(['S1', 'S2', 'S3', 'S4']);
  const def: SagaPlan = {
    steps: [
      step('seat', 'S1', '', { after: [] }),
      step('pay', 'S2', '', { after: [] }),
      step('ticket', 'S3', '', { after: ['seat', 'pay'] }),
      step('mail', 'S4', 'fail=1', { after: ['ticket'] }),
    ],
  };
  begin(c, def);
  assert.deepEqual(callSteps(c, 'action'), [['seat', 'pay']], 'both roots leave in the BEGIN step');
  c.deliver((e) => e.to === 'S2'); // pay answers first; ticket must still wait for seat
  c.deliver((e) => e.to === 'orch');
  assert.deepEqual(callSteps(c, 'action'), [['seat', 'pay']]);
  c.run();
  assert.deepEqual(callSteps(c, 'action'), [['seat', 'pay'], ['ticket'], ['mail']]);
  // Backward: ticket alone first; seat and pay together once ticket is undone.
  assert.deepEqual(callSteps(c, 'compensate'), [['ticket'], ['seat', 'pay']]);
  assert.equal(c.reports[0]?.outcome, 'compensated');
});

test('a branch still in flight is compensated at once; the barrier makes it a no-op and refuses the late action', () => {
  const c = cluster(['S1', 'S2']);
  begin(c, { steps: [step('a', 'S1', '', { after: [] }), step('b', 'S2', 'fail=1', { after: [] })] });
  const late = c.drop((e) => e.to === 'S1'); // a's action is delayed in the network
  c.run();
  // b refused; a was never answered: its compensation goes out without waiting.
  assert.deepEqual(calls(c, 'compensate'), ['a:compensate']);
  assert.equal(c.reports[0]?.outcome, 'compensated');
  const s1 = c.node('S1').log as ServiceRecord[];
  assert.equal(s1.length, 1);
  assert.equal(s1[0]!.kind, 'noop');
  assert.equal(s1[0]!.blocks, 'action', 'the null compensation also records the action as refused');
  // The delayed action finally arrives: refused (hanging prevention), nothing written.
  c.inflight.push(...late);
  c.run();
  assert.equal(rows(c, 'S1').get('done:s1:a'), undefined);
  assert.equal((c.node('S1').log as ServiceRecord[]).length, 1);
  assert.equal(c.state<ServiceState>('S1').stats.hangingRefused, 1);
  assert.equal(c.state<ServiceState>('S1').stats.nullCompensations, 1);
});

test('an action that never answers is given up after actionAttemptsMax and compensated', () => {
  const c = cluster(['S1', 'S2'], { actionAttemptsMax: 3 });
  begin(c, { steps: [step('a', 'S1'), step('b', 'S2')] });
  const toB = (e: { to: string; msg: SagaMsg }) =>
    e.to === 'S2' && e.msg.type === 'CALL' && e.msg.op === 'action';
  c.run(toB);
  for (let i = 0; i < 3; i++) {
    assert.ok(c.fire('orch', 'retry|b|s1'));
    c.drop(toB);
  }
  c.run();
  assert.equal(c.sentOf('CALL', 'S2').filter((m) => m.type === 'CALL' && m.op === 'action').length, 3);
  assert.match(c.reports[0]?.reason ?? '', /^b gave no result in 3 attempts \(no answer\)$/);
  assert.deepEqual(callSteps(c, 'compensate'), [['b'], ['a']]);
  assert.equal(c.reports[0]?.outcome, 'compensated');
});

test('the per-saga timeout compensates a saga still going forward', () => {
  const c = cluster(['S1', 'S2']);
  begin(c, { steps: [step('a', 'S1'), step('b', 'S2', 'pending=99')], timeoutMs: 500 });
  c.run();
  assert.equal(c.node('orch').timers.get('timeout|s1'), 500);
  assert.ok(c.fire('orch', 'timeout|s1'));
  c.run();
  assert.equal(c.reports[0]?.outcome, 'compensated');
  assert.equal(c.reports[0]?.reason, 'timed out after 500 ms');
  assert.equal(rows(c, 'S1').get('done:s1:a'), 0);
});

test('forward recovery retries past every limit and never compensates (§3)', () => {
  const c = cluster(['S1', 'S2'], { actionAttemptsMax: 2 });
  begin(c, { steps: [step('a', 'S1'), step('b', 'S2', 'pending=6')], recovery: 'forward' });
  c.run();
  assert.ok(!c.node('orch').timers.has('timeout|s1'), 'no timeout in forward recovery');
  while (c.fire('orch', 'retry|b|s1')) c.run();
  assert.equal(c.sentOf('CALL', 'S2').length, 7);
  assert.equal(c.reports[0]?.outcome, 'completed');
  assert.ok(!orchLog(c).some((r) => r.type === 'rollback'));
});

test('a step without compensation is a point of no return: retried without limit, no timeout after it starts', () => {
  const c = cluster(['S1', 'S2'], { actionAttemptsMax: 2 });
  begin(c, {
    steps: [step('a', 'S1'), step('mail', 'S2', 'pending=4', { compensation: null })],
    timeoutMs: 100,
  });
  c.run();
  assert.ok(c.fire('orch', 'timeout|s1'));
  c.run();
  assert.ok(!orchLog(c).some((r) => r.type === 'rollback'));
  while (c.fire('orch', 'retry|mail|s1')) c.run();
  assert.equal(c.reports[0]?.outcome, 'completed');
});

test('recovery resumes a saga forward from its log; the barrier absorbs the repeated call', () => {
  const c = cluster(['S1', 'S2', 'S3']);
  begin(c, { steps: [step('a', 'S1'), step('b', 'S2'), step('c', 'S3')] });
  c.deliver(); // a runs at S1
  c.deliver(); // its reply reaches the orchestrator: result a, start b, call b out
  c.deliver(); // b runs at S2; its reply is in flight...
  c.crash('orch'); // ...and lost with the crash
  assert.deepEqual(
    orchLog(c).map((r) => r.type),
    ['begin', 'start', 'result', 'start'],
  );
  c.restart('orch');
  c.run();
  assert.equal(c.reports[0]?.outcome, 'completed');
  assert.equal(rows(c, 'S2').get('done:s1:b'), 1, 'b ran once although it was called twice');
  assert.equal(c.state<ServiceState>('S2').stats.duplicates, 1);
});

test('recovery resumes a saga backward from its log', () => {
  const c = cluster(['S1', 'S2', 'S3']);
  begin(c, { steps: [step('a', 'S1'), step('b', 'S2'), step('c', 'S3', 'fail=1')] });
  // Run until b's compensation is out, then crash before it is answered.
  for (let i = 0; i < 20 && !c.sent.some((e) => (e.msg as { op?: string }).op === 'compensate'); i++)
    c.deliver();
  c.crash('orch');
  assert.ok(orchLog(c).some((r) => r.type === 'rollback'));
  c.restart('orch');
  c.run();
  assert.equal(c.reports[0]?.outcome, 'compensated');
  assert.equal(c.reports[0]?.reason, 'c refused: refused by the test');
  assert.equal(rows(c, 'S1').get('done:s1:a'), 0);
  assert.equal(rows(c, 'S2').get('done:s1:b'), 0);
});

test('a refusal logged without its rollback (crash in between) is rolled back at recovery', () => {
  const c = cluster(['S1', 'S2']);
  begin(c, { steps: [step('a', 'S1'), step('b', 'S2', 'fail=1')] });
  c.run();
  // Keep the log only up to b's refusal.
  const log = orchLog(c);
  const cut = log.findIndex((r) => r.type === 'rollback');
  c.crash('orch');
  c.node('orch').log = log.slice(0, cut);
  c.restart('orch');
  c.run();
  assert.equal(c.reports.at(-1)?.outcome, 'compensated');
  assert.equal(c.reports.at(-1)?.reason, 'b refused: refused by the test');
});

test('a failed write is written again and its calls re-sent', () => {
  const c = cluster(['S1']);
  begin(c, { steps: [step('a', 'S1')] });
  const start = orchLog(c).find((r) => r.type === 'start')!;
  c.inflight = [];
  c.input('orch', { type: 'persistFailed', record: start });
  const last = c.steps.at(-1)!.effects;
  assert.deepEqual(last[0], { type: 'persist', force: true, record: start });
  assert.ok(last.some((e) => e.type === 'sendAfterPersist'));
  c.run();
  assert.equal(c.reports[0]?.outcome, 'completed');
});

test('a repeated BEGIN does not run a saga twice; a bad definition is rejected', () => {
  const c = cluster(['S1']);
  begin(c, { steps: [step('a', 'S1')] });
  begin(c, { steps: [step('a', 'S1')] });
  c.run();
  begin(c, { steps: [step('a', 'S1')] });
  c.run();
  assert.equal(c.sentOf('CALL').length, 1);
  assert.equal(c.reports.length, 1);
  begin(c, { steps: [step('a', 'S1', '', { after: ['b'] }), step('b', 'S1', '', { after: ['a'] })] }, 's2');
  assert.equal(c.reports.at(-1)?.outcome, 'rejected');
  assert.match(c.reports.at(-1)?.reason ?? '', /cycle/);
  assert.equal(orchLog(c).filter((r) => r.txn === 's2').length, 0);
});

test('checkSagaPlan', () => {
  const ok: SagaPlan = { steps: [step('a', 'S1'), step('b', 'S2', '', { compensation: null })] };
  assert.equal(checkSagaPlan(ok), null);
  assert.match(checkSagaPlan({ steps: [] }) ?? '', /at least one/);
  assert.match(checkSagaPlan({ steps: [step('a', 'S1'), step('a', 'S2')] }) ?? '', /twice/);
  assert.match(checkSagaPlan({ steps: [step('a', 'S1', '', { after: ['z'] })] }) ?? '', /unknown branch z/);
  assert.match(checkSagaPlan({ steps: [step('a', 'bad id!')] }) ?? '', /bad service/);
  // A compensable step must come before every step that cannot be compensated.
  const unordered: SagaPlan = {
    steps: [step('mail', 'S1', '', { compensation: null, after: [] }), step('pay', 'S2', '', { after: [] })],
  };
  assert.match(checkSagaPlan(unordered) ?? '', /pay can be compensated but is not ordered before mail/);
});

test('backoff: exponential, capped, and jitter only from the entropy passed in', () => {
  const cfg = { ...defaultRetryConfig, retryBaseMs: 10, retryFactor: 2, retryCapMs: 100 };
  assert.deepEqual(
    [1, 2, 3, 4, 5, 6].map((a) => backoffMs(cfg, a, 1, 'x')),
    [10, 20, 40, 80, 100, 100],
  );
  const j = { ...cfg, jitter: 0.5 };
  const a = [1, 2, 3, 4, 5].map((n) => backoffMs(j, n, 42, 's|b|action'));
  assert.deepEqual(
    a,
    [1, 2, 3, 4, 5].map((n) => backoffMs(j, n, 42, 's|b|action')),
    'deterministic',
  );
  a.forEach((d, i) => {
    const full = Math.min(100, 10 * 2 ** i);
    assert.ok(d > full / 2 && d <= full, `${d} outside (${full / 2}, ${full}]`);
  });
  assert.notDeepEqual(
    a,
    [1, 2, 3, 4, 5].map((n) => backoffMs(j, n, 43, 's|b|action')),
  );
});

// ---------------------------------------------------------------- barrier

function service(barrier = true) {
  const st = sagaService.init('S1', serviceConfig(barrier));
  const out: { records: ServiceRecord[]; replies: BranchMsg[]; afterPersist: boolean[] } = {
    records: [],
    replies: [],
    afterPersist: [],
  };
  const callOp = (op: 'action' | 'compensate', payload = '', attempt = 1) => {
    const msg: BranchMsg = {
      type: 'CALL',
      txn: 's1',
      branch: 'a',
      op,
      handler: op === 'action' ? 'do' : 'undo',
      payload,
      attempt,
    };
    const r = sagaService.step(st, { type: 'receive', from: 'orch', msg });
    const persists = r.effects.filter((e) => e.type === 'persist');
    assert.ok(persists.length <= 1, 'one local transaction per call, at most');
    for (const e of r.effects) {
      if (e.type === 'persist') out.records.push(e.record);
      if (e.type === 'send' || e.type === 'sendAfterPersist') {
        out.replies.push(e.msg);
        out.afterPersist.push(e.type === 'sendAfterPersist');
      }
    }
    return out.replies.at(-1) as Extract<BranchMsg, { type: 'REPLY' }>;
  };
  return { st, out, callOp };
}

test('barrier: a repeated call runs nothing and gets the recorded result again', () => {
  const { st, out, callOp } = service();
  assert.equal(callOp('action').result, 'success');
  assert.equal(callOp('action').result, 'success');
  assert.equal(out.records.length, 1);
  assert.equal(st.rows.get('done:s1:a'), 1);
  // The business write and the barrier entry are one durable record.
  assert.deepEqual(out.records[0], {
    type: 'local',
    txn: 's1',
    branch: 'a',
    op: 'action',
    kind: 'applied',
    reason: 'done',
    writes: [{ key: 'done:s1:a', delta: 1 }],
    blocks: null,
  });
  assert.deepEqual(out.afterPersist, [true, true], 'even a repeat waits for the record it repeats');
  // A refusal is recorded too: the same call is refused again, not retried into success.
  const r = service();
  assert.equal(r.callOp('action', 'fail=1').result, 'failure');
  assert.equal(r.callOp('action', '').result, 'failure');
  assert.equal(r.out.records.length, 1);
  assert.equal(r.out.records[0]!.kind, 'refused');
  assert.equal(r.st.rows.size, 0);
});

test('barrier: a compensation without its action is a recorded no-op; a later action is refused', () => {
  const { st, out, callOp } = service();
  const undo = callOp('compensate');
  assert.equal(undo.result, 'success');
  assert.equal(out.records[0]!.kind, 'noop');
  assert.equal(out.records[0]!.blocks, 'action');
  assert.deepEqual(out.records[0]!.writes, []);
  const late = callOp('action');
  assert.equal(late.result, 'failure');
  assert.match(late.reason, /hanging/);
  assert.equal(out.records.length, 1, 'the refusal was already recorded by the compensation');
  assert.equal(st.rows.size, 0);
  // A compensation of a refused action is a no-op as well.
  const r = service();
  r.callOp('action', 'fail=1');
  assert.equal(r.callOp('compensate').result, 'success');
  assert.equal(r.out.records[1]!.kind, 'noop');
  assert.equal(r.out.records[1]!.blocks, null);
});

test('barrier: a failing compensation is not recorded, so its retry can succeed', () => {
  const { st, out, callOp } = service();
  callOp('action');
  assert.equal(callOp('compensate', 'cfail=1', 1).result, 'failure');
  assert.equal(out.records.length, 1);
  assert.equal(callOp('compensate', 'cfail=1', 2).result, 'success');
  assert.equal(st.rows.get('done:s1:a'), 0);
  assert.equal(callOp('compensate', 'cfail=1', 3).result, 'success');
  assert.equal(st.rows.get('done:s1:a'), 0, 'and only once');
});

test('barrier: recovery rebuilds rows and barrier from the log', () => {
  const { out, callOp } = service();
  callOp('compensate');
  const again = sagaService.recover('S1', serviceConfig(), out.records).state;
  const late = sagaService.step(again, {
    type: 'receive',
    from: 'orch',
    msg: { type: 'CALL', txn: 's1', branch: 'a', op: 'action', handler: 'do', payload: '', attempt: 1 },
  });
  const reply = late.effects.find((e) => e.type === 'sendAfterPersist');
  assert.equal(reply?.type === 'sendAfterPersist' && (reply.msg as { result: string }).result, 'failure');
  assert.equal(again.rows.size, 0);
});

test('without the barrier a repeated call runs twice and a compensation runs blind', () => {
  const { st, callOp } = service(false);
  callOp('compensate');
  assert.equal(st.rows.get('done:s1:a'), -1);
  callOp('action');
  callOp('action');
  assert.equal(st.rows.get('done:s1:a'), 1);
});
