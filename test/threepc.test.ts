// Three-phase commit (Skeen, "Nonblocking Commit Protocols", SIGMOD 1981) with
// its termination protocol: it survives a coordinator crash without blocking
// and is atomic under crashes alone, but a network partition makes the two
// sides terminate differently (PROTOCOLS.md section 4). The simulator finds
// that run; docs/protocols/3pc.md walks through it.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Effect, Input, NodeId, Outcome, Role } from '../src/protocol/common/types.ts';
import { threePcCoordinator } from '../src/protocol/threepc/coordinator.ts';
import { threePcParticipant } from '../src/protocol/threepc/participant.ts';
import type { ThreePcMsg, ThreePcRecord } from '../src/protocol/threepc/types.ts';
import { runSim, type SimRequest } from '../src/sim/run.ts';

// ------------------------------------------------------------------ harness

type Envelope = { from: NodeId; to: NodeId; msg: ThreePcMsg };
// biome-ignore lint/suspicious/noExplicitAny: coordinator and participant states differ
type AnyRole = Role<any, ThreePcMsg, ThreePcRecord, object>;

interface HNode {
  role: AnyRole;
  state: unknown;
  log: ThreePcRecord[];
  up: boolean;
  timers: Set<string>;
}

/** Scripted network: writes durable at once, messages delivered on demand, timers fired by the test. */
class Cluster {
  readonly nodes = new Map<NodeId, HNode>();
  inflight: Envelope[] = [];
  readonly sent: Envelope[] = [];
  forcedWrites = 0;
  readonly outcomes = new Map<string, Outcome>();
  readonly resources = new Map<string, string>();

  constructor(readonly participants: NodeId[]) {
    this.nodes.set('coord', this.make('coord', threePcCoordinator as AnyRole));
    for (const p of participants) this.nodes.set(p, this.make(p, threePcParticipant as AnyRole));
  }

  private make(id: NodeId, role: AnyRole): HNode {
    return { role, state: role.init(id, {}), log: [], up: true, timers: new Set() };
  }

  node(id: NodeId): HNode {
    const n = this.nodes.get(id);
    assert.ok(n, id);
    return n;
  }

  private apply(id: NodeId, effects: Effect<ThreePcMsg, ThreePcRecord>[]): void {
    const n = this.node(id);
    for (const e of effects) {
      if (e.type === 'persist') {
        n.log.push(e.record);
        if (e.force) this.forcedWrites++;
      } else if (e.type === 'send' || e.type === 'sendAfterPersist') {
        this.inflight.push({ from: id, to: e.to, msg: e.msg });
        this.sent.push({ from: id, to: e.to, msg: e.msg });
      } else if (e.type === 'setTimer') n.timers.add(e.timer);
      else if (e.type === 'cancelTimer') n.timers.delete(e.timer);
      else if (e.type === 'resource') this.resources.set(`${id}|${e.txn}`, e.action);
      else if (e.type === 'reportOutcome') this.outcomes.set(e.txn, e.outcome);
    }
  }

  input(id: NodeId, input: Input<ThreePcMsg>): void {
    const n = this.node(id);
    if (n.up) this.apply(id, n.role.step(n.state, input).effects);
  }

  begin(txn: string): void {
    for (const p of this.participants)
      this.input(p, { type: 'executed', txn, coordinator: 'coord', readOnly: false });
    this.input('coord', { type: 'begin', txn, participants: this.participants, client: 'client' });
  }

  run(drop: (m: Envelope) => boolean = () => false): void {
    while (this.inflight.length > 0) {
      const m = this.inflight.shift()!;
      if (!drop(m)) this.input(m.to, { type: 'receive', from: m.from, msg: m.msg });
    }
  }

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
    const r = n.role.recover(id, {}, n.log);
    n.state = r.state;
    this.apply(id, r.effects);
  }

  rm(id: NodeId, txn: string): string {
    const s = this.node(id).state as { txns: Map<string, { phase: string }> };
    return this.resources.get(`${id}|${txn}`) ?? s.txns.get(txn)?.phase ?? 'none';
  }
}

// --------------------------------------------------------------- the cores

