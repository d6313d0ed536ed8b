// The checkers added so that a core cannot fool them (issue 11, item 3): each
// is shown to pass the healthy cores and to catch a deliberately broken core
// that the earlier checkers let through.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { callsBeforeLogging, compensatingAllAtOnce } from '../../src/sim/branch/broken.ts';
import { runSagaSwarm } from '../../src/sim/branch/swarm.ts';
import { runSwarm } from '../../src/sim/swarm.ts';
import {
  paxosCommitAmnesiacAcceptors,
  paxosCommitForgettingRound,
  twoPcReportsAbortedWhileCommitting,
} from '../support/broken.ts';

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

for (const protocol of ['saga', 'tcc'] as const) {
  test(`${protocol}: 300 healthy seeds raise no compensation-order or decision violation`, () => {
    const summary = runSagaSwarm({ protocol, seeds: 300, from: 1 });
    assert.equal(summary.failure, null, summary.failure?.command);
  });
}

test('a saga that starts every compensation at once is caught by the compensation-order checker', () => {
  // Caught at seed 40; before the checker, 2,000 seeds passed clean.
  const summary = runSagaSwarm({ protocol: compensatingAllAtOnce(), seeds: 100, from: 1 });
  assert.ok(summary.failure !== null, 'the swarm did not catch the unordered compensations');
  assert.deepEqual(Object.keys(summary.failure.report.violationsByChecker), ['compensation-order']);
  assert.equal(summary.failure.seed, 40);
});

test('a TCC coordinator that calls confirm/cancel before its decision is durable is caught by the decision checker', () => {
  // Caught at seed 1 by this checker; the data checkers alone first caught it at seed 7.
  const summary = runSagaSwarm({ protocol: callsBeforeLogging('tcc'), seeds: 20, from: 1 });
  assert.ok(summary.failure !== null);
  assert.equal(summary.failure.seed, 1);
  assert.ok((summary.failure.report.violationsByChecker.decision ?? 0) > 0);
});

test('paxos-commit: 300 healthy seeds never choose two values for one instance', () => {
  const summary = runSwarm({ protocol: 'paxos-commit', seeds: 300, from: 1 });
  assert.equal(summary.failure, null, summary.failure?.command);
});

test('acceptors that forget what they accepted are caught by the chosen checker', () => {
  // With every vote sent to all 2F+1 acceptors, seed 17 chooses `prepared`
  // then `aborted` for one instance; no live acceptor still holds the first
  // choice, and no client saw a wrong outcome, so the other checkers pass it.
  // (The swarm first catches this variant at seed 3, by the chosen checker and
  // the acceptors' invariants together.)
  const all = paxosCommitAmnesiacAcceptors({ fanout: 'all' });
  const summary = runSwarm({ protocol: all, seeds: 100, from: 1 });
  assert.ok(summary.failure !== null, 'the swarm did not catch the amnesiac acceptors');
  assert.equal(summary.failure.seed, 3);
  assert.ok(summary.failure.report.violations.some((v) => v.checker === 'chosen'));
  const alone = runSwarm({ protocol: all, seeds: 1, from: 17 });
  const checkers = new Set(alone.failure?.report.violations.map((v) => v.checker));
  assert.deepEqual([...checkers], ['chosen']);
  // With the votes on F+1 acceptors only, one amnesiac acceptor is enough to
  // lose a chosen vote, and its consequences show: at seed 5 the outcome,
  // atomicity, stability and conservation checkers all see it.
  const quorum = runSwarm({ protocol: paxosCommitAmnesiacAcceptors(), seeds: 100, from: 1 });
  assert.equal(quorum.failure?.seed, 5);
  assert.ok(quorum.failure?.report.violations.some((v) => v.checker === 'outcome'));
});

test('a candidate that forgets its round on restart reuses ballots, but still never chooses two values', () => {
  // Not a bug in this core: a reused ballot still runs phase 1, whose
  // promises report what the earlier use of the ballot got accepted, and an
  // acceptor that promised higher answers REJECT, which lifts the round.
  const summary = runSwarm({ protocol: paxosCommitForgettingRound(), seeds: 300, from: 1 });
  assert.equal(summary.failure, null, summary.failure?.command);
});
