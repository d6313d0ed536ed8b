// The run bookkeeping the saga orchestrator (../saga/orchestrator.ts) and the
// TCC coordinator (../tcc/coordinator.ts) share. Both drive named branches on services with
// CALLs retried under backoff, force a `begin` before any call leaves, raise
// a stuck alert (logged, reported, still retrying) when a call that must
// succeed keeps failing, hard-stop a run (logged, reported, kept) rather than
// drop it when a finite limit says so, take an operator's retry, resolve or
// abandon, end a run with a forced `end` before reporting, and recover the
// same way from those records. They differ in which calls they make and when;
// that stays in each core, the bookkeeping around it is here.
//
// May not touch: clocks, I/O, randomness (see ../common/types.ts).

import { unreachable } from '../common/assert.ts';
import { limits } from '../common/limits.ts';
import type { NodeId, TxnId } from '../common/types.ts';
import {
  type AlertConfig,
  type BeginMsg,
  type BeginRecord,
  type BranchMsg,
  type BranchOp,
  backoffMs,
  type CommonRecord,
  type EndRecord,
  isValidSagaId,
  type OperatorMsg,
  type RecentIds,
  type RetryConfig,
  type SagaEffect,
  type SagaRole,
  type StuckRecord,
} from './types.ts';

/**
 * Where a helper puts its effects: the caller's effect list, which may hold
 * more kinds of messages and records than the helper writes.
 */
export interface EffectList<M, R> {
  push(...effects: SagaEffect<M, R>[]): number;
}

/** A branch's retry bookkeeping. */
export interface BranchAttempts {
  /** Attempts of the current call (volatile: a restart counts from 1 again). */
  attempts: number;
  /**
   * Attempts made before an operator resumed the hard-stopped run (absent:
   * none): a finite limit counts only the attempts past these, a fresh budget
   * as a restart gives, while the attempt numbers sent go on in order.
   */
  resumedAfter?: number;
  /** The last non-definitive answer, for the stuck or give-up reason. */
  lastReason: string;
}

/** What a saga run and a TCC run have in common. */
export interface CoordinatedRun<D, B extends BranchAttempts> {
  client: NodeId;
  def: D;
  entropy: number;
  /**
   * `stuck`: hard-stopped; it cannot go on without an operator (a call that
   * must succeed failed past a finite limit, or nothing correct is left to do
   * alone); kept for one to see.
   */
  status: 'active' | 'stuck';
  /** Why the run is compensating or stuck. */
  reason: string | null;
  /**
   * The stuck alert's reason while the run is alerted and still retrying
   * (see `raiseAlert`); null otherwise. Cleared with the run when it ends.
   */
  alert: string | null;
  /** The `alertTimer` is set (only with a finite `stuckAfterMs`). */
  alertArmed: boolean;
  /** By branch name, in definition order. */
  branches: Map<string, B>;
}

/** Where a branch's calls go, and what they carry. */
export interface BranchTarget {
  branch: string;
  service: NodeId;
  payload: string;
}

// Saga ids may contain ':', branch names may not contain '|'.
export const retryTimer = (txn: TxnId, branch: string) => `retry|${branch}|${txn}`;
export const timeoutTimer = (txn: TxnId) => `timeout|${txn}`;
export const alertTimer = (txn: TxnId) => `alert|${txn}`;

/** A timer of `retryTimer`, `timeoutTimer` or `alertTimer`, read back; null for any other. */
export function parseTimer(
  timer: string,
):
  | { kind: 'timeout'; txn: TxnId }
  | { kind: 'alert'; txn: TxnId }
  | { kind: 'retry'; txn: TxnId; branch: string }
  | null {
  const parts = timer.split('|');
  if (parts[0] === 'timeout') return { kind: 'timeout', txn: timer.slice('timeout|'.length) };
  if (parts[0] === 'alert') return { kind: 'alert', txn: timer.slice('alert|'.length) };
  if (parts[0] !== 'retry' || parts.length < 3) return null;
  const branch = parts[1]!;
  return { kind: 'retry', txn: timer.slice(`retry|${branch}|`.length), branch };
}

