// How the simulator meets a protocol core: which nodes the protocol needs, the
// role each of them plays, and what the checkers may read off its log records
// (which record makes a participant prepared, which one is a decision). The
// simulator knows nothing else about any protocol, so a new protocol plugs in
// here and every fault, checker and metric applies to it at once.

import type { Hlc } from '../protocol/common/hlc.ts';
import type { Effect, NodeId, Role } from '../protocol/common/types.ts';
import { defaultNaiveConfig, naiveCoordinator, naiveParticipant } from '../protocol/naive/naive.ts';
import { paxosInvariants } from '../protocol/paxos-commit/invariants.ts';
import { paxosCommitLayout } from '../protocol/paxos-commit/layout.ts';
import { compactPaxosCommitLog } from '../protocol/paxos-commit/log.ts';
import { type PaxosNodeConfig, type PaxosNodeState, paxosCommitNode } from '../protocol/paxos-commit/node.ts';
import type { AcceptorFanout, PaxosCommitMsg, PaxosCommitRecord } from '../protocol/paxos-commit/types.ts';
import { threePcCoordinator } from '../protocol/threepc/coordinator.ts';
import { compactThreePcLog } from '../protocol/threepc/log.ts';
import { threePcParticipant } from '../protocol/threepc/participant.ts';
import { defaultThreePcConfig, type ThreePcMsg, type ThreePcRecord } from '../protocol/threepc/types.ts';
import { twoPcCoordinator } from '../protocol/twopc/coordinator.ts';
import { compactTwoPcLog } from '../protocol/twopc/log.ts';
import { twoPcParticipant } from '../protocol/twopc/participant.ts';
import { defaultTwoPcConfig, type TwoPcMsg, type TwoPcRecord } from '../protocol/twopc/types.ts';
import type { Vote } from './checkers.ts';

// biome-ignore lint/suspicious/noExplicitAny: the simulator drives roles of every protocol through one port
export type AnyRole = Role<any, any, any, any>;

export interface NodeSpec {
  id: NodeId;
  kind: 'coordinator' | 'participant' | 'acceptor';
  role: AnyRole;
  config: unknown;
  /**
   * The node holds a consensus acceptor, whatever else it runs (Paxos
   * Commit's separate leader is acceptor 0): the fault bound counts it.
   */
  acceptor?: true;
}

export interface RecordInfo {
  /** Durable on a participant, this record makes it prepared (it may no longer abort on its own). */
  prepared?: boolean;
  /** Durable on a coordinator, this record is the decision. */
  decision?: 'commit' | 'abort';
}

export interface SimProtocol {
  name: ProtocolName;
  /**
   * False for naive commit: a partial outcome is that protocol's expected
   * result and is reported as `partial`, not as a checker violation.
   */
  atomic: boolean;
  /** Every non-participant node, first the one that takes client requests. */
  nodes(participants: readonly NodeId[]): NodeSpec[];
  participantRole: AnyRole;
  participantConfig: unknown;
  recordInfo(record: unknown): RecordInfo;
  /**
   * The message types that tell a participant to commit (or, in 3PC, after
   * which it may commit on its own): a step that sends one starts the
   * transaction's commit phase, which the commit fence of snapshot reads
   * holds (./commit-fence.ts).
   */
  commitTells: readonly string[];
  /** Participants send those too (3PC's termination protocol); otherwise only the other nodes do. */
  participantsTellCommit?: true;
  /** Transactions a participant's freshly recovered state considers in doubt. */
  inDoubt(participantState: unknown): Iterable<string>;
  /** True for the step at which a coordinator turns all YES votes into a decision. */
  isDecisionStep(effects: readonly Effect<unknown, unknown>[]): boolean;
  /**
   * A checkpoint: the records of `log` that recovery still needs, in order.
   * The simulator compacts long logs with it, as a real log is truncated
   * after a checkpoint; it must not change what `recover` rebuilds.
   */
  compact(kind: NodeSpec['kind'], log: readonly unknown[]): unknown[];
  /**
   * The protocol's own invariants over the states of the nodes that are up
   * (optionally only for one transaction), checked after every step; each
   * returned string is a violation.
   */
  invariants?(states: Iterable<unknown>, txn?: string): string[];
  /**
   * For consensus protocols: the votes (phase 2b) a message carries, so that
   * the `chosen` checker can keep every vote ever cast.
   */
  votes?(msg: unknown): Vote[];
  /** For consensus protocols: how many acceptor crashes at once the protocol is built to survive. */
  acceptorFaultsTolerated?: number;
  /**
   * The participant core votes read-only for a branch that wrote nothing and
   * leaves at PREPARE (2PC). Cores without it prepare such a branch like any other.
   */
  readOnlyVotes?: true;
  /**
   * Commit timestamps, for timestamp-ordered reads (`--reads timestamp`):
   * which message is a YES vote the driver stamps with the participant's
   * prepare timestamp (the core has no clock), and the commit timestamp a
   * COMMIT message or a decision record carries. Protocols without it refuse
   * timestamp reads.
   */
  timestamps?: {
    /** The transaction of a YES vote, else undefined. */
    yesVote(msg: unknown): string | undefined;
    /** The vote with its prepare timestamp. */
    withPrepareTs(msg: unknown, ts: Hlc): unknown;
    /** The commit timestamp a COMMIT message or a commit record carries, else undefined. */
    commitTs(msgOrRecord: unknown): Hlc | undefined;
  };
}

