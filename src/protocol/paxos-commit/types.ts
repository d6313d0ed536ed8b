// Messages, log records and settings of Paxos Commit (Gray & Lamport,
// "Consensus on Transaction Commit", ACM TODS 31(1), 2006; the TLA+ spec is
// tlaplus/Examples specifications/transaction_commit/PaxosCommit.tla). See
// ../../../docs/protocols/paxos-commit.md.
//
// One Paxos consensus instance per resource manager (RM) decides that RM's
// vote, `prepared` or `aborted`. An instance is named by its RM's node id;
// ballots are numbers: 0 belongs to the RM itself (its vote is a ballot-0
// phase 2a, so it needs no phase 1), and ballot b > 0 belongs to leader
// candidate `b mod candidates.length`. -1 means "nothing accepted".

import type { NodeId, TxnId } from '../common/types.ts';

export type PcValue = 'prepared' | 'aborted';
export type Ballot = number;

/** Ballot-0 is the RM's own; -1 is "none accepted" (the spec's bal = -1). */
export const rmBallot: Ballot = 0;
export const noBallot: Ballot = -1;

export interface Phase2aEntry {
  ins: NodeId;
  val: PcValue;
}

export interface Phase2bEntry {
  ins: NodeId;
  bal: Ballot;
  val: PcValue;
}

export interface Phase1bEntry {
  ins: NodeId;
  /** The last ballot this acceptor accepted in (or -1) and its value (or 'none'). */
  bal: Ballot;
  val: PcValue | 'none';
}

export type PaxosCommitMsg =
  /**
   * Leader → RMs: prepare. `participants` names every instance of the
   * transaction. `voteTo` (optional, set by a runtime that knows which
   * acceptors answer) orders the acceptors for the RM's ballot-0 vote with
   * the `quorum` fanout: the first F+1 get it (see `voteAcceptors`).
   */
  | { type: 'PREPARE'; txn: TxnId; participants: NodeId[]; client: NodeId; voteTo?: NodeId[] }
  /**
   * Phase 2a → acceptors. Ballot 0: an RM's vote for its own instance. Ballot
   * b > 0: a leader's proposals, bundled across instances. `leader` is where
   * the phase 2b goes; `participants` (when known) lets acceptors bundle and,
   * in Faster Paxos Commit, reach the RMs.
   */
  | {
      type: 'PHASE2A';
      txn: TxnId;
      bal: Ballot;
      entries: Phase2aEntry[];
      leader: NodeId;
      participants: NodeId[] | null;
      client: NodeId | null;
    }
  /** Acceptor → leader (and → RMs in Faster Paxos Commit): accepted, bundled across instances. */
  | { type: 'PHASE2B'; txn: TxnId; acc: NodeId; entries: Phase2bEntry[] }
  /** Leader candidate → acceptors: promise not to accept below `bal` in these instances. */
  | { type: 'PHASE1A'; txn: TxnId; bal: Ballot; instances: NodeId[] }
  /** Acceptor → candidate: promised `bal`; what each instance last accepted. */
  | { type: 'PHASE1B'; txn: TxnId; acc: NodeId; bal: Ballot; entries: Phase1bEntry[] }
  /** Acceptor → candidate: your ballot is below my promise `mbal` (pick a higher one). */
  | { type: 'REJECT'; txn: TxnId; acc: NodeId; bal: Ballot; mbal: Ballot }
  /** The decision → RMs. */
  | { type: 'COMMIT'; txn: TxnId }
  | { type: 'ABORT'; txn: TxnId }
  /** In-doubt RM → a leader candidate: what was decided? */
  | { type: 'INQUIRY'; txn: TxnId; participants: NodeId[]; client: NodeId | null };

/**
 * Log records. Forced: the RM's `prepared` (before its ballot-0 vote leaves),
 * `committed` (before it applies the work) and `aborted` when it had
 * prepared (before it discards the work); every acceptor state change `acc`
 * (before its phase 1b or 2b leaves); a candidate's `round` (before it uses
 * a ballot of that round, so that no ballot is ever used twice).
 */
