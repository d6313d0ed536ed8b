// Paxos Commit's cost, the paper's count next to dtx's measured one.
//
// Gray & Lamport ("Consensus on Transaction Commit", ACM TODS 31(1), 2006,
// section 4.3, "The Cost of Paxos Commit") count, for the failure-free normal
// case of a committing transaction with N RMs and F tolerated faults, the
// messages that cross between nodes and the writes to stable storage:
//
// - leader and acceptors on nodes of their own: BeginCommit 1, Prepare N-1
//   (the first RM prepared before it sent BeginCommit), phase 2a N(F+1) (each
//   RM's vote to F+1 acceptors), phase 2b F+1 (one bundle per acceptor),
//   Commit N: (N+1)(F+3)-2 messages;
// - co-located: each acceptor on an RM's node and the leader on the first
//   RM's, so BeginCommit, Commit to the first RM, the first RM's vote to the
//   leader's acceptor, that acceptor's phase 2b and F more votes (from the RMs
//   that host the other F acceptors) stay on their node: N(F+3)-3 messages;
// - Faster Paxos Commit: the acceptors send phase 2b to the N RMs, and the
//   leader sends no Commit: N(2F+3) messages (separate placement);
// - writes, in all three: N+F+1 (each RM's prepared record; each of the F+1
//   acceptors writes the votes of all instances once).
//
// The measured side runs the simulator failure-free, one transaction at a
// time, every transaction over all N participants (`dtx sim --protocol
// paxos-commit --workload bank --participants N --every-participant
// --concurrency 1 --fail-rates 0,...`), and counts what the world actually
// sent (its trace) and forced, per committed transaction. dtx's own
// expected count per message kind is derived next to the paper's, with the
// reason for every kind where they differ: dtx's placements are not exactly
// the paper's (its client, not an RM, asks the leader to commit; its
// co-located layout does not put acceptors on RM nodes), and a dtx acceptor
// forces each instance's state as its vote arrives. Nothing is adjusted to
// agree: the test (test/sim/paper-costs.test.ts) checks the measured counts
// against dtx's derivation everywhere and against the paper where they agree.

import type { AcceptorFanout } from '../protocol/paxos-commit/types.ts';
import type { TraceEvent } from './commit-world.ts';
import { runSim, type SimRequest } from './run.ts';
import { simCommand } from './sim-flags.ts';

export const paperPlacements = ['separate', 'colocated', 'faster'] as const;
export type PaperPlacement = (typeof paperPlacements)[number];

/** The messages of the normal case, by kind (BeginCommit is the client's commit request in dtx). */
export interface MessageCounts {
  begin: number;
  prepare: number;
  phase2a: number;
  phase2b: number;
  commit: number;
}

const kinds = ['begin', 'prepare', 'phase2a', 'phase2b', 'commit'] as const;
type Kind = (typeof kinds)[number];

export interface PaperCostRow {
  rms: number;
  F: number;
  placement: PaperPlacement;
  fanout: AcceptorFanout;
  paper: {
    source: string;
    messagesFormula: string;
    messages: number;
    byKind: MessageCounts;
    forcedWritesFormula: string;
    forcedWrites: number;
  };
  /** What dtx's design sends and forces, derived kind by kind. */
  dtx: { messages: number; byKind: MessageCounts; forcedWrites: number };
  measured: {
    /** The `dtx sim` command of the measuring run. */
    command: string;
    committed: number;
    messages: number;
    byKind: MessageCounts;
    /** Protocol messages of any other kind (retransmissions, inquiries): 0 in a failure-free run. */
    otherMessages: number;
    /** Forced writes before the outcome is known (RMs' prepared, acceptors' state) — what the paper counts. */
    forcedWrites: number;
    /** Forced writes after it: each RM's committed record (and anything else). */
    forcedWritesAfter: number;
  };
  /** measured == paper. */
  agrees: { messages: boolean; forcedWrites: boolean };
  /** measured == dtx's derivation, kind by kind: false means the explanation below is wrong. */
  matchesDerivation: boolean;
  /** Why dtx's count differs from the paper's, one line per kind that differs. */
  differences: string[];
}

