// The two-phase commit coordinator, presumed-abort variant.
//
// Owns: the decision for each transaction it begins. Forced writes are exactly
// those presumed abort prescribes (PROTOCOLS.md §2): the `commit` record is
// forced before any COMMIT message leaves (sendAfterPersist), an abort writes
// nothing at all, and `end` is written lazily once every YES voter has
// acknowledged; after that the transaction is forgotten. A coordinator with no
// record of a transaction answers ABORT — that is the presumption, and it is
// safe precisely because commit is never sent before its record is durable.
//
// May not touch: clocks, I/O, randomness (see ../common/types.ts).

import { assert, unreachable } from '../common/assert.ts';
import { type Hlc, maxHlc } from '../common/hlc.ts';
import { limits } from '../common/limits.ts';
import type { Effect, Input, NodeId, Role, StepResult, TxnId } from '../common/types.ts';
import { defaultTwoPcConfig, type TwoPcConfig, type TwoPcMsg, type TwoPcRecord, type Vote } from './types.ts';

type Fx = Effect<TwoPcMsg, TwoPcRecord>;

export interface CoordinatorTxn {
  phase: 'collecting' | 'committing';
  /** The attempt whose votes count (see TwoPcMsg). */
  attempt: string;
  participants: readonly NodeId[];
  client: NodeId;
  votes: Map<NodeId, Vote>;
  /** Participants whose COMMIT must be acknowledged (the YES voters). */
  committers: NodeId[];
  acked: Set<NodeId>;
  /** YES voters' evidence (see TwoPcMsg VOTE), kept in the commit record; absent when none gave any. */
  evidence?: Record<NodeId, string>;
  /** The commit timestamp so far: the latest YES voter's prepare timestamp; absent when none gave any. */
  ts?: Hlc;
}

export interface CoordinatorState {
  self: NodeId;
  config: TwoPcConfig;
  txns: Map<TxnId, CoordinatorTxn>;
  /** Begins so far in this incarnation; with the incarnation it makes attempt names unique. */
  attempts: number;
  /**
   * Transactions decided COMMIT that an operator ended (OPERATOR_END) before
   * every participant acknowledged, with those participants. Never re-driven,
   * but never presumed aborted either: a branch of theirs still prepared is
   * the operator's to commit, and recovery must leave it alone.
   */
  endedByOperator: Map<TxnId, { participants: NodeId[]; end: Extract<TwoPcRecord, { type: 'end' }> }>;
}

const voteTimer = (txn: TxnId) => `vote:${txn}`;
const resendTimer = (txn: TxnId) => `resend:${txn}`;
const timerTxn = (timer: string) => timer.slice(timer.indexOf(':') + 1);

/** COMMIT, with the commit timestamp when there is one (left out otherwise, so older traffic is unchanged). */
const commitMsg = (txn: TxnId, ts: Hlc | undefined): TwoPcMsg =>
  ts === undefined ? { type: 'COMMIT', txn } : { type: 'COMMIT', txn, ts };

function abort(state: CoordinatorState, txn: TxnId, t: CoordinatorTxn, fx: Fx[]): void {
  // Presumed abort: nothing is logged. Everyone who may hold the transaction's
  // work (voted YES, or has not voted) is told; a NO voter has already aborted.
  for (const p of t.participants) {
    const vote = t.votes.get(p);
    if (vote !== 'no' && vote !== 'readOnly') fx.push({ type: 'send', to: p, msg: { type: 'ABORT', txn } });
  }
  fx.push({ type: 'cancelTimer', timer: voteTimer(txn) });
  fx.push({ type: 'reportOutcome', txn, client: t.client, outcome: 'aborted', afterPersist: false });
  state.txns.delete(txn);
}

function decide(state: CoordinatorState, txn: TxnId, t: CoordinatorTxn, fx: Fx[]): void {
  fx.push({ type: 'cancelTimer', timer: voteTimer(txn) });
  const committers = t.participants.filter((p) => t.votes.get(p) === 'yes');
  if (committers.length === 0) {
    // Everyone was read-only: there is nothing to commit and nothing to log.
    fx.push({ type: 'reportOutcome', txn, client: t.client, outcome: 'committed', afterPersist: false });
    state.txns.delete(txn);
    return;
  }
  t.phase = 'committing';
  t.committers = committers;
  // The fields are left out when no voter gave evidence or a timestamp, so
  // that a log of voters that never do is unchanged, record for record.
  fx.push({
    type: 'persist',
    force: true,
    record: {
      type: 'commit',
      txn,
      participants: committers,
      client: t.client,
      ...(t.evidence === undefined ? {} : { evidence: { ...t.evidence } }),
      ...(t.ts === undefined ? {} : { ts: t.ts }),
    },
  });
  for (const p of committers) fx.push({ type: 'sendAfterPersist', to: p, msg: commitMsg(txn, t.ts) });
  fx.push({ type: 'reportOutcome', txn, client: t.client, outcome: 'committed', afterPersist: true });
  fx.push({ type: 'setTimer', timer: resendTimer(txn), delayMs: state.config.commitResendMs });
}

