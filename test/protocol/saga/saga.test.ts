// Unit tests of the saga core (src/protocol/saga) that are not interaction
// scripts: the definition check, the backoff, and the barrier-guarded service
// step by step. The orchestrator's scenarios (Garcia-Molina & Salem, "Sagas",
// SIGMOD 1987) are testdata/saga/*.txt, run by ../scripts.test.ts.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type ServiceConfig, type ServiceRecord, sagaService } from '../../../src/protocol/branch/service.ts';
import { type BranchMsg, backoffMs, defaultRetryConfig } from '../../../src/protocol/branch/types.ts';
import { checkSagaPlan, type SagaPlan, type SagaPlanStep } from '../../../src/protocol/saga/types.ts';
import { branchHandlers } from '../../support/script-cores.ts';

const serviceConfig = (barrier = true): Partial<ServiceConfig> => ({
  handlers: branchHandlers,
  initialRows: [],
  barrier,
});

function step(branch: string, service: string, payload = '', rest: Partial<SagaPlanStep> = {}): SagaPlanStep {
  return { branch, service, action: 'do', compensation: 'undo', payload, ...rest };
}

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
