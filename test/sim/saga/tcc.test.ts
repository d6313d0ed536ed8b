// TCC in the simulator: the booking workload as try (hold, freeze, draft,
// prepare) then confirm or cancel, under faults; the inconsistency window of
// failed bookings; a 2,000-seed swarm; broken variants caught.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runSim } from '../../../src/sim/run.ts';
import { sharedSagaSimTests } from '../../support/saga-sim.ts';

const healthy = runSim({ protocol: 'tcc', workload: 'booking', txns: 2000, seed: 1 }).report;

test('healthy TCC booking run: zero violations, every transaction finished, ~4% cancelled', () => {
  assert.equal(healthy.violationCount, 0, JSON.stringify(healthy.violations));
  assert.equal(healthy.begun, 2000);
  assert.equal(healthy.completed + healthy.compensated, 2000);
  assert.equal(healthy.unfinished, 0);
  assert.ok(healthy.conserved);
  assert.ok(healthy.compensated > 60 && healthy.compensated < 160, String(healthy.compensated));
  // Two rounds of four calls and four replies: about twice the saga's messages.
  assert.ok(healthy.messagesPerSaga >= 14 && healthy.messagesPerSaga < 18, String(healthy.messagesPerSaga));
});

test('the inconsistency window of failed bookings is reported', () => {
  const w = healthy.inconsistencyWindowMs;
  assert.ok(healthy.inconsistencyWindows > 30, String(healthy.inconsistencyWindows));
  // Hold → every try answers → forced decision → cancel: a little longer than the saga's.
  assert.ok(w.p50 > 2 && w.p50 < 20, JSON.stringify(w));
  assert.ok(w.max < 200, JSON.stringify(w));
});

test('a coordinator crash before its cancel decision holds the seat for the downtime', () => {
  for (const downtimeMs of [1_000, 20_000]) {
    const r = runSim({
      protocol: 'tcc',
      workload: 'booking',
      txns: 2000,
      seed: 1,
      scenario: { kind: 'coordinator-crash', downtimeMs },
    }).report;
    assert.equal(r.crashes, 1);
    assert.equal(r.violationCount, 0, JSON.stringify(r.violations));
    assert.equal(r.unfinished, 0);
    const w = r.inconsistencyWindowMs;
    assert.ok(w.max >= downtimeMs && w.max < downtimeMs + 100, `${downtimeMs}: ${JSON.stringify(w)}`);
  }
});

sharedSagaSimTests('tcc', {
  role: 'a coordinator',
  forward: 'tries',
  undo: 'cancel',
  mustSucceed: 'a confirm or cancel',
});
