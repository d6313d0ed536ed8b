// Paxos Commit (Gray & Lamport, "Consensus on Transaction Commit", ACM TODS
// 2006) in the simulator: healthy runs, the coordinator-crash scenario that
// shows it does not block, and small swarms with PaxosCommit.tla's invariants
// checked after every step. The cores' own tests are
// ../protocol/paxos-commit/ and testdata/paxos-commit/.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Effect, Input, Role } from '../../src/protocol/common/types.ts';
import { paxosInvariants } from '../../src/protocol/paxos-commit/invariants.ts';
import type { CommitWorld } from '../../src/sim/commit-world.ts';
import { type AnyRole, makeProtocol, type SimProtocol } from '../../src/sim/protocols.ts';
import { buildWorld, runSim, type SimRequest } from '../../src/sim/run.ts';
import { swarmRequest } from '../../src/sim/swarm.ts';

test('simulator: healthy runs on the bank and toy workloads, zero violations, zero undecided', () => {
  for (const workload of ['bank', 'toy'] as const) {
    for (const options of [{}, { faster: true }, { faults: 0 }, { colocated: true }]) {
      const { report } = runSim({
        protocol: makeProtocol('paxos-commit', options),
        workload,
        txns: 300,
        seed: 7,
      });
      const what = `${workload} ${JSON.stringify(options)}`;
      assert.equal(report.violationCount, 0, `${what}: ${JSON.stringify(report.violations)}`);
      assert.equal(report.undecided, 0, what);
      assert.ok(report.committed > 250, `${what}: ${report.committed} committed`);
    }
  }
});

const crashRun = (protocol: SimProtocol | '2pc', downtimeMs: number) =>
  runSim({
    protocol,
    workload: 'toy',
    txns: 60,
    seed: 3,
    failRates: [0, 0, 0],
    scenario: { kind: 'coordinator-crash', downtimeMs },
  }).report;

test('coordinator-crash scenario: a candidate decides at once; lock hold does not grow with the downtime (2PC: it does)', () => {
  const short = crashRun(makeProtocol('paxos-commit'), 2_000);
  const long = crashRun(makeProtocol('paxos-commit'), 10_000);
  for (const r of [short, long]) {
    assert.equal(r.crashes, 1);
    assert.equal(r.undecided, 0);
    assert.equal(r.violationCount, 0, JSON.stringify(r.violations));
    // The in-doubt RMs ask the leader (down), then candidate 1, which recovers
    // the transaction: about two inquiry intervals, whatever the downtime.
    assert.ok(r.inDoubtMs.max < 200, `in doubt ${r.inDoubtMs.max} ms`);
  }
  // The longest lock is the unvoted-abort timeout (1 s) of work whose `begin`
  // went to the dead leader; it is the same for both downtimes.
  assert.ok(long.lockHeldMs.max < 2_000, String(long.lockHeldMs.max));
  assert.ok(
    Math.abs(long.lockHeldMs.max - short.lockHeldMs.max) < 100,
    `${short.lockHeldMs.max} -> ${long.lockHeldMs.max}`,
  );
  const twoPcShort = crashRun('2pc', 2_000);
  const twoPcLong = crashRun('2pc', 10_000);
  assert.ok(
    twoPcLong.lockHeldMs.max - twoPcShort.lockHeldMs.max > 7_000,
    `2pc ${twoPcShort.lockHeldMs.max} -> ${twoPcLong.lockHeldMs.max}`,
  );
  // With F = 0 the only acceptor is on the leader's node: two-phase commit, blocking.
  const f0 = crashRun(makeProtocol('paxos-commit', { faults: 0 }), 10_000);
  assert.equal(f0.violationCount, 0);
  assert.ok(f0.lockHeldMs.max >= 10_000, String(f0.lockHeldMs.max));
});

/** Which transaction an input concerns, to check only its instances after the step. */
function txnOf(input: Input<unknown>): string | undefined {
  switch (input.type) {
    case 'receive':
      return (input.msg as { txn?: string }).txn;
    case 'timeout': {
      const i = input.timer.indexOf(':');
      return i < 0 ? undefined : input.timer.slice(i + 1);
    }
    case 'persistFailed':
      return (input.record as { txn?: string }).txn;
    default:
      return input.txn;
  }
}

