// The coordinator-crash scenario: the coordinator dies with every YES vote in
// and its decision not yet durable. Two-phase commit stays atomic but blocks:
// the participants stay in doubt and hold their locks for the downtime, and
// after the restart presumed abort decides every one of them.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runSim } from '../../src/sim/run.ts';

const crash = (downtimeMs: number, workload: 'toy' | 'bank' = 'toy') =>
  runSim({
    protocol: '2pc',
    workload,
    txns: 40,
    seed: 3,
    failRates: [0, 0, 0],
    scenario: { kind: 'coordinator-crash', downtimeMs },
    trace: true,
  });

test('participants stay in doubt, holding locks, for the coordinator downtime', () => {
  for (const downtimeMs of [2_000, 20_000]) {
    const { report } = crash(downtimeMs);
    assert.equal(report.crashes, 1);
    assert.ok(report.lockHeldMs.max >= downtimeMs, `${report.lockHeldMs.max} < ${downtimeMs}`);
    assert.ok(report.inDoubtMs.max >= downtimeMs, `${report.inDoubtMs.max} < ${downtimeMs}`);
    // Bounded by the downtime plus a few inquiry intervals and round trips.
    assert.ok(report.lockHeldMs.max < downtimeMs + 200, String(report.lockHeldMs.max));
    assert.equal(report.undecided, 0);
    assert.equal(report.partial, 0);
    assert.equal(report.violationCount, 0, JSON.stringify(report.violations));
  }
});

test('lockHeldMs.max grows with --downtime-ms', () => {
  const short = crash(1_000).report.lockHeldMs.max;
  const long = crash(10_000).report.lockHeldMs.max;
  assert.ok(long - short >= 8_000, `${short} -> ${long}`);
});

test('after the restart presumed abort decides the in-doubt transaction: abort', () => {
  const { report, trace } = crash(5_000);
  const crashAt = trace!.find((e) => e.kind === 'crash')!.t;
  const restartAt = trace!.find((e) => e.kind === 'restart')!.t;
  assert.ok(restartAt - crashAt >= 5_000);
  // The transaction in flight at the crash: prepared everywhere, then aborted everywhere after the restart.
  const prepared = trace!.filter((e) => e.kind === 'rm' && e.state === 'prepared' && e.t <= crashAt);
  const victim = prepared[prepared.length - 1]!;
  assert.equal(victim.kind, 'rm');
  const ends = trace!.filter(
    (e) => e.kind === 'rm' && victim.kind === 'rm' && e.txn === victim.txn && e.t > crashAt,
  );
  assert.equal(ends.length, 3);
  for (const e of ends) {
    assert.equal(e.kind === 'rm' && e.state, 'aborted');
    assert.ok(e.t >= restartAt);
  }
  // Later transactions queued behind the in-doubt locks.
  assert.ok(report.lockWaitMs.max > 500, String(report.lockWaitMs.max));
});

test('on the bank workload, transactions queue behind the in-doubt locks', () => {
  const healthy = runSim({ protocol: '2pc', workload: 'bank', txns: 300, seed: 5 }).report;
  const crashed = runSim({
    protocol: '2pc',
    workload: 'bank',
    txns: 300,
    seed: 5,
    scenario: { kind: 'coordinator-crash', downtimeMs: 10_000 },
  }).report;
  assert.equal(crashed.violationCount, 0);
  assert.equal(crashed.undecided, 0);
  assert.ok(
    crashed.lockWaitMs.max > 10 * healthy.lockWaitMs.max,
    `${healthy.lockWaitMs.max} -> ${crashed.lockWaitMs.max}`,
  );
});
