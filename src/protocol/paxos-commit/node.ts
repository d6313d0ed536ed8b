// One Paxos Commit node: any combination of the three roles — resource
// manager (./rm.ts), acceptor (./acceptor.ts), leader candidate
// (./leader.ts) — on one process, as Gray & Lamport place them in
// "Paxos versus Two-Phase Commit": with F = 0 and the one acceptor on the
// leader's node, Paxos Commit is two-phase commit; and the leader may run on
// the initiating RM's node.
//
// Owns: routing. Inputs go to the role they concern (by message type, timer
// prefix or record type); messages one role sends to the node itself are
// delivered to the other roles in the same step, and never touch the
// network. That in-process delivery is immediate even for a
// `sendAfterPersist`, which is sound because everything the receiving role
// sends or applies in consequence waits for the node's writes too: acceptor
// replies, phase 1a/2a, decisions and outcome reports are all after-persist,
// and the driver's ordering rule makes an after-persist effect wait for
// every write the node has issued so far (../common/types.ts). So a decision
// that rests on this node's own acceptance leaves only once that acceptance
// is durable.
//
// May not touch: clocks, I/O, randomness (see ../common/types.ts).

import { assert, unreachable } from '../common/assert.ts';
import type { Effect, Input, NodeId, Role, StepResult } from '../common/types.ts';
import { type AcceptorState, paxosAcceptor } from './acceptor.ts';
import { type CandidateState, paxosCandidate } from './leader.ts';
import { paxosRm, type RmState } from './rm.ts';
import type { PaxosCommitConfig, PaxosCommitMsg, PaxosCommitRecord } from './types.ts';

type Fx = Effect<PaxosCommitMsg, PaxosCommitRecord>;
type PaxosInput = Input<PaxosCommitMsg>;

export type PartName = 'rm' | 'acc' | 'lead';

export interface NodeParts {
  rm?: boolean;
  acceptor?: boolean;
  /** A leader candidate; only on nodes listed in `config.candidates`. */
  candidate?: boolean;
}

export interface PaxosNodeConfig extends Partial<PaxosCommitConfig> {
  parts: NodeParts;
}

export interface PaxosNodeState {
  kind: 'node';
  self: NodeId;
  rm: RmState | null;
  acceptor: AcceptorState | null;
  candidate: CandidateState | null;
}

/** In-process deliveries one step may cause, far above the few a real step needs. */
const deliveriesPerStepMax = 10_000;

// biome-ignore lint/suspicious/noExplicitAny: each part's role has its own state type
type AnyPartRole = Role<any, PaxosCommitMsg, PaxosCommitRecord, Partial<PaxosCommitConfig>>;

const roles: Record<PartName, AnyPartRole> = { rm: paxosRm, acc: paxosAcceptor, lead: paxosCandidate };

function partState(state: PaxosNodeState, part: PartName): unknown {
  return part === 'rm' ? state.rm : part === 'acc' ? state.acceptor : state.candidate;
}

// Routes as constants: a node routes every input it takes, so nothing is built per input.
const none: readonly PartName[] = [];
const toRm: readonly PartName[] = ['rm'];
const toAcceptor: readonly PartName[] = ['acc'];
const toLeader: readonly PartName[] = ['lead'];
const toLeaderAndRm: readonly PartName[] = ['lead', 'rm'];
const toPart: Record<PartName, readonly PartName[]> = { rm: toRm, acc: toAcceptor, lead: toLeader };

/** Which parts an input concerns, in delivery order (a node delivers it to those it has). */
function route(input: PaxosInput): readonly PartName[] {
  switch (input.type) {
    case 'begin':
      return toLeader;
    case 'executed':
    case 'wounded':
      return toRm;
    case 'timeout': {
      const slash = input.timer.indexOf('/');
      const part = input.timer.slice(0, Math.max(slash, 0)) as PartName;
      return slash < 0 || !(part in roles) ? none : toPart[part];
    }
    case 'persistFailed': {
      const r = input.record as PaxosCommitRecord;
      return r.type === 'acc' ? toAcceptor : r.type === 'round' ? toLeader : toRm;
    }
    case 'receive': {
      const m = input.msg;
      switch (m.type) {
        case 'PREPARE':
        case 'COMMIT':
        case 'ABORT':
          return toRm;
        case 'PHASE1A':
        case 'PHASE2A':
          return toAcceptor;
        case 'PHASE1B':
        case 'REJECT':
        case 'INQUIRY':
          return toLeader;
        case 'PHASE2B':
          return toLeaderAndRm;
        default:
          return unreachable(m, 'message');
      }
    }
    default:
      return unreachable(input, 'input');
  }
}

