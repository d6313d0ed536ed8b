// The TCC coordinator: try every branch, then confirm all or cancel all.
//
// Owns: the decision for each TCC transaction it began. Phase one sends a try
// to every branch at once (after the forced `begin`); each try reserves at its
// service (seat held, amount frozen). Every try succeeded: confirm all. Any
// try refused (a business `failure`, final, never retried), unanswered past
// `tryAttemptsMax` attempts, or the transaction past its timeout: cancel all
// — every branch whose try was not refused, the unanswered ones included,
// because their try may have run; the barrier (../branch/service.ts) makes a
// cancel without try a recorded no-op and refuses a try that arrives after
// its cancel. The decision is forced before any confirm or cancel leaves, so a
// restarted coordinator never decides the other way. Confirms and cancels are
// retried with backoff until they succeed: past `stuckAfterAttempts` failed
// attempts of one, or `stuckAfterMs` after the decision, the transaction is
// reported stuck as an alert (logged, reported) and goes on retrying. A
// finite `phaseTwoAttemptsMax` (the simulator's setting) hard-stops it
// instead: logged, reported with its reason, and kept in the state — never
// silently dropped. An operator can retry, resolve or abandon it (see
// `operatorProblem`).
//
// Compared with the saga (../saga/orchestrator.ts): nothing is visible to
// others until confirm (a try only reserves), at the price of a second round
// of calls and of services that implement three handlers.
//
// May not touch: clocks, I/O, randomness (see ../common/types.ts).

import {
  activeRun,
  alertOnAttempts,
  armAlert,
  armTimeout,
  attemptsCounted,
  type BranchAttempts,
  beginRun,
  type CoordinatedRun,
  type CoordinatorRole,
  callBranch,
  coordinatorRole,
  endRun,
  lastAnswer,
  markStuck,
  noResultReason,
  parseTimer,
  persistAgain,
  raiseAlert,
  retryTimer,
  timeoutTimer,
} from '../branch/run.ts';
import {
  type BranchMsg,
  type CommonRecord,
  type OperatorMsg,
  RecentIds,
  type SagaEffect,
} from '../branch/types.ts';
import { unreachable } from '../common/assert.ts';
import type { NodeId, TxnId } from '../common/types.ts';
import {
  checkTccPlan,
  defaultTccConfig,
  type TccConfig,
  type TccMsg,
  type TccPlan,
  type TccPlanBranch,
  type TccRecord,
} from './types.ts';

type Fx = SagaEffect<TccMsg, TccRecord>;

export interface TccBranch extends BranchAttempts {
  def: TccPlanBranch;
  /** Phase one: the try's answer so far. */
  tried: 'pending' | 'success' | 'refused';
  /** Phase two: `none` before the decision (or for a refused try under cancel). */
  second: 'none' | 'pending' | 'done';
}

/** `status` is `stuck` once a confirm or cancel failed past its limit. */
export interface TccRun extends CoordinatedRun<TccPlan, TccBranch> {
  phase: 'trying' | 'confirming' | 'cancelling';
}

export interface TccCoordinatorState {
  self: NodeId;
  config: TccConfig;
  txns: Map<TxnId, TccRun>;
  /** Transactions that ended here (the newest `retainFinished`). */
  finished: RecentIds;
}

function makeRun(client: NodeId, def: TccPlan, entropy: number): TccRun {
  return {
    client,
    def,
    entropy,
    phase: 'trying',
    status: 'active',
    reason: null,
    alert: null,
    alertArmed: false,
    branches: new Map(
      def.branches.map((d) => [
        d.branch,
        { def: d, tried: 'pending', second: 'none', attempts: 1, lastReason: '' } as TccBranch,
      ]),
    ),
  };
}

function call(state: TccCoordinatorState, txn: TxnId, run: TccRun, b: TccBranch, fx: Fx[]): void {
  const op = run.phase === 'trying' ? 'try' : run.phase === 'confirming' ? 'confirm' : 'cancel';
  callBranch(state.config, txn, run.entropy, b.def, op, b.def[op], b.attempts, fx);
}