export function armTimeout(txn: TxnId, delayMs: number, fx: EffectList<never, never>): void {
  fx.push({ type: 'setTimer', timer: timeoutTimer(txn), delayMs });
}

/** What a branch last heard, for the reason a call is given up on. */
export function lastAnswer(b: BranchAttempts): string {
  return b.lastReason === '' ? 'no answer' : `last answer: ${b.lastReason}`;
}

/**
 * The run enters the phase whose calls must succeed (compensating,
 * confirming, cancelling): arm the elapsed-time alert, when one is set.
 */
export function armAlert(
  config: AlertConfig,
  txn: TxnId,
  run: CoordinatedRun<unknown, BranchAttempts>,
  fx: EffectList<never, never>,
): void {
  if (!Number.isFinite(config.stuckAfterMs) || run.alert !== null || run.alertArmed) return;
  run.alertArmed = true;
  fx.push({ type: 'setTimer', timer: alertTimer(txn), delayMs: config.stuckAfterMs });
}

/** Cancel the elapsed-time alert if it is set. */
export function disarmAlert(
  txn: TxnId,
  run: CoordinatedRun<unknown, BranchAttempts>,
  fx: EffectList<never, never>,
): void {
  if (!run.alertArmed) return;
  run.alertArmed = false;
  fx.push({ type: 'cancelTimer', timer: alertTimer(txn) });
}

/**
 * Report the run stuck as an alert, once: force a `stuck` record with
 * `retrying`, then report it. Nothing stops; the calls go on under backoff,
 * and the run ends normally (clearing the alert) when they succeed.
 */
export function raiseAlert(
  txn: TxnId,
  run: CoordinatedRun<unknown, BranchAttempts>,
  branch: string,
  reason: string,
  fx: EffectList<never, StuckRecord>,
): void {
  if (run.alert !== null || run.status === 'stuck') return;
  run.alert = reason;
  disarmAlert(txn, run, fx);
  fx.push({
    type: 'persist',
    force: true,
    record: { type: 'stuck', txn, client: run.client, branch, reason, retrying: true },
  });
  fx.push({
    type: 'reportSaga',
    txn,
    client: run.client,
    outcome: 'stuck',
    reason,
    afterPersist: true,
    retrying: true,
  });
}

/** The attempts a finite limit counts: those since the operator last resumed the run. */
export function attemptsCounted(b: BranchAttempts): number {
  return b.attempts - (b.resumedAfter ?? 0);
}

/** A must-succeed call of `branch` has failed `b.attempts` times: alert past the threshold. */
export function alertOnAttempts(
  config: AlertConfig,
  txn: TxnId,
  run: CoordinatedRun<unknown, BranchAttempts>,
  branch: string,
  b: BranchAttempts,
  what: string,
  fx: EffectList<never, StuckRecord>,
): void {
  if (run.alert !== null || b.attempts < config.stuckAfterAttempts) return;
  raiseAlert(
    txn,
    run,
    branch,
    `${what} of ${branch} failed ${b.attempts} times (${lastAnswer(b)}); still retrying`,
    fx,
  );
}

/** Why a forward call (an action, a try) is given up on. */
export function noResultReason(branch: string, b: BranchAttempts): string {
  return `${branch} gave no result in ${b.attempts} attempts (${lastAnswer(b)})`;
}

/** Send attempt `attempt` of `op` to `to`'s service, and arm its retry. */
export function callBranch(
  config: RetryConfig,
  txn: TxnId,
  entropy: number,
  to: BranchTarget,
  op: BranchOp,
  handler: string,
  attempt: number,
  fx: EffectList<BranchMsg, never>,
): void {
  const msg: BranchMsg = {
    type: 'CALL',
    txn,
    branch: to.branch,
    op,
    handler,
    payload: to.payload,
    attempt,
  };
  // After persist: a call, and any retry of it, must not overtake the record
  // it depends on (the saga's `start`, TCC's `begin` or `decision`).
  fx.push({ type: 'sendAfterPersist', to: to.service, msg });
  fx.push({
    type: 'setTimer',
    timer: retryTimer(txn, to.branch),
    delayMs: backoffMs(config, attempt, entropy, `${txn}|${to.branch}|${op}`),
  });
}

