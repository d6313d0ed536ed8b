// What the saga orchestrator (./orchestrator.ts) and the TCC coordinator
// (../tcc/coordinator.ts) share. Both drive named branches on services with
// CALLs retried under backoff, force a `begin` before any call leaves, mark a
// transaction stuck (logged, reported, kept) rather than drop it, end it with
// a forced `end` before reporting, and recover the same way from those
// records. They differ in which calls they make and when; that stays in each
// core, the bookkeeping around it is here.
//
// May not touch: clocks, I/O, randomness (see ../common/types.ts).

import { unreachable } from '../common/assert.ts';
import { limits } from '../common/limits.ts';
import type { NodeId, TxnId } from '../common/types.ts';
import {
  type BeginMsg,
  type BeginRecord,
  type BranchMsg,
  type BranchOp,
  backoffMs,
  type EndRecord,
  isValidSagaId,
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
  /** The last non-definitive answer, for the stuck or give-up reason. */
  lastReason: string;
}

/** What a saga run and a TCC run have in common. */
export interface CoordinatedRun<D, B extends BranchAttempts> {
  client: NodeId;
  def: D;
  entropy: number;
  /**
   * `stuck`: it cannot go on without an operator (a call that must succeed
   * failed past its limit); kept for one to see.
   */
  status: 'active' | 'stuck';
  /** Why the run is compensating or stuck. */
  reason: string | null;
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

/** A timer of `retryTimer` or `timeoutTimer`, read back; null for any other. */
export function parseTimer(
  timer: string,
): { kind: 'timeout'; txn: TxnId } | { kind: 'retry'; txn: TxnId; branch: string } | null {
  const parts = timer.split('|');
  if (parts[0] === 'timeout') return { kind: 'timeout', txn: timer.slice('timeout|'.length) };
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
    fx.push({
      type: 'reportSaga',
      txn: record.txn,
      client: record.client,
      outcome: record.type === 'end' ? record.outcome : 'stuck',
      reason: record.type === 'end' && record.outcome === 'completed' ? null : record.reason,
      afterPersist: true,
    });
    return undefined;
  }
  return activeRun(runs, record.txn);
}

function isEnding(r: { type: string }): r is EndRecord | StuckRecord {
  return r.type === 'end' || r.type === 'stuck';
}

/** The records both logs have. */
export type CommonRecord<D> = BeginRecord<D> | StuckRecord | EndRecord;

/**
 * Rebuild the runs from `log`: the records both logs have here (a `begin`
 * makes a run, `stuck` marks it, `end` forgets it and keeps its id), every
 * other by `own`, with the run it is about if that is known.
 */
function replayLog<
  D,
  Run extends { status: 'active' | 'stuck'; reason: string | null },
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
        if (run !== undefined) {
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
type CoordinatorFx<D, R> = SagaEffect<BeginMsg<D> | BranchMsg, R>[];

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
>(spec: CoordinatorSpec<S, D, R, C, Run>): SagaRole<S, BeginMsg<D> | BranchMsg, R, C> {
  return {
    init: spec.init,

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
