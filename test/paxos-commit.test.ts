// Paxos Commit (Gray & Lamport, "Consensus on Transaction Commit", ACM TODS
// 2006): unit tests of the cores on a scripted network, then the simulator.
// Each test names the part of the paper (or of PaxosCommit.tla) it checks.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Effect, Input, NodeId, Outcome, Role } from '../src/protocol/common/types.ts';
import { paxosAcceptor } from '../src/protocol/paxos-commit/acceptor.ts';
import { paxosInvariants } from '../src/protocol/paxos-commit/invariants.ts';
import { paxosCommitLayout } from '../src/protocol/paxos-commit/layout.ts';
import { compactPaxosCommitLog } from '../src/protocol/paxos-commit/log.ts';
import {
  type PaxosNodeConfig,
  type PaxosNodeState,
  paxosCommitNode,
} from '../src/protocol/paxos-commit/node.ts';
import type { PaxosCommitMsg, PaxosCommitRecord } from '../src/protocol/paxos-commit/types.ts';
import type { CommitWorld } from '../src/sim/commit-world.ts';
import { type AnyRole, makeProtocol, type SimProtocol } from '../src/sim/protocols.ts';
import { buildWorld, runSim, type SimRequest } from '../src/sim/run.ts';
import { swarmRequest } from '../src/sim/swarm.ts';

// ------------------------------------------------------------------ harness

type Fx = Effect<PaxosCommitMsg, PaxosCommitRecord>;
type Envelope = { from: NodeId; to: NodeId; msg: PaxosCommitMsg };

interface HNode {
  config: PaxosNodeConfig;
  state: PaxosNodeState;
  log: PaxosCommitRecord[];
  up: boolean;
  timers: Set<string>;
}

/**
 * A scripted network for the cores: every write is durable as soon as its
 * step ends (so after-persist effects leave with the step), messages wait in
 * `inflight` until delivered, timers fire only when a test fires them, and
 * the invariants of ../src/protocol/paxos-commit/invariants.ts are checked
 * after every step.
 */
class Cluster {
  readonly nodes = new Map<NodeId, HNode>();
  inflight: Envelope[] = [];
  readonly sent: Envelope[] = [];
  forcedWrites = 0;
  readonly outcomes = new Map<string, Outcome>();
  /** `${rm}|${txn}` -> the resource action applied. */
  readonly resources = new Map<string, string>();

  constructor(
    readonly participants: NodeId[],
    options: { F?: number; faster?: boolean; colocated?: boolean } = {},
  ) {
    const layout = paxosCommitLayout(participants, options);
    for (const s of layout.servers) this.add(s.id, s.config);
    for (const p of participants) this.add(p, layout.rmConfig);
    this.leader = layout.leader;
  }

  readonly leader: NodeId;

  private add(id: NodeId, config: PaxosNodeConfig): void {
    const existing = this.nodes.get(id);
    if (existing !== undefined) return;
    this.nodes.set(id, {
      config,
      state: paxosCommitNode.init(id, config),
      log: [],
      up: true,
      timers: new Set(),
    });
  }

  node(id: NodeId): HNode {
    const n = this.nodes.get(id);
    assert.ok(n, `no node ${id}`);
    return n;
  }

  private apply(id: NodeId, effects: Fx[]): void {
    const n = this.node(id);
    for (const e of effects) {
      switch (e.type) {
        case 'persist':
          n.log.push(e.record);
          if (e.force) this.forcedWrites++;
          break;
        case 'send':
        case 'sendAfterPersist':
          this.inflight.push({ from: id, to: e.to, msg: e.msg });
          this.sent.push({ from: id, to: e.to, msg: e.msg });
          break;
        case 'setTimer':
          n.timers.add(e.timer);
          break;
        case 'cancelTimer':
          n.timers.delete(e.timer);
          break;
        case 'resource':
          this.resources.set(`${id}|${e.txn}`, e.action);
          break;
        case 'reportOutcome': {
          const before = this.outcomes.get(e.txn);
          assert.ok(before === undefined || before === e.outcome, `outcome of ${e.txn} changed`);
          this.outcomes.set(e.txn, e.outcome);
          break;
        }
      }
    }
    const broken = paxosInvariants([...this.nodes.values()].filter((x) => x.up).map((x) => x.state));
    assert.deepEqual(broken, [], 'Paxos invariants');
  }

  input(id: NodeId, input: Input<PaxosCommitMsg>): void {
    const n = this.node(id);
    if (!n.up) return;
    this.apply(id, paxosCommitNode.step(n.state, input).effects);
  }

