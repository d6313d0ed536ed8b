// The three-phase commit participant and its termination protocol (Skeen,
// "Nonblocking Commit Protocols", SIGMOD 1981; the "central site"
// termination protocol with a backup coordinator).
//
// Owns: this node's vote and outcome, and — when the coordinator falls
// silent — the transaction's outcome among the reachable participants. It
// forces `prepared` before its YES, `precommitted` before its PRE_ACK,
// `committed` before applying the work and `aborted` (once prepared) before
// discarding it. Before voting it may abort on its own.
//
// Termination. A participant that voted YES and hears nothing for `waitMs`
// asks every other participant for its state (STATE_REQ), waits
// `collectMs`, and then, as the new coordinator:
//   1. any participant committed → commit;
//   2. any aborted, or any `unknown` (never durably voted YES) → abort;
//   3. a lower-ranked participant (earlier in the transaction's participant
//      list) answered and is operational → it is the backup coordinator:
//      stand back and ask again later;
//   4. any pre-committed → send PRE_COMMIT to those still only prepared, wait
//      for their PRE_ACK (or `collectMs`), then commit;
//   5. otherwise (all prepared) → abort.
// A participant that crashed after voting and has not learned the outcome is
// *recovering* (Skeen's recovery protocol): it may have missed a PRE_COMMIT
// while it was down, so it never counts as evidence for rule 5, never acts as
// backup coordinator while an operational participant answers, and acts on
// rules 4 and 5 only when every participant answered and none is operational.
//
// That is safe with crashes and accurate timeouts (no message is lost or
// delayed past `waitMs`): commit happens only after every *operational*
// participant pre-committed, so an operational participant that is merely
// prepared proves that nobody committed. With a partition it is not: the
// side that cannot hear the pre-committed participants takes them for crashed
// and aborts by rule 5, while the other side commits by rule 4. The simulator
// finds exactly that (docs/protocols/3pc.md).
//
// A participant never forgets an outcome it logged (the log keeps every
// `committed` and `aborted`): rule 2's `unknown` relies on it.
//
// May not touch: clocks, I/O, randomness (see ../common/types.ts).

import { assert, unreachable } from '../common/assert.ts';
import type { Effect, Input, NodeId, Role, StepResult, TxnId } from '../common/types.ts';
import {
  defaultThreePcConfig,
  type ReportedState,
  type ThreePcConfig,
  type ThreePcMsg,
  type ThreePcRecord,
} from './types.ts';

type Fx = Effect<ThreePcMsg, ThreePcRecord>;

export interface Termination {
  stage: 'collect' | 'precommit';
  replies: Map<NodeId, { state: ReportedState; recovering: boolean }>;
  /** Stage `precommit`: participants whose PRE_ACK is still awaited. */
  awaiting: Set<NodeId>;
}

export interface ThreePcParticipantTxn {
  phase: 'working' | 'prepared' | 'precommitted';
  coordinator: NodeId;
  /** Every participant, in rank order; empty until CAN_COMMIT names them. */
  participants: NodeId[];
  /** Crashed since voting and has not learned the outcome. */
  recovering: boolean;
  term: Termination | null;
}

export interface ThreePcParticipantState {
  self: NodeId;
  config: ThreePcConfig;
  txns: Map<TxnId, ThreePcParticipantTxn>;
  /** Every outcome this participant logged (or decided before voting). */
  decided: Map<TxnId, Outcome>;
}

type Outcome = 'committed' | 'aborted';

const workTimer = (txn: TxnId) => `work:${txn}`;
const waitTimer = (txn: TxnId) => `wait:${txn}`;
const termTimer = (txn: TxnId) => `term:${txn}`;
const timerTxn = (timer: string) => timer.slice(timer.indexOf(':') + 1);

function others(state: ThreePcParticipantState, t: ThreePcParticipantTxn): NodeId[] {
  return t.participants.filter((p) => p !== state.self);
}

function cancelAll(txn: TxnId, fx: Fx[]): void {
  for (const timer of [workTimer(txn), waitTimer(txn), termTimer(txn)])
    fx.push({ type: 'cancelTimer', timer });
}

/** What the resource manager does with the work, for an outcome. */
const resourceAction = (outcome: Outcome) => (outcome === 'committed' ? 'commit' : 'abort');

