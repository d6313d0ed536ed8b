// The fault space the swarms draw from (src/sim/swarm-faults.ts): every new
// parameter is drawn (and not always), reaches the run, and the checkers hold
// under it; the toy workload runs on N nodes.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildBranchWorld, runSagaSim } from '../../src/sim/branch/run.ts';
import { sagaSwarmRequest } from '../../src/sim/branch/swarm.ts';
import { orchestratorId } from '../../src/sim/branch/world.ts';
import { Checkers } from '../../src/sim/checkers.ts';
import { buildWorld, runSim as runCommitSim, type SimRequest } from '../../src/sim/run.ts';
import { runSwarm, swarmRequest } from '../../src/sim/swarm.ts';

const seeds = Array.from({ length: 300 }, (_, i) => i + 1);

/** How many of `values` are positive, and how many are not. */
function split(values: readonly (number | undefined)[]): { positive: number; zero: number } {
  const positive = values.filter((v) => v !== undefined && v > 0).length;
  return { positive, zero: values.length - positive };
}

test('the commit swarm draws failing writes on every role, late duplicates and read-only shares, each not always', () => {
  const twoPc = seeds.map((s) => swarmRequest('2pc', s));
  const paxos = seeds.map((s) => swarmRequest('paxos-commit', s));
  for (const [name, values] of [
    ['participant fail rates', twoPc.map((r) => Math.max(...r.failRates!))],
    ['coordinator fail rate', twoPc.map((r) => r.coordinatorFailRate)],
    ['acceptor fail rate', paxos.map((r) => r.acceptorFailRate)],
    ['late duplicates', twoPc.map((r) => r.lateDupMs)],
    ['read-only share', twoPc.map((r) => r.readOnlyShare)],
  ] as const) {
    const { positive, zero } = split(values);
    assert.ok(positive > 30 && zero > 30, `${name}: ${positive} seeds drew it, ${zero} did not`);
  }
  for (const r of twoPc) assert.equal(r.failRates!.length, r.participants, 'one fail rate per participant');
  // Only cores that vote read-only get read-only branches; only Paxos Commit has acceptors.
  assert.ok(paxos.every((r) => r.readOnlyShare === undefined));
  assert.ok(twoPc.every((r) => r.acceptorFailRate === undefined));
});

test('a third of the seeds are mild: no partitions, little loss, few crashes', () => {
  const mild = seeds.map((s) => swarmRequest('2pc', s)).filter((r) => !r.partitions && r.loss! <= 0.02);
  assert.ok(mild.length > 80 && mild.length < 150, `${mild.length} mild-looking seeds of 300`);
  assert.ok(mild.filter((r) => r.crashRate! <= 0.005).length > 80);
});

test('the saga swarm draws failing writes on the orchestrator and the services', () => {
  const reqs = seeds.map((s) => sagaSwarmRequest('tcc', s));
  for (const [name, values] of [
    ['orchestrator fail rate', reqs.map((r) => r.coordinatorFailRate)],
    ['service fail rate', reqs.map((r) => r.serviceFailRate)],
  ] as const) {
    const { positive, zero } = split(values);
    assert.ok(positive > 30 && zero > 30, `${name}: ${positive} seeds drew it, ${zero} did not`);
  }
});

test('crashes only: no loss, no partitions, no failing writes, little jitter, and crashes still drawn', () => {
  const reqs = seeds.map((s) => swarmRequest('3pc', s, {}, 'crash'));
  for (const r of reqs) {
    assert.equal(r.loss, 0);
    assert.ok(r.jitterMs! <= 1, `jitter ${r.jitterMs}`);
    assert.equal(r.partitions, false);
    assert.equal(r.coordinatorFailRate, 0);
    assert.ok(r.failRates!.every((x) => x === 0));
  }
  assert.ok(reqs.filter((r) => r.crashRate! > 0).length > 100);
  const summary = runSwarm({ protocol: '3pc', seeds: 200, from: 1, faultKinds: 'crash' });
  assert.equal(summary.failure, null, summary.failure?.command);
  assert.ok(summary.committed > 2000, String(summary.committed));
});

