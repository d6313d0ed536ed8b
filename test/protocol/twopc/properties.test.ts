// Property tests of two-phase commit (presumed abort) on random schedules: a
// coordinator and up to three participants driven through ../support/script.ts
// by a random interleaving of begins, work, deliveries (any message ever sent:
// duplicates, reordering and loss come for free), timer expiries, log writes
// completing or failing, and crashes followed by recovery from the durable log.
//
// The cluster checks on every step what the literature requires (see the
// header of ../support/script.ts): TCConsistent and the commit condition of
// Lamport's TCommit.tla; the forced writes of Mohan, Lindsay & Obermarck's
// presumed abort (a participant's YES leaves only after its `prepared` is
// durable, a coordinator's COMMIT only after its `commit` record is durable,
// an ACK only after `committed`); a reported outcome never changes. After the
// random phase, faults stop and the cluster is driven to quiescence, when
// every transaction must be decided everywhere (liveness) and the client's
// outcome must match the resource managers.
//
// A failing run prints the command script that reproduces it; paste it into a
// testdata/twopc/*.txt file and run with REWRITE=1 to see the trace.
//
// The same properties run against deliberately broken cores, which they must
// catch: a checker that cannot fail proves nothing.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import type { Effect } from '../../../src/protocol/common/types.ts';
import { twoPcCoordinator } from '../../../src/protocol/twopc/coordinator.ts';
import { twoPcParticipant } from '../../../src/protocol/twopc/participant.ts';
import { type AnyRole, Cluster, type ScriptProtocol } from '../../support/script.ts';
import { twoPcProtocol } from '../../support/script-cores.ts';

interface Setup {
  participants: number;
  /** For each transaction, which participants it spans (bit i: p(i+1)). */
  spans: number[];
  crashesMax: number;
  /**
   * Crash the coordinator the moment a commit record of its becomes durable,
   * before any COMMIT leaves (like the simulator's coordinator-crash
   * scenario): the decision then exists only in the log, a window a uniform
   * schedule rarely hits. (Participants are not crashed in that window: see
   * the third known issue in ./twopc-known-issues.test.ts.)
   */
  crashAtDecision: boolean;
}

const setupArb = (crashesMin: number): fc.Arbitrary<Setup> =>
  fc.integer({ min: 1, max: 3 }).chain((participants) =>
    fc.record({
      participants: fc.constant(participants),
      spans: fc.array(fc.integer({ min: 1, max: (1 << participants) - 1 }), { minLength: 1, maxLength: 2 }),
      crashesMax: fc.integer({ min: crashesMin, max: 3 }),
      crashAtDecision: fc.boolean(),
    }),
  );

/** Kinds of events, and how often each is picked (out of 100) when it is enabled. */
const weights = { client: 20, deliver: 40, flush: 16, timeout: 7, fail: 8, wound: 3, crash: 6 } as const;
type Kind = keyof typeof weights;
const kinds = Object.keys(weights) as Kind[];

interface Choice {
  weight: number;
  pick: number;
}

/** Steps of the random phase; each picks one of the events enabled at that point. */
const choicesArb = fc.array(fc.record({ weight: fc.nat(99), pick: fc.nat() }), {
  minLength: 10,
  maxLength: 80,
  size: 'max',
});

/** Rounds of the quiescence phase: deliver everything outstanding, else fire every timer. */
const drainRoundsMax = 60;

interface RunStats {
  committed: number;
  aborted: number;
  crashes: number;
  failedWrites: number;
}

class Run {
  readonly cluster: Cluster;
  readonly script: string[] = [];
  readonly txns: [string, string[]][];
  crashes = 0;
  failedWrites = 0;
  faults = true;

  constructor(
    protocol: ScriptProtocol,
    readonly setup: Setup,
  ) {
    this.cluster = new Cluster(protocol);
    const ps = Array.from({ length: setup.participants }, (_, i) => `p${i + 1}`);
    this.txns = setup.spans.map((mask, k) => [`t${k + 1}`, ps.filter((_, i) => mask & (1 << i))]);
    this.do('coordinator c');
    this.do(`participant ${ps.join(' ')}`);
    this.do(`hold c ${ps.join(' ')}`);
  }

  do(command: string): void {
    if (
      this.faults &&
      this.setup.crashAtDecision &&
      this.crashes < this.setup.crashesMax &&
      command === 'flush c'
    ) {
      const c = this.cluster.node('c');
      if (this.cluster.pendingWrites(c).some((w) => w.record.type === 'commit'))
        command = 'crash-after-flush c';
    }
    this.script.push(command);
    this.cluster.run(command);
    if (command.startsWith('crash')) this.crashes++;
    if (command.startsWith('persist-failed')) this.failedWrites++;
  }