  begin(txn: string): void {
    for (const p of this.participants)
      this.input(p, { type: 'executed', txn, coordinator: this.leader, readOnly: false });
    this.input(this.leader, { type: 'begin', txn, participants: this.participants, client: 'client' });
  }

  /** Delivers in-flight messages (first in, first out) until none is left; `drop` loses some. */
  run(drop: (m: Envelope) => boolean = () => false, pick: (n: number) => number = () => 0): void {
    for (let i = 0; this.inflight.length > 0; i++) {
      assert.ok(i < 100_000, 'messages do not settle');
      const [m] = this.inflight.splice(pick(this.inflight.length), 1);
      if (m === undefined || drop(m)) continue;
      this.input(m.to, { type: 'receive', from: m.from, msg: m.msg });
    }
  }

  /** Fires `id`'s armed timer whose name starts with `prefix`. */
  fire(id: NodeId, prefix: string): void {
    const n = this.node(id);
    const timer = [...n.timers].find((t) => t.startsWith(prefix));
    assert.ok(timer, `${id} has no timer ${prefix}: ${[...n.timers].join(', ')}`);
    n.timers.delete(timer);
    this.input(id, { type: 'timeout', timer });
  }

  crash(id: NodeId): void {
    const n = this.node(id);
    n.up = false;
    n.timers.clear();
    this.inflight = this.inflight.filter((m) => m.to !== id);
  }

  recover(id: NodeId): void {
    const n = this.node(id);
    n.up = true;
    const r = paxosCommitNode.recover(id, n.config, n.log);
    n.state = r.state;
    this.apply(id, r.effects);
  }

  rm(id: NodeId, txn: string): string {
    return this.resources.get(`${id}|${txn}`) ?? this.node(id).state.rm?.txns.get(txn)?.phase ?? 'none';
  }

  count(type: PaxosCommitMsg['type'], txn?: string): number {
    return this.sent.filter((m) => m.msg.type === type && (txn === undefined || m.msg.txn === txn)).length;
  }
}

/** A small seeded generator for delivery orders (the cores themselves never draw randomness). */
function lcg(seed: number): (n: number) => number {
  let x = seed >>> 0 || 1;
  return (n) => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return x % n;
  };
}

// --------------------------------------------------------------- the cores

test('normal case: every instance chooses prepared, the leader commits (paper: "Paxos Commit"; spec: RMPrepare, Phase2b, Decide)', () => {
  const c = new Cluster(['A', 'B']);
  c.begin('t1');
  c.run();
  assert.equal(c.rm('A', 't1'), 'commit');
  assert.equal(c.rm('B', 't1'), 'commit');
  assert.equal(c.outcomes.get('t1'), 'committed');
  // Message flow with N = 2 RMs, F = 1, the leader separate from the RMs and
  // acceptor 0 on the leader's node: PREPARE N, ballot-0 phase 2a N(2F+1),
  // phase 2b 2F (one bundle per remote acceptor; acceptor 0's is in-process),
  // COMMIT N.
  assert.equal(c.count('PREPARE'), 2);
  assert.equal(c.count('PHASE2A'), 6);
  assert.equal(c.count('PHASE2B'), 2);
  assert.equal(c.count('COMMIT'), 2);
  assert.equal(c.sent.length, 12);
  // Forced writes: N prepared + N(2F+1) acceptor states + N committed. The
  // leader writes nothing in the normal case.
  assert.equal(c.forcedWrites, 2 + 6 + 2);
  assert.ok(!c.node('coord').log.some((r) => r.type === 'round'));
  for (const acc of ['coord', 'acc1', 'acc2']) {
    for (const rm of ['A', 'B']) {
      assert.deepEqual(c.node(acc).state.acceptor!.txns.get('t1')!.instances.get(rm), {
        mbal: 0,
        bal: 0,
        val: 'prepared',
      });
    }
  }
});

test('an RM that aborts before voting sends aborted in ballot 0, and the leader aborts (spec: RMChooseToAbort, Decide)', () => {
  const c = new Cluster(['A', 'B']);
  for (const p of ['A', 'B'])
    c.input(p, { type: 'executed', txn: 't1', coordinator: 'coord', readOnly: false });
  c.input('B', { type: 'wounded', txn: 't1' });
  assert.equal(c.rm('B', 't1'), 'abort');
  c.input('coord', { type: 'begin', txn: 't1', participants: ['A', 'B'], client: 'client' });
  c.run();
  assert.equal(c.outcomes.get('t1'), 'aborted');
  assert.equal(c.rm('A', 't1'), 'abort');
  // A had prepared, so its abort is forced before the work is discarded.
  assert.deepEqual(
    c.node('A').log.map((r) => r.type),
    ['prepared', 'aborted'],
  );
  assert.equal(c.count('COMMIT'), 0);
});

