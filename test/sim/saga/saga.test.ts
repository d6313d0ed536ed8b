// The saga in the simulator: the booking workload (reserve a seat ∥ charge a
// wallet, then issue a ticket, then notify) under faults, the inconsistency
// window of failed bookings, a 2,000-seed swarm, and proof that the checkers
// can fail: broken variants are caught.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runSagaSim } from '../../../src/sim/branch/run.ts';
import { sagaSwarmRequest } from '../../../src/sim/branch/swarm.ts';
import { runSim } from '../../../src/sim/run.ts';
import { sharedSagaSimTests } from '../../support/saga-sim.ts';

const healthy = runSim({ protocol: 'saga', workload: 'booking', txns: 2000, seed: 1 }).report;

test('healthy booking run: zero violations, every saga finished, ~4% of bookings compensated', () => {
  assert.equal(healthy.violationCount, 0, JSON.stringify(healthy.violations));
  assert.equal(healthy.begun, 2000);
  assert.equal(healthy.completed + healthy.compensated, 2000);
  assert.equal(healthy.unfinished, 0);
  assert.equal(healthy.stuck, 0);
  assert.ok(healthy.conserved);
  // 4% of the wallets are short, plus the rare seat already taken.
  assert.ok(healthy.compensated > 60 && healthy.compensated < 160, String(healthy.compensated));
  // Four branch calls and four replies per saga; more for the retried `ongoing` answers.
  assert.ok(healthy.messagesPerSaga >= 7 && healthy.messagesPerSaga < 9, String(healthy.messagesPerSaga));
});

test('the inconsistency window of failed bookings is reported', () => {
  const w = healthy.inconsistencyWindowMs;
  assert.deepEqual(Object.keys(w), ['p50', 'p99', 'max']);
  assert.ok(healthy.inconsistencyWindows > 30, String(healthy.inconsistencyWindows));
  // Reserve and charge run concurrently: a refused charge frees the seat a few
  // milliseconds (two forced writes and a round trip) after it was taken,
  // unless the gateway first answered `ongoing` and was retried.
  assert.ok(w.p50 > 1 && w.p50 < 10, JSON.stringify(w));
  assert.ok(w.max < 200, JSON.stringify(w));
});

test("an orchestrator crash holds the failed booking's seat for the downtime; nothing else blocks", () => {
  const crashed = (downtimeMs: number) =>
    runSim({
      protocol: 'saga',
      workload: 'booking',
      txns: 2000,
      seed: 1,
      scenario: { kind: 'coordinator-crash', downtimeMs },
    }).report;
  for (const downtimeMs of [1_000, 5_000, 20_000]) {
    const r = crashed(downtimeMs);
    assert.equal(r.crashes, 1);
    assert.equal(r.violationCount, 0, JSON.stringify(r.violations));
    assert.equal(r.unfinished, 0);
    const w = r.inconsistencyWindowMs;
    assert.ok(w.max >= downtimeMs && w.max < downtimeMs + 100, `${downtimeMs}: ${JSON.stringify(w)}`);
    // Only the saga the crash caught mid-decision waits; the others' windows are as in a healthy run.
    assert.ok(w.p50 < 10, JSON.stringify(w));
  }
});

test('the same seed gives the same report, but for wallMs', () => {
  const req = sagaSwarmRequest('saga', 99);
  const a = runSagaSim(req).report;
  const b = runSagaSim(req).report;
  assert.deepEqual({ ...a, wallMs: 0 }, { ...b, wallMs: 0 });
  const c = runSagaSim(sagaSwarmRequest('saga', 100)).report;
  assert.notDeepEqual({ ...a, wallMs: 0, seed: 0 }, { ...c, wallMs: 0, seed: 0 });
});

sharedSagaSimTests('saga', {
  role: 'an orchestrator',
  forward: 'actions',
  undo: 'compensation',
  mustSucceed: 'a compensation',
});