/** The run `txn` unless it is unknown here or stuck (a stuck run waits for an operator). */
export function activeRun<Run extends { status: 'active' | 'stuck' }>(
  runs: ReadonlyMap<TxnId, Run>,
  txn: TxnId,
): Run | undefined {
  const run = runs.get(txn);
  return run === undefined || run.status === 'stuck' ? undefined : run;
}

/** How a core names its transactions when it turns a BEGIN away. */
export interface BeginWords {
  /** `saga id`, `transaction id`. */
  id: string;
  /** `sagas`, `transactions`. */
  plural: string;
}

/**
 * Admit a BEGIN: ignore a repeated request, report `rejected` (nothing
 * logged) for a bad id, a bad definition or too many in flight; otherwise
 * make the run and force its `begin`. Returns the new run, or undefined.
 */
export function beginRun<D, Run>(
  runs: Map<TxnId, Run>,
  finished: RecentIds,
  from: NodeId,
  msg: BeginMsg<D>,
  check: (def: D) => string | null,
  make: (client: NodeId, def: D, entropy: number) => Run,
  words: BeginWords,
  fx: EffectList<never, BeginRecord<D>>,
): Run | undefined {
  const { txn, def } = msg;
  if (runs.has(txn) || finished.has(txn)) return undefined; // a repeated request
  const reject = (reason: string): undefined => {
    fx.push({ type: 'reportSaga', txn, client: from, outcome: 'rejected', reason, afterPersist: false });
    return undefined;
  };
  if (!isValidSagaId(txn)) return reject(`bad ${words.id}`);
  const problem = check(def);
  if (problem !== null) return reject(`bad definition: ${problem}`);
  if (runs.size >= limits.inFlightTxnsMax) return reject(`too many ${words.plural} in flight`);
  const entropy = msg.entropy >>> 0;
  const run = make(from, def, entropy);
  runs.set(txn, run);
  fx.push({ type: 'persist', force: true, record: { type: 'begin', txn, client: from, def, entropy } });
  return run;
}

/**
 * Force the `end`, report it after, and forget the run (keeping its id, so
 * that a repeated BEGIN does not run it again). `cancelTimeout`: the run's
 * timeout may still be armed and is cancelled between the two.
 */
export function endRun<Run extends CoordinatedRun<unknown, BranchAttempts>>(
  runs: Map<TxnId, Run>,
  finished: RecentIds,
  txn: TxnId,
  run: Run,
  outcome: 'completed' | 'compensated',
  cancelTimeout: boolean,
  fx: EffectList<never, EndRecord>,
): void {
  const reason = run.reason ?? '';
  fx.push({
    type: 'persist',
    force: true,
    record: { type: 'end', txn, client: run.client, outcome, reason },
  });
  if (cancelTimeout) fx.push({ type: 'cancelTimer', timer: timeoutTimer(txn) });
  disarmAlert(txn, run, fx);
  fx.push({
    type: 'reportSaga',
    txn,
    client: run.client,
    outcome,
    reason: outcome === 'completed' ? null : reason,
    afterPersist: true,
  });
  runs.delete(txn);
  finished.add(txn);
}

/**
 * Mark the run stuck on `branch`: stop every retry (and, with
 * `cancelTimeout`, the run's timeout), force the `stuck` record, then report.
 */
export function markStuck(
  txn: TxnId,
  run: CoordinatedRun<unknown, BranchAttempts>,
  branch: string,
  reason: string,
  cancelTimeout: boolean,
  fx: EffectList<never, StuckRecord>,
): void {
  run.status = 'stuck';
  run.reason = reason;
  for (const name of run.branches.keys()) fx.push({ type: 'cancelTimer', timer: retryTimer(txn, name) });
  if (cancelTimeout) fx.push({ type: 'cancelTimer', timer: timeoutTimer(txn) });
  disarmAlert(txn, run, fx);
  fx.push({
    type: 'persist',
    force: true,
    record: { type: 'stuck', txn, client: run.client, branch, reason },
  });
  fx.push({ type: 'reportSaga', txn, client: run.client, outcome: 'stuck', reason, afterPersist: true });
}

