// The Paxos Commit acceptor (Gray & Lamport 2006, section "Paxos Commit"; PaxosCommit.tla's
// Phase1b and Phase2b actions).
//
// Owns: for every instance (one per RM of a transaction) the triple the spec
// calls aState[ins][acc]: `mbal`, the highest ballot it promised; `bal` and
// `val`, the last ballot it accepted in and the value. Every change is forced
// to the log (`acc` record) before the phase 1b or 2b that reports it leaves
// (sendAfterPersist): an acceptor that forgot a promise or an acceptance in a
// crash could let two values be chosen.
//
// Phase 2b messages for the RMs' ballot-0 votes are bundled per transaction:
// the acceptor holds them until it has a vote from every participant (the
// RMs' phase 2a messages name them), or an `aborted` vote (which alone decides
// the transaction), or `bundleMs` has passed. Phase 2b for a leader's ballot
// answers that leader's (already bundled) phase 2a at once.
//
// Invariants asserted after every step that touches an instance: bal <= mbal;
// val is 'none' exactly when bal is -1; one value per (instance, ballot).
//
// May not touch: clocks, I/O, randomness (see ../common/types.ts).

import { assert, unreachable } from '../common/assert.ts';
import type { Effect, Input, NodeId, Role, StepResult, TxnId } from '../common/types.ts';
import {
  type Ballot,
  defaultPaxosCommitConfig,
  noBallot,
  type PaxosCommitConfig,
  type PaxosCommitMsg,
  type PaxosCommitRecord,
  type PcValue,
  type Phase1bEntry,
  type Phase2bEntry,
  rmBallot,
} from './types.ts';

type Fx = Effect<PaxosCommitMsg, PaxosCommitRecord>;
type Msg<T extends PaxosCommitMsg['type']> = Extract<PaxosCommitMsg, { type: T }>;

export interface AcceptorInstance {
  mbal: Ballot;
  bal: Ballot;
  val: PcValue | 'none';
}

export interface AcceptorTxn {
  instances: Map<NodeId, AcceptorInstance>;
  /** Every instance of the transaction, once some phase 2a named them. */
  participants: NodeId[] | null;
  /** Where ballot-0 phase 2b goes: the leader the RMs named. */
  leader: NodeId | null;
  /** Ballot-0 phase 2b entries not sent yet (bundling). */
  pending: Phase2bEntry[];
}

export interface AcceptorState {
  kind: 'acceptor';
  self: NodeId;
  config: PaxosCommitConfig;
  txns: Map<TxnId, AcceptorTxn>;
}

const bundleTimer = (txn: TxnId) => `bundle:${txn}`;
const timerTxn = (timer: string) => timer.slice(timer.indexOf(':') + 1);

/** The spec's initial state: mbal 0, nothing accepted. */
const fresh = (): AcceptorInstance => ({ mbal: 0, bal: noBallot, val: 'none' });

export function checkAcceptorInstance(txn: TxnId, ins: NodeId, a: AcceptorInstance): void {
  assert(a.bal <= a.mbal, `acceptor ${txn}/${ins}: bal ${a.bal} > mbal ${a.mbal}`);
  assert(
    (a.val === 'none') === (a.bal === noBallot),
    `acceptor ${txn}/${ins}: val ${a.val} with bal ${a.bal}`,
  );
}

function txnOf(state: AcceptorState, txn: TxnId): AcceptorTxn {
  let t = state.txns.get(txn);
  if (t === undefined) {
    t = { instances: new Map(), participants: null, leader: null, pending: [] };
    state.txns.set(txn, t);
  }
  return t;
}

function instanceOf(t: AcceptorTxn, ins: NodeId): AcceptorInstance {
  let a = t.instances.get(ins);
  if (a === undefined) {
    a = fresh();
    t.instances.set(ins, a);
  }
  return a;
}

function record(txn: TxnId, ins: NodeId, a: AcceptorInstance, fx: Fx[]): void {
  fx.push({
    type: 'persist',
    force: true,
    record: { type: 'acc', txn, ins, mbal: a.mbal, bal: a.bal, val: a.val },
  });
}

/** Where a phase 2b goes besides the leader: every RM, in Faster Paxos Commit. */
function send2b(
  state: AcceptorState,
  txn: TxnId,
  leader: NodeId,
  rms: readonly NodeId[] | null,
  entries: Phase2bEntry[],
  fx: Fx[],
) {
  const msg: PaxosCommitMsg = { type: 'PHASE2B', txn, acc: state.self, entries };
  const to = new Set<NodeId>([leader]);
  if (state.config.faster && rms !== null) for (const rm of rms) to.add(rm);
  for (const node of to) fx.push({ type: 'sendAfterPersist', to: node, msg });
}

function flush(state: AcceptorState, txn: TxnId, t: AcceptorTxn, fx: Fx[]): void {
  fx.push({ type: 'cancelTimer', timer: bundleTimer(txn) });
  if (t.pending.length === 0 || t.leader === null) return;
  send2b(state, txn, t.leader, t.participants, t.pending, fx);
  t.pending = [];
}

/** True when this acceptor holds a ballot-0 (or later) acceptance for every instance of the transaction. */
function complete(t: AcceptorTxn): boolean {
  return t.participants?.every((p) => (t.instances.get(p)?.bal ?? noBallot) >= rmBallot) === true;
}