test('leader crash after every vote is chosen: a candidate recovers with a higher ballot and commits (paper: "Paxos Commit", recovery; spec: Phase1a, Phase2a)', () => {
  const c = new Cluster(['A', 'B']);
  c.begin('t1');
  // The votes reach every acceptor; the leader's node dies before it hears the
  // phase 2b bundles (its own acceptor's accept is in-process, but it never
  // gets the F+1 it needs).
  c.run((m) => m.msg.type === 'PHASE2B');
  c.crash('coord');
  assert.equal(c.rm('A', 't1'), 'prepared');
  // A's first inquiry goes to the leader (down), the next to candidate 1, acc1.
  c.fire('A', 'rm/inquiry');
  c.run();
  assert.equal(c.rm('A', 't1'), 'prepared');
  c.fire('A', 'rm/inquiry');
  c.run();
  assert.equal(c.rm('A', 't1'), 'commit');
  assert.equal(c.rm('B', 't1'), 'commit');
  assert.equal(c.outcomes.get('t1'), 'committed', 'the recovering candidate tells the client');
  // acc1 is candidate 1 of 3: its ballots are 1 mod 3, and above 0 (the RMs').
  const rounds = c.node('acc1').log.filter((r) => r.type === 'round');
  assert.deepEqual(rounds, [{ type: 'round', round: 1 }]);
  for (const acc of ['acc1', 'acc2']) {
    const a = c.node(acc).state.acceptor!.txns.get('t1')!.instances.get('A')!;
    assert.deepEqual(a, { mbal: 4, bal: 4, val: 'prepared' });
  }
});

test('leader crash before a vote was accepted anywhere: recovery proposes aborted (spec: Phase2a with maxbal = -1)', () => {
  const c = new Cluster(['A', 'B']);
  c.begin('t1');
  // B's vote is lost on the way to every acceptor; A's arrives.
  c.run((m) => m.msg.type === 'PHASE2B' || (m.msg.type === 'PHASE2A' && m.from === 'B'));
  c.crash('coord');
  c.fire('A', 'rm/inquiry');
  c.fire('A', 'rm/inquiry');
  c.run();
  assert.equal(c.rm('A', 't1'), 'abort');
  assert.equal(c.rm('B', 't1'), 'abort');
  assert.equal(c.outcomes.get('t1'), 'aborted');
});

test('two candidates recovering at once decide the same, in any delivery order (paper: any process may become leader)', () => {
  for (let seed = 1; seed <= 60; seed++) {
    const c = new Cluster(['A', 'B', 'C']);
    c.begin('t1');
    // The leader dies; C's vote reached acc2 only, so whether the outcome is
    // commit or abort depends on which promises each candidate collects.
    c.run((m) => m.msg.type === 'PHASE2B' || (m.msg.type === 'PHASE2A' && m.from === 'C' && m.to !== 'acc2'));
    c.crash('coord');
    c.input('acc1', {
      type: 'receive',
      from: 'A',
      msg: { type: 'INQUIRY', txn: 't1', participants: ['A', 'B', 'C'], client: 'client' },
    });
    c.input('acc2', {
      type: 'receive',
      from: 'B',
      msg: { type: 'INQUIRY', txn: 't1', participants: ['A', 'B', 'C'], client: 'client' },
    });
    c.run(() => false, lcg(seed));
    // Either may have given up (been outrun); ask again until both decided.
    for (let i = 0; i < 5; i++) {
      for (const cand of ['acc1', 'acc2']) {
        c.input(cand, { type: 'timeout', timer: 'lead/recover:t1' });
        c.input(cand, {
          type: 'receive',
          from: 'A',
          msg: { type: 'INQUIRY', txn: 't1', participants: ['A', 'B', 'C'], client: 'client' },
        });
      }
      c.run(() => false, lcg(seed * 7 + i));
    }
    const d1 = c.node('acc1').state.candidate!.decided.get('t1');
    const d2 = c.node('acc2').state.candidate!.decided.get('t1');
    assert.ok(d1 !== undefined && d2 !== undefined, `seed ${seed}: undecided`);
    assert.equal(d1, d2, `seed ${seed}`);
    const expect = d1 === 'committed' ? 'commit' : 'abort';
    for (const rm of ['A', 'B', 'C']) assert.equal(c.rm(rm, 't1'), expect, `seed ${seed} ${rm}`);
  }
});

