// What Paxos Commit costs per committed transaction on a real run, next to
// what the simulator counts and what Gray & Lamport give (section 4.3, "The
// Cost of Paxos Commit"), for `dtx bench --protocol paxos-commit` and the
// Paxos Commit row of `npm run bench:2pc`.
//
// Every figure is read from a counter of the running system, before and
// after the measured window, never derived from the protocol's description:
// - messages: the leader process's transport (votes, FORGET notices), the
//   acceptors' transports (their `/stats`: phase 2b), and the leader
//   process's in-process deliveries (PREPARE and COMMIT from the leader to
//   its RMs, which share its process), by message type;
// - forced writes: the acceptors' logs (records, and the fsyncs that carried
//   them: group commit puts several records in one), and the participants'
//   own forced writes, counted where the runtime calls them
//   (`branch.prepare()` is PREPARE TRANSACTION / XA PREPARE,
//   `commitPrepared` and `rollbackPrepared` COMMIT / ROLLBACK PREPARED).
//
// The simulator's and the paper's figures come from src/sim/paper-costs.ts
// (the same as `dtx compare`): a failure-free simulated run with every
// transaction over all N participants, and the paper's formulas.

import type { Branch, ResourceAdapter } from '../adapters/types.ts';
import type { AcceptorFanout } from '../protocol/paxos-commit/types.ts';
import type { PaxosCommitCoordinator } from '../runtime/paxos-commit/coordinator.ts';
import { type MessageCounts, type PaperCostRow, paperCostRow } from '../sim/paper-costs.ts';

/** Counts the participants' forced writes: every prepare, commit and rollback of a prepared branch. */
export class DbWriteCounter {
  prepares = 0;
  commits = 0;
  rollbacks = 0;

  /** `adapters`, each behind a proxy that counts those calls (everything else goes straight through). */
  wrap(adapters: Record<string, ResourceAdapter>): Record<string, ResourceAdapter> {
    return Object.fromEntries(Object.entries(adapters).map(([name, a]) => [name, this.wrapOne(a)]));
  }

  private wrapOne(adapter: ResourceAdapter): ResourceAdapter {
    return intercept(adapter, {
      begin: (call) => async (gid) => this.wrapBranch((await call(gid)) as Branch),
      commitPrepared: (call) => (gid) => {
        this.commits++;
        return call(gid);
      },
      rollbackPrepared: (call) => (gid) => {
        this.rollbacks++;
        return call(gid);
      },
    });
  }

  private wrapBranch(branch: Branch): Branch {
    return intercept(branch, {
      prepare: (call) => () => {
        this.prepares++;
        return call();
      },
    });
  }
}

type Method = (...args: unknown[]) => unknown;

/** `target` behind a proxy: the methods named in `around` replaced by what it makes of them (bound to `target`). */
function intercept<T extends object>(target: T, around: Record<string, (call: Method) => Method>): T {
  return new Proxy(target, {
    get(t, prop) {
      const value = Reflect.get(t, prop, t) as unknown;
      if (typeof value !== 'function') return value;
      const call = (value as Method).bind(t);
      const wrap = typeof prop === 'string' ? around[prop] : undefined;
      return wrap === undefined ? call : wrap(call);
    },
  });
}

/** The counters at one moment (they only grow). */
export interface PaxosCounters {
  /** Protocol messages sent over the network (leader process and acceptors), by type. */
  network: Record<string, number>;
  /** Protocol messages delivered inside the leader process (leader to its RMs and back, and to and from a hosted acceptor), by type. */
  local: Record<string, number>;
  /** Batches that carried the network's messages, FORGET notices included (a stream write or a POST each). */
  requests: number;
  acceptorRecords: number;
  acceptorFsyncs: number;
  dbPrepares: number;
  dbCommits: number;
  dbRollbacks: number;
}

function addInto(into: Record<string, number>, from: Record<string, number>): void {
  for (const [k, n] of Object.entries(from)) into[k] = (into[k] ?? 0) + n;
}

