// Naive commit's partial commits, reproduced: three nodes whose durable writes fail
// at 1%, 1% and 2%. Naive commit commits partially at the rate the arithmetic
// gives; two-phase commit never does, and aborts instead.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { expectedPartialRate } from '../../src/cli/demo.ts';
import { runSim } from '../../src/sim/run.ts';

const failRates = [0.01, 0.01, 0.02];
const txns = 100_000;

test('naive commit: partial-commit rate within 3 standard deviations of 1 - .99*.99*.98 - .01*.01*.02', () => {
  const p = expectedPartialRate(failRates);
  assert.ok(Math.abs(p - (1 - 0.99 * 0.99 * 0.98 - 0.01 * 0.01 * 0.02)) < 1e-12);
  const { report } = runSim({ protocol: 'naive', workload: 'toy', txns, seed: 42, failRates });
  const sd = Math.sqrt((p * (1 - p)) / txns);
  const rate = report.partial / txns;
  assert.ok(Math.abs(rate - p) <= 3 * sd, `partial rate ${rate} vs expected ${p} ± ${3 * sd}`);
  assert.equal(report.undecided, 0);
  assert.equal(report.violationCount, 0, 'naive partial outcomes are its result, not checker violations');
  assert.equal(report.conserved, false, 'partial commits unbalance the books');
});

test('two-phase commit on the same failures: no partial commit, aborts instead', () => {
  const { report } = runSim({ protocol: '2pc', workload: 'toy', txns, seed: 42, failRates });
  assert.equal(report.partial, 0);
  assert.equal(report.undecided, 0);
  assert.equal(report.violationCount, 0, JSON.stringify(report.violations));
  assert.equal(report.conserved, true);
  // Every failed prepared write becomes a NO vote: the abort rate is the
  // any-failure rate, 1 - .99*.99*.98.
  const p = 1 - 0.99 * 0.99 * 0.98;
  const sd = Math.sqrt((p * (1 - p)) / txns);
  assert.ok(Math.abs(report.aborted / txns - p) <= 3 * sd, `abort rate ${report.aborted / txns} vs ${p}`);
  // Presumed abort, commit case: 2 forced writes per participant and 1 at the coordinator.
  assert.ok(
    report.forcedWritesPerCommit >= 7 && report.forcedWritesPerCommit < 7.3,
    String(report.forcedWritesPerCommit),
  );
  // PREPARE, VOTE, COMMIT, ACK per participant.
  assert.ok(
    report.messagesPerCommit >= 12 && report.messagesPerCommit < 12.6,
    String(report.messagesPerCommit),
  );
});