/**
 * A forced write failed. The driver keeps the log a prefix (a write-ahead log
 * stops at its first failed write), so writing the record again, and then
 * re-sending every call of its run that is out, repeats exactly the moves
 * whose after-persist effects were dropped; the services' barrier absorbs the
 * repeats. A lost `end` or `stuck` is re-reported from the record itself.
 *
 * Writes the record again (`force` as it was first written) and returns the
 * run whose outstanding calls the caller sends again, or undefined when there
 * is none to resend.
 */
export function persistAgain<
  Run extends { status: 'active' | 'stuck' },
  R extends { type: string; txn: TxnId },
>(runs: ReadonlyMap<TxnId, Run>, record: R, force: boolean, fx: EffectList<never, R>): Run | undefined {
  fx.push({ type: 'persist', force, record });
  if (isEnding(record)) {
    const alert = record.type === 'stuck' && record.retrying === true;
    fx.push({
      type: 'reportSaga',
      txn: record.txn,
      client: record.client,
      outcome: record.type === 'end' ? record.outcome : 'stuck',
      reason: endReason(record),
      afterPersist: true,
      ...(alert ? { retrying: true } : {}),
    });
    // An alert leaves the run going: its calls are out as for any record.
    if (!alert) return undefined;
  }
  return activeRun(runs, record.txn);
}

/** The reason a report of `r` carries: null for a run that completed on its own. */
function endReason(r: EndRecord | StuckRecord): string | null {
  if (r.type === 'stuck') return r.reason;
  if (r.operator !== undefined)
    return `${r.operator.action === 'resolve' ? 'resolved' : 'abandoned'} by an operator: ${r.operator.reason}`;
  return r.outcome === 'completed' ? null : r.reason;
}

function isEnding(r: { type: string }): r is EndRecord | StuckRecord {
  return r.type === 'end' || r.type === 'stuck';
}

/**
 * Rebuild the runs from `log`: the records both logs have here (a `begin`
 * makes a run, `stuck` marks it, `end` forgets it and keeps its id), every
 * other by `own`, with the run it is about if that is known.
 */
function replayLog<
  D,
  Run extends { status: 'active' | 'stuck'; reason: string | null; alert: string | null },
  R extends { type: string; txn: TxnId },
>(
  runs: Map<TxnId, Run>,
  finished: RecentIds,
  log: readonly R[],
  make: (client: NodeId, def: D, entropy: number) => Run,
  own: (r: Exclude<R, CommonRecord<D>>, run: Run | undefined) => void,
): void {
  for (const record of log) {
    const run = runs.get(record.txn);
    if (!isCommon(record)) {
      own(record as Exclude<R, CommonRecord<D>>, run);
      continue;
    }
    const r = record as CommonRecord<D>;
    switch (r.type) {
      case 'begin':
        // The core logs a begin only for an id it does not hold as ended
        // (one past the retention may run again): the log is the truth.
        finished.delete(r.txn);
        runs.set(r.txn, make(r.client, r.def, r.entropy));
        break;
      case 'stuck':
        if (run === undefined) break;
        if (r.retrying === true) {
          // An alert, or an operator's retry resuming a hard-stopped run.
          run.status = 'active';
          run.alert = r.reason;
        } else {
          run.status = 'stuck';
          run.reason = r.reason;
        }
        break;
      case 'end':
        runs.delete(r.txn);
        finished.add(r.txn);
        break;
      default:
        unreachable(r, 'record');
    }
  }
}

function isCommon<D>(r: { type: string }): r is CommonRecord<D> {
  return r.type === 'begin' || r.type === 'stuck' || r.type === 'end';
}

/** A coordinator's effect list. */
type CoordinatorFx<D, R> = SagaEffect<BeginMsg<D> | BranchMsg | OperatorMsg, R>[];

/**
 * Why an operator's action on `txn` is refused by what every core shares, or
 * null: it must be in flight here and say why. Each core adds its own rules
 * (what `resolve` may not contradict; what `retry` can resume).
 */