  /** The commands enabled now, by kind. */
  enabled(): Record<Kind, string[]> {
    const cl = this.cluster;
    const up = (id: string) => cl.nodes.get(id)?.up === true;
    const cmds: Record<Kind, string[]> = {
      client: [],
      deliver: [],
      flush: [],
      timeout: [],
      fail: [],
      wound: [],
      crash: [],
    };
    for (const [txn, parts] of this.txns) {
      // Each transaction is begun once: clients do not reuse a transaction id
      // (./twopc-known-issues.test.ts shows what goes wrong when they do).
      if (!cl.begins.has(txn) && up('c')) cmds.client.push(`begin c ${txn} ${parts.join(' ')}`);
      for (const p of parts) {
        if (!up(p)) continue;
        const rm = cl.rm(txn, p);
        // Work usually writes something.
        if (rm === undefined)
          cmds.client.push(...Array(3).fill(`executed ${p} ${txn} c`), `executed ${p} ${txn} c read-only`);
        if (rm === 'working') cmds.wound.push(`wounded ${p} ${txn}`);
      }
    }
    for (const e of cl.network.values()) {
      if (!up(e.to)) continue;
      const d = `deliver ${e.from} ${e.to} ${e.text}`;
      // Favour what is still outstanding over duplicates.
      cmds.deliver.push(...(e.sent > e.delivered ? [d, d, d] : [d]));
    }
    for (const n of cl.nodes.values()) {
      if (!n.up) {
        cmds.crash.push(`recover ${n.id}`);
        continue;
      }
      for (const t of n.timers.keys()) cmds.timeout.push(`timeout ${n.id} ${t}`);
      const pending = cl.pendingWrites(n);
      if (pending.length > 0) cmds.flush.push(`flush ${n.id}`);
      for (const w of pending) cmds.fail.push(`persist-failed ${n.id} ${w.record.type} ${w.record.txn}`);
      if (this.crashes < this.setup.crashesMax) cmds.crash.push(`crash ${n.id}`);
    }
    return cmds;
  }

  /** Carry out one random step: a kind of event by weight, then one such event. */
  randomStep(choice: Choice): boolean {
    const cmds = this.enabled();
    let w = choice.weight;
    let kind = kinds.find((k) => (w -= weights[k]) < 0)!;
    if (cmds[kind].length === 0) kind = kinds.find((k) => cmds[k].length > 0) ?? kind;
    const list = cmds[kind];
    if (list.length === 0) return false;
    this.do(list[choice.pick % list.length]!);
    return true;
  }

  /** Faults stop: everyone restarts, writes complete, and the cluster runs until nothing is left to do. */
  drain(): void {
    const cl = this.cluster;
    this.faults = false;
    for (const n of cl.nodes.values()) if (!n.up) this.do(`recover ${n.id}`);
    this.do(`unhold ${[...cl.nodes.keys()].join(' ')}`);
    for (let round = 0; round < drainRoundsMax; round++) {
      const outstanding = cl.undelivered();
      if (outstanding.length > 0) {
        for (const e of outstanding) {
          while (e.delivered < e.sent) this.do(`deliver ${e.from} ${e.to} ${e.text}`);
        }
        continue;
      }
      const timers = [...cl.nodes.values()].flatMap((n) =>
        [...n.timers.keys()].map((t) => `timeout ${n.id} ${t}`),
      );
      if (timers.length === 0) return;
      for (const t of timers) {
        const [, id, timer] = t.split(' ');
        if (cl.nodes.get(id!)!.timers.has(timer!)) this.do(t);
      }
    }
    assert.fail(`not quiescent after ${drainRoundsMax} rounds`);
  }

  /** At quiescence: every transaction decided everywhere, and as the client was told. */
  checkFinal(): void {
    const cl = this.cluster;
    for (const [txn, parts] of this.txns) {
      const states = parts.map((p) => cl.rm(txn, p));
      for (const [i, s] of states.entries()) {
        assert.ok(s !== 'working' && s !== 'prepared', `liveness: ${parts[i]} is still ${s} in ${txn}`);
      }
      const outcome = cl.outcomes.get(txn);
      if (outcome === 'committed') {
        assert.ok(
          states.every((s) => s === 'committed' || s === 'left'),
          `${txn} reported committed but ${parts.map((p, i) => `${p}=${states[i]}`).join(' ')}`,
        );
      } else if (outcome === 'aborted') {
        assert.ok(!states.includes('committed'), `${txn} reported aborted but someone committed`);
      }
    }
  }
}

