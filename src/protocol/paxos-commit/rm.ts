// The Paxos Commit resource manager (Gray & Lamport 2006, section "Paxos Commit"; PaxosCommit.tla's
// RMPrepare, RMChooseToAbort, RMRcvCommitMsg and RMRcvAbortMsg).
//
// Owns: this node's vote and its local outcome. On PREPARE it forces its
// `prepared` record and then (sendAfterPersist) sends its vote as a ballot-0
// phase 2a for its own instance straight to the acceptors: in the paper's
// normal case (`acceptorFanout: 'quorum'`, the default) to F+1 of them only,
// a majority, so the votes cost N(F+1) messages rather than N(2F+1); if one
// of those does not answer, the leader's vote timeout runs phase 1 and 2 in a
// higher ballot with all 2F+1 (./leader.ts), which finds the vote where it
// was accepted. With `acceptorFanout: 'all'` it goes to all 2F+1: F more
// messages per RM, and no leader ballot needed when one of the F+1 is slow or
// down. Safety does not depend on the choice. Until it has voted it may
// abort on its own (timer, wound); it then sends an `aborted` ballot-0 vote
// so the transaction aborts without waiting for a timeout. Once prepared it
// is in doubt: it never decides alone, and asks leader candidates in turn
// (the leader first) until it learns the outcome. It forces `committed`
// before applying the work, and forces `aborted` (only when it had prepared)
// before discarding it, so that after a crash it never finds itself in doubt
// about work it already discarded.
//
// It never votes twice in ballot 0: a vote for a transaction it no longer
// knows (forgotten after its outcome, or lost in a crash before it prepared)
// is not sent at all. Silence is always safe in Paxos: a leader's phase 1
// finds the earlier vote, or nothing, and then proposes `aborted`.
//
// In Faster Paxos Commit the acceptors also send their phase 2b to the RMs,
// which learn the outcome from them directly (./learner.ts).
//
// May not touch: clocks, I/O, randomness (see ../common/types.ts).

import { assert, unreachable } from '../common/assert.ts';
import type { Effect, Input, NodeId, Role, StepResult, TxnId } from '../common/types.ts';
import { type Learner, learn, newLearner, outcomeOf } from './learner.ts';
import {
  defaultPaxosCommitConfig,
  type PaxosCommitConfig,
  type PaxosCommitMsg,
  type PaxosCommitRecord,
  type PcValue,
  quorum,
  rmBallot,
  voteAcceptors,
} from './types.ts';

type Fx = Effect<PaxosCommitMsg, PaxosCommitRecord>;

export interface RmTxn {
  /** `prepared` from the step that issued the prepared record on. */
  phase: 'working' | 'prepared';
  leader: NodeId;
  participants: NodeId[] | null;
  client: NodeId | null;
  /** Inquiries sent so far: the n-th goes to the leader, then to candidates in turn. */
  inquiries: number;
  /** Faster Paxos Commit: what the acceptors told us directly. */
  learner: Learner;
}

export interface RmState {
  kind: 'rm';
  self: NodeId;
  config: PaxosCommitConfig;
  txns: Map<TxnId, RmTxn>;
}

const workTimer = (txn: TxnId) => `work:${txn}`;
const inquiryTimer = (txn: TxnId) => `inquiry:${txn}`;
const timerTxn = (timer: string) => timer.slice(timer.indexOf(':') + 1);

function vote(
  state: RmState,
  txn: TxnId,
  t: RmTxn,
  val: PcValue,
  afterPersist: boolean,
  fx: Fx[],
  voteTo?: readonly NodeId[],
): void {
  const msg: PaxosCommitMsg = {
    type: 'PHASE2A',
    txn,
    bal: rmBallot,
    entries: [{ ins: state.self, val }],
    leader: t.leader,
    participants: t.participants,
    client: t.client,
  };
  for (const acc of voteAcceptors(state.config, voteTo))
    fx.push({ type: afterPersist ? 'sendAfterPersist' : 'send', to: acc, msg });
}

/** RMChooseToAbort: allowed only before voting; the work is discarded at once (nothing was promised). */
function abortUnvoted(state: RmState, txn: TxnId, t: RmTxn, fx: Fx[]): void {
  fx.push({ type: 'cancelTimer', timer: workTimer(txn) });
  fx.push({ type: 'resource', txn, action: 'abort', afterPersist: false });
  vote(state, txn, t, 'aborted', false, fx);
  state.txns.delete(txn);
}