export function commonOperatorProblem(
  runs: ReadonlyMap<TxnId, unknown>,
  finished: RecentIds,
  msg: OperatorMsg,
): string | null {
  if (typeof msg.reason !== 'string' || msg.reason.trim() === '') return 'a reason is required';
  if (finished.has(msg.txn)) return `${msg.txn} has ended already`;
  if (!runs.has(msg.txn)) return `${msg.txn} is not in flight here`;
  return null;
}

/**
 * End `run` as an operator asked: stop every retry and timer, force an `end`
 * carrying the operator's reason, then report it. Calls still out are
 * answered into nothing: the run is gone.
 */
function endByOperator<Run extends CoordinatedRun<unknown, BranchAttempts>>(
  runs: Map<TxnId, Run>,
  finished: RecentIds,
  txn: TxnId,
  run: Run,
  outcome: 'completed' | 'compensated' | 'abandoned',
  operator: { action: 'resolve' | 'abandon'; reason: string },
  fx: EffectList<never, EndRecord>,
): void {
  for (const name of run.branches.keys()) fx.push({ type: 'cancelTimer', timer: retryTimer(txn, name) });
  fx.push({ type: 'cancelTimer', timer: timeoutTimer(txn) });
  disarmAlert(txn, run, fx);
  const record: EndRecord = {
    type: 'end',
    txn,
    client: run.client,
    outcome,
    reason: operator.reason,
    operator,
  };
  fx.push({ type: 'persist', force: true, record });
  fx.push({
    type: 'reportSaga',
    txn,
    client: run.client,
    outcome,
    reason: endReason(record),
    afterPersist: true,
  });
  runs.delete(txn);
  finished.add(txn);
}

/** A core's parts that `coordinatorRole` assembles into a role. */
export interface CoordinatorSpec<S, D, R, C, Run> {
  init(self: NodeId, config: C): S;
  /** The state's runs in flight, and the ids of those that ended. */
  runs(state: S): Map<TxnId, Run>;
  finished(state: S): RecentIds;
  makeRun(client: NodeId, def: D, entropy: number): Run;
  /** Replay one of the core's own records (the shared ones are `replayLog`'s). */
  replay(r: Exclude<R, CommonRecord<D>>, run: Run | undefined): void;
  /** After replay, carry on a run that is not stuck (a stuck one is reported again). */
  resume(state: S, txn: TxnId, run: Run, fx: CoordinatorFx<D, R>): void;
  /** The inputs a coordinator acts on. */
  begin(state: S, from: NodeId, msg: BeginMsg<D>, fx: CoordinatorFx<D, R>): void;
  reply(state: S, from: NodeId, msg: Extract<BranchMsg, { type: 'REPLY' }>, fx: CoordinatorFx<D, R>): void;
  timeout(state: S, timer: string, fx: CoordinatorFx<D, R>): void;
  persistFailed(state: S, record: R, fx: CoordinatorFx<D, R>): void;
  /** The core's own rules for an operator's action on an in-flight run: why it is refused, or null. */
  operatorProblem(state: S, run: Run, msg: OperatorMsg): string | null;
  /** An operator's retry: send every outstanding call now (the run is active). */
  retryNow(state: S, txn: TxnId, run: Run, fx: CoordinatorFx<D, R>): void;
}

/**
 * Why the core refuses `msg`, or null when it would carry it out. The runtime
 * asks this first so that a refusal reaches the operator as an error.
 */
export function operatorProblemOf<S, D, R, C, Run>(
  spec: CoordinatorSpec<S, D, R, C, Run>,
  state: S,
  msg: OperatorMsg,
): string | null {
  const runs = spec.runs(state);
  const common = commonOperatorProblem(runs, spec.finished(state), msg);
  return common ?? spec.operatorProblem(state, runs.get(msg.txn)!, msg);
}

