// The two-phase commit participant (a resource manager's agent), presumed abort.
//
// Owns: this node's vote and its local outcome. It forces `prepared` before its
// YES leaves and `committed` before it acknowledges; `aborted` is lazy. Until
// it has voted it may abort on its own (a timeout, or a wound from an older
// transaction); once it has voted YES it is in doubt and may only learn the
// outcome, so it asks the coordinator again and again until answered.
//
// A participant forgets a transaction once it is committed or aborted: an
// unknown transaction gets NO to PREPARE (its work is gone) and an ACK to
// COMMIT (the coordinator only commits after our durable YES, so an unknown
// transaction that is being committed is one we committed and forgot).
//
// May not touch: clocks, I/O, randomness (see ../common/types.ts).

import { unreachable } from '../common/assert.ts';
import type { Effect, Input, NodeId, Role, StepResult, TxnId } from '../common/types.ts';
import { defaultTwoPcConfig, type TwoPcConfig, type TwoPcMsg, type TwoPcRecord } from './types.ts';

type Fx = Effect<TwoPcMsg, TwoPcRecord>;

export interface ParticipantTxn {
  phase: 'working' | 'prepared';
  /** The attempt this participant last voted YES for. */
  attempt: string;
  coordinator: NodeId;
  readOnly: boolean;
}

export interface ParticipantState {
  self: NodeId;
  config: TwoPcConfig;
  txns: Map<TxnId, ParticipantTxn>;
}

const workTimer = (txn: TxnId) => `work:${txn}`;
const inquiryTimer = (txn: TxnId) => `inquiry:${txn}`;
const timerTxn = (timer: string) => timer.slice(timer.indexOf(':') + 1);

function commit(state: ParticipantState, txn: TxnId, fx: Fx[]): void {
  fx.push({ type: 'persist', force: true, record: { type: 'committed', txn } });
  fx.push({ type: 'resource', txn, action: 'commit', afterPersist: true });
  state.txns.delete(txn);
}

function onReceive(state: ParticipantState, from: NodeId, msg: TwoPcMsg, fx: Fx[]): void {
  const { txn } = msg;
  const t = state.txns.get(txn);
  switch (msg.type) {
    case 'PREPARE': {
      if (t === undefined) {
        // Never worked here, or already aborted (timeout, wound, crash): the work is gone.
        fx.push({ type: 'send', to: from, msg: { type: 'VOTE', txn, attempt: msg.attempt, vote: 'no' } });
      } else if (t.phase === 'working' && t.readOnly) {
        // Nothing to make durable: vote read-only and leave the transaction.
        fx.push({ type: 'cancelTimer', timer: workTimer(txn) });
        fx.push({ type: 'resource', txn, action: 'release', afterPersist: false });
        fx.push({
          type: 'send',
          to: from,
          msg: { type: 'VOTE', txn, attempt: msg.attempt, vote: 'readOnly' },
        });
        state.txns.delete(txn);
      } else if (t.phase === 'working') {
        t.phase = 'prepared';
        t.coordinator = from;
        t.attempt = msg.attempt;
        fx.push({ type: 'cancelTimer', timer: workTimer(txn) });
        fx.push({ type: 'persist', force: true, record: { type: 'prepared', txn, coordinator: from } });
        fx.push({
          type: 'sendAfterPersist',
          to: from,
          msg: { type: 'VOTE', txn, attempt: msg.attempt, vote: 'yes' },
        });
        fx.push({ type: 'setTimer', timer: inquiryTimer(txn), delayMs: state.config.inquiryMs });
      } else {
        // A repeated PREPARE, or a new attempt of a coordinator that lost its
        // state: repeat the YES for it, still waiting on the prepared record.
        t.attempt = msg.attempt;
        fx.push({
          type: 'sendAfterPersist',
          to: from,
          msg: { type: 'VOTE', txn, attempt: msg.attempt, vote: 'yes' },
        });
      }
      return;
    }
    case 'COMMIT': {
      if (t === undefined) {
        // Committed and forgotten (see the module comment). The ACK waits for
        // every write issued so far, so it never overtakes our `committed` record.
        fx.push({ type: 'sendAfterPersist', to: from, msg: { type: 'ACK', txn } });
      } else if (t.phase === 'prepared') {
        fx.push({ type: 'cancelTimer', timer: inquiryTimer(txn) });
        commit(state, txn, fx);
        fx.push({ type: 'sendAfterPersist', to: from, msg: { type: 'ACK', txn } });
      }
      // COMMIT for work we never voted on is a coordinator's error; refusing it
      // (no ACK) leaves the transaction visibly unfinished for the checkers.
      return;
    }
    case 'ABORT': {
      if (t === undefined) return;
      fx.push({ type: 'cancelTimer', timer: t.phase === 'working' ? workTimer(txn) : inquiryTimer(txn) });
      if (t.phase === 'prepared')
        fx.push({ type: 'persist', force: false, record: { type: 'aborted', txn } });
      fx.push({ type: 'resource', txn, action: 'abort', afterPersist: false });
      state.txns.delete(txn);
      return;
    }
    case 'VOTE':
    case 'ACK':
    case 'INQUIRY':
    case 'OPERATOR_END':
      return; // coordinator-bound messages
    default:
      unreachable(msg, 'message');
  }
}