function finishIfSettled(state: TccCoordinatorState, txn: TxnId, run: TccRun, fx: Fx[]): void {
  if (run.phase === 'trying' || run.status === 'stuck') return;
  for (const b of run.branches.values()) if (b.second === 'pending') return;
  // The decision cancelled the timeout already.
  endRun(
    state.txns,
    state.finished,
    txn,
    run,
    run.phase === 'confirming' ? 'completed' : 'compensated',
    false,
    fx,
  );
}

/** Enter phase two in memory: who must be told. (The record is written by `decide`.) */
function enterPhaseTwo(run: TccRun, decision: 'confirm' | 'cancel', reason: string): void {
  run.phase = decision === 'confirm' ? 'confirming' : 'cancelling';
  run.reason = decision === 'cancel' ? reason : null;
  for (const b of run.branches.values()) {
    // A refused try reserved nothing (the barrier recorded the refusal): no cancel.
    b.second = decision === 'cancel' && b.tried === 'refused' ? 'none' : 'pending';
    b.attempts = 1;
    if (b.resumedAfter !== undefined) delete b.resumedAfter;
    b.lastReason = '';
  }
}

function sendPhaseTwo(state: TccCoordinatorState, txn: TxnId, run: TccRun, fx: Fx[]): void {
  for (const b of run.branches.values()) if (b.second === 'pending') call(state, txn, run, b, fx);
  finishIfSettled(state, txn, run, fx);
}

function decide(
  state: TccCoordinatorState,
  txn: TxnId,
  run: TccRun,
  decision: 'confirm' | 'cancel',
  reason: string,
  fx: Fx[],
): void {
  if (run.phase !== 'trying') return;
  fx.push({ type: 'cancelTimer', timer: timeoutTimer(txn) });
  for (const b of run.branches.values())
    fx.push({ type: 'cancelTimer', timer: retryTimer(txn, b.def.branch) });
  enterPhaseTwo(run, decision, reason);
  fx.push({ type: 'persist', force: true, record: { type: 'decision', txn, decision, reason } });
  armAlert(state.config, txn, run, fx);
  sendPhaseTwo(state, txn, run, fx);
}

const words = { id: 'transaction id', plural: 'transactions' };

function onBegin(
  state: TccCoordinatorState,
  from: NodeId,
  msg: Extract<TccMsg, { type: 'BEGIN' }>,
  fx: Fx[],
): void {
  const run = beginRun(state.txns, state.finished, from, msg, checkTccPlan, makeRun, words, fx);
  if (run === undefined) return;
  armTimeout(msg.txn, run.def.timeoutMs ?? state.config.tryTimeoutMs, fx);
  for (const b of run.branches.values()) call(state, msg.txn, run, b, fx);
}

function onReply(
  state: TccCoordinatorState,
  from: NodeId,
  msg: Extract<BranchMsg, { type: 'REPLY' }>,
  fx: Fx[],
): void {
  const run = activeRun(state.txns, msg.txn);
  const b = run?.branches.get(msg.branch);
  if (run === undefined || b === undefined || b.def.service !== from) return;
  const { txn, branch } = msg;
  if (msg.op === 'try') {
    if (run.phase !== 'trying' || b.tried !== 'pending') return;
    if (msg.result === 'ongoing') {
      b.lastReason = msg.reason;
      return;
    }
    fx.push({ type: 'cancelTimer', timer: retryTimer(txn, branch) });
    fx.push({
      type: 'persist',
      force: false,
      record: { type: 'tried', txn, branch, result: msg.result, reason: msg.reason },
    });
    if (msg.result === 'failure') {
      b.tried = 'refused';
      return decide(state, txn, run, 'cancel', `${branch} refused: ${msg.reason}`, fx);
    }
    b.tried = 'success';
    for (const other of run.branches.values()) if (other.tried !== 'success') return;
    return decide(state, txn, run, 'confirm', '', fx);
  }
  const expected = run.phase === 'confirming' ? 'confirm' : run.phase === 'cancelling' ? 'cancel' : null;
  if (msg.op !== expected || b.second !== 'pending') return;
  if (msg.result !== 'success') {
    b.lastReason = msg.reason;
    return; // confirm and cancel must eventually succeed: retried
  }
  b.second = 'done';
  fx.push({ type: 'cancelTimer', timer: retryTimer(txn, branch) });
  fx.push({ type: 'persist', force: false, record: { type: 'settled', txn, branch } });
  finishIfSettled(state, txn, run, fx);
}