/**
 * Settle the outcome here: force it, then commit or discard the work (unvoted
 * work is only given up: nothing was promised, and only abort reaches it, as
 * commit needs our YES). `tell` the others too when acting as the (new)
 * coordinator.
 */
function settle(
  state: ThreePcParticipantState,
  txn: TxnId,
  t: ThreePcParticipantTxn,
  outcome: Outcome,
  tell: boolean,
  fx: Fx[],
): void {
  assert(outcome === 'aborted' || t.phase !== 'working', `${txn}: commit of work we never voted on`);
  cancelAll(txn, fx);
  const action = resourceAction(outcome);
  if (t.phase === 'working') {
    fx.push({ type: 'resource', txn, action, afterPersist: false });
  } else {
    fx.push({ type: 'persist', force: true, record: { type: outcome, txn } });
    fx.push({ type: 'resource', txn, action, afterPersist: true });
  }
  if (tell) {
    const msg: ThreePcMsg = { type: outcome === 'committed' ? 'COMMIT' : 'ABORT', txn };
    for (const p of others(state, t)) fx.push({ type: 'sendAfterPersist', to: p, msg });
  }
  state.decided.set(txn, outcome);
  state.txns.delete(txn);
}

function precommit(txn: TxnId, t: ThreePcParticipantTxn, fx: Fx[]): void {
  t.phase = 'precommitted';
  fx.push({ type: 'persist', force: true, record: { type: 'precommitted', txn } });
}

/** Stand back (or wait for more answers): ask again after `waitMs`. */
function retry(state: ThreePcParticipantState, txn: TxnId, t: ThreePcParticipantTxn, fx: Fx[]): void {
  t.term = null;
  fx.push({ type: 'cancelTimer', timer: termTimer(txn) });
  fx.push({ type: 'setTimer', timer: waitTimer(txn), delayMs: state.config.waitMs });
}

function startTermination(
  state: ThreePcParticipantState,
  txn: TxnId,
  t: ThreePcParticipantTxn,
  fx: Fx[],
): void {
  t.term = { stage: 'collect', replies: new Map(), awaiting: new Set() };
  for (const p of others(state, t)) fx.push({ type: 'send', to: p, msg: { type: 'STATE_REQ', txn } });
  fx.push({ type: 'setTimer', timer: termTimer(txn), delayMs: state.config.collectMs });
}

/** The termination rule (see the module comment), once the answers are in or `collectMs` passed. */
function evaluate(state: ThreePcParticipantState, txn: TxnId, t: ThreePcParticipantTxn, fx: Fx[]): void {
  const term = t.term!;
  const replies = [...term.replies.entries()];
  const states = replies.map(([, r]) => r.state);
  if (states.includes('committed')) return settle(state, txn, t, 'committed', true, fx);
  if (states.includes('aborted') || states.includes('unknown'))
    return settle(state, txn, t, 'aborted', true, fx);
  const rank = t.participants.indexOf(state.self);
  const operational = replies.filter(([, r]) => !r.recovering);
  if (t.recovering) {
    const everyone = term.replies.size === t.participants.length - 1;
    if (!everyone || operational.length > 0 || rank !== 0) return retry(state, txn, t, fx);
  } else if (operational.some(([p]) => t.participants.indexOf(p) < rank)) {
    return retry(state, txn, t, fx);
  }
  if (t.phase === 'precommitted' || states.includes('precommitted')) {
    if (t.phase === 'prepared') precommit(txn, t, fx);
    const prepared = replies.filter(([, r]) => r.state === 'prepared').map(([p]) => p);
    if (prepared.length === 0) return settle(state, txn, t, 'committed', true, fx);
    term.stage = 'precommit';
    term.awaiting = new Set(prepared);
    for (const p of prepared) fx.push({ type: 'sendAfterPersist', to: p, msg: { type: 'PRE_COMMIT', txn } });
    fx.push({ type: 'setTimer', timer: termTimer(txn), delayMs: state.config.collectMs });
    return;
  }
  settle(state, txn, t, 'aborted', true, fx);
}