test('F = 0 is two-phase commit: one acceptor on the leader, 3N messages, and it blocks while the leader is down (paper: "Paxos versus Two-Phase Commit")', () => {
  const c = new Cluster(['A', 'B', 'C'], { F: 0 });
  c.begin('t1');
  c.run();
  assert.equal(c.outcomes.get('t1'), 'committed');
  // PREPARE, the vote (ballot-0 phase 2a to the one acceptor: 2PC's YES) and
  // COMMIT; the acceptor's forced write of each vote plays the part of the
  // coordinator's commit record. No ACK is needed: the decision is recovered
  // from the acceptor, not re-driven by the leader.
  assert.equal(c.sent.length, 9);
  assert.deepEqual([...new Set(c.sent.filter((m) => m.msg.type === 'PHASE2A').map((m) => m.to))], ['coord']);

  // Blocking: crash the leader (and so the only acceptor) with t2's votes in.
  c.begin('t2');
  c.run((m) => m.msg.type === 'COMMIT' && m.msg.txn === 't2');
  c.crash('coord');
  for (let i = 0; i < 6; i++) {
    c.fire('A', 'rm/inquiry');
    c.run();
  }
  assert.equal(c.rm('A', 't2'), 'prepared', 'nobody else can decide: A stays in doubt');
  // The leader restarts from its log (the acceptor's records) and recovers t2.
  c.recover('coord');
  c.fire('A', 'rm/inquiry');
  c.run();
  for (const rm of ['A', 'B', 'C']) assert.equal(c.rm(rm, 't2'), 'commit');
});

test('Faster Paxos Commit: RMs learn the outcome from the acceptors, one message delay earlier (paper: "Faster Paxos Commit")', () => {
  const c = new Cluster(['A', 'B'], { faster: true });
  c.begin('t1');
  // Nothing from the leader after PREPARE gets through: the RMs still commit.
  c.run((m) => m.from === 'coord' && m.msg.type !== 'PREPARE');
  assert.equal(c.rm('A', 't1'), 'commit');
  assert.equal(c.rm('B', 't1'), 'commit');
  // The normal case has no COMMIT message at all; the acceptors' phase 2b
  // bundles go to the leader and to every RM.
  assert.equal(c.count('COMMIT'), 0);
  assert.deepEqual(
    new Set(c.sent.filter((m) => m.msg.type === 'PHASE2B').map((m) => m.to)),
    new Set(['coord', 'A', 'B']),
  );
  // Message delays to the RM's commit: PREPARE, phase 2a, phase 2b (three;
  // the plain protocol needs a fourth, COMMIT).
});

test('co-located leader: the initiating RM leads; messages to itself never touch the network (paper: "Paxos versus Two-Phase Commit")', () => {
  const c = new Cluster(['A', 'B'], { colocated: true });
  assert.equal(c.leader, 'A');
  c.begin('t1');
  c.run();
  assert.equal(c.outcomes.get('t1'), 'committed');
  for (const rm of ['A', 'B']) assert.equal(c.rm(rm, 't1'), 'commit');
  // PREPARE and COMMIT go to B only; both RMs' votes go to the 3 acceptors;
  // each acceptor sends one bundle to A.
  assert.equal(c.count('PREPARE'), 1);
  assert.equal(c.count('COMMIT'), 1);
  assert.equal(c.count('PHASE2A'), 6);
  assert.equal(c.count('PHASE2B'), 3);
  assert.ok(c.sent.every((m) => m.from !== m.to));
});