/**
 * Runs `req` with paxosInvariants checked after every step over every node
 * that is up (the simulator has no hook for protocol invariants yet, so the
 * roles are wrapped). Returns the checker verdicts and the invariant breaches.
 */
function runChecked(req: SimRequest): {
  violations: number;
  undecided: number;
  invariants: string[];
  detail: string;
} {
  const invariants: string[] = [];
  let world: CommitWorld | null = null;
  const wrap = (role: AnyRole): AnyRole => {
    const wrapped: Role<unknown, unknown, unknown, unknown> = {
      init: (self, config) => role.init(self, config),
      recover: (self, config, log) => role.recover(self, config, log),
      step(state, input) {
        const r = role.step(state, input);
        const txn = txnOf(input);
        if (txn !== undefined && world !== null && invariants.length < 10) {
          const live = [...world.nodes.values()].filter((n) => n.up).map((n) => n.state);
          invariants.push(...paxosInvariants(live, txn));
        }
        return r;
      },
    };
    return wrapped;
  };
  const base = req.protocol as SimProtocol;
  const protocol: SimProtocol = {
    ...base,
    nodes: (ps) => base.nodes(ps).map((n) => ({ ...n, role: wrap(n.role) })),
    participantRole: wrap(base.participantRole),
  };
  world = buildWorld({ ...req, protocol });
  const initial = world.total();
  world.run();
  const c = world.checkers.classify();
  world.checkers.conservation(initial, world.total());
  return {
    violations: world.checkers.violationCount,
    undecided: c.undecided,
    invariants,
    detail: JSON.stringify(world.checkers.violations.slice(0, 3)),
  };
}

test('mini swarm: random loss, duplication, delay, partitions and crashes; zero violations, zero undecided, invariants hold', () => {
  const variants: Array<[object, number]> = [
    [{}, 200],
    [{ faster: true }, 60],
    [{ faults: 2 }, 40],
    [{ colocated: true }, 60],
  ];
  for (const [options, seeds] of variants) {
    for (let seed = 1; seed <= seeds; seed++) {
      const req = swarmRequest(makeProtocol('paxos-commit', options), seed);
      const r = runChecked(req);
      const what = `${JSON.stringify(options)} seed ${seed}`;
      assert.deepEqual(r.invariants, [], what);
      assert.equal(r.violations, 0, `${what}: ${r.detail}`);
      assert.equal(r.undecided, 0, what);
    }
  }
});

test('mini swarm with partitions on every seed', () => {
  for (let seed = 1; seed <= 60; seed++) {
    const req: SimRequest = { ...swarmRequest(makeProtocol('paxos-commit'), seed), partitions: true };
    const r = runChecked(req);
    assert.deepEqual(r.invariants, [], `seed ${seed}`);
    assert.equal(r.violations, 0, `seed ${seed}: ${r.detail}`);
    assert.equal(r.undecided, 0, `seed ${seed}`);
  }
});

test('the swarm catches acceptors that answer before their write is durable', () => {
  const eager = (role: AnyRole): AnyRole => {
    const fix = (effects: Effect<unknown, unknown>[]) =>
      effects.map((e) =>
        e.type === 'sendAfterPersist' ? { type: 'send' as const, to: e.to, msg: e.msg } : e,
      );
    return {
      init: (self, config) => role.init(self, config),
      recover: (self, config, log) => {
        const r = role.recover(self, config, log);
        return { state: r.state, effects: fix(r.effects) };
      },
      step: (state, input) => {
        const r = role.step(state, input);
        return { state: r.state, effects: fix(r.effects) };
      },
    };
  };
  const base = makeProtocol('paxos-commit');
  const broken: SimProtocol = {
    ...base,
    nodes: (ps) => base.nodes(ps).map((n) => ({ ...n, role: eager(n.role) })),
  };
  // From seed 1 the swarm first catches this variant at seed 2125 (at seed 46
  // before the fault bound counted the leader's acceptor and a third of the
  // seeds became mild: it needs an acceptor to crash between its eager reply
  // and its write); the test starts just before it.
  let caught = -1;
  for (let seed = 2101; seed <= 2300 && caught < 0; seed++) {
    const { report } = runSim(swarmRequest(broken, seed));
    if (report.violationCount > 0) caught = seed;
  }
  assert.ok(caught > 0, 'the swarm did not catch acceptors that forget what they promised');
});