function onTimeout(state: ParticipantState, timer: string, fx: Fx[]): void {
  const txn = timerTxn(timer);
  const t = state.txns.get(txn);
  if (t === undefined) return;
  if (timer.startsWith('work:') && t.phase === 'working') {
    // Unilateral abort: allowed because we have not voted.
    fx.push({ type: 'resource', txn, action: 'abort', afterPersist: false });
    state.txns.delete(txn);
  } else if (timer.startsWith('inquiry:') && t.phase === 'prepared') {
    // In doubt: we may not decide, only ask, and keep asking until answered.
    fx.push({ type: 'send', to: t.coordinator, msg: { type: 'INQUIRY', txn } });
    fx.push({ type: 'setTimer', timer, delayMs: state.config.inquiryMs });
  }
}

function onPersistFailed(state: ParticipantState, record: TwoPcRecord, fx: Fx[]): void {
  if (record.type === 'prepared') {
    const t = state.txns.get(record.txn);
    if (t === undefined || t.phase !== 'prepared') return;
    // We could not make our promise durable, so we never made it: vote NO.
    fx.push({ type: 'cancelTimer', timer: inquiryTimer(record.txn) });
    fx.push({ type: 'resource', txn: record.txn, action: 'abort', afterPersist: false });
    fx.push({
      type: 'send',
      to: t.coordinator,
      msg: { type: 'VOTE', txn: record.txn, attempt: t.attempt, vote: 'no' },
    });
    state.txns.delete(record.txn);
  } else if (record.type === 'committed') {
    // We are prepared and the decision is commit: we must, so write it again.
    // The ACK is not re-sent here; the coordinator's resend will collect it.
    commit(state, record.txn, fx);
  }
  // A lost lazy `aborted` is harmless: after a restart we ask and hear ABORT again.
}

export const twoPcParticipant: Role<ParticipantState, TwoPcMsg, TwoPcRecord, Partial<TwoPcConfig>> = {
  init(self, config) {
    return { self, config: { ...defaultTwoPcConfig, ...config }, txns: new Map() };
  },

  /**
   * Rebuild from the log: every `prepared` with no outcome after it is in
   * doubt; ask at once. Every `committed` is applied again: the crash may have
   * come after the record was durable and before the work was applied (the
   * resource manager ignores a commit it has already applied).
   */
  recover(self, config, log): StepResult<ParticipantState, TwoPcMsg, TwoPcRecord> {
    const state = twoPcParticipant.init(self, config);
    const inDoubt = new Map<TxnId, NodeId>();
    const committed: TxnId[] = [];
    for (const r of log) {
      if (r.type === 'prepared') inDoubt.set(r.txn, r.coordinator);
      else if (r.type === 'committed' || r.type === 'aborted') inDoubt.delete(r.txn);
      if (r.type === 'committed') committed.push(r.txn);
    }
    const effects: Fx[] = committed.map(
      (txn): Fx => ({ type: 'resource', txn, action: 'commit', afterPersist: false }),
    );
    for (const [txn, coordinator] of inDoubt) {
      state.txns.set(txn, { phase: 'prepared', attempt: '', coordinator, readOnly: false });
      effects.push({ type: 'send', to: coordinator, msg: { type: 'INQUIRY', txn } });
      effects.push({ type: 'setTimer', timer: inquiryTimer(txn), delayMs: state.config.inquiryMs });
    }
    return { state, effects };
  },

  step(state, input: Input<TwoPcMsg>) {
    const fx: Fx[] = [];
    switch (input.type) {
      case 'executed': {
        if (state.txns.has(input.txn)) break;
        state.txns.set(input.txn, {
          phase: 'working',
          attempt: '',
          coordinator: input.coordinator,
          readOnly: input.readOnly,
        });
        fx.push({ type: 'setTimer', timer: workTimer(input.txn), delayMs: state.config.unvotedAbortMs });
        break;
      }
      case 'wounded': {
        const t = state.txns.get(input.txn);
        // Only unvoted work may be given up; a prepared transaction keeps its locks.
        if (t?.phase === 'working') {
          fx.push({ type: 'cancelTimer', timer: workTimer(input.txn) });
          fx.push({ type: 'resource', txn: input.txn, action: 'abort', afterPersist: false });
          state.txns.delete(input.txn);
        }
        break;
      }
      case 'receive':
        onReceive(state, input.from, input.msg, fx);
        break;
      case 'timeout':
        onTimeout(state, input.timer, fx);
        break;
      case 'persistFailed':
        onPersistFailed(state, input.record as TwoPcRecord, fx);
        break;
      case 'begin':
        break; // client requests go to coordinators
      default:
        unreachable(input, 'input');
    }
    return { state, effects: fx };
  },
};