const source = 'Gray & Lamport 2006, section 4.3';

function total(c: MessageCounts): number {
  return kinds.reduce((sum, k) => sum + c[k], 0);
}

/** The paper's count, by kind, for its placement (see the module comment). */
function paperCount(N: number, F: number, placement: PaperPlacement): PaperCostRow['paper'] {
  const writes = { forcedWritesFormula: 'N+F+1', forcedWrites: N + F + 1 };
  switch (placement) {
    case 'separate':
      return {
        source,
        messagesFormula: '(N+1)(F+3)-2',
        messages: (N + 1) * (F + 3) - 2,
        byKind: { begin: 1, prepare: N - 1, phase2a: N * (F + 1), phase2b: F + 1, commit: N },
        ...writes,
      };
    case 'colocated':
      return {
        source: `${source} (acceptors on RM nodes, leader on the first RM's)`,
        messagesFormula: 'N(F+3)-3',
        messages: N * (F + 3) - 3,
        byKind: { begin: 0, prepare: N - 1, phase2a: (N - 1) * (F + 1), phase2b: F, commit: N - 1 },
        ...writes,
      };
    case 'faster':
      return {
        source: `${source} (Faster Paxos Commit)`,
        messagesFormula: 'N(2F+3)',
        messages: N * (2 * F + 3),
        byKind: { begin: 1, prepare: N - 1, phase2a: N * (F + 1), phase2b: N * (F + 1), commit: 0 },
        ...writes,
      };
  }
}

/**
 * dtx's count, by kind, for the layouts of src/protocol/paxos-commit/layout.ts
 * (separate: the leader on `coord`, which is also acceptor 0; co-located: the
 * leader on the first RM, the acceptors on nodes of their own), with the
 * reason for each kind that differs from the paper.
 */
function dtxCount(
  N: number,
  F: number,
  placement: PaperPlacement,
  fanout: AcceptorFanout,
): { byKind: MessageCounts; forcedWrites: number; why: Partial<Record<Kind | 'writes', string>> } {
  const voters = fanout === 'quorum' ? F + 1 : 2 * F + 1;
  const why: Partial<Record<Kind | 'writes', string>> = {
    writes:
      "a dtx acceptor forces each instance's state when that RM's vote arrives, N records at each of the " +
      `${fanout === 'quorum' ? 'F+1' : '2F+1'} acceptors that get the votes, where the paper's writes all ` +
      "instances at once; the RMs' N committed records come after the outcome and are counted apart",
  };
  if (fanout === 'all') why.phase2a = 'every vote goes to all 2F+1 acceptors (--fanout all), not F+1';
  const phase2a = N * voters;
  if (placement === 'colocated') {
    why.begin =
      "the client's commit request reaches the leader over the network (the paper's first RM is on the leader's node)";
    why.phase2a ??= "dtx's acceptors have nodes of their own, so no vote stays on an RM's node";
    why.phase2b = "no acceptor runs on the leader's node, so every phase 2b crosses the network";
    return {
      byKind: { begin: 1, prepare: N - 1, phase2a, phase2b: voters, commit: N - 1 },
      forcedWrites: N + N * voters,
      why,
    };
  }
  why.prepare =
    "the leader asks all N RMs: dtx's client, not an RM, asks to commit, so no RM has prepared before";
  if (placement === 'separate') {
    why.phase2b =
      "acceptor 0 runs on the leader's node (coord), so its phase 2b stays there; the paper's basic count has no acceptor there" +
      (fanout === 'all' ? '; every other acceptor has the votes and answers too' : '');
    return {
      byKind: { begin: 1, prepare: N, phase2a, phase2b: voters - 1, commit: N },
      forcedWrites: N + N * voters,
      why,
    };
  }
  // Faster: acceptor 0 (on coord) tells the N RMs; every other acceptor that
  // has the votes tells the N RMs and the leader, which answers the client.
  why.phase2b =
    'the acceptors also send phase 2b to the leader, which answers the client (acceptor 0 is on its node)';
  return {
    byKind: { begin: 1, prepare: N, phase2a, phase2b: voters * N + (voters - 1), commit: 0 },
    forcedWrites: N + N * voters,
    why,
  };
}