function report(
  state: ThreePcParticipantState,
  txn: TxnId,
  fx: Fx[],
): { state: ReportedState; recovering: boolean } {
  const known = state.decided.get(txn);
  if (known !== undefined) return { state: known, recovering: false };
  const t = state.txns.get(txn);
  if (t === undefined) return { state: 'unknown', recovering: false };
  if (t.phase === 'working') {
    // Someone runs a termination, so the coordinator is gone: give up the unvoted work.
    settle(state, txn, t, 'aborted', false, fx);
    return { state: 'aborted', recovering: false };
  }
  return { state: t.phase, recovering: t.recovering };
}

function onReceive(state: ThreePcParticipantState, from: NodeId, msg: ThreePcMsg, fx: Fx[]): void {
  const { txn } = msg;
  const t = state.txns.get(txn);
  switch (msg.type) {
    case 'CAN_COMMIT': {
      if (t === undefined || !msg.participants.includes(state.self)) {
        // Never worked here, gave the work up, or already decided: the work is gone.
        if (state.decided.get(txn) !== 'committed')
          fx.push({ type: 'send', to: from, msg: { type: 'VOTE', txn, vote: 'no' } });
      } else if (t.phase === 'working') {
        t.phase = 'prepared';
        t.coordinator = from;
        t.participants = [...msg.participants];
        fx.push({ type: 'cancelTimer', timer: workTimer(txn) });
        fx.push({
          type: 'persist',
          force: true,
          record: { type: 'prepared', txn, participants: t.participants, coordinator: from },
        });
        fx.push({ type: 'sendAfterPersist', to: from, msg: { type: 'VOTE', txn, vote: 'yes' } });
        fx.push({ type: 'setTimer', timer: waitTimer(txn), delayMs: state.config.waitMs });
      } else if (t.phase === 'prepared' && from === t.coordinator) {
        fx.push({ type: 'sendAfterPersist', to: from, msg: { type: 'VOTE', txn, vote: 'yes' } });
      }
      return;
    }
    case 'PRE_COMMIT': {
      if (t === undefined || t.phase === 'working') return;
      if (t.phase === 'prepared') precommit(txn, t, fx);
      fx.push({ type: 'sendAfterPersist', to: from, msg: { type: 'PRE_ACK', txn } });
      if (t.term === null) fx.push({ type: 'setTimer', timer: waitTimer(txn), delayMs: state.config.waitMs });
      return;
    }
    case 'COMMIT':
      // Only a prepared participant can be told to commit (all voted YES).
      if (t !== undefined && t.phase !== 'working') settle(state, txn, t, 'committed', false, fx);
      return;
    case 'ABORT':
      if (t !== undefined) settle(state, txn, t, 'aborted', false, fx);
      return;
    case 'STATE_REQ': {
      const r = report(state, txn, fx);
      fx.push({ type: 'sendAfterPersist', to: from, msg: { type: 'STATE', txn, ...r } });
      return;
    }
    case 'STATE': {
      if (t?.term?.stage !== 'collect' || !t.participants.includes(from)) return;
      t.term.replies.set(from, { state: msg.state, recovering: msg.recovering });
      if (t.term.replies.size === t.participants.length - 1) {
        fx.push({ type: 'cancelTimer', timer: termTimer(txn) });
        evaluate(state, txn, t, fx);
      }
      return;
    }
    case 'PRE_ACK': {
      if (t?.term?.stage !== 'precommit') return;
      t.term.awaiting.delete(from);
      if (t.term.awaiting.size === 0) settle(state, txn, t, 'committed', true, fx);
      return;
    }
    case 'VOTE':
      return; // coordinator-bound
    default:
      unreachable(msg, 'message');
  }
}

function onTimeout(state: ThreePcParticipantState, timer: string, fx: Fx[]): void {
  const txn = timerTxn(timer);
  const t = state.txns.get(txn);
  if (t === undefined) return;
  if (timer.startsWith('work:')) {
    if (t.phase === 'working') settle(state, txn, t, 'aborted', false, fx);
  } else if (timer.startsWith('wait:')) {
    if (t.phase !== 'working' && t.term === null) startTermination(state, txn, t, fx);
  } else if (timer.startsWith('term:') && t.term !== null) {
    // Collect: act on the answers that came. Pre-commit: the silent are taken
    // for crashed (they will find the outcome when they recover).
    if (t.term.stage === 'collect') evaluate(state, txn, t, fx);
    else settle(state, txn, t, 'committed', true, fx);
  }
}