test('normal case: CAN_COMMIT, VOTE, PRE_COMMIT, PRE_ACK, COMMIT — 5N messages, 3N forced writes, none at the coordinator', () => {
  const c = new Cluster(['A', 'B', 'C']);
  c.begin('t1');
  c.run();
  for (const p of ['A', 'B', 'C']) assert.equal(c.rm(p, 't1'), 'commit');
  assert.equal(c.outcomes.get('t1'), 'committed');
  assert.equal(c.sent.length, 15);
  assert.equal(c.forcedWrites, 9);
  assert.deepEqual(c.node('coord').log, []);
});

test('coordinator crash after one PRE_COMMIT: the lowest-ranked participant terminates and commits (Skeen: rule "any pre-committed")', () => {
  const c = new Cluster(['A', 'B', 'C']);
  c.begin('t1');
  c.run((m) => m.msg.type === 'PRE_COMMIT' && m.to !== 'A');
  c.crash('coord');
  assert.equal(c.rm('A', 't1'), 'precommitted');
  // B times out first, hears from everyone, sees A (ranked first,
  // operational) and stands back: it will ask again later.
  c.fire('B', 'wait:');
  c.run();
  assert.equal(c.rm('B', 't1'), 'prepared');
  assert.deepEqual([...c.node('B').timers], ['wait:t1']);
  // A times out and, as the backup coordinator, pre-commits B and C, then commits.
  c.fire('A', 'wait:');
  c.run();
  for (const p of ['A', 'B', 'C']) assert.equal(c.rm(p, 't1'), 'commit', p);
});

test('coordinator crash before any PRE_COMMIT: termination aborts (Skeen: rule "all prepared")', () => {
  const c = new Cluster(['A', 'B', 'C']);
  c.begin('t1');
  c.run((m) => m.msg.type === 'PRE_COMMIT');
  c.crash('coord');
  c.fire('A', 'wait:');
  c.run();
  for (const p of ['A', 'B', 'C']) assert.equal(c.rm(p, 't1'), 'abort', p);
});

test('a recovering participant never aborts on partial information, and adopts the outcome once it hears it', () => {
  const c = new Cluster(['A', 'B', 'C']);
  c.begin('t1');
  // Everyone pre-commits, A commits, then B and C crash before COMMIT reaches them.
  c.run((m) => m.msg.type === 'COMMIT' && m.to !== 'A');
  assert.equal(c.rm('A', 't1'), 'commit');
  c.crash('A');
  c.crash('C');
  c.crash('B');
  c.recover('B');
  // B is alone and in doubt: it asks, hears nothing, and must not decide.
  for (let i = 0; i < 3; i++) {
    c.fire('B', 'wait:');
    c.run();
    c.fire('B', 'term:');
  }
  assert.equal(c.rm('B', 't1'), 'precommitted');
  c.recover('A');
  c.fire('B', 'wait:');
  c.run();
  c.fire('B', 'term:'); // C is still down: act on A's answer
  assert.equal(c.rm('B', 't1'), 'commit');
});

test('a partition is taken for a crash: one side commits, the other aborts (the counter-example, in the cores)', () => {
  const c = new Cluster(['A', 'B', 'C']);
  c.begin('t1');
  // The coordinator's PRE_COMMIT reaches A only: B and C are cut off from the
  // coordinator and A from now on (nothing crashed).
  const cut = (m: Envelope) => {
    const side = (n: NodeId) => (n === 'B' || n === 'C' ? 1 : 0);
    return m.msg.type !== 'CAN_COMMIT' && m.msg.type !== 'VOTE' && side(m.from) !== side(m.to);
  };
  c.run(cut);
  assert.equal(c.rm('A', 't1'), 'precommitted');
  // The coordinator takes B and C for crashed and commits with A.
  c.fire('coord', 'ack:');
  c.run(cut);
  assert.equal(c.rm('A', 't1'), 'commit');
  assert.equal(c.outcomes.get('t1'), 'committed');
  // B and C time out; B is the lowest-ranked on its side, sees only C, prepared: abort.
  c.fire('C', 'wait:');
  c.run(cut);
  c.fire('C', 'term:');
  c.fire('B', 'wait:');
  c.run(cut);
  c.fire('B', 'term:');
  c.run(cut);
  assert.equal(c.rm('B', 't1'), 'abort');
  assert.equal(c.rm('C', 't1'), 'abort');
});

