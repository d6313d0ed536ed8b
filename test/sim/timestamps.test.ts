// Timestamp-ordered reads in the simulator (docs/isolation.md, "Commit
// timestamps"): with skewed clocks and no commit wait, a read-only
// transaction on a slow clock misses a commit acknowledged before it began,
// and the strict-serializable history checker finds the real-time cycle;
// with a commit wait of the uncertainty bound it finds nothing, under the
// swarm's faults. Bad combinations of flags are refused by name.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compareHlc } from '../../src/protocol/common/hlc.ts';
import { ResourceModel } from '../../src/sim/resource.ts';
import { commitRequestProblem, runSim, type SimRequest } from '../../src/sim/run.ts';
import { swarmRequest } from '../../src/sim/swarm.ts';
import { dtxFromSource } from '../support/dtx-source.ts';

const append = (req: Partial<SimRequest>): SimRequest => ({
  protocol: '2pc',
  workload: 'append',
  reads: 'timestamp',
  txns: 200,
  concurrency: 8,
  seed: 1,
  ...req,
});

const realtime = (types: readonly string[]) => types.some((t) => t.endsWith('-realtime'));

test('resource model: a timestamp read takes the version at its snapshot and waits for a prepared writer before it', () => {
  const hooks = { now: () => 0, wound() {}, lockReleased() {}, queued() {}, waited() {} };
  const m = new ResourceModel(new Map([['k', 10]]), hooks, 'locking', true);
  const ts = (wallMs: number) => ({ wallMs, logical: 0 });
  m.execute(
    'w1',
    1,
    [{ key: 'k', delta: 5 }],
    () => {},
    () => {},
  );
  m.markPrepared('w1', ts(4));
  assert.equal(
    m.readAt([{ key: 'k', delta: 0, read: true }], ts(3))?.[0]?.value,
    10,
    'prepared after the snapshot: not waited for',
  );
  assert.equal(
    m.readAt([{ key: 'k', delta: 0, read: true }], ts(6)),
    null,
    'prepared at or before it: waits',
  );
  m.setCommitTs('w1', ts(7));
  m.commit('w1');
  assert.equal(
    m.readAt([{ key: 'k', delta: 0, read: true }], ts(6))?.[0]?.value,
    10,
    'committed after the snapshot',
  );
  assert.equal(m.readAt([{ key: 'k', delta: 0, read: true }], ts(7))?.[0]?.value, 15);
  assert.ok(compareHlc(ts(7), ts(6)) > 0);
  m.execute(
    'w2',
    2,
    [{ key: 'k', delta: 1 }],
    () => {},
    () => {},
  );
  m.markPrepared('w2', ts(8));
  m.setCommitTs('w2', ts(5));
  assert.throws(
    () => m.commit('w2'),
    /not after the row's last version/,
    'versions out of timestamp order are a bug',
  );
});

test('skewed clocks without commit wait: the strict-serializable checker finds real-time violations', () => {
  let seeds = 0;
  let realtimeSeeds = 0;
  for (let seed = 1; seed <= 12; seed++) {
    const { report } = runSim(append({ seed, clockSkewMs: 5 }));
    seeds++;
    const iso = report.isolation!;
    if (realtime(iso.anomalyTypes)) realtimeSeeds++;
    // Only real-time cycles are expected: serializability itself holds.
    assert.deepEqual(
      iso.anomalyTypes.filter((t) => !t.endsWith('-realtime')),
      [],
      `seed ${seed}`,
    );
    assert.equal(report.violationCount, 0, `seed ${seed}: ${JSON.stringify(report.violations[0])}`);
  }
  assert.ok(
    realtimeSeeds > 0,
    `no real-time violation in ${seeds} seeds with ±5 ms clocks and no commit wait`,
  );
});

test('commit wait of the uncertainty bound: no anomaly under the swarm faults, and commits pay for it', () => {
  const seeds = 200;
  for (let seed = 1; seed <= seeds; seed++) {
    const req = {
      ...swarmRequest('2pc', seed, {}, 'all', {
        workload: 'append',
        reads: 'timestamp',
        clockSkewMs: 5,
        commitWait: true,
      }),
    };
    const { report } = runSim(req);
    assert.deepEqual(report.isolation!.anomalyTypes, [], `seed ${seed}`);
    assert.equal(report.violationCount, 0, `seed ${seed}: ${JSON.stringify(report.violations[0])}`);
  }
  const without = runSim(append({ clockSkewMs: 5 })).report;
  const wait = runSim(append({ clockSkewMs: 5, commitWait: true })).report;
  assert.deepEqual(wait.isolation!.anomalyTypes, []);
  assert.ok(wait.isolation!.timestamps!.commitWaitMs.p50 > 0);
  assert.ok(
    wait.latencyMs.p50 > without.latencyMs.p50,
    `commit wait p50 ${wait.latencyMs.p50} ms, without ${without.latencyMs.p50} ms`,
  );
});

test('bank-audit with timestamp reads: every audit sees the conserved total', () => {
  const { report } = runSim(append({ workload: 'bank-audit', clockSkewMs: 5, txns: 400 }));
  assert.ok(report.isolation!.audits > 20);
  assert.equal(report.isolation!.inconsistentAudits, 0);
});

test('runs without timestamp reads draw no clock and carry no timestamp', () => {
  const a = runSim(append({ reads: 'snapshot', seed: 3 })).report;
  assert.equal(a.isolation!.timestamps, undefined);
});

const dtx = dtxFromSource;

test('bad input names the flag', () => {
  for (const protocol of ['paxos-commit', '3pc', 'naive'] as const)
    assert.match(commitRequestProblem(append({ protocol }))!, /--reads timestamp needs commit timestamps/);
  assert.match(
    commitRequestProblem(append({ reads: 'snapshot', commitWait: true }))!,
    /--commit-wait goes with --reads timestamp/,
  );
  assert.match(
    commitRequestProblem(append({ reads: 'locking', clockSkewMs: 3 }))!,
    /--clock-skew-ms goes with --reads timestamp/,
  );
  assert.match(commitRequestProblem(append({ clockSkewMs: -1 }))!, /--clock-skew-ms must be a number >= 0/);
  const negative = dtx(
    ...'sim --protocol 2pc --workload append --txns 5 --reads timestamp --clock-skew-ms -5'.split(' '),
  );
  assert.equal(negative.code, 2);
  assert.match(negative.stderr, /--clock-skew-ms must be between 0/);
  const wait = dtx('sim', '--protocol', '2pc', '--workload', 'append', '--txns', '5', '--commit-wait');
  assert.equal(wait.code, 2);
  assert.match(wait.stderr, /--commit-wait goes with --reads timestamp/);
  const saga = dtx('swarm', '--protocol', 'saga', '--seeds', '1', '--clock-skew-ms', '1');
  assert.equal(saga.code, 2);
  assert.match(saga.stderr, /--clock-skew-ms and --commit-wait do not apply to saga/);
});

test('a lock request whose transaction is wounded while it wounds others leaves no waiter behind (swarm seed 1633)', () => {
  // At this seed a read-write transaction's lock request wounds a holder; the
  // abort that follows wakes an older transaction that wounds the requester
  // in turn. The request used to queue anyway, and the next request on that
  // row met a waiter that no longer existed (a TypeError in the model).
  const req = swarmRequest('2pc', 1633, {}, 'all', {
    workload: 'append',
    reads: 'timestamp',
    clockSkewMs: 5,
  });
  const { report } = runSim(req);
  assert.equal(report.violationCount, 0, JSON.stringify(report.violations[0]));
});