function onTimeout(state: TccCoordinatorState, timer: string, fx: Fx[]): void {
  const t = parseTimer(timer);
  if (t === null) return;
  if (t.kind === 'alert') {
    const run = activeRun(state.txns, t.txn);
    if (run === undefined || run.phase === 'trying') return;
    run.alertArmed = false;
    const op = run.phase === 'confirming' ? 'confirming' : 'cancelling';
    const out = [...run.branches.values()].find((b) => b.second === 'pending');
    const why = out === undefined ? 'no answer' : `${out.def.branch}: ${out.lastReason || 'no answer'}`;
    return raiseAlert(
      t.txn,
      run,
      out?.def.branch ?? '',
      `still ${op} after ${state.config.stuckAfterMs} ms (${why}); still retrying`,
      fx,
    );
  }
  if (t.kind === 'timeout') {
    const run = activeRun(state.txns, t.txn);
    if (run === undefined || run.phase !== 'trying') return;
    const ms = run.def.timeoutMs ?? state.config.tryTimeoutMs;
    return decide(state, t.txn, run, 'cancel', `timed out after ${ms} ms`, fx);
  }
  const { txn, branch } = t;
  const run = activeRun(state.txns, txn);
  const b = run?.branches.get(branch);
  if (run === undefined || b === undefined) return;
  if (run.phase === 'trying') {
    if (b.tried !== 'pending') return;
    if (b.attempts >= state.config.tryAttemptsMax) {
      return decide(state, txn, run, 'cancel', noResultReason(branch, b), fx);
    }
  } else {
    if (b.second !== 'pending') return;
    const failed = attemptsCounted(b);
    if (failed >= state.config.phaseTwoAttemptsMax) {
      const op = run.phase === 'confirming' ? 'confirm' : 'cancel';
      // The decision cancelled the timeout already.
      return markStuck(
        txn,
        run,
        branch,
        `${op} ${b.def[op]} of ${branch} failed ${failed} times (${lastAnswer(b)})`,
        false,
        fx,
      );
    }
    const op = run.phase === 'confirming' ? 'confirm' : 'cancel';
    alertOnAttempts(state.config, txn, run, branch, b, `${op} ${b.def[op]}`, fx);
  }
  b.attempts++;
  call(state, txn, run, b, fx);
}

/**
 * TCC's rules for an operator's action (the shared ones are in
 * `commonOperatorProblem`): `resolve` may not contradict the decision —
 * `completed` (confirmed) only once confirm was decided, `compensated`
 * (cancelled) only before a decision or once cancel was decided; `retry` of a
 * hard-stopped transaction resumes its phase two.
 */
function operatorProblem(_state: TccCoordinatorState, run: TccRun, msg: OperatorMsg): string | null {
  if (msg.action !== 'resolve') return null;
  if (msg.outcome === 'completed' && run.phase !== 'confirming') {
    return run.phase === 'cancelling'
      ? `${msg.txn} was decided cancel (${run.reason ?? ''}); it cannot be resolved confirmed`
      : `${msg.txn} has no decision yet; only cancelled can be resolved before confirm is decided`;
  }
  if (msg.outcome === 'compensated' && run.phase === 'confirming') {
    return `${msg.txn} was decided confirm; it cannot be resolved cancelled`;
  }
  if (msg.outcome !== 'completed' && msg.outcome !== 'compensated')
    return `unknown outcome ${String(msg.outcome)}`;
  return null;
}