export const protocolNames = ['naive', '2pc', 'paxos-commit', '3pc'] as const;
export type ProtocolName = (typeof protocolNames)[number];

export function isProtocolName(name: string): name is ProtocolName {
  return (protocolNames as readonly string[]).includes(name);
}

/**
 * Sagas and TCC (src/protocol/saga, src/protocol/tcc) run in the saga world
 * (src/sim/branch/world.ts) on the `booking` workload, not in the commit world:
 * `runSim` and `runSwarm` dispatch on these names.
 */
export const sagaProtocolNames = ['saga', 'tcc'] as const;
export type SagaProtocolName = (typeof sagaProtocolNames)[number];

export function isSagaProtocolName(name: string): name is SagaProtocolName {
  return (sagaProtocolNames as readonly string[]).includes(name);
}

/**
 * The transactional outbox and idempotent inbox (src/protocol/outbox/plan.ts)
 * run in the outbox world (src/sim/outbox/world.ts).
 */
export const outboxProtocolNames = ['outbox'] as const;
export type OutboxProtocolName = (typeof outboxProtocolNames)[number];

export function isOutboxProtocolName(name: string): name is OutboxProtocolName {
  return (outboxProtocolNames as readonly string[]).includes(name);
}

const coordinatorId = 'coord';

/**
 * Protocol timeouts are tuned for round trips up to 10 ms (a vote timeout of
 * 100 ms is ten such round trips); on a slower network every one of them is
 * stretched in proportion, so that an 80 ms network does not time out every
 * transaction, and no more than that.
 */
export function timeScale(options: { rttMs?: number }): number {
  return Math.max(1, (options.rttMs ?? 1) / 10);
}

function scaled<C extends object>(defaults: C, options: ProtocolOptions): Partial<C> {
  const scale = timeScale(options);
  if (scale === 1) return {};
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(defaults))
    if (typeof v === 'number' && k.endsWith('Ms')) out[k] = v * scale;
  return out as Partial<C>;
}

function naive(options: ProtocolOptions): SimProtocol {
  const config = scaled(defaultNaiveConfig, options);
  return {
    name: 'naive',
    atomic: false,
    nodes: () => [{ id: coordinatorId, kind: 'coordinator', role: naiveCoordinator, config }],
    participantRole: naiveParticipant,
    participantConfig: config,
    recordInfo: () => ({}),
    commitTells: ['COMMIT'],
    inDoubt: () => [],
    // Nothing naive commit writes is read back: recovery starts empty.
    compact: () => [],
    // Naive commit has no decision to make: its first step already commits.
    isDecisionStep: (effects) => effects.some((e) => e.type === 'send'),
  };
}

function twoPc(options: ProtocolOptions): SimProtocol {
  const config = scaled(defaultTwoPcConfig, options);
  return {
    name: '2pc',
    atomic: true,
    nodes: () => [{ id: coordinatorId, kind: 'coordinator', role: twoPcCoordinator, config }],
    participantRole: twoPcParticipant,
    participantConfig: config,
    recordInfo(record) {
      const r = record as TwoPcRecord;
      if (r.type === 'prepared') return { prepared: true };
      if (r.type === 'commit') return { decision: 'commit' };
      return {};
    },
    commitTells: ['COMMIT'],
    inDoubt(state) {
      const s = state as { txns: Map<string, { phase: string }> };
      return [...s.txns].filter(([, t]) => t.phase === 'prepared').map(([txn]) => txn);
    },
    isDecisionStep: (effects) =>
      effects.some((e) => e.type === 'persist' && (e.record as TwoPcRecord).type === 'commit'),
    compact: (_kind, log) => compactTwoPcLog(log as TwoPcRecord[]),
    readOnlyVotes: true,
    timestamps: {
      yesVote: (msg) => {
        const m = msg as TwoPcMsg;
        return m.type === 'VOTE' && m.vote === 'yes' ? m.txn : undefined;
      },
      withPrepareTs: (msg, ts) => ({ ...(msg as TwoPcMsg), ts }),
      commitTs: (value) => {
        const v = value as TwoPcMsg | TwoPcRecord;
        return v.type === 'COMMIT' || v.type === 'commit' ? v.ts : undefined;
      },
    },
  };
}

/**
 * Paxos Commit (src/protocol/paxos-commit). Every node runs the composite
 * role; the layout decides which parts each has. With `colocated`, the
 * leader is the first participant: nodes() names it first (so that the
 * client's `begin` and the coordinator-crash scenario go to it) with the
 * participant's own role and config, and the world's node map keeps the one
 * participant node of that id. That relies on the world keying nodes by id,
 * and is a stand-in for real simulator support (see
 * docs/protocols/paxos-commit.md, "Co-located leader").
 */