function onOperator<S, D, R, C, Run extends CoordinatedRun<D, BranchAttempts>>(
  spec: CoordinatorSpec<S, D, R, C, Run>,
  state: S,
  msg: OperatorMsg,
  fx: CoordinatorFx<D, R>,
): void {
  if (operatorProblemOf(spec, state, msg) !== null) return; // the runtime told the operator why
  const runs = spec.runs(state);
  const run = runs.get(msg.txn)!;
  switch (msg.action) {
    case 'retry':
      if (run.status === 'stuck') {
        // Resume a hard-stopped run: the `stuck` record with `retrying` tells
        // recovery that it is active again, and keeps it listed as stuck
        // until it ends.
        // Its calls get a fresh budget against their limit, as after a
        // restart, while the attempt numbers sent go on (`resumedAfter`).
        for (const b of run.branches.values()) b.resumedAfter = b.attempts;
        run.status = 'active';
        run.alert = `resumed by an operator (${msg.reason}) after: ${run.reason ?? ''}`;
        fx.push({
          type: 'persist',
          force: true,
          record: {
            type: 'stuck',
            txn: msg.txn,
            client: run.client,
            branch: '',
            reason: run.alert,
            retrying: true,
          } as StuckRecord as R,
        });
      }
      return spec.retryNow(state, msg.txn, run, fx);
    case 'resolve':
      return endByOperator(
        runs,
        spec.finished(state),
        msg.txn,
        run,
        msg.outcome,
        { action: 'resolve', reason: msg.reason },
        fx as never,
      );
    case 'abandon':
      return endByOperator(
        runs,
        spec.finished(state),
        msg.txn,
        run,
        'abandoned',
        { action: 'abandon', reason: msg.reason },
        fx as never,
      );
    default:
      unreachable(msg, 'operator action');
  }
}

/** A coordinator's role, and the rule it applies to an operator's action (see `operatorProblemOf`). */
export interface CoordinatorRole<S, D, R, C>
  extends SagaRole<S, BeginMsg<D> | BranchMsg | OperatorMsg, R, C> {
  operatorProblem(state: S, msg: OperatorMsg): string | null;
}

/**
 * The role of a coordinator: recovery replays the log, reports every stuck
 * run again (its report may have been lost with the crash) and resumes every
 * other; `step` routes each input to its handler.
 */
export function coordinatorRole<
  S,
  D,
  R extends { type: string; txn: TxnId },
  C,
  Run extends CoordinatedRun<D, BranchAttempts>,
>(spec: CoordinatorSpec<S, D, R, C, Run>): CoordinatorRole<S, D, R, C> {
  return {
    init: spec.init,

    operatorProblem: (state, msg) => operatorProblemOf(spec, state, msg),

    recover(self, config, log) {
      const state = spec.init(self, config);
      const runs = spec.runs(state);
      replayLog(runs, spec.finished(state), log, spec.makeRun, spec.replay);
      const effects: CoordinatorFx<D, R> = [];
      for (const [txn, run] of runs) {
        if (run.status === 'stuck') {
          effects.push({
            type: 'reportSaga',
            txn,
            client: run.client,
            outcome: 'stuck',
            reason: run.reason,
            afterPersist: false,
          });
          continue;
        }
        spec.resume(state, txn, run, effects);
        if (run.alert !== null && runs.has(txn)) {
          // Still alerted after the restart: raise it again (the report may
          // have been lost with the crash); the run retries as before.
          effects.push({
            type: 'reportSaga',
            txn,
            client: run.client,
            outcome: 'stuck',
            reason: run.alert,
            afterPersist: false,
            retrying: true,
          });
        }
      }
      return { state, effects };
    },

    step(state, input) {
      const fx: CoordinatorFx<D, R> = [];
      switch (input.type) {
        case 'receive': {
          const msg = input.msg;
          if (msg.type === 'BEGIN') spec.begin(state, input.from, msg, fx);
          else if (msg.type === 'REPLY') spec.reply(state, input.from, msg, fx);
          else if (msg.type === 'OPERATOR') onOperator(spec, state, msg, fx);
          break; // a CALL is for services
        }
        case 'timeout':
          spec.timeout(state, input.timer, fx);
          break;
        case 'persistFailed':
          spec.persistFailed(state, input.record as R, fx);
          break;
        case 'begin':
        case 'executed':
        case 'wounded':
          break; // 2PC inputs; a saga or TCC transaction begins with a BEGIN message
        default:
          unreachable(input, 'input');
      }
      return { state, effects: fx };
    },
  };
}
