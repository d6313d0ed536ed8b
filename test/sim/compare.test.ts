// dtx compare measures what the usual cost model of commit protocols claims
// about their relative ordering (docs/compare.md, "Against the cost model's
// claims").

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runCompare } from '../../src/sim/compare.ts';

test('the measured ordering: 2PC blocks for the takeover time, Paxos Commit does not, naive and 3PC break atomicity', () => {
  const takeoverMs = 20_000;
  const report = runCompare({ txns: 200, swarmSeeds: 80, takeoverMs, clockSeeds: 3 });
  const row = (p: string) => report.rows.find((r) => r.protocol === p)!;
  const naive = row('naive');
  const twoPc = row('2pc');
  const threePc = row('3pc');
  const paxos = row('paxos-commit');

  // Blocking: 2PC participants stay in doubt for the coordinator's whole downtime.
  assert.ok(
    twoPc.coordinatorFailure.inDoubtMs.max >= takeoverMs,
    String(twoPc.coordinatorFailure.inDoubtMs.max),
  );
  // Paxos Commit decides without the dead leader, within a small multiple of its timeout.
  assert.ok(paxos.coordinatorFailure.inDoubtMs.max < 1_000, String(paxos.coordinatorFailure.inDoubtMs.max));
  assert.ok(paxos.coordinatorFailure.lockHeldMs.max < takeoverMs / 10);
  assert.equal(paxos.coordinatorFailure.undecided, 0);
  assert.equal(twoPc.coordinatorFailure.undecided, 0);

  // Cost: Paxos Commit pays one more message delay, more messages and more forced writes than 2PC.
  assert.equal(twoPc.messageDelays, 4);
  assert.equal(paxos.messageDelays, twoPc.messageDelays + 1);
  assert.ok(paxos.messagesPerCommit > twoPc.messagesPerCommit);
  assert.ok(paxos.forcedWritesPerCommit > twoPc.forcedWritesPerCommit);
  // Presumed abort, N = 3, commit case: 2 forced writes per participant + 1 (2 participants per transfer here).
  assert.ok(Math.abs(twoPc.forcedWritesPerCommit - 5) < 0.2, String(twoPc.forcedWritesPerCommit));
  assert.ok(naive.healthy.latencyMs.p50 < twoPc.healthy.latencyMs.p50);
  assert.ok(threePc.messageDelays > twoPc.messageDelays);

  // Paper vs measured (test/sim/paper-costs.test.ts checks the rows themselves).
  assert.equal(report.paper.length, 12);
  assert.ok(report.paper.every((r) => r.matchesDerivation && r.fanout === 'quorum'));

  // Atomicity under the swarm's faults.
  assert.equal(twoPc.swarm.atomicityViolations, 0);
  assert.equal(paxos.swarm.atomicityViolations + paxos.swarm.otherViolations, 0);
  assert.ok(naive.swarm.atomicityViolations > 0, 'naive commit should commit partially under faults');
  assert.ok(threePc.swarm.atomicityViolations > 0, '3PC should break atomicity under partitions');

  // Sagas: a short window when healthy; a crashed orchestrator holds one booking's seat for its downtime.
  for (const s of report.sagaRows) {
    assert.equal(s.swarm.violations, 0, s.protocol);
    assert.ok(s.inconsistencyWindowMs.max < 1_000, `${s.protocol}: ${s.inconsistencyWindowMs.max}`);
    assert.ok(
      s.inconsistencyWindowOnCrashMs.max >= takeoverMs,
      `${s.protocol}: ${s.inconsistencyWindowOnCrashMs.max}`,
    );
  }
});

test('clocks or a single serialisation point: commit wait costs commit latency and removes real-time violations', () => {
  // Only the read-only rows are looked at; the protocol rows are cut to one cheap entry.
  const report = runCompare({
    txns: 200,
    swarmSeeds: 1,
    takeoverMs: 1_000,
    clockSeeds: 6,
    protocols: [{ label: '2pc', protocol: '2pc' }],
  });
  const row = (reads: string) => report.readRows.find((r) => r.reads === reads)!;
  const fence = row('snapshot');
  const clocks = row('timestamp');
  const wait = row('timestamp + commit wait');
  assert.ok(fence.readOnly > 0 && clocks.readOnly > 0 && wait.readOnly > 0);
  assert.ok(fence.heldBackCommits > 0, 'the fence held some commit back');
  assert.ok(
    clocks.realtimeViolationSeeds > 0,
    'skewed clocks without commit wait: a real-time violation somewhere',
  );
  assert.equal(wait.realtimeViolationSeeds, 0);
  for (const r of [fence, clocks, wait]) assert.equal(r.otherAnomalySeeds, 0, r.reads);
  assert.ok(
    wait.latencyMs.p50 > clocks.latencyMs.p50 + report.options.clockSkewMs,
    `commit wait ${wait.latencyMs.p50} ms against ${clocks.latencyMs.p50} ms`,
  );
  assert.ok(wait.commitWaitMs.p50 > 0);
});