// -------------------------------------------------------------- simulator

test('simulator: with crashes but no partitions, 3PC is atomic (300 seeds, zero violations, zero undecided)', () => {
  let commits = 0;
  let crashes = 0;
  for (let seed = 1; seed <= 300; seed++) {
    const req: SimRequest = {
      protocol: '3pc',
      workload: 'bank',
      txns: 40,
      seed,
      participants: 2 + (seed % 4),
      concurrency: 1 + (seed % 6),
      crashRate: [0.005, 0.02, 0.05][seed % 3]!,
      downtimeMeanMs: [20, 200, 1000][(seed >> 2) % 3]!,
      dup: 0.2,
    };
    const { report } = runSim(req);
    assert.equal(report.violationCount, 0, `seed ${seed}: ${JSON.stringify(report.violations)}`);
    assert.equal(report.undecided, 0, `seed ${seed}`);
    commits += report.committed;
    crashes += report.crashes;
  }
  assert.ok(commits > 5_000 && crashes > 1_000, `${commits} commits, ${crashes} crashes`);
});

test('simulator: 3PC does not block on a coordinator crash (lock hold does not grow with the downtime)', () => {
  const run = (downtimeMs: number) =>
    runSim({
      protocol: '3pc',
      workload: 'toy',
      txns: 60,
      seed: 3,
      failRates: [0, 0, 0],
      scenario: { kind: 'coordinator-crash', downtimeMs },
    }).report;
  const short = run(2_000);
  const long = run(10_000);
  for (const r of [short, long]) {
    assert.equal(r.violationCount, 0);
    assert.equal(r.undecided, 0);
  }
  assert.ok(long.lockHeldMs.max < 2_000, String(long.lockHeldMs.max));
  assert.ok(Math.abs(long.lockHeldMs.max - short.lockHeldMs.max) < 100);
});

/** The partition search: toy workload, partitions on, no write failures; seed is the only variable. */
const partitioned = (seed: number, trace = false): SimRequest => ({
  protocol: '3pc',
  workload: 'toy',
  txns: 30,
  seed,
  partitions: true,
  failRates: [0, 0, 0],
  trace,
});

/**
 * Found by the bounded search below (the first seed from 1). Reproduce with
 * `dtx sim --protocol 3pc --workload toy --txns 30 --seed 60 --partitions --fail-rates 0,0,0`.
 * If a change to the simulator moves it, the search test still passes:
 * record the seed it reports here.
 */
const violatingSeed = 60;

test(`simulator: partitions break 3PC — seed ${violatingSeed} commits t9 on A and B and aborts it on C`, () => {
  const { report, trace } = runSim(partitioned(violatingSeed, true));
  const atomicity = report.violations.filter((v) => v.checker === 'atomicity');
  assert.ok(atomicity.length > 0, JSON.stringify(report.violations));
  assert.equal(atomicity[0]!.txn, 't9');
  const ends = trace!.filter(
    (e) => e.kind === 'rm' && e.txn === 't9' && (e.state === 'committed' || e.state === 'aborted'),
  );
  const final = Object.fromEntries(
    ends.map((e) => [e.kind === 'rm' ? e.node : '', e.kind === 'rm' ? e.state : '']),
  );
  assert.deepEqual(final, { A: 'committed', B: 'committed', C: 'aborted' });
  // B committed from its pre-commit (the coordinator's COMMIT), A from B's
  // answer to its termination protocol, C aborted alone from `prepared`.
  const precommitted = trace!
    .filter((e) => e.kind === 'persist' && e.record === 'precommitted t9')
    .map((e) => e.kind === 'persist' && e.node);
  assert.deepEqual(precommitted, ['B']);
  assert.equal(report.undecided, 0);
});

test('simulator: a bounded search over partitioned seeds finds an atomicity violation', () => {
  let found = -1;
  for (let seed = 1; seed <= 300 && found < 0; seed++) {
    const { report } = runSim(partitioned(seed));
    if (report.violations.some((v) => v.checker === 'atomicity')) found = seed;
  }
  assert.ok(found > 0, 'no atomicity violation in 300 partitioned seeds');
  assert.ok(found <= violatingSeed, `found ${found}`);
});