test('the swarm reports its committed share, and naive commit its partial commits', () => {
  const twoPc = runSwarm({ protocol: '2pc', seeds: 100, from: 1 });
  assert.equal(
    twoPc.committedShare,
    Math.round((twoPc.committed / (twoPc.committed + twoPc.aborted)) * 1000) / 1000,
  );
  assert.ok(twoPc.committedShare > 0.3, `committed share ${twoPc.committedShare}`);
  const naive = runSwarm({ protocol: 'naive', seeds: 100, from: 1 });
  assert.ok(naive.partial > 0, 'naive commit never committed partially');
});

/** Records the kind (or id) of every node the world tells of a failed write. */
function watchPersistFailed(world: object, name: (node: never) => string): string[] {
  const failed: string[] = [];
  const w = world as { step(node: never, input: { type: string }): void };
  const step = w.step;
  w.step = function (node, input) {
    if (input.type === 'persistFailed') failed.push(name(node));
    return step.call(this, node, input);
  };
  return failed;
}

test('failing writes on the coordinator and the acceptors are injected, and Paxos Commit stays atomic', () => {
  const base: SimRequest = {
    protocol: 'paxos-commit',
    workload: 'bank',
    txns: 400,
    seed: 5,
    participants: 3,
    failRates: [0, 0, 0],
    crashRate: 0.01,
  };
  for (const [extra, kind] of [
    [{ coordinatorFailRate: 0.2 }, 'coordinator'],
    [{ acceptorFailRate: 0.3 }, 'acceptor'],
  ] as const) {
    const world = buildWorld({ ...base, ...extra });
    const failed = watchPersistFailed(world, (node: { spec: { kind: string } }) => node.spec.kind);
    world.run();
    assert.ok(failed.length > 10 && failed.every((k) => k === kind), `${kind}: ${failed.join(',')}`);
    const report = runCommitSim({ ...base, ...extra }).report;
    assert.equal(report.violationCount, 0, JSON.stringify(report.violations));
    assert.equal(report.undecided, 0);
  }
});

test('failing writes on the orchestrator and the services are told to the cores, and the checkers hold', () => {
  for (const protocol of ['saga', 'tcc'] as const) {
    const failedAt = new Set<string>();
    for (let seed = 1; seed <= 20; seed++) {
      const req = {
        protocol,
        workload: 'booking' as const,
        txns: 60,
        seed,
        concurrency: 4,
        coordinatorFailRate: 0.2,
        serviceFailRate: 0.2,
        dup: 0.2,
        crashRate: 0.01,
      };
      const world = buildBranchWorld(req);
      const failed = watchPersistFailed(world, (node: { id: string }) => node.id);
      const initial = world.total();
      world.run();
      const classes = world.judge(initial);
      const v = world.checkers.violations;
      assert.equal(world.checkers.violationCount, 0, `${protocol} seed ${seed}: ${JSON.stringify(v)}`);
      assert.equal(classes.unfinished, 0, `${protocol} seed ${seed}`);
      for (const node of failed) failedAt.add(node === orchestratorId ? 'orchestrator' : 'service');
      assert.equal(runSagaSim(req).report.violationCount, 0);
    }
    assert.deepEqual([...failedAt].sort(), ['orchestrator', 'service'], protocol);
  }
});

test("the Paxos Commit fault bound counts every acceptor, the leader's own included", () => {
  for (const colocated of [false, true]) {
    const world = buildWorld({
      protocol: 'paxos-commit',
      protocolOptions: { faults: 1, colocated },
      workload: 'bank',
      txns: 400,
      seed: 4,
      crashRate: 0.05,
      downtimeMeanMs: 1000,
    });
    const nodes = [...world.nodes.values()];
    const acceptors = nodes.filter((n) => n.spec.acceptor);
    assert.equal(acceptors.length, 3);
    assert.equal(
      acceptors.some((n) => n.spec.kind === 'coordinator'),
      !colocated,
      'the separate leader is acceptor 0',
    );
    let downMax = 0;
    const crash = world.crash.bind(world);
    world.crash = (node, ...rest) => {
      crash(node, ...rest);
      downMax = Math.max(downMax, acceptors.filter((n) => !n.up).length);
    };
    world.run();
    assert.ok(world.metrics.crashes > 50, String(world.metrics.crashes));
    assert.equal(downMax, 1, `colocated ${colocated}: ${downMax} acceptors down at once`);
  }
});