function paxosCommit(options: ProtocolOptions): SimProtocol {
  const layoutOptions = {
    F: options.faults ?? 1,
    faster: options.faster ?? false,
    colocated: options.colocated ?? false,
    acceptorFanout: options.fanout ?? 'quorum',
    timeScale: timeScale(options),
  };
  // One object for every run, refilled by nodes() (which the world calls
  // first): a co-located layout depends on the participants, and a copy of
  // this protocol (`{...protocol}`) must still see the current layout.
  const rmConfig: PaxosNodeConfig = { ...paxosCommitLayout(['?'], layoutOptions).rmConfig };
  return {
    name: 'paxos-commit',
    atomic: true,
    nodes(participants) {
      const layout = paxosCommitLayout(participants, layoutOptions);
      Object.assign(rmConfig, layout.rmConfig);
      const servers = layout.servers.map(
        (s): NodeSpec => ({
          id: s.id,
          kind: s.id === layout.leader ? 'coordinator' : 'acceptor',
          role: paxosCommitNode,
          config: s.config,
          acceptor: true,
        }),
      );
      if (!layoutOptions.colocated) return servers;
      return [
        { id: layout.leader, kind: 'participant', role: paxosCommitNode, config: layout.rmConfig },
        ...servers,
      ];
    },
    participantRole: paxosCommitNode,
    participantConfig: rmConfig,
    recordInfo(record) {
      return (record as PaxosCommitRecord).type === 'prepared' ? { prepared: true } : {};
    },
    // With `faster`, RMs learn the outcome from the acceptors' phase 2b, past any fence: snapshot reads refuse it.
    commitTells: ['COMMIT'],
    inDoubt(state) {
      const rm = (state as PaxosNodeState).rm;
      return rm === null ? [] : [...rm.txns].filter(([, t]) => t.phase === 'prepared').map(([txn]) => txn);
    },
    // The leader's step that broadcasts COMMIT (or, in Faster Paxos Commit,
    // where it broadcasts nothing, tells the client) once every instance chose `prepared`.
    isDecisionStep: (effects) =>
      effects.some(
        (e) =>
          ((e.type === 'send' || e.type === 'sendAfterPersist') &&
            (e.msg as PaxosCommitMsg).type === 'COMMIT') ||
          (e.type === 'reportOutcome' && e.outcome === 'committed'),
      ),
    compact: (_kind, log) => compactPaxosCommitLog(log as PaxosCommitRecord[]),
    invariants: (states, txn) => paxosInvariants(states, txn),
    votes(msg) {
      const m = msg as PaxosCommitMsg;
      if (m.type !== 'PHASE2B') return [];
      return m.entries.map((e) => ({ txn: m.txn, instance: e.ins, ballot: e.bal, value: e.val }));
    },
    acceptorFaultsTolerated: layoutOptions.F,
  };
}

/** Three-phase commit (src/protocol/threepc): atomic only while no partition separates participants. */
function threePc(options: ProtocolOptions): SimProtocol {
  const config = scaled(defaultThreePcConfig, options);
  return {
    name: '3pc',
    atomic: true,
    nodes: () => [{ id: coordinatorId, kind: 'coordinator', role: threePcCoordinator, config }],
    participantRole: threePcParticipant,
    participantConfig: config,
    recordInfo: (record) => ((record as ThreePcRecord).type === 'prepared' ? { prepared: true } : {}),
    commitTells: ['PRE_COMMIT', 'COMMIT'],
    participantsTellCommit: true,
    inDoubt(state) {
      const s = state as { txns: Map<string, { phase: string }> };
      return [...s.txns].filter(([, t]) => t.phase !== 'working').map(([txn]) => txn);
    },
    isDecisionStep: (effects) =>
      effects.some((e) => e.type === 'send' && (e.msg as ThreePcMsg).type === 'PRE_COMMIT'),
    compact: (_kind, log) => compactThreePcLog(log as ThreePcRecord[]),
  };
}

/** Settings a protocol may take from the command line; each protocol reads the ones it knows. */
export interface ProtocolOptions {
  /** Network round trip, so that protocols can scale their timeouts to it. */
  rttMs?: number;
  /** Paxos Commit: acceptor failures tolerated (2F+1 acceptors). */
  faults?: number;
  /** Paxos Commit: acceptors send phase 2b to the RMs directly. */
  faster?: boolean;
  /** Paxos Commit: the leader runs on the initiating RM's node. */
  colocated?: boolean;
  /** Paxos Commit: RMs send their votes to F+1 acceptors (`quorum`, the default) or to all 2F+1. */
  fanout?: AcceptorFanout;
}

export function makeProtocol(name: ProtocolName, options: ProtocolOptions = {}): SimProtocol {
  switch (name) {
    case 'naive':
      return naive(options);
    case '2pc':
      return twoPc(options);
    case 'paxos-commit':
      return paxosCommit(options);
    case '3pc':
      return threePc(options);
  }
}
