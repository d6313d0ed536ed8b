// TCC in the simulator: the booking workload as try (hold, freeze, draft,
// prepare) then confirm or cancel, under faults; the inconsistency window of
// failed bookings; a 2,000-seed swarm; broken variants caught.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runSim } from '../src/sim/run.ts';
import { callsBeforeLogging, silentlyStuck, withoutBarrier } from '../src/sim/saga/broken.ts';
import { runSagaSim } from '../src/sim/saga/run.ts';
import { runSwarm } from '../src/sim/swarm.ts';

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

test('zero violations under loss, duplication, late duplicates, partitions and crashes', () => {
  const r = runSim({
    protocol: 'tcc',
    workload: 'booking',
    txns: 600,
    seed: 7,
    loss: 0.15,
    dup: 0.3,
    lateDupMs: 50,
    jitterMs: 5,
    partitions: true,
    crashRate: 0.02,
    concurrency: 6,
  }).report;
  assert.equal(r.violationCount, 0, JSON.stringify(r.violations));
  assert.equal(r.unfinished, 0);
  assert.ok(r.conserved);
  assert.ok(r.crashes > 20, String(r.crashes));
  assert.ok(r.duplicateCalls > 100, String(r.duplicateCalls));
  assert.ok(r.nullCompensations > 0, String(r.nullCompensations));
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

test('tcc: 2,000 seeds of random faults, zero violations, zero unfinished after heal', () => {
  const summary = runSwarm({ protocol: 'tcc', seeds: 2000, from: 1 });
  assert.equal(summary.failure, null, summary.failure?.command);
  assert.equal(summary.seeds, 2000);
  assert.equal(summary.violations, 0);
  assert.equal(summary.undecidedAfterHeal, 0);
  assert.ok(summary.completed > 30_000, String(summary.completed));
  assert.ok(summary.compensated > 5_000, String(summary.compensated));
  assert.ok(summary.wallMs < 60_000, `${summary.wallMs} ms`);
});

test('services without the barrier are caught', () => {
  const summary = runSwarm({ protocol: withoutBarrier('tcc'), seeds: 2000, from: 1 });
  assert.ok(summary.failure !== null, 'the swarm did not catch the unguarded services');
  const again = runSagaSim(summary.failure.request).report;
  assert.deepEqual({ ...again, wallMs: 0 }, { ...summary.failure.report, wallMs: 0 });
  const run = (extra: object) =>
    runSim({ protocol: withoutBarrier('tcc'), workload: 'booking', txns: 300, seed: 1, ...extra }).report
      .violationsByChecker;
  assert.ok((run({ dup: 0.3 }).idempotency ?? 0) > 0, 'repeated calls ran twice');
  assert.ok((run({ loss: 0.3 })['null-compensation'] ?? 0) > 0, 'cancels ran for tries that never ran');
  assert.ok((run({ dup: 0.3, lateDupMs: 500 }).hanging ?? 0) > 0, 'late tries ran after their cancel');
});

test('a coordinator that calls before logging is caught', () => {
  const summary = runSwarm({ protocol: callsBeforeLogging('tcc'), seeds: 2000, from: 1 });
  assert.ok(summary.failure !== null, 'the swarm did not catch the coordinator');
});

test('a confirm or cancel failing past its limit is visibly stuck; a silently dropped one is caught', () => {
  const req = {
    workload: 'booking' as const,
    txns: 300,
    seed: 3,
    loss: 0.4,
    booking: { shortShare: 0.2 },
    orchestratorConfig: { compensationAttemptsMax: 2, phaseTwoAttemptsMax: 2, retryCapMs: 20 },
  };
  const r = runSim({ ...req, protocol: 'tcc' }).report;
  assert.ok(r.stuck > 5, String(r.stuck));
  assert.equal(r.violationCount, 0, JSON.stringify(r.violations));
  assert.equal(r.unfinished, 0);
  assert.equal(r.begun, r.completed + r.compensated + r.stuck);
  const silent = runSim({ ...req, protocol: silentlyStuck('tcc') }).report;
  // (Its run differs from here on: no outcome message, fewer random draws.)
  assert.equal(silent.stuck, 0);
  assert.ok(silent.unfinished > 5, String(silent.unfinished));
  assert.equal(silent.violationsByChecker.liveness, silent.unfinished);
});
