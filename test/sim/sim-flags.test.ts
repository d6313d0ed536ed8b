// The simulator flag table writes the reproduce command: a request that sets
// every setting of its world must come back with every flag of that world.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { SagaSimRequest } from '../../src/sim/branch/run.ts';
import type { SimRequest } from '../../src/sim/run.ts';
import { flagName, simCommand, simFlags } from '../../src/sim/sim-flags.ts';

const network = {
  concurrency: 2,
  thinkMs: 1,
  loss: 0.1,
  dup: 0.1,
  jitterMs: 1,
  rttMs: 2,
  fsyncMs: 3,
  partitions: true,
  crashRate: 0.01,
  downtimeMeanMs: 50,
  scenario: { kind: 'coordinator-crash', downtimeMs: 500 },
} as const;

test('simCommand names every flag of the commit world for a request that sets them all', () => {
  const req: SimRequest = {
    protocol: 'paxos-commit',
    workload: 'bank',
    txns: 10,
    seed: 4,
    protocolOptions: { faults: 1, faster: true, colocated: true, fanout: 'all' },
    participants: 3,
    everyParticipant: true,
    failRates: [0, 0.1, 0.2],
    coordinatorFailRate: 0.1,
    acceptorFailRate: 0.1,
    readOnlyShare: 0.2,
    reads: 'locking',
    // Named even where the request is not one the simulator takes (they go with timestamp reads).
    clockSkewMs: 2,
    commitWait: true,
    lateDupMs: 5,
    ...network,
  };
  const command = simCommand(req);
  assert.ok(command.includes('--clock-skew-ms 2 --commit-wait'));
  for (const flag of simFlags.filter((f) => f.appliesTo.includes('commit')))
    assert.ok(command.includes(flagName(flag)), `${flagName(flag)} missing from ${command}`);
  assert.ok(command.includes('--fail-rates 0,0.1,0.2'));
  assert.ok(command.includes('--fanout all'));
});

test('simCommand names every flag of the branch world for a request that sets them all', () => {
  const req: SagaSimRequest = {
    protocol: 'tcc',
    workload: 'booking',
    txns: 10,
    seed: 4,
    lateDupMs: 5,
    coordinatorFailRate: 0.1,
    serviceFailRate: 0.1,
    booking: { shortShare: 0.2, seats: 50 },
    ...network,
  };
  const command = simCommand(req);
  // The bank-audit workload's own flags are checked below.
  const auditOnly = ['--reads', '--countermeasure'];
  for (const flag of simFlags.filter((f) => f.appliesTo.includes('branch'))) {
    if (auditOnly.includes(flagName(flag))) continue;
    assert.ok(command.includes(flagName(flag)), `${flagName(flag)} missing from ${command}`);
  }
  assert.doesNotMatch(command, /--faults|--fanout|--participants|--every-participant|--fail-rates/);
  const audit = simCommand({
    protocol: 'saga',
    workload: 'bank-audit',
    txns: 10,
    seed: 4,
    reads: 'plain',
    countermeasure: 'semantic-lock',
  });
  assert.match(audit, /--workload bank-audit .*--reads plain --countermeasure semantic-lock/);
});