function onPersistFailed(state: ThreePcParticipantState, r: ThreePcRecord, fx: Fx[]): void {
  const t = state.txns.get(r.txn);
  switch (r.type) {
    case 'prepared':
      if (t?.phase !== 'prepared') return;
      // Our YES waited on this record and was dropped with it: vote NO instead.
      fx.push({ type: 'cancelTimer', timer: waitTimer(r.txn) });
      fx.push({ type: 'resource', txn: r.txn, action: 'abort', afterPersist: false });
      fx.push({ type: 'send', to: t.coordinator, msg: { type: 'VOTE', txn: r.txn, vote: 'no' } });
      state.decided.set(r.txn, 'aborted');
      state.txns.delete(r.txn);
      return;
    case 'precommitted':
      // The PRE_ACK was dropped; the state stands. Write it again (the
      // (new) coordinator commits without our ACK after its timeout anyway).
      if (t?.phase === 'precommitted') fx.push({ type: 'persist', force: true, record: r });
      return;
    case 'committed':
    case 'aborted':
      fx.push({ type: 'persist', force: true, record: r });
      fx.push({ type: 'resource', txn: r.txn, action: resourceAction(r.type), afterPersist: true });
      return;
    default:
      unreachable(r, 'record');
  }
}

export const threePcParticipant: Role<
  ThreePcParticipantState,
  ThreePcMsg,
  ThreePcRecord,
  Partial<ThreePcConfig>
> = {
  init(self, config) {
    return { self, config: { ...defaultThreePcConfig, ...config }, txns: new Map(), decided: new Map() };
  },

  /**
   * Rebuild from the log: logged outcomes are remembered and applied again
   * (the crash may have come after the record was durable and before the work
   * was committed or discarded; the resource manager ignores an outcome it has
   * already applied); a `prepared` or `precommitted` without an outcome is in
   * doubt, and *recovering*: it runs the termination protocol soon, under the
   * recovering rules.
   */
  recover(self, config, log): StepResult<ThreePcParticipantState, ThreePcMsg, ThreePcRecord> {
    const state = threePcParticipant.init(self, config);
    for (const r of log) {
      if (r.type === 'prepared') {
        state.txns.set(r.txn, {
          phase: 'prepared',
          coordinator: r.coordinator,
          participants: r.participants,
          recovering: true,
          term: null,
        });
      } else if (r.type === 'precommitted') {
        const t = state.txns.get(r.txn);
        if (t !== undefined) t.phase = 'precommitted';
      } else {
        state.txns.delete(r.txn);
        state.decided.set(r.txn, r.type);
      }
    }
    const effects: Fx[] = [];
    for (const [txn, outcome] of state.decided)
      effects.push({ type: 'resource', txn, action: resourceAction(outcome), afterPersist: false });
    for (const txn of state.txns.keys()) {
      effects.push({ type: 'setTimer', timer: waitTimer(txn), delayMs: state.config.collectMs });
    }
    return { state, effects };
  },

  step(state, input: Input<ThreePcMsg>) {
    const fx: Fx[] = [];
    switch (input.type) {
      case 'executed': {
        if (state.txns.has(input.txn) || state.decided.has(input.txn)) break;
        state.txns.set(input.txn, {
          phase: 'working',
          coordinator: input.coordinator,
          participants: [],
          recovering: false,
          term: null,
        });
        fx.push({ type: 'setTimer', timer: workTimer(input.txn), delayMs: state.config.unvotedAbortMs });
        break;
      }
      case 'wounded': {
        const t = state.txns.get(input.txn);
        if (t?.phase === 'working') settle(state, input.txn, t, 'aborted', false, fx);
        break;
      }
      case 'receive':
        onReceive(state, input.from, input.msg, fx);
        break;
      case 'timeout':
        onTimeout(state, input.timer, fx);
        break;
      case 'persistFailed':
        onPersistFailed(state, input.record as ThreePcRecord, fx);
        break;
      case 'begin':
        break;
      default:
        unreachable(input, 'input');
    }
    return { state, effects: fx };
  },
};