/** Send every outstanding try, confirm or cancel now. */
function retryNow(state: TccCoordinatorState, txn: TxnId, run: TccRun, fx: Fx[]): void {
  for (const b of run.branches.values()) {
    if (run.phase === 'trying' ? b.tried !== 'pending' : b.second !== 'pending') continue;
    b.attempts++;
    call(state, txn, run, b, fx);
  }
  finishIfSettled(state, txn, run, fx);
}

/** As the saga orchestrator's (see `persistAgain`): write the record again, re-send what is out, re-report what ended. */
function onPersistFailed(state: TccCoordinatorState, record: TccRecord, fx: Fx[]): void {
  const force = record.type !== 'tried' && record.type !== 'settled';
  const run = persistAgain(state.txns, record, force, fx);
  if (run === undefined) return;
  for (const b of run.branches.values()) {
    if (run.phase === 'trying' ? b.tried === 'pending' : b.second === 'pending')
      call(state, record.txn, run, b, fx);
  }
}

/** Replay one of this core's own records (the shared ones are `replayLog`'s). */
function replayRecord(r: Exclude<TccRecord, CommonRecord<TccPlan>>, run: TccRun | undefined): void {
  switch (r.type) {
    case 'tried': {
      const b = run?.branches.get(r.branch);
      if (b !== undefined) {
        b.tried = r.result === 'success' ? 'success' : 'refused';
        b.lastReason = r.reason;
      }
      break;
    }
    case 'decision':
      if (run !== undefined) enterPhaseTwo(run, r.decision, r.reason);
      break;
    case 'settled': {
      const b = run?.branches.get(r.branch);
      if (b !== undefined) b.second = 'done';
      break;
    }
    default:
      unreachable(r, 'record');
  }
}

/**
 * Rebuild from the log: a transaction without a decision is still trying
 * (unanswered tries are asked again; a logged refusal cancels at once); one
 * with a decision re-sends that decision to every branch not yet settled;
 * a stuck one stays stuck and is reported again.
 */
function resume(state: TccCoordinatorState, txn: TxnId, run: TccRun, effects: Fx[]): void {
  if (run.phase !== 'trying') {
    armAlert(state.config, txn, run, effects);
    return sendPhaseTwo(state, txn, run, effects);
  }
  const refused = [...run.branches.values()].find((b) => b.tried === 'refused');
  if (refused !== undefined) {
    decide(state, txn, run, 'cancel', `${refused.def.branch} refused: ${refused.lastReason}`, effects);
  } else if ([...run.branches.values()].every((b) => b.tried === 'success')) {
    decide(state, txn, run, 'confirm', '', effects);
  } else {
    armTimeout(txn, run.def.timeoutMs ?? state.config.tryTimeoutMs, effects);
    for (const b of run.branches.values()) {
      if (b.tried === 'pending') {
        b.attempts = 1;
        call(state, txn, run, b, effects);
      }
    }
  }
}

export const tccCoordinator: CoordinatorRole<
  TccCoordinatorState,
  TccPlan,
  TccRecord,
  Partial<TccConfig>
> = coordinatorRole({
  init(self, config: Partial<TccConfig>): TccCoordinatorState {
    const cfg = { ...defaultTccConfig, ...config };
    return { self, config: cfg, txns: new Map(), finished: new RecentIds(cfg.retainFinished) };
  },
  runs: (state) => state.txns,
  finished: (state) => state.finished,
  makeRun,
  replay: replayRecord,
  resume,
  begin: onBegin,
  reply: onReply,
  timeout: onTimeout,
  persistFailed: onPersistFailed,
  operatorProblem,
  retryNow,
});
