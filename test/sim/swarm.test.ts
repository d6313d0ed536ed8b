// Swarm testing two-phase commit, and proof that the checkers can fail: the
// same swarm catches deliberately broken variants of the protocol.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runSim } from '../../src/sim/run.ts';
import { runSwarm, simCommand, swarmRequest } from '../../src/sim/swarm.ts';
import { twoPcCommitBeforeForce, twoPcYesBeforeForce } from '../support/broken.ts';

test('2pc: 2,000 seeds of random faults, zero violations, zero undecided after heal', () => {
  const summary = runSwarm({ protocol: '2pc', seeds: 2000, from: 1 });
  assert.equal(summary.failure, null, summary.failure?.command);
  assert.equal(summary.seeds, 2000);
  assert.equal(summary.violations, 0);
  assert.equal(summary.undecidedAfterHeal, 0);
  assert.ok(
    summary.committed > 10_000,
    `only ${summary.committed} commits: the swarm is not exercising commits`,
  );
});

test('a coordinator that sends COMMIT before forcing its record is caught', () => {
  const summary = runSwarm({ protocol: twoPcCommitBeforeForce(), seeds: 2000, from: 1 });
  assert.ok(summary.failure !== null, 'the swarm did not catch the broken coordinator');
  const checkers = new Set(summary.failure.report.violations.map((v) => v.checker));
  // Now that coordinator writes fail too, the first catch (seed 6) is a commit
  // record that failed after its early COMMIT left: the client is told aborted
  // while participants commit, which the outcome checker sees.
  assert.ok(
    checkers.has('atomicity') || checkers.has('validity') || checkers.has('outcome'),
    [...checkers].join(','),
  );
});

test('a participant that votes YES before persisting PREPARED is caught', () => {
  const summary = runSwarm({ protocol: twoPcYesBeforeForce(), seeds: 2000, from: 1 });
  assert.ok(summary.failure !== null, 'the swarm did not catch the broken participant');
});

test('a failing seed is reproduced exactly by its request', () => {
  const broken = twoPcCommitBeforeForce();
  const summary = runSwarm({ protocol: broken, seeds: 2000, from: 1 });
  assert.ok(summary.failure !== null);
  const again = runSim(swarmRequest(broken, summary.failure.seed)).report;
  assert.deepEqual({ ...again, wallMs: 0 }, { ...summary.failure.report, wallMs: 0 });
  assert.match(summary.failure.command, new RegExp(`--seed ${summary.failure.seed}\\b`));
});

test('simCommand names every drawn parameter', () => {
  const req = swarmRequest('2pc', 12345);
  const cmd = simCommand(req);
  for (const flag of ['--txns', '--participants', '--concurrency', '--jitter-ms', '--downtime-mean-ms']) {
    assert.ok(cmd.includes(flag), `${flag} missing from ${cmd}`);
  }
});

test('paxos-commit: 2,000 seeds of random faults (at most F acceptors down at once), zero violations, zero undecided', () => {
  const summary = runSwarm({ protocol: 'paxos-commit', seeds: 2000, from: 1 });
  assert.equal(summary.failure, null, summary.failure?.command);
  assert.equal(summary.violations, 0);
  assert.equal(summary.undecidedAfterHeal, 0);
  assert.ok(summary.committed > 10_000, String(summary.committed));
});
