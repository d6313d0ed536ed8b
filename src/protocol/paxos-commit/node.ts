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

/** Which parts an input concerns (those present on this node). */
function route(state: PaxosNodeState, input: PaxosInput): Array<[PartName, PaxosInput]> {
  const to = (parts: PartName[], i: PaxosInput = input): Array<[PartName, PaxosInput]> =>
    parts.filter((p) => partState(state, p) !== null).map((p) => [p, i]);
  switch (input.type) {
    case 'begin':
      return to(['lead']);
    case 'executed':
    case 'wounded':
      return to(['rm']);
    case 'timeout': {
      const slash = input.timer.indexOf('/');
      const part = input.timer.slice(0, Math.max(slash, 0)) as PartName;
      if (slash < 0 || !(part in roles)) return [];
      return to([part], { type: 'timeout', timer: input.timer.slice(slash + 1) });
    }
    case 'persistFailed': {
      const r = input.record as PaxosCommitRecord;
      return to([r.type === 'acc' ? 'acc' : r.type === 'round' ? 'lead' : 'rm']);
    }
    case 'receive': {
      const m = input.msg;
      switch (m.type) {
        case 'PREPARE':
        case 'COMMIT':
        case 'ABORT':
          return to(['rm']);
        case 'PHASE1A':
        case 'PHASE2A':
          return to(['acc']);
        case 'PHASE1B':
        case 'REJECT':
        case 'INQUIRY':
          return to(['lead']);
        case 'PHASE2B':
          return to(['lead', 'rm']);
        default:
          return unreachable(m, 'message');
      }
    }
    default:
      return unreachable(input, 'input');
  }
}

/** Runs `first` and every in-process delivery it causes; returns the node's effects. */
function settle(state: PaxosNodeState, first: Array<[PartName, Fx[]]>): Fx[] {
  const out: Fx[] = [];
  const inbox: PaxosInput[] = [];
  let deliveries = 0;
  const take = (part: PartName, effects: Fx[]) => {
    for (const e of effects) {
      if ((e.type === 'send' || e.type === 'sendAfterPersist') && e.to === state.self) {
        inbox.push({ type: 'receive', from: state.self, msg: e.msg });
      } else if (e.type === 'setTimer' || e.type === 'cancelTimer') {
        out.push({ ...e, timer: `${part}/${e.timer}` });
      } else {
        out.push(e);
      }
    }
  };
  for (const [part, effects] of first) take(part, effects);
  while (inbox.length > 0) {
    assert(++deliveries <= deliveriesPerStepMax, `${state.self}: in-process deliveries do not settle`);
    const input = inbox.shift()!;
    for (const [part, i] of route(state, input))
      take(part, roles[part].step(partState(state, part), i).effects);
  }
  return out;
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
    const first: Array<[PartName, Fx[]]> = [];
    if (parts.acceptor) {
      const r = paxosAcceptor.recover(self, config, log);
      state.acceptor = r.state;
      first.push(['acc', r.effects]);
    }
    if (parts.candidate) {
      const r = paxosCandidate.recover(self, config, log);
      state.candidate = r.state;
      first.push(['lead', r.effects]);
    }
    if (parts.rm) {
      const r = paxosRm.recover(self, config, log);
      state.rm = r.state;
      first.push(['rm', r.effects]);
    }
    return { state, effects: settle(state, first) };
  },

  step(state, input) {
    const first: Array<[PartName, Fx[]]> = route(state, input).map(([part, i]) => [
      part,
      roles[part].step(partState(state, part), i).effects,
    ]);
    return { state, effects: settle(state, first) };
  },
};