type Outcome = 'committed' | 'aborted';

/** What the resource manager does with the work, for an outcome. */
const resourceAction = (outcome: Outcome) => (outcome === 'committed' ? 'commit' : 'abort');

/**
 * RMRcvCommitMsg / RMRcvAbortMsg: force the outcome, then commit or discard
 * the work. Unvoted work is only given up (the decision is known, so no vote
 * is needed any more; only abort reaches it, as commit needs our vote).
 */
function settle(state: RmState, txn: TxnId, t: RmTxn, outcome: Outcome, fx: Fx[]): void {
  assert(outcome === 'aborted' || t.phase === 'prepared', `${txn}: commit of work we never voted on`);
  const action = resourceAction(outcome);
  if (t.phase === 'working') {
    fx.push({ type: 'cancelTimer', timer: workTimer(txn) });
    fx.push({ type: 'resource', txn, action, afterPersist: false });
  } else {
    fx.push({ type: 'cancelTimer', timer: inquiryTimer(txn) });
    fx.push({ type: 'persist', force: true, record: { type: outcome, txn } });
    fx.push({ type: 'resource', txn, action, afterPersist: true });
  }
  state.txns.delete(txn);
}

function onPrepare(
  state: RmState,
  from: NodeId,
  msg: Extract<PaxosCommitMsg, { type: 'PREPARE' }>,
  fx: Fx[],
): void {
  const { txn } = msg;
  const t = state.txns.get(txn);
  if (t === undefined || !msg.participants.includes(state.self)) return; // see the module comment
  if (t.phase === 'prepared') {
    // A repeated PREPARE: repeat the same vote, still behind the prepared
    // record (to the acceptors this PREPARE names, which may differ).
    vote(state, txn, t, 'prepared', true, fx, msg.voteTo);
    return;
  }
  t.phase = 'prepared';
  t.leader = from;
  t.participants = [...msg.participants];
  t.client = msg.client;
  fx.push({ type: 'cancelTimer', timer: workTimer(txn) });
  fx.push({
    type: 'persist',
    force: true,
    record: { type: 'prepared', txn, participants: t.participants, leader: from, client: msg.client },
  });
  vote(state, txn, t, 'prepared', true, fx, msg.voteTo);
  fx.push({ type: 'setTimer', timer: inquiryTimer(txn), delayMs: state.config.inquiryMs });
}

function onReceive(state: RmState, from: NodeId, msg: PaxosCommitMsg, fx: Fx[]): void {
  const t = state.txns.get(msg.txn);
  switch (msg.type) {
    case 'PREPARE':
      return onPrepare(state, from, msg, fx);
    case 'COMMIT':
      // Commit is decided only once our own instance chose `prepared`, which
      // needs our vote: a COMMIT for work we never voted on is a leader's error.
      if (t?.phase === 'prepared') settle(state, msg.txn, t, 'committed', fx);
      return;
    case 'ABORT':
      if (t !== undefined) settle(state, msg.txn, t, 'aborted', fx);
      return;
    case 'PHASE2B': {
      if (t === undefined || !state.config.faster) return;
      learn(t.learner, msg.txn, state.config.acceptors, quorum(state.config), msg.acc, msg.entries);
      const outcome = outcomeOf(t.learner, t.participants);
      if (outcome === 'aborted') settle(state, msg.txn, t, 'aborted', fx);
      else if (outcome === 'committed' && t.phase === 'prepared') settle(state, msg.txn, t, 'committed', fx);
      return;
    }
    case 'PHASE2A':
    case 'PHASE1A':
    case 'PHASE1B':
    case 'REJECT':
    case 'INQUIRY':
      return; // acceptor- and leader-bound
    default:
      unreachable(msg, 'message');
  }
}

function inquire(state: RmState, txn: TxnId, t: RmTxn, fx: Fx[]): void {
  const { candidates } = state.config;
  const n = t.inquiries++;
  const to = n === 0 || candidates.length === 0 ? t.leader : candidates[n % candidates.length]!;
  fx.push({
    type: 'send',
    to,
    msg: { type: 'INQUIRY', txn, participants: t.participants ?? [state.self], client: t.client },
  });
  fx.push({ type: 'setTimer', timer: inquiryTimer(txn), delayMs: state.config.inquiryMs });
}

