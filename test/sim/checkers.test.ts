// The checkers added so that a core cannot fool them (issue 11, item 3): each
// is shown to pass the healthy cores and to catch a deliberately broken core
// that the earlier checkers let through.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { SagaOutcome } from '../../src/protocol/branch/types.ts';
import {
  callsBeforeLogging,
  compensatingAllAtOnce,
  confirmingBeforeEveryTry,
  confirmingDespiteRefusal,
} from '../../src/sim/branch/broken.ts';
import { SagaCheckers } from '../../src/sim/branch/checkers.ts';
import { runSagaSim } from '../../src/sim/branch/run.ts';
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
  test(`${protocol}: 300 healthy seeds raise no compensation-order, decision or confirm violation`, () => {
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

for (const [name, make, before] of [
  // Before the confirm checker, 2,000 seeds passed clean: 13,956 transactions ended stuck.
  ['confirms despite a refused try', confirmingDespiteRefusal, 'was refused'],
  // Before the confirm checker, 2,000 seeds passed clean: 23,458 transactions ended stuck.
  ['confirms before every try answered', confirmingBeforeEveryTry, 'had not run'],
] as const) {
  test(`a TCC coordinator that ${name} is caught by the confirm checker`, () => {
    const summary = runSagaSwarm({ protocol: make(), seeds: 20, from: 1 });
    assert.ok(summary.failure !== null, 'the swarm did not catch the early confirm');
    assert.equal(summary.failure.seed, 1);
    assert.deepEqual(Object.keys(summary.failure.report.violationsByChecker), ['confirm']);
    assert.ok(summary.failure.report.violations.some((v) => v.detail.endsWith(before)));
  });
}

test('a healthy TCC transaction can end stuck under the swarm faults, so stuck stays a legal outcome', () => {
  // At the swarm's heaviest loss (30%) with partitions, a confirm of pay went
  // unanswered 16 times in a row: the transaction is hard-stopped with three
  // branches confirmed and one not, and no checker may call that a bug.
  const { report } = runSagaSim({
    protocol: 'tcc',
    workload: 'booking',
    txns: 300,
    seed: 27,
    loss: 0.3,
    partitions: true,
  });
  assert.equal(report.stuck, 1);
  assert.equal(report.violationCount, 0, JSON.stringify(report.violations));
});

/** A local transaction of TCC transaction `t` that ran its handler. */
const ran = (branch: string, op: 'try' | 'confirm' | 'cancel') =>
  ({ type: 'local', txn: 't', branch, op, kind: 'applied', reason: '', writes: [], blocks: null }) as const;

/** Transaction `t` over branches a and b begins, as its durable `begin` record shows the checkers. */
function beginTcc(): SagaCheckers {
  const c = new SagaCheckers();
  const plan = (branch: string) => ({
    branch,
    service: branch,
    try: 't',
    confirm: 'c',
    cancel: 'x',
    payload: '',
  });
  c.begin('t', { branches: [plan('a'), plan('b')] });
  return c;
}

/**
 * The confirm checker at quiescence, fed by hand: `t`'s tries both ran, it
 * was decided confirm and a confirmed; then b's `later` op ran (if any) and
 * `t` was reported `outcome`. Returns the confirm checker's findings.
 */
function judgeConfirmed(outcome: SagaOutcome, later?: 'confirm' | 'cancel'): string[] {
  const c = beginTcc();
  c.local('seats', ran('a', 'try'), 0);
  c.local('seats', ran('b', 'try'), 0);
  c.decided('t', 'confirm');
  c.called('t', 'a', 'confirm');
  c.called('t', 'b', 'confirm');
  c.local('seats', ran('a', 'confirm'), 0);
  if (later !== undefined) c.local('seats', ran('b', later), 0);
  c.reported('t', outcome);
  const stuckInLog = new Set(['t']);
  c.finish({ kind: 'tcc', bookings: new Map(), rows: new Map(), stuckInLog, initialTotal: 0, finalTotal: 0 });
  return c.violations.filter((v) => v.checker === 'confirm').map((v) => v.detail);
}

test('confirm checker: a transaction decided confirm with every try run ends all confirmed', () => {
  const cancelled = ['decided confirm with every try run, but b cancelled'];
  assert.deepEqual(judgeConfirmed('completed', 'confirm'), []);
  assert.deepEqual(judgeConfirmed('completed'), ['reported completed, but b never confirmed']);
  assert.deepEqual(judgeConfirmed('compensated', 'cancel'), cancelled);
  assert.deepEqual(judgeConfirmed('compensated'), [
    'decided confirm with every try run, but reported compensated',
  ]);
  // Visibly stuck: an operator owns the unconfirmed branch; a cancel is still wrong.
  assert.deepEqual(judgeConfirmed('stuck'), []);
  assert.deepEqual(judgeConfirmed('stuck', 'cancel'), cancelled);
});

test('confirm checker: a confirm that leaves before every try ran is flagged once per transaction', () => {
  const c = beginTcc();
  c.local('seats', ran('a', 'try'), 0);
  c.called('t', 'a', 'confirm');
  c.called('t', 'b', 'confirm');
  assert.deepEqual(
    c.violations.map((v) => [v.checker, v.detail]),
    [['confirm', 'confirm of a sent while the try of b had not run']],
  );
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
