// The simulator tests the saga and TCC share: each runs the booking workload
// under the same faults, the same 2,000-seed swarm and the same broken
// variants, so that both protocols are held to the same checks.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { callsBeforeLogging, silentlyStuck, withoutBarrier } from '../../src/sim/branch/broken.ts';
import { runSagaSim } from '../../src/sim/branch/run.ts';
import { runSim } from '../../src/sim/run.ts';
import { runSwarm } from '../../src/sim/swarm.ts';

/** How a protocol's test names and messages speak of it. */
interface Words {
  /** `an orchestrator`, `a coordinator`. */
  role: string;
  /** The forward calls: `actions`, `tries`. */
  forward: string;
  /** The call that undoes one: `compensation`, `cancel`. */
  undo: string;
  /** The calls that must eventually succeed: `a compensation`, `a confirm or cancel`. */
  mustSucceed: string;
}

export function sharedSagaSimTests(protocol: 'saga' | 'tcc', words: Words): void {
  test('zero violations under loss, duplication, late duplicates, partitions and crashes', () => {
    const r = runSim({
      protocol,
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
    // The barrier was exercised: duplicates absorbed, null compensations recorded.
    assert.ok(r.duplicateCalls > 100, String(r.duplicateCalls));
    assert.ok(r.nullCompensations > 0, String(r.nullCompensations));
  });

  test(`${protocol}: 2,000 seeds of random faults, zero violations, zero unfinished after heal`, () => {
    const summary = runSwarm({ protocol, seeds: 2000, from: 1 });
    assert.equal(summary.failure, null, summary.failure?.command);
    assert.equal(summary.seeds, 2000);
    assert.equal(summary.violations, 0);
    assert.equal(summary.undecidedAfterHeal, 0);
    assert.ok(summary.completed > 30_000, String(summary.completed));
    assert.ok(summary.compensated > 5_000, String(summary.compensated));
    assert.ok(summary.wallMs < 60_000, `${summary.wallMs} ms`);
  });

  test(`services without the barrier are caught: repeats, null ${words.undo}s and hanging ${words.forward}`, () => {
    const summary = runSwarm({ protocol: withoutBarrier(protocol), seeds: 2000, from: 1 });
    assert.ok(summary.failure !== null, 'the swarm did not catch the unguarded services');
    const again = runSagaSim(summary.failure.request).report;
    assert.deepEqual(
      { ...again, wallMs: 0 },
      { ...summary.failure.report, wallMs: 0 },
      'the failing seed reproduces',
    );
    assert.match(summary.failure.command, new RegExp(`--seed ${summary.failure.seed}\\b`));
    // Each barrier duty, switched off, is caught by its own checker.
    const run = (extra: object) =>
      runSim({ protocol: withoutBarrier(protocol), workload: 'booking', txns: 300, seed: 1, ...extra }).report
        .violationsByChecker;
    assert.ok((run({ dup: 0.3 }).idempotency ?? 0) > 0, 'repeated calls ran twice');
    assert.ok(
      (run({ loss: 0.3 })['null-compensation'] ?? 0) > 0,
      `${words.undo}s ran for ${words.forward} that never ran`,
    );
    assert.ok(
      (run({ dup: 0.3, lateDupMs: 500 }).hanging ?? 0) > 0,
      `late ${words.forward} ran after their ${words.undo}`,
    );
  });

  test(`${words.role} that calls before logging is caught`, () => {
    const summary = runSwarm({ protocol: callsBeforeLogging(protocol), seeds: 2000, from: 1 });
    assert.ok(summary.failure !== null, `the swarm did not catch ${words.role} that calls before logging`);
    const checkers = new Set(summary.failure.report.violations.map((v) => v.checker));
    assert.ok(
      // TCC: the decision checker sees a confirm/cancel overtake its decision record before the data shows it.
      checkers.has('seat') || checkers.has('charge') || checkers.has('outcome') || checkers.has('decision'),
      [...checkers].join(','),
    );
  });

  test(`${words.mustSucceed} failing past its limit is visibly stuck; a silently dropped one is caught`, () => {
    const req = {
      workload: 'booking' as const,
      txns: 300,
      seed: 3,
      loss: 0.4,
      booking: { shortShare: 0.2 },
      orchestratorConfig: { compensationAttemptsMax: 2, phaseTwoAttemptsMax: 2, retryCapMs: 20 },
    };
    const r = runSim({ ...req, protocol }).report;
    assert.ok(r.stuck > 5, String(r.stuck));
    assert.equal(r.violationCount, 0, JSON.stringify(r.violations));
    assert.equal(r.unfinished, 0);
    assert.equal(r.begun, r.completed + r.compensated + r.stuck);
    const silent = runSim({ ...req, protocol: silentlyStuck(protocol) }).report;
    // (Its run differs from here on: no outcome message, fewer random draws.)
    assert.equal(silent.stuck, 0);
    assert.ok(silent.unfinished > 5, String(silent.unfinished));
    assert.equal(silent.violationsByChecker.liveness, silent.unfinished);
  });
}