function onPersistFailed(state: RmState, r: PaxosCommitRecord, fx: Fx[]): void {
  if (r.type === 'prepared') {
    const t = state.txns.get(r.txn);
    if (t?.phase !== 'prepared') return;
    // The promise never became durable, so our `prepared` vote never left
    // (it waited on the record): vote `aborted` in its place.
    fx.push({ type: 'cancelTimer', timer: inquiryTimer(r.txn) });
    fx.push({ type: 'resource', txn: r.txn, action: 'abort', afterPersist: false });
    vote(state, r.txn, t, 'aborted', false, fx);
    state.txns.delete(r.txn);
  } else if (r.type === 'committed' || r.type === 'aborted') {
    // The outcome is decided and the work still waits on this record: write it again.
    fx.push({ type: 'persist', force: true, record: r });
    fx.push({ type: 'resource', txn: r.txn, action: resourceAction(r.type), afterPersist: true });
  }
}

export const paxosRm: Role<RmState, PaxosCommitMsg, PaxosCommitRecord, Partial<PaxosCommitConfig>> = {
  init(self, config) {
    return { kind: 'rm', self, config: { ...defaultPaxosCommitConfig, ...config }, txns: new Map() };
  },

  /**
   * Rebuild from the log: a `prepared` record with no outcome after it is in
   * doubt. Repeat the vote (the acceptors may never have received it) and ask.
   * Every `committed` and `aborted` is applied again: the crash may have come
   * after the record was durable and before the work was committed or
   * discarded (the resource manager ignores an outcome it has already applied).
   */
  recover(self, config, log): StepResult<RmState, PaxosCommitMsg, PaxosCommitRecord> {
    const state = paxosRm.init(self, config);
    const inDoubt = new Map<TxnId, Extract<PaxosCommitRecord, { type: 'prepared' }>>();
    const effects: Fx[] = [];
    for (const r of log) {
      if (r.type === 'prepared') inDoubt.set(r.txn, r);
      else if (r.type === 'committed' || r.type === 'aborted') {
        inDoubt.delete(r.txn);
        effects.push({ type: 'resource', txn: r.txn, action: resourceAction(r.type), afterPersist: false });
      }
    }
    for (const [txn, r] of inDoubt) {
      const t: RmTxn = {
        phase: 'prepared',
        leader: r.leader,
        participants: r.participants,
        client: r.client,
        inquiries: 0,
        learner: newLearner(),
      };
      state.txns.set(txn, t);
      vote(state, txn, t, 'prepared', true, effects);
      inquire(state, txn, t, effects);
    }
    return { state, effects };
  },

  step(state, input: Input<PaxosCommitMsg>) {
    const fx: Fx[] = [];
    switch (input.type) {
      case 'executed': {
        if (state.txns.has(input.txn)) break;
        state.txns.set(input.txn, {
          phase: 'working',
          leader: input.coordinator,
          participants: null,
          client: null,
          inquiries: 0,
          learner: newLearner(),
        });
        fx.push({ type: 'setTimer', timer: workTimer(input.txn), delayMs: state.config.unvotedAbortMs });
        break;
      }
      case 'wounded': {
        const t = state.txns.get(input.txn);
        // Only unvoted work may be given up; a prepared RM keeps its locks.
        if (t?.phase === 'working') abortUnvoted(state, input.txn, t, fx);
        break;
      }
      case 'receive':
        onReceive(state, input.from, input.msg, fx);
        break;
      case 'timeout': {
        const txn = timerTxn(input.timer);
        const t = state.txns.get(txn);
        if (t === undefined) break;
        if (input.timer.startsWith('work:') && t.phase === 'working') abortUnvoted(state, txn, t, fx);
        else if (input.timer.startsWith('inquiry:') && t.phase === 'prepared') inquire(state, txn, t, fx);
        break;
      }
      case 'persistFailed':
        onPersistFailed(state, input.record as PaxosCommitRecord, fx);
        break;
      case 'begin':
        break; // client requests go to the leader
      default:
        unreachable(input, 'input');
    }
    return { state, effects: fx };
  },
};