const protocolKinds: Record<string, Kind> = {
  PREPARE: 'prepare',
  PHASE2A: 'phase2a',
  PHASE2B: 'phase2b',
  COMMIT: 'commit',
};

/** Transactions per measuring run: enough that a per-transaction count is not one lucky run. */
const measuredTxns = 12;

function measure(N: number, F: number, placement: PaperPlacement, fanout: AcceptorFanout) {
  const req: SimRequest = {
    protocol: 'paxos-commit',
    protocolOptions: {
      faults: F,
      faster: placement === 'faster',
      colocated: placement === 'colocated',
      fanout,
    },
    workload: 'bank',
    participants: N,
    everyParticipant: true,
    concurrency: 1,
    txns: measuredTxns,
    seed: 1,
    failRates: Array.from({ length: N }, () => 0),
  };
  const { report, trace, world } = runSim({ ...req, trace: true });
  const sends = (trace ?? []).filter((e): e is Extract<TraceEvent, { kind: 'send' }> => e.kind === 'send');
  const byKind: MessageCounts = { begin: 0, prepare: 0, phase2a: 0, phase2b: 0, commit: 0 };
  for (const e of sends) {
    const type = e.msg.split(' ')[0]!;
    const kind = type === 'begin' ? 'begin' : protocolKinds[type];
    if (kind !== undefined) byKind[kind]++;
  }
  const forced = (trace ?? []).filter(
    (e): e is Extract<TraceEvent, { kind: 'persist' }> => e.kind === 'persist' && e.force,
  );
  const before = forced.filter((e) => /^(prepared|acc) /.test(e.record)).length;
  const n = report.committed;
  const per = (x: number) => (n === 0 ? 0 : x / n);
  const known = byKind.prepare + byKind.phase2a + byKind.phase2b + byKind.commit;
  return {
    command: simCommand(req),
    committed: n,
    byKind: Object.fromEntries(kinds.map((k) => [k, per(byKind[k])])) as unknown as MessageCounts,
    messages: per(byKind.begin + world.metrics.protocolMessages),
    otherMessages: per(world.metrics.protocolMessages - known),
    forcedWrites: per(before),
    forcedWritesAfter: per(world.metrics.forcedWrites - before),
  };
}

export function paperCostRow(
  N: number,
  F: number,
  placement: PaperPlacement,
  fanout: AcceptorFanout,
): PaperCostRow {
  const paper = paperCount(N, F, placement);
  const dtx = dtxCount(N, F, placement, fanout);
  const measured = measure(N, F, placement, fanout);
  const differences: string[] = [];
  for (const k of kinds) {
    if (dtx.byKind[k] !== paper.byKind[k])
      differences.push(`${k}: paper ${paper.byKind[k]}, dtx ${dtx.byKind[k]}: ${dtx.why[k] ?? ''}`.trim());
  }
  if (dtx.forcedWrites !== paper.forcedWrites)
    differences.push(
      `forced writes: paper ${paper.forcedWrites}, dtx ${dtx.forcedWrites}: ${dtx.why.writes}`,
    );
  return {
    rms: N,
    F,
    placement,
    fanout,
    paper,
    dtx: { messages: total(dtx.byKind), byKind: dtx.byKind, forcedWrites: dtx.forcedWrites },
    measured,
    agrees: {
      messages: measured.messages === paper.messages,
      forcedWrites: measured.forcedWrites === paper.forcedWrites,
    },
    matchesDerivation:
      kinds.every((k) => measured.byKind[k] === dtx.byKind[k]) &&
      measured.otherMessages === 0 &&
      measured.forcedWrites === dtx.forcedWrites,
    differences,
  };
}

/** The paper's comparison grid: N = 3 and 5 RMs, F = 1 and 2, each placement. */
export function paperCostRows(fanout: AcceptorFanout = 'quorum'): PaperCostRow[] {
  const rows: PaperCostRow[] = [];
  for (const placement of paperPlacements)
    for (const N of [3, 5]) for (const F of [1, 2]) rows.push(paperCostRow(N, F, placement, fanout));
  return rows;
}