test('acceptor: promises only upwards, accepts only at or above its promise, and writes before it answers (spec: Phase1b, Phase2b)', () => {
  const config = paxosCommitLayout(['A', 'B']).config;
  const a = paxosAcceptor.init('acc1', config);
  const step = (from: NodeId, msg: PaxosCommitMsg) =>
    paxosAcceptor.step(a, { type: 'receive', from, msg }).effects;
  let fx = step('acc2', { type: 'PHASE1A', txn: 't1', bal: 5, instances: ['A'] });
  assert.deepEqual(
    fx.map((e) => e.type),
    ['persist', 'sendAfterPersist'],
  );
  // Ballot 0 (the RM's own vote) now comes too late.
  fx = step('A', {
    type: 'PHASE2A',
    txn: 't1',
    bal: 0,
    entries: [{ ins: 'A', val: 'prepared' }],
    leader: 'coord',
    participants: ['A', 'B'],
    client: 'client',
  });
  assert.deepEqual(fx, []);
  // A lower phase 1a is rejected with the promise that beat it.
  fx = step('coord', { type: 'PHASE1A', txn: 't1', bal: 3, instances: ['A'] });
  assert.deepEqual(fx, [
    { type: 'send', to: 'coord', msg: { type: 'REJECT', txn: 't1', acc: 'acc1', bal: 3, mbal: 5 } },
  ]);
  fx = step('acc2', {
    type: 'PHASE2A',
    txn: 't1',
    bal: 5,
    entries: [{ ins: 'A', val: 'aborted' }],
    leader: 'acc2',
    participants: ['A', 'B'],
    client: 'client',
  });
  assert.equal(fx[0]!.type, 'persist');
  assert.ok(fx.slice(1).every((e) => e.type === 'sendAfterPersist'));
  assert.deepEqual(a.txns.get('t1')!.instances.get('A'), { mbal: 5, bal: 5, val: 'aborted' });
  // A write that failed is written again (its reply was dropped with it), so
  // that a repeated phase 2a is never answered from a state that is not durable.
  const failed = fx[0]!.type === 'persist' ? fx[0]!.record : null;
  assert.deepEqual(paxosAcceptor.step(a, { type: 'persistFailed', record: failed }).effects, [
    {
      type: 'persist',
      force: true,
      record: { type: 'acc', txn: 't1', ins: 'A', mbal: 5, bal: 5, val: 'aborted' },
    },
  ]);
  // One ballot, one value: a second, different phase 2a in ballot 5 is a bug.
  assert.throws(
    () =>
      step('acc2', {
        type: 'PHASE2A',
        txn: 't1',
        bal: 5,
        entries: [{ ins: 'A', val: 'prepared' }],
        leader: 'acc2',
        participants: ['A', 'B'],
        client: 'client',
      }),
    /ballot 5 proposed both/,
  );
});

test('paxosInvariants flags a chosen value overturned in a later ballot, and an acceptor whose bal exceeds mbal', () => {
  const config = { ...paxosCommitLayout(['A']).config };
  const acc = (self: string, mbal: number, bal: number, val: 'prepared' | 'aborted' | 'none') => {
    const s = paxosAcceptor.init(self, config);
    s.txns.set('t1', {
      instances: new Map([['A', { mbal, bal, val }]]),
      participants: ['A'],
      leader: 'coord',
      pending: [],
    });
    return s;
  };
  assert.deepEqual(
    paxosInvariants([
      acc('coord', 0, 0, 'prepared'),
      acc('acc1', 0, 0, 'prepared'),
      acc('acc2', 0, -1, 'none'),
    ]),
    [],
  );
  // Legal: prepared accepted once in ballot 0 (not chosen), aborted chosen in 4.
  assert.deepEqual(
    paxosInvariants([
      acc('coord', 0, 0, 'prepared'),
      acc('acc1', 4, 4, 'aborted'),
      acc('acc2', 4, 4, 'aborted'),
    ]),
    [],
  );
  // Not: prepared was chosen in ballot 0, so no later ballot may carry aborted.
  const broken = paxosInvariants([
    acc('coord', 0, 0, 'prepared'),
    acc('acc1', 0, 0, 'prepared'),
    acc('acc2', 4, 4, 'aborted'),
  ]);
  assert.deepEqual(broken, ['t1/A: prepared chosen in ballot 0 but acc2 accepted aborted in 4']);
  assert.ok(paxosInvariants([acc('coord', 1, 2, 'aborted')]).some((l) => l.includes('bal 2 > mbal 1')));
});

test('crash and recovery from the log: an in-doubt RM repeats its vote and asks; a compacted log rebuilds the same state', () => {
  const c = new Cluster(['A', 'B']);
  c.begin('t1');
  c.run((m) => m.msg.type === 'COMMIT');
  c.crash('A');
  c.crash('acc1');
  c.recover('acc1');
  c.recover('A');
  assert.equal(c.rm('A', 't1'), 'prepared');
  const resent = c.inflight.filter((m) => m.from === 'A').map((m) => m.msg.type);
  assert.deepEqual(resent, ['PHASE2A', 'PHASE2A', 'PHASE2A', 'INQUIRY']);
  c.run();
  assert.equal(c.rm('A', 't1'), 'commit', 'the leader answers from its recent decisions');
  for (const id of ['coord', 'acc1', 'A']) {
    const n = c.node(id);
    const full = paxosCommitNode.recover(id, n.config, n.log);
    const compact = paxosCommitNode.recover(id, n.config, compactPaxosCommitLog(n.log));
    assert.deepEqual(compact.state, full.state, id);
  }
});

// -------------------------------------------------------------- simulator

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
  let caught = -1;
  for (let seed = 1; seed <= 400 && caught < 0; seed++) {
    const { report } = runSim(swarmRequest(broken, seed));
    if (report.violationCount > 0) caught = seed;
  }
  assert.ok(caught > 0, 'the swarm did not catch acceptors that forget what they promised');
});