function onBegin(
  state: CoordinatorState,
  input: Extract<Input<TwoPcMsg>, { type: 'begin' }>,
  fx: Fx[],
): void {
  const { txn, participants, client } = input;
  // A repeated begin for a transaction still in flight is a duplicate request.
  if (state.txns.has(txn)) return;
  if (
    participants.length === 0 ||
    participants.length > limits.participantsPerTxnMax ||
    state.txns.size >= limits.inFlightTxnsMax
  ) {
    fx.push({ type: 'reportOutcome', txn, client, outcome: 'aborted', afterPersist: false });
    return;
  }
  assert(new Set(participants).size === participants.length, `begin ${txn}: participants repeat`);
  const attempt = `${state.config.incarnation}.${++state.attempts}`;
  state.txns.set(txn, {
    phase: 'collecting',
    attempt,
    participants: [...participants],
    client,
    votes: new Map(),
    committers: [],
    acked: new Set(),
  });
  for (const p of participants) fx.push({ type: 'send', to: p, msg: { type: 'PREPARE', txn, attempt } });
  fx.push({ type: 'setTimer', timer: voteTimer(txn), delayMs: state.config.voteTimeoutMs });
}

function onReceive(state: CoordinatorState, from: NodeId, msg: TwoPcMsg, fx: Fx[]): void {
  const t = state.txns.get(msg.txn);
  switch (msg.type) {
    case 'VOTE': {
      if (t === undefined) {
        // A late YES for a transaction already aborted and forgotten: answer
        // now rather than leave the voter to find out by inquiry.
        if (msg.vote === 'yes') fx.push({ type: 'send', to: from, msg: { type: 'ABORT', txn: msg.txn } });
        return;
      }
      // A vote from another attempt says nothing about this one; in particular
      // it must not answer ABORT, which would abort this attempt's voter.
      if (msg.attempt !== t.attempt) return;
      if (t.phase !== 'collecting' || !t.participants.includes(from) || t.votes.has(from)) return;
      t.votes.set(from, msg.vote);
      if (msg.vote === 'yes' && msg.evidence !== undefined)
        t.evidence = { ...t.evidence, [from]: msg.evidence };
      if (msg.vote === 'yes' && msg.ts !== undefined)
        t.ts = t.ts === undefined ? msg.ts : maxHlc(t.ts, msg.ts);
      if (msg.vote === 'no') return abort(state, msg.txn, t, fx);
      if (t.votes.size === t.participants.length) decide(state, msg.txn, t, fx);
      return;
    }
    case 'ACK': {
      if (t === undefined || t.phase !== 'committing' || !t.committers.includes(from)) return;
      t.acked.add(from);
      if (t.acked.size === t.committers.length) {
        fx.push({ type: 'persist', force: false, record: { type: 'end', txn: msg.txn } });
        fx.push({ type: 'cancelTimer', timer: resendTimer(msg.txn) });
        state.txns.delete(msg.txn);
      }
      return;
    }
    case 'INQUIRY': {
      if (t === undefined) {
        fx.push({ type: 'send', to: from, msg: { type: 'ABORT', txn: msg.txn } });
      } else if (t.phase === 'committing') {
        // The commit record is durable (this state exists only after it was
        // written, or was rebuilt from it), so this COMMIT promises nothing new.
        fx.push({ type: 'sendAfterPersist', to: from, msg: commitMsg(msg.txn, t.ts) });
      }
      // Still collecting votes: the answer is not known yet; the participant asks again.
      return;
    }
    case 'OPERATOR_END':
      return onOperatorEnd(state, msg, fx);
    case 'PREPARE':
    case 'COMMIT':
    case 'ABORT':
      // Messages only a coordinator sends; another coordinator's traffic is not ours.
      return;
    default:
      unreachable(msg, 'message');
  }
}

/**
 * An operator ends `txn` by hand. Undecided, it is aborted, exactly as a vote
 * timeout would (presumed abort needs no record, but the `end` with the reason
 * tells the log's reader who ended it). Decided, the commit stands: the `end`
 * record (forced: the operator is told it is done only once it is durable)
 * carries the reason, the resends stop and the transaction is forgotten, so
 * recovery no longer re-drives it. Participants that never acknowledged keep
 * their prepared branches for the operator to resolve; the runtime lists them.
 */