export type PaxosCommitRecord =
  | { type: 'prepared'; txn: TxnId; participants: NodeId[]; leader: NodeId; client: NodeId }
  | { type: 'committed'; txn: TxnId }
  | { type: 'aborted'; txn: TxnId }
  | { type: 'acc'; txn: TxnId; ins: NodeId; mbal: Ballot; bal: Ballot; val: PcValue | 'none' }
  | { type: 'round'; round: number };

export const acceptorFanouts = ['quorum', 'all'] as const;
export type AcceptorFanout = (typeof acceptorFanouts)[number];

export interface PaxosCommitConfig {
  /** Acceptor failures tolerated; there are 2F+1 acceptors. F = 0 is two-phase commit. */
  F: number;
  /** The acceptors, 2F+1 of them. */
  acceptors: NodeId[];
  /**
   * The leader candidates, in ballot order: candidate i owns the ballots
   * b > 0 with b mod candidates.length = i. The first is the usual leader.
   */
  candidates: NodeId[];
  /** Faster Paxos Commit: acceptors send phase 2b to the RMs too, and the leader does not broadcast. */
  faster: boolean;
  /**
   * Where an RM's ballot-0 vote goes. `quorum` (Gray & Lamport's normal
   * case): to the first F+1 acceptors of `acceptors` only, a majority; when
   * one of them does not answer, the leader's timeout runs a higher ballot
   * with all 2F+1. `all`: to every acceptor, F more messages per RM, so that
   * any F+1 of them can choose the vote without a leader's ballot.
   */
  acceptorFanout: AcceptorFanout;
  /** How long the leader waits for every instance to be chosen before it acts (re-PREPARE, then phase 1). */
  voteTimeoutMs: number;
  /** How long a candidate's phase 1 + phase 2 attempt may take before it is retried or given up. */
  recoveryMs: number;
  /** How often an in-doubt RM asks a candidate (in rotation) for the outcome. */
  inquiryMs: number;
  /** How long an RM that has done work waits for PREPARE before it aborts on its own. */
  unvotedAbortMs: number;
  /** How long an acceptor holds ballot-0 phase 2b entries to bundle them before it sends what it has. */
  bundleMs: number;
  /** Decisions a candidate remembers to answer inquiries without running Paxos again. */
  decidedMax: number;
  /** Set by the driver at every start of the node; unused (ballots come from `round` records). */
  incarnation?: string;
}

export const defaultPaxosCommitConfig: PaxosCommitConfig = {
  F: 1,
  acceptors: [],
  candidates: [],
  faster: false,
  acceptorFanout: 'quorum',
  voteTimeoutMs: 100,
  recoveryMs: 40,
  inquiryMs: 50,
  unvotedAbortMs: 1000,
  bundleMs: 5,
  decidedMax: 10_000,
};

/** A value is chosen in an instance once F+1 acceptors (a majority of 2F+1) accepted it in one ballot. */
export const quorum = (config: Pick<PaxosCommitConfig, 'F'>): number => config.F + 1;

/**
 * The acceptors an RM's ballot-0 vote goes to: with the `quorum` fanout the
 * first F+1 in the configured order (the layout puts the leader's own
 * acceptor first, so its phase 2b never crosses the network), else all.
 */
export function voteAcceptors(
  config: Pick<PaxosCommitConfig, 'F' | 'acceptors' | 'acceptorFanout'>,
  order?: readonly NodeId[],
): readonly NodeId[] {
  if (config.acceptorFanout !== 'quorum') return config.acceptors;
  // Any F+1 acceptors will do: ballot 0 is the RM's alone and carries one value, so
  // which acceptors hold it changes only who must answer, never what is chosen.
  if (order !== undefined && validVoteOrder(config, order)) return order.slice(0, quorum(config));
  return config.acceptors.slice(0, quorum(config));
}

/** A leader's `voteTo`: at least F+1 of the configured acceptors, none twice (anything else is ignored). */
function validVoteOrder(
  config: Pick<PaxosCommitConfig, 'F' | 'acceptors'>,
  order: readonly NodeId[],
): boolean {
  return (
    order.length >= quorum(config) &&
    order.length <= config.acceptors.length &&
    new Set(order).size === order.length &&
    order.every((a) => config.acceptors.includes(a))
  );
}