function runOnce(protocol: ScriptProtocol, setup: Setup, choices: Choice[], stats?: RunStats): void {
  const run = new Run(protocol, setup);
  try {
    for (const choice of choices) if (!run.randomStep(choice)) break;
    run.drain();
    run.checkFinal();
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    throw new Error(`${why}\nreproduce with this script:\n${run.script.join('\n')}\n----\n`, { cause: e });
  }
  if (stats !== undefined) {
    for (const o of run.cluster.outcomes.values()) {
      if (o === 'committed') stats.committed++;
      else stats.aborted++;
    }
    stats.crashes += run.crashes;
    stats.failedWrites += run.failedWrites;
  }
}

const numRuns = 400;

describe('2PC on random schedules', () => {
  test('safety on every step, then liveness and agreement with the client at quiescence', () => {
    const stats: RunStats = { committed: 0, aborted: 0, crashes: 0, failedWrites: 0 };
    fc.assert(
      fc.property(setupArb(0), choicesArb, (setup, choices) => runOnce(twoPcProtocol, setup, choices, stats)),
      { numRuns, includeErrorInReport: true },
    );
    // The schedules must actually reach the interesting states, or the property proves little.
    assert.ok(stats.committed >= numRuns / 20, `only ${stats.committed} commits`);
    assert.ok(stats.aborted >= numRuns / 20, `only ${stats.aborted} aborts`);
    assert.ok(stats.crashes >= numRuns / 4, `only ${stats.crashes} crashes`);
    assert.ok(stats.failedWrites >= numRuns / 4, `only ${stats.failedWrites} failed writes`);
  });
});

// ------------------------------------------------------------ broken cores

type Fx = Effect<unknown, unknown>;

function rewriting(role: AnyRole, rewrite: (effects: Fx[]) => Fx[], recover?: AnyRole['recover']): AnyRole {
  return {
    init: (self, config) => role.init(self, config),
    recover:
      recover ??
      ((self, config, log) => {
        const r = role.recover(self, config, log);
        return { state: r.state, effects: rewrite(r.effects) };
      }),
    step(state, input) {
      const r = role.step(state, input);
      return { state: r.state, effects: rewrite(r.effects) };
    },
  };
}

const eager = (effects: Fx[]): Fx[] =>
  effects.map((e) => (e.type === 'sendAfterPersist' ? { type: 'send', to: e.to, msg: e.msg } : e));

const broken: [string, ScriptProtocol][] = [
  [
    'a coordinator that sends COMMIT before its commit record is durable',
    { ...twoPcProtocol, coordinator: rewriting(twoPcCoordinator as AnyRole, eager) },
  ],
  [
    'a coordinator that does not force its commit record',
    {
      ...twoPcProtocol,
      coordinator: rewriting(twoPcCoordinator as AnyRole, (fx) =>
        fx.filter((e) => !(e.type === 'persist' && (e.record as { type: string }).type === 'commit')),
      ),
    },
  ],
  [
    'a participant that votes YES before its prepared record is durable',
    { ...twoPcProtocol, participant: rewriting(twoPcParticipant as AnyRole, eager) },
  ],
  [
    'a coordinator that forgets its commit records in a crash',
    {
      ...twoPcProtocol,
      coordinator: rewriting(
        twoPcCoordinator as AnyRole,
        (fx) => fx,
        (self, config) => ({ state: twoPcCoordinator.init(self, config as object), effects: [] }),
      ),
    },
  ],
  [
    'a participant that aborts on its own while in doubt',
    {
      ...twoPcProtocol,
      participant: rewriting(twoPcParticipant as AnyRole, (fx) =>
        fx.flatMap((e): Fx[] =>
          e.type === 'send' && (e.msg as { type: string }).type === 'INQUIRY'
            ? [
                {
                  type: 'resource',
                  txn: (e.msg as { txn: string }).txn,
                  action: 'abort',
                  afterPersist: false,
                },
              ]
            : [e],
        ),
      ),
    },
  ],
];

describe('2PC on random schedules: the properties catch broken cores', () => {
  for (const [name, protocol] of broken) {
    test(name, () => {
      const result = fc.check(
        fc.property(setupArb(1), choicesArb, (setup, choices) => runOnce(protocol, setup, choices)),
        { numRuns: 1000, endOnFailure: true },
      );
      assert.ok(result.failed, `${name}: not caught in ${result.numRuns} runs`);
    });
  }
});