export async function readPaxosCounters(
  coordinator: PaxosCommitCoordinator,
  db: DbWriteCounter,
): Promise<PaxosCounters> {
  const acceptors = await coordinator.acceptorStats();
  const network: Record<string, number> = {};
  addInto(network, coordinator.messageStats.sentByType);
  for (const a of acceptors) addInto(network, a.sentByType);
  return {
    network,
    local: { ...coordinator.localMessagesByType },
    requests: coordinator.messageStats.batches + acceptors.reduce((n, a) => n + a.batches, 0),
    acceptorRecords: acceptors.reduce((n, a) => n + a.records, 0),
    acceptorFsyncs: acceptors.reduce((n, a) => n + a.flushes, 0),
    dbPrepares: db.prepares,
    dbCommits: db.commits,
    dbRollbacks: db.rollbacks,
  };
}

/** What a transaction looked like: its participants and the protocol's options. */
export interface PaxosShape {
  rms: number;
  F: number;
  faster: boolean;
  fanout: AcceptorFanout;
}

type Kinds = MessageCounts & { other: number };

export interface PaxosCosts {
  shape: PaxosShape;
  /** Committed transactions in the window; every figure below is per committed transaction. */
  committed: number;
  measured: {
    /** Protocol messages (no FORGET), by kind; `begin` is the caller's function call, not a message. */
    messages: number;
    byKind: Kinds;
    /** `byKind.other` by message type (ABORT, INQUIRY, PHASE1A...): what happened beyond the normal case. */
    otherByType: Record<string, number>;
    /** Of `messages`, those that crossed the network (HTTP); the rest stayed in the leader process. */
    overNetwork: number;
    /** The runtime's notices to the acceptors that a transaction is finished (not a protocol message). */
    forget: number;
    /** Batches (a stream write or a POST each) that carried the messages over the network and the FORGET notices. */
    requests: number;
    /** Before the outcome: the participants' prepares and the acceptors' records. */
    forcedWrites: number;
    acceptorRecords: number;
    /** The fsyncs that carried `acceptorRecords` (group commit merges records, also of other transactions). */
    acceptorFsyncs: number;
    /** After the outcome: the participants' commits (and rollbacks). */
    forcedWritesAfter: number;
  };
  simulator: {
    command: string;
    messages: number;
    byKind: MessageCounts;
    forcedWrites: number;
    forcedWritesAfter: number;
  };
  paper: PaperCostRow['paper'];
}

const kindOfType: Record<string, keyof MessageCounts> = {
  PREPARE: 'prepare',
  PHASE2A: 'phase2a',
  PHASE2B: 'phase2b',
  COMMIT: 'commit',
};

const round2 = (x: number) => Math.round(x * 100) / 100;

