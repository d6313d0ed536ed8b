// The checkers added so that a core cannot fool them (issue 11, item 3): each
// is shown to pass the healthy cores and to catch a deliberately broken core
// that the earlier checkers let through.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runSwarm } from '../../src/sim/swarm.ts';
import { twoPcReportsAbortedWhileCommitting } from '../support/broken.ts';

test('2pc: 300 healthy seeds raise no outcome violation', () => {
  const summary = runSwarm({ protocol: '2pc', seeds: 300, from: 1 });
  assert.equal(summary.failure, null, summary.failure?.command);
});

test('a coordinator that tells the client aborted while committing is caught by the outcome checker', () => {
  // Caught at seed 1; before the outcome checker, 2,000 seeds passed clean.
  const summary = runSwarm({ protocol: twoPcReportsAbortedWhileCommitting(), seeds: 20, from: 1 });
  assert.ok(summary.failure !== null, 'the swarm did not catch the lying coordinator');
  const checkers = new Set(summary.failure.report.violations.map((v) => v.checker));
  assert.deepEqual([...checkers], ['outcome']);
  assert.equal(summary.failure.seed, 1);
});