function onOperatorEnd(
  state: CoordinatorState,
  { txn, action, reason }: Extract<TwoPcMsg, { type: 'OPERATOR_END' }>,
  fx: Fx[],
): void {
  const t = state.txns.get(txn);
  if (t === undefined) return;
  if (t.phase === 'collecting') {
    abort(state, txn, t, fx);
  } else {
    fx.push({ type: 'cancelTimer', timer: resendTimer(txn) });
    state.endedByOperator.set(txn, {
      participants: t.committers.filter((p) => !t.acked.has(p)),
      end: { type: 'end', txn, operator: action, reason },
    });
    state.txns.delete(txn);
  }
  fx.push({ type: 'persist', force: true, record: { type: 'end', txn, operator: action, reason } });
}

function onTimeout(state: CoordinatorState, timer: string, fx: Fx[]): void {
  const txn = timerTxn(timer);
  const t = state.txns.get(txn);
  if (t === undefined) return;
  if (timer.startsWith('vote:')) {
    if (t.phase === 'collecting') abort(state, txn, t, fx);
  } else if (timer.startsWith('resend:')) {
    if (t.phase !== 'committing') return;
    for (const p of t.committers) {
      if (!t.acked.has(p)) fx.push({ type: 'sendAfterPersist', to: p, msg: commitMsg(txn, t.ts) });
    }
    fx.push({ type: 'setTimer', timer, delayMs: state.config.commitResendMs });
  }
}

function onPersistFailed(state: CoordinatorState, record: TwoPcRecord, fx: Fx[]): void {
  if (record.type !== 'commit') return; // a lost `end` only means re-driving a finished commit
  const t = state.txns.get(record.txn);
  if (t === undefined || t.phase !== 'committing') return;
  // The commit record never became durable, so no COMMIT left (they waited on
  // it) and the client was not told: abort is still a legal decision.
  fx.push({ type: 'cancelTimer', timer: resendTimer(record.txn) });
  for (const p of t.committers) fx.push({ type: 'send', to: p, msg: { type: 'ABORT', txn: record.txn } });
  fx.push({
    type: 'reportOutcome',
    txn: record.txn,
    client: t.client,
    outcome: 'aborted',
    afterPersist: false,
  });
  state.txns.delete(record.txn);
}

export const twoPcCoordinator: Role<CoordinatorState, TwoPcMsg, TwoPcRecord, Partial<TwoPcConfig>> = {
  init(self, config) {
    return {
      self,
      config: { ...defaultTwoPcConfig, ...config },
      txns: new Map(),
      attempts: 0,
      endedByOperator: new Map(),
    };
  },

  /**
   * Rebuild from the log: every `commit` without an `end` is re-driven (COMMIT
   * re-sent to every participant of that record); anything else is forgotten
   * and will be presumed aborted if asked about.
   */
  recover(self, config, log): StepResult<CoordinatorState, TwoPcMsg, TwoPcRecord> {
    const state = twoPcCoordinator.init(self, config);
    const open = new Map<TxnId, Extract<TwoPcRecord, { type: 'commit' }>>();
    // An `end` with a reason (an operator's) ends a transaction like any other `end`.
    for (const r of log) {
      if (r.type === 'commit') open.set(r.txn, r);
      else if (r.type === 'end') {
        const decided = open.get(r.txn);
        if (decided !== undefined && r.operator !== undefined) {
          state.endedByOperator.set(r.txn, { participants: decided.participants, end: r });
        }
        open.delete(r.txn);
      }
    }
    const effects: Fx[] = [];
    for (const [txn, r] of open) {
      state.txns.set(txn, {
        phase: 'committing',
        attempt: '',
        participants: r.participants,
        client: r.client,
        votes: new Map(r.participants.map((p) => [p, 'yes' as const])),
        committers: r.participants,
        acked: new Set(),
        ...(r.evidence === undefined ? {} : { evidence: { ...r.evidence } }),
        ...(r.ts === undefined ? {} : { ts: r.ts }),
      });
      for (const p of r.participants) effects.push({ type: 'send', to: p, msg: commitMsg(txn, r.ts) });
      effects.push({ type: 'setTimer', timer: resendTimer(txn), delayMs: state.config.commitResendMs });
    }
    return { state, effects };
  },

  step(state, input) {
    const fx: Fx[] = [];
    switch (input.type) {
      case 'begin':
        onBegin(state, input, fx);
        break;
      case 'receive':
        onReceive(state, input.from, input.msg, fx);
        break;
      case 'timeout':
        onTimeout(state, input.timer, fx);
        break;
      case 'persistFailed':
        onPersistFailed(state, input.record as TwoPcRecord, fx);
        break;
      case 'executed':
      case 'wounded':
        // Resource-manager notices go to participants, never to a coordinator.
        break;
      default:
        unreachable(input, 'input');
    }
    return { state, effects: fx };
  },
};