/** Per committed transaction between `before` and `after`, next to the simulator's and the paper's. */
export function paxosCosts(
  before: PaxosCounters,
  after: PaxosCounters,
  committed: number,
  shape: PaxosShape,
): PaxosCosts {
  const per = (x: number) => (committed === 0 ? 0 : round2(x / committed));
  const byKind: Kinds = { begin: 0, prepare: 0, phase2a: 0, phase2b: 0, commit: 0, other: 0 };
  const otherByType: Record<string, number> = {};
  let overNetwork = 0;
  let forget = 0;
  for (const where of ['network', 'local'] as const) {
    const types = new Set([...Object.keys(before[where]), ...Object.keys(after[where])]);
    for (const type of types) {
      const n = (after[where][type] ?? 0) - (before[where][type] ?? 0);
      if (type === 'FORGET') {
        forget += n;
        continue;
      }
      const kind = kindOfType[type] ?? 'other';
      byKind[kind] += n;
      if (kind === 'other' && n > 0) otherByType[type] = (otherByType[type] ?? 0) + n;
      if (where === 'network') overNetwork += n;
    }
  }
  const messages = Object.values(byKind).reduce((a, b) => a + b, 0);
  const acceptorRecords = after.acceptorRecords - before.acceptorRecords;
  const prepares = after.dbPrepares - before.dbPrepares;
  const row = paperCostRow(shape.rms, shape.F, shape.faster ? 'faster' : 'separate', shape.fanout);
  return {
    shape,
    committed,
    measured: {
      messages: per(messages),
      byKind: Object.fromEntries(Object.entries(byKind).map(([k, n]) => [k, per(n)])) as unknown as Kinds,
      otherByType: Object.fromEntries(Object.entries(otherByType).map(([k, n]) => [k, per(n)])),
      overNetwork: per(overNetwork),
      forget: per(forget),
      requests: per(after.requests - before.requests),
      forcedWrites: per(prepares + acceptorRecords),
      acceptorRecords: per(acceptorRecords),
      acceptorFsyncs: per(after.acceptorFsyncs - before.acceptorFsyncs),
      forcedWritesAfter: per(after.dbCommits - before.dbCommits + after.dbRollbacks - before.dbRollbacks),
    },
    simulator: {
      command: row.measured.command,
      messages: row.measured.messages,
      byKind: row.measured.byKind,
      forcedWrites: row.measured.forcedWrites,
      forcedWritesAfter: row.measured.forcedWritesAfter,
    },
    paper: row.paper,
  };
}

/** The comparison as a small table, one line per figure. */
export function paxosCostLines(c: PaxosCosts): string[] {
  const { measured: m, simulator: s, paper: p } = c;
  const f = (x: number) => String(round2(x));
  const rows: [string, string, string, string][] = [
    ['messages', f(m.messages), f(s.messages), `${p.messages} = ${p.messagesFormula}`],
    [
      '  begin (the caller asks to commit)',
      `${f(m.byKind.begin)} (a call)`,
      f(s.byKind.begin),
      f(p.byKind.begin),
    ],
    ['  prepare', f(m.byKind.prepare), f(s.byKind.prepare), f(p.byKind.prepare)],
    ['  phase 2a (votes)', f(m.byKind.phase2a), f(s.byKind.phase2a), f(p.byKind.phase2a)],
    ['  phase 2b', f(m.byKind.phase2b), f(s.byKind.phase2b), f(p.byKind.phase2b)],
    ['  commit', f(m.byKind.commit), f(s.byKind.commit), f(p.byKind.commit)],
    [
      `  other${
        Object.keys(m.otherByType).length === 0
          ? ''
          : ` (${Object.entries(m.otherByType)
              .map(([t, n]) => `${t} ${f(n)}`)
              .join(', ')})`
      }`,
      f(m.byKind.other),
      '0',
      '0',
    ],
    ['  of which over the network', f(m.overNetwork), '-', '-'],
    ['FORGET notices (runtime only)', f(m.forget), '-', '-'],
    ['batches carrying them (and FORGET)', f(m.requests), '-', '-'],
    [
      'forced writes before the outcome',
      f(m.forcedWrites),
      f(s.forcedWrites),
      `${p.forcedWrites} = ${p.forcedWritesFormula}`,
    ],
    ['  acceptor records', f(m.acceptorRecords), '-', '-'],
    ['  acceptor fsyncs (group commit)', f(m.acceptorFsyncs), '-', '-'],
    ['forced writes after (commits)', f(m.forcedWritesAfter), f(s.forcedWritesAfter), '-'],
  ];
  const head: [string, string, string, string] = ['per commit', 'real run', 'simulator', 'paper'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const fmt = (r: string[]) =>
    r.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ');
  return [
    `Paxos Commit costs per commit, N = ${c.shape.rms} RMs, F = ${c.shape.F}` +
      `${c.shape.faster ? ', faster' : ''}, votes to ${c.shape.fanout === 'quorum' ? 'F+1' : 'all 2F+1'} acceptors ` +
      `(${c.committed} commits; simulator: ${s.command}; paper: ${p.source})`,
    fmt(head),
    ...rows.map(fmt),
  ];
}