function onPhase2a(state: AcceptorState, from: NodeId, msg: Msg<'PHASE2A'>, fx: Fx[]): void {
  const { txn, bal } = msg;
  const t = txnOf(state, txn);
  if (msg.participants !== null && t.participants === null) t.participants = [...msg.participants];
  if (bal === rmBallot) {
    // Ballot 0 is reserved for the RM's own vote in its own instance.
    if (msg.entries.length !== 1 || msg.entries[0]!.ins !== from) return;
    t.leader = msg.leader;
  }
  const accepted: Phase2bEntry[] = [];
  let rejectedAt = noBallot;
  for (const { ins, val } of msg.entries) {
    const a = instanceOf(t, ins);
    if (a.mbal > bal) {
      rejectedAt = Math.max(rejectedAt, a.mbal);
      continue;
    }
    if (a.bal === bal) {
      // A repeated phase 2a: the same ballot can only carry the same value.
      assert(a.val === val, `acceptor ${txn}/${ins}: ballot ${bal} proposed both ${a.val} and ${val}`);
    } else {
      a.mbal = bal;
      a.bal = bal;
      a.val = val;
      record(txn, ins, a, fx);
    }
    checkAcceptorInstance(txn, ins, a);
    accepted.push({ ins, bal, val });
  }
  if (rejectedAt !== noBallot && bal > rmBallot) {
    fx.push({ type: 'send', to: from, msg: { type: 'REJECT', txn, acc: state.self, bal, mbal: rejectedAt } });
  }
  if (accepted.length === 0) return;
  if (bal > rmBallot) {
    send2b(state, txn, msg.leader, msg.participants ?? t.participants, accepted, fx);
    return;
  }
  // Ballot 0: bundle.
  const entry = accepted[0]!;
  if (t.pending.some((e) => e.ins === entry.ins && e.bal === entry.bal)) return;
  t.pending.push(entry);
  if (entry.val === 'aborted' || complete(t)) flush(state, txn, t, fx);
  else if (t.pending.length === 1)
    fx.push({ type: 'setTimer', timer: bundleTimer(txn), delayMs: state.config.bundleMs });
}

function onPhase1a(state: AcceptorState, from: NodeId, msg: Msg<'PHASE1A'>, fx: Fx[]): void {
  const { txn, bal } = msg;
  if (bal <= rmBallot) return; // phase 1 is for leaders' ballots only
  const t = txnOf(state, txn);
  const promised: Phase1bEntry[] = [];
  let rejectedAt = noBallot;
  for (const ins of msg.instances) {
    const a = instanceOf(t, ins);
    if (a.mbal < bal) {
      a.mbal = bal;
      record(txn, ins, a, fx);
    } else if (a.mbal > bal) {
      rejectedAt = Math.max(rejectedAt, a.mbal);
      continue;
    }
    // mbal === bal: a repeated phase 1a; the promise stands, report it again.
    checkAcceptorInstance(txn, ins, a);
    promised.push({ ins, bal: a.bal, val: a.val });
  }
  if (promised.length > 0) {
    fx.push({
      type: 'sendAfterPersist',
      to: from,
      msg: { type: 'PHASE1B', txn, acc: state.self, bal, entries: promised },
    });
  }
  if (rejectedAt !== noBallot) {
    fx.push({ type: 'send', to: from, msg: { type: 'REJECT', txn, acc: state.self, bal, mbal: rejectedAt } });
  }
}

function onReceive(state: AcceptorState, from: NodeId, msg: PaxosCommitMsg, fx: Fx[]): void {
  switch (msg.type) {
    case 'PHASE2A':
      return onPhase2a(state, from, msg, fx);
    case 'PHASE1A':
      return onPhase1a(state, from, msg, fx);
    case 'PREPARE':
    case 'PHASE2B':
    case 'PHASE1B':
    case 'REJECT':
    case 'COMMIT':
    case 'ABORT':
    case 'INQUIRY':
      return; // for RMs and leaders
    default:
      unreachable(msg, 'message');
  }
}

export const paxosAcceptor: Role<
  AcceptorState,
  PaxosCommitMsg,
  PaxosCommitRecord,
  Partial<PaxosCommitConfig>
> = {
  init(self, config) {
    return { kind: 'acceptor', self, config: { ...defaultPaxosCommitConfig, ...config }, txns: new Map() };
  },

  /** Rebuild every instance from its last `acc` record; nothing is re-sent (leaders and RMs ask again). */
  recover(self, config, log): StepResult<AcceptorState, PaxosCommitMsg, PaxosCommitRecord> {
    const state = paxosAcceptor.init(self, config);
    for (const r of log) {
      if (r.type !== 'acc') continue;
      const a = instanceOf(txnOf(state, r.txn), r.ins);
      // Records of one instance only ever grow (mbal and bal never go down); keep the latest.
      a.mbal = r.mbal;
      a.bal = r.bal;
      a.val = r.val;
      checkAcceptorInstance(r.txn, r.ins, a);
    }
    return { state, effects: [] };
  },

  step(state, input: Input<PaxosCommitMsg>) {
    const fx: Fx[] = [];
    switch (input.type) {
      case 'receive':
        onReceive(state, input.from, input.msg, fx);
        break;
      case 'timeout': {
        const txn = timerTxn(input.timer);
        const t = state.txns.get(txn);
        if (input.timer.startsWith('bundle:') && t !== undefined) flush(state, txn, t, fx);
        break;
      }
      case 'persistFailed': {
        // The change did not become durable, and the reply that reported it
        // was dropped. Memory still holds it: write the instance's current
        // state again, so that anything we report later waits for a durable copy.
        const r = input.record as PaxosCommitRecord;
        if (r.type !== 'acc') break;
        const a = state.txns.get(r.txn)?.instances.get(r.ins);
        if (a !== undefined) record(r.txn, r.ins, a, fx);
        break;
      }
      case 'begin':
      case 'executed':
      case 'wounded':
        break; // client and resource-manager inputs are not an acceptor's
      default:
        unreachable(input, 'input');
    }
    return { state, effects: fx };
  },
};