/** The input as its part sees it: a timer loses the `<part>/` prefix the node gave it. */
function partInput(input: PaxosInput): PaxosInput {
  return input.type === 'timeout'
    ? { type: 'timeout', timer: input.timer.slice(input.timer.indexOf('/') + 1) }
    : input;
}

/**
 * One step's effects as they leave the node: what a part sends to the node
 * itself waits in `inbox` for in-process delivery, and timers get the part's
 * prefix.
 */
interface NodeStep {
  out: Fx[];
  inbox: PaxosInput[];
}

function take(state: PaxosNodeState, step: NodeStep, part: PartName, effects: readonly Fx[]): void {
  for (const e of effects) {
    if ((e.type === 'send' || e.type === 'sendAfterPersist') && e.to === state.self) {
      step.inbox.push({ type: 'receive', from: state.self, msg: e.msg });
    } else if (e.type === 'setTimer' || e.type === 'cancelTimer') {
      step.out.push({ ...e, timer: `${part}/${e.timer}` });
    } else {
      step.out.push(e);
    }
  }
}

/** Delivers `input` to every part of the node it concerns, in route order. */
function deliver(state: PaxosNodeState, step: NodeStep, input: PaxosInput): void {
  const parts = route(input);
  if (parts.length === 0) return;
  const i = partInput(input);
  for (const part of parts) {
    const ps = partState(state, part);
    if (ps !== null) take(state, step, part, roles[part].step(ps, i).effects);
  }
}

/** Runs every in-process delivery the step caused (and those they cause); returns the node's effects. */
function settle(state: PaxosNodeState, step: NodeStep): Fx[] {
  let deliveries = 0;
  while (step.inbox.length > 0) {
    assert(++deliveries <= deliveriesPerStepMax, `${state.self}: in-process deliveries do not settle`);
    deliver(state, step, step.inbox.shift()!);
  }
  return step.out;
}

function partsOf(self: NodeId, config: PaxosNodeConfig): NodeParts {
  const { parts } = config;
  return { ...parts, candidate: parts.candidate === true && (config.candidates ?? []).includes(self) };
}

export const paxosCommitNode: Role<PaxosNodeState, PaxosCommitMsg, PaxosCommitRecord, PaxosNodeConfig> = {
  init(self, config) {
    const parts = partsOf(self, config);
    return {
      kind: 'node',
      self,
      rm: parts.rm ? paxosRm.init(self, config) : null,
      acceptor: parts.acceptor ? paxosAcceptor.init(self, config) : null,
      candidate: parts.candidate ? paxosCandidate.init(self, config) : null,
    };
  },

  /** Each part rebuilds itself from the records it wrote (each ignores the others'). */
  recover(self, config, log): StepResult<PaxosNodeState, PaxosCommitMsg, PaxosCommitRecord> {
    const parts = partsOf(self, config);
    const state: PaxosNodeState = { kind: 'node', self, rm: null, acceptor: null, candidate: null };
    const step: NodeStep = { out: [], inbox: [] };
    if (parts.acceptor) {
      const r = paxosAcceptor.recover(self, config, log);
      state.acceptor = r.state;
      take(state, step, 'acc', r.effects);
    }
    if (parts.candidate) {
      const r = paxosCandidate.recover(self, config, log);
      state.candidate = r.state;
      take(state, step, 'lead', r.effects);
    }
    if (parts.rm) {
      const r = paxosRm.recover(self, config, log);
      state.rm = r.state;
      take(state, step, 'rm', r.effects);
    }
    return { state, effects: settle(state, step) };
  },

  step(state, input) {
    const step: NodeStep = { out: [], inbox: [] };
    deliver(state, step, input);
    return { state, effects: settle(state, step) };
  },
};
