// Recovery re-applies every logged outcome, as a property of the Paxos Commit
// RM and the 3PC participant (the 2PC participant's is in
// ./twopc/properties.test.ts). A participant forces `committed` or `aborted`
// and only then commits or discards its work, so a crash can fall between the
// two (fsync returned, then the process died). Whatever the crash points, a
// participant that comes back with an outcome in its durable log must have
// that outcome applied by its resource manager at once: nothing else will
// ever apply it (it is no longer in doubt, so it asks nobody).
//
// The schedule: two participants run one transaction (committing, or
// aborting because one gives its work up); their log writes complete only on
// command, and random steps deliver messages, complete writes, fire timers,
// crash a participant (with or without its pending writes becoming durable)
// and recover it. Then faults stop, except that the participants drawn crash
// once more exactly in the window, and the cluster runs until nothing is left
// to do. Checked after every recovery, and at the end. On the cores before
// the fix, fast-check shrinks a failure to: commit, crash A in the window.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { Cluster, type ScriptProtocol } from '../support/script.ts';
import { paxosCommitProtocol, threePcProtocol } from '../support/script-cores.ts';

const participants = ['A', 'B'];
const txn = 't1';

interface Core {
  protocol: ScriptProtocol;
  /** The commands that create the nodes; the coordinator (or leader) is `coord`. */
  setup: string;
}

const cores: Record<string, Core> = {
  'paxos-commit': { protocol: paxosCommitProtocol, setup: 'paxos-commit A B' },
  threepc: { protocol: threePcProtocol, setup: 'coordinator coord\nparticipant A B' },
};

/** Kinds of steps, and how often each is picked (out of 100): mostly progress, some crashes. */
const weights = {
  deliver: 55,
  flush: 15,
  timeout: 6,
  crash: 6,
  'crash-after-flush': 10,
  recover: 8,
} as const;
type Kind = keyof typeof weights;
const kinds = Object.keys(weights) as Kind[];
const stepsArb = fc.array(fc.record({ weight: fc.nat(99), pick: fc.nat() }), {
  minLength: 5,
  maxLength: 100,
});

/** Crashes per run: enough to crash in and around the window, few enough to let the transaction finish. */
const crashesMax = 2;

function enabled(cl: Cluster, kind: Kind, crashes: number): string[] {
  const up = (id: string) => cl.node(id).up;
  switch (kind) {
    case 'deliver':
      return cl
        .undelivered()
        .filter((e) => up(e.to))
        .map((e) => `deliver ${e.from} ${e.to} ${e.text}`);
    case 'flush':
      return participants
        .filter((p) => up(p) && cl.pendingWrites(cl.node(p)).length > 0)
        .map((p) => `flush ${p}`);
    case 'timeout':
      // Not the unvoted-work timers: work given up before voting logs no outcome.
      return [...cl.nodes.values()]
        .filter((n) => n.up)
        .flatMap((n) =>
          [...n.timers.keys()].filter((t) => !t.includes('work:')).map((t) => `timeout ${n.id} ${t}`),
        );
    case 'crash':
    case 'crash-after-flush':
      if (crashes >= crashesMax) return [];
      return participants.filter(up).map((p) => `${kind} ${p}`);
    case 'recover':
      return participants.filter((p) => !up(p)).map((p) => `recover ${p}`);
  }
}

/** The outcome in `p`'s durable log for the transaction, if any. */
function loggedOutcome(cl: Cluster, p: string): 'committed' | 'aborted' | undefined {
  const r = cl
    .durableLog(cl.node(p))
    .find((w) => w.txn === txn && (w.type === 'committed' || w.type === 'aborted'));
  return r?.type as 'committed' | 'aborted' | undefined;
}

/** Rounds of the final phase (timers such as inquiries re-arm, so it needs a bound). */
const finishRoundsMax = 200;

class Run {
  readonly cluster: Cluster;
  readonly script: string[] = [];
  crashes = 0;
  /** Recoveries that found an outcome in the log, over every run. */
  static outcomesRecovered = 0;

  constructor(core: Core) {
    this.cluster = new Cluster(core.protocol);
    for (const line of core.setup.split('\n')) this.do(line);
  }

  do(command: string): void {
    this.script.push(command);
    this.cluster.run(command);
    if (command.startsWith('crash')) this.crashes++;
  }

  up(p: string): boolean {
    return this.cluster.node(p).up;
  }

  /** Recover `p`, and check that an outcome its log holds is applied at once. */
  recover(p: string): void {
    this.do(`recover ${p}`);
    const outcome = loggedOutcome(this.cluster, p);
    if (outcome === undefined) return;
    Run.outcomesRecovered++;
    assert.equal(
      this.cluster.rm(txn, p),
      outcome,
      `${p} recovered with ${outcome} logged:\n${this.script.join('\n')}`,
    );
  }

  /**
   * Faults stop, but each participant in `windowCrash` crashes once in the
   * window (its outcome record durable, its work not yet applied); the
   * cluster runs until nothing is left to do.
   */
  finish(windowCrash: Set<string>): void {
    const cl = this.cluster;
    for (const p of participants) if (!this.up(p)) this.recover(p);
    for (let round = 0; round < finishRoundsMax; round++) {
      const inWindow = participants.find(
        (p) =>
          windowCrash.has(p) &&
          cl
            .pendingWrites(cl.node(p))
            .some((w) => w.record.type === 'committed' || w.record.type === 'aborted'),
      );
      if (inWindow !== undefined) {
        windowCrash.delete(inWindow);
        this.do(`crash-after-flush ${inWindow}`);
        this.recover(inWindow);
        continue;
      }
      const flush = enabled(cl, 'flush', this.crashes);
      const deliver = enabled(cl, 'deliver', this.crashes);
      const timeout = enabled(cl, 'timeout', this.crashes);
      const next = flush[0] ?? deliver[0] ?? timeout[0];
      if (next === undefined) break;
      this.do(next);
    }
    for (const p of participants) {
      const outcome = loggedOutcome(cl, p);
      if (outcome !== undefined && cl.pendingWrites(cl.node(p)).length === 0)
        assert.equal(cl.rm(txn, p), outcome, `${p} has ${outcome} logged:\n${this.script.join('\n')}`);
    }
  }
}

for (const [name, core] of Object.entries(cores)) {
  test(`${name}: a participant that recovers with a logged outcome has it applied, wherever it crashed`, () => {
    Run.outcomesRecovered = 0;
    fc.assert(
      fc.property(fc.boolean(), stepsArb, fc.subarray(participants), (aborts, steps, windowCrash) => {
        const r = new Run(core);
        for (const p of participants) r.do(`executed ${p} ${txn} coord`);
        if (aborts) r.do(`wounded B ${txn}`);
        r.do(`hold ${participants.join(' ')}`);
        r.do(`begin coord ${txn} ${participants.join(' ')}`);
        for (const { weight, pick } of steps) {
          let w = weight;
          const kind = kinds.find((k) => (w -= weights[k]) < 0)!;
          const list = enabled(r.cluster, kind, r.crashes);
          if (list.length === 0) continue;
          const command = list[pick % list.length]!;
          if (kind === 'recover') r.recover(command.split(' ')[1]!);
          else r.do(command);
        }
        r.finish(new Set(windowCrash));
      }),
      { numRuns: 300, seed: 11 },
    );
    // The property is vacuous unless recoveries with an outcome logged happen.
    assert.ok(
      Run.outcomesRecovered > 50,
      `only ${Run.outcomesRecovered} recoveries found an outcome in the log`,
    );
  });
}