test('a late duplicate arrives after its transaction ended, and 2PC stays atomic', () => {
  const { report, trace } = runCommitSim({
    protocol: '2pc',
    workload: 'bank',
    txns: 200,
    seed: 3,
    dup: 0.3,
    lateDupMs: 500,
    trace: true,
  });
  assert.equal(report.violationCount, 0, JSON.stringify(report.violations));
  const ended = new Map<string, number>();
  for (const e of trace!) if (e.kind === 'outcome') ended.set(e.txn, e.t);
  const late = trace!.filter((e) => {
    if (e.kind !== 'send' || !e.dup || e.arrive === null) return false;
    const end = ended.get(e.msg.split(' ')[1] ?? '');
    return end !== undefined && e.arrive > end + 100;
  });
  assert.ok(late.length > 20, `${late.length} duplicates arrived 100 ms after their transaction ended`);
});

test('read-only branches vote read-only under 2PC; the checkers hold and all-read-only transactions commit', () => {
  const req: SimRequest = {
    protocol: '2pc',
    workload: 'bank',
    txns: 500,
    seed: 8,
    participants: 4,
    readOnlyShare: 0.3,
    loss: 0.05,
    crashRate: 0.01,
    trace: true,
  };
  const { report, trace } = runCommitSim(req);
  assert.equal(report.violationCount, 0, JSON.stringify(report.violations));
  assert.equal(report.undecided, 0);
  const left = trace!.filter((e) => e.kind === 'rm' && e.state === 'left');
  assert.ok(left.length > 100, `${left.length} read-only branches left at PREPARE`);
  // A transaction whose every branch left read-only is committed (nothing to log), not aborted.
  const checkers = new Checkers(true);
  checkers.register('t', ['A', 'B']);
  checkers.rm('t', 'A', 'working');
  checkers.rm('t', 'B', 'working');
  checkers.rm('t', 'A', 'left');
  checkers.rm('t', 'B', 'left');
  checkers.outcome('t', 'committed');
  assert.deepEqual(
    { ...checkers.classify(), undecidedTxns: [] },
    {
      committed: 1,
      aborted: 0,
      partial: 0,
      undecided: 0,
      undecidedTxns: [],
    },
  );
  assert.equal(checkers.violationCount, 0);
});

test('the toy workload runs every transaction on all N nodes', () => {
  for (const participants of [2, 4, 7]) {
    const { report, trace, world } = runCommitSim({
      protocol: '2pc',
      workload: 'toy',
      txns: 300,
      seed: 2,
      participants,
      trace: true,
    });
    assert.equal(report.violationCount, 0);
    assert.equal(report.committed + report.aborted, 300);
    assert.equal(world.opts.workload.participants.length, participants);
    const working = new Map<string, Set<string>>();
    for (const e of trace!) {
      if (e.kind === 'rm' && e.state === 'working') {
        const nodes = working.get(e.txn) ?? new Set();
        working.set(e.txn, nodes.add(e.node));
      }
    }
    const full = [...working.values()].filter((nodes) => nodes.size === participants).length;
    assert.ok(full > 250, `${full} of 300 transactions worked on all ${participants} nodes`);
  }
});

test('tcc: an answer to a lost write waits for the decision lost behind it (swarm seed 405)', () => {
  // A confirm re-sent when a lost `tried` record was reported reached the
  // services before the decision, lost in the same flush, was written again.
  const { report } = runSagaSim({
    protocol: 'tcc',
    workload: 'booking',
    txns: 58,
    seed: 405,
    concurrency: 5,
    coordinatorFailRate: 0.2,
    serviceFailRate: 0.05,
    loss: 0.047,
    dup: 0.29,
    jitterMs: 0.1,
    partitions: true,
    crashRate: 0.005,
    downtimeMeanMs: 200,
    booking: { shortShare: 0.2, seats: 50 },
  });
  assert.equal(report.violationCount, 0, JSON.stringify(report.violations));
  assert.equal(report.unfinished, 0);
});

test('--fail-rates must give one rate per participant', () => {
  assert.throws(
    () =>
      buildWorld({
        protocol: '2pc',
        workload: 'toy',
        txns: 1,
        seed: 1,
        participants: 4,
        failRates: [0, 0, 0],
      }),
    /--fail-rates needs one rate per participant: 4, got 3/,
  );
  assert.throws(
    () => buildWorld({ protocol: '2pc', workload: 'bank', txns: 1, seed: 1, failRates: [0, 0] }),
    /one rate per participant: 3, got 2/,
  );
});
