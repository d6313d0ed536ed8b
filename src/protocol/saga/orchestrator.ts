// The saga orchestrator: Garcia-Molina & Salem's saga execution component
// ("Sagas", SIGMOD 1987, §3), driving branches on remote services with the
// result semantics of production orchestrators (dtm-labs/dtm).
//
// Owns: the progress of every saga it began, in its log. A saga is a list of
// steps, or a DAG given by an order graph (§4, parallel sagas), each an action
// on a service with an optional compensation. Going forward, a step starts
// once every step it comes after has succeeded; the saga completes when all
// have. Going backward (§1: T1..Tj then Cj..C1), a step is compensated once
// every step that came after it is settled (compensated, refused or never
// started): the reverse of the order graph, so a plain list is undone in
// reverse order. Every start and every definitive result is forced to the log
// before the move it leads to (`sendAfterPersist`), so recovery (§3: the log
// tells which saga to roll back or forward) resumes each saga from its log.
//
// Results: `success` moves on; a `failure` of an action is a business refusal,
// never retried: the saga compensates (§2, abort-saga). `ongoing` and silence
// are retried with exponential backoff; past `actionAttemptsMax` the saga
// gives up and compensates — the unanswered step included, because it may
// have run; the service's barrier makes that compensation a recorded no-op if
// it did not, and refuses the step if it arrives later. In forward-recovery
// mode actions are retried without limit. A compensation is retried until it
// succeeds: past `stuckAfterAttempts` failed attempts, or `stuckAfterMs` after
// the saga turned back, the saga is reported stuck as an alert (logged,
// reported with its reason) and goes on retrying, ending normally once the
// branch recovers. A finite `compensationAttemptsMax` (the simulator's
// setting) hard-stops it instead: logged, reported, and kept in the state for
// an operator — never silently dropped. An operator can retry a saga now,
// resolve it or abandon it (`OPERATOR`, see `operatorProblem` for the rules);
// both end it with an `end` record carrying the reason. A saga still going
// forward after its timeout compensates.
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
import { assert, unreachable } from '../common/assert.ts';
import type { NodeId, TxnId } from '../common/types.ts';
import {
  checkSagaPlan,
  defaultSagaConfig,
  type NormalizedStep,
  normalizeSteps,
  type SagaConfig,
  type SagaMsg,
  type SagaPlan,
  type SagaRecord,
} from './types.ts';

type Fx = SagaEffect<SagaMsg, SagaRecord>;

/**
 * - `idle`: not started;
 * - `running`: its action's start is logged and the call is out;
 * - `done`: the action succeeded (logged);
 * - `refused`: the action was refused (logged); nothing to undo;
 * - `compensating`: its compensation's start is logged and the call is out;
 * - `compensated`: the compensation succeeded (logged).
 */
export type BranchPhase = 'idle' | 'running' | 'done' | 'refused' | 'compensating' | 'compensated';

export interface BranchRun extends BranchAttempts {
  step: NormalizedStep;
  phase: BranchPhase;
}

/** `status` is `stuck` once a compensation failed past its limit. */
export interface SagaRun extends CoordinatedRun<SagaPlan, BranchRun> {
  direction: 'forward' | 'backward';
  /** For each branch, the branches that come after it. */
  successors: Map<string, string[]>;
}

export interface SagaOrchestratorState {
  self: NodeId;
  config: SagaConfig;
  sagas: Map<TxnId, SagaRun>;
  /** Sagas that ended here (the newest `retainFinished`), so that a repeated BEGIN does not run one again. */
  finished: RecentIds;
}

function makeRun(client: NodeId, def: SagaPlan, entropy: number): SagaRun {
  const steps = normalizeSteps(def);
  const successors = new Map<string, string[]>(steps.map((s) => [s.branch, []]));
  for (const s of steps) for (const a of s.after) successors.get(a)!.push(s.branch);
  return {
    client,
    def,
    entropy,
    direction: 'forward',
    status: 'active',
    reason: null,
    alert: null,
    alertArmed: false,
    branches: new Map(
      steps.map((step) => [step.branch, { step, phase: 'idle', attempts: 0, lastReason: '' }]),
    ),
    successors,
  };
}

const forwardRecovery = (run: SagaRun) => run.def.recovery === 'forward';

/** A step without compensation has started: from here on the saga may only go forward. */
function pastNoReturn(run: SagaRun): BranchRun | undefined {
  for (const b of run.branches.values()) {
    if (b.step.compensation === null && (b.phase === 'running' || b.phase === 'done')) return b;
  }
  return undefined;
}

function call(state: SagaOrchestratorState, txn: TxnId, run: SagaRun, b: BranchRun, fx: Fx[]): void {
  const op = b.phase === 'compensating' ? 'compensate' : 'action';
  const handler = op === 'action' ? b.step.action : b.step.compensation!;
  callBranch(state.config, txn, run.entropy, b.step, op, handler, b.attempts, fx);
}

function start(
  state: SagaOrchestratorState,
  txn: TxnId,
  run: SagaRun,
  b: BranchRun,
  op: 'action' | 'compensate',
  fx: Fx[],
): void {
  // checkSagaPlan orders every compensable step before any step without
  // a compensation, and rollback() refuses to turn back past one.
  assert(op === 'action' || b.step.compensation !== null, `${b.step.branch} has no compensation`);
  b.phase = op === 'action' ? 'running' : 'compensating';
  b.attempts = 1;
  if (b.resumedAfter !== undefined) delete b.resumedAfter;
  b.lastReason = '';
  fx.push({ type: 'persist', force: true, record: { type: 'start', txn, branch: b.step.branch, op } });
  call(state, txn, run, b, fx);
}

// A saga's timeout stays armed until it ends or turns back, so ending or
// getting stuck (past the point of no return, still forward) cancels it.
function finish(
  state: SagaOrchestratorState,
  txn: TxnId,
  run: SagaRun,
  outcome: 'completed' | 'compensated',
  fx: Fx[],
): void {
  endRun(state.sagas, state.finished, txn, run, outcome, true, fx);
}

/** Settled for backward recovery: nothing of it is left to undo. */
function settled(b: BranchRun): boolean {
  return b.phase === 'idle' || b.phase === 'refused' || b.phase === 'compensated';
}

/** Make every move the saga's current state allows. */
function advance(state: SagaOrchestratorState, txn: TxnId, run: SagaRun, fx: Fx[]): void {
  if (run.status === 'stuck') return;
  if (run.direction === 'forward') {
    let all = true;
    for (const b of run.branches.values()) {
      if (b.phase !== 'done') all = false;
      if (b.phase === 'idle' && b.step.after.every((a) => run.branches.get(a)!.phase === 'done')) {
        start(state, txn, run, b, 'action', fx);
      }
    }
    if (all) finish(state, txn, run, 'completed', fx);
    return;
  }
  let all = true;
  for (const b of run.branches.values()) {
    if (settled(b)) continue;
    all = false;
    if (b.phase === 'compensating') continue;
    // `running` or `done`: compensate once everything after it is settled.
    // A running action is compensated without waiting for its answer: if it
    // never ran, the barrier makes the compensation a no-op and refuses it later.
    const later = run.successors.get(b.step.branch)!;
    if (later.every((s) => settled(run.branches.get(s)!))) start(state, txn, run, b, 'compensate', fx);
  }
  if (all) finish(state, txn, run, 'compensated', fx);
}

/** Turn back: log the decision and its reason, then compensate. */
function rollback(state: SagaOrchestratorState, txn: TxnId, run: SagaRun, reason: string, fx: Fx[]): void {
  if (run.direction === 'backward' || run.status === 'stuck') return advance(state, txn, run, fx);
  const noReturn = pastNoReturn(run);
  if (noReturn !== undefined) {
    // Only a step without compensation can fail past the point of no return
    // (checkSagaPlan orders every other before it), and then only while
    // another such step has started: nothing correct is left to do alone.
    return markStuck(
      txn,
      run,
      noReturn.step.branch,
      `${reason}, after ${noReturn.step.branch}, which cannot be compensated, started`,
      true,
      fx,
    );
  }
  run.direction = 'backward';
  run.reason = reason;
  fx.push({ type: 'persist', force: true, record: { type: 'rollback', txn, reason } });
  fx.push({ type: 'cancelTimer', timer: timeoutTimer(txn) });
  for (const b of run.branches.values()) {
    // Stop retrying actions: the compensation now covers them.
    if (b.phase === 'running') fx.push({ type: 'cancelTimer', timer: retryTimer(txn, b.step.branch) });
  }
  armAlert(state.config, txn, run, fx);
  advance(state, txn, run, fx);
}

const words = { id: 'saga id', plural: 'sagas' };

function onBegin(
  state: SagaOrchestratorState,
  from: NodeId,
  msg: Extract<SagaMsg, { type: 'BEGIN' }>,
  fx: Fx[],
): void {
  const run = beginRun(state.sagas, state.finished, from, msg, checkSagaPlan, makeRun, words, fx);
  if (run === undefined) return;
  if (!forwardRecovery(run)) armTimeout(msg.txn, run.def.timeoutMs ?? state.config.sagaTimeoutMs, fx);
  advance(state, msg.txn, run, fx);
}

function onReply(
  state: SagaOrchestratorState,
  from: NodeId,
  msg: Extract<BranchMsg, { type: 'REPLY' }>,
  fx: Fx[],
): void {
  const run = activeRun(state.sagas, msg.txn);
  const b = run?.branches.get(msg.branch);
  if (run === undefined || b === undefined || b.step.service !== from) return;
  const { txn, branch } = msg;
  if (msg.op === 'action') {
    if (b.phase !== 'running') return; // late or duplicated
    if (msg.result === 'ongoing') {
      b.lastReason = msg.reason;
      return; // the retry timer asks again
    }
    fx.push({ type: 'cancelTimer', timer: retryTimer(txn, branch) });
    fx.push({
      type: 'persist',
      force: true,
      record: { type: 'result', txn, branch, op: 'action', result: msg.result, reason: msg.reason },
    });
    if (msg.result === 'success') {
      b.phase = 'done';
      return advance(state, txn, run, fx);
    }
    b.phase = 'refused';
    return rollback(state, txn, run, `${branch} refused: ${msg.reason}`, fx);
  }
  if (msg.op === 'compensate') {
    if (b.phase !== 'compensating') return;
    if (msg.result !== 'success') {
      b.lastReason = msg.reason;
      return; // a compensation must eventually succeed: the retry timer asks again
    }
    b.phase = 'compensated';
    fx.push({ type: 'cancelTimer', timer: retryTimer(txn, branch) });
    fx.push({
      type: 'persist',
      force: true,
      record: { type: 'result', txn, branch, op: 'compensate', result: 'success', reason: msg.reason },
    });
    return advance(state, txn, run, fx);
  }
  // try/confirm/cancel belong to TCC.
}

function onTimeout(state: SagaOrchestratorState, timer: string, fx: Fx[]): void {
  const t = parseTimer(timer);
  if (t === null) return;
  if (t.kind === 'alert') {
    const run = activeRun(state.sagas, t.txn);
    if (run === undefined) return;
    run.alertArmed = false;
    const out = [...run.branches.values()].find((b) => isOut(run, b));
    const ms = state.config.stuckAfterMs;
    const why = out === undefined ? 'no answer' : `${out.step.branch}: ${out.lastReason || 'no answer'}`;
    return raiseAlert(
      t.txn,
      run,
      out?.step.branch ?? '',
      `still compensating after ${ms} ms (${why}); still retrying`,
      fx,
    );
  }
  if (t.kind === 'timeout') {
    const run = activeRun(state.sagas, t.txn);
    if (run === undefined || run.direction !== 'forward') return;
    // Past the point of no return the saga can only finish forward.
    if (pastNoReturn(run) !== undefined) return;
    const ms = run.def.timeoutMs ?? state.config.sagaTimeoutMs;
    return rollback(state, t.txn, run, `timed out after ${ms} ms`, fx);
  }
  const { txn, branch } = t;
  const run = activeRun(state.sagas, txn);
  const b = run?.branches.get(branch);
  if (run === undefined || b === undefined) return;
  if (b.phase === 'running' && run.direction === 'forward') {
    const limit =
      forwardRecovery(run) || b.step.compensation === null ? Infinity : state.config.actionAttemptsMax;
    if (b.attempts >= limit) return rollback(state, txn, run, noResultReason(branch, b), fx);
    // An action retried without limit must succeed: it can raise the alert.
    if (limit === Infinity) alertOnAttempts(state.config, txn, run, branch, b, `action ${b.step.action}`, fx);
    b.attempts++;
    return call(state, txn, run, b, fx);
  }
  if (b.phase === 'compensating') {
    const failed = attemptsCounted(b);
    if (failed >= state.config.compensationAttemptsMax) {
      return markStuck(
        txn,
        run,
        branch,
        `compensation ${b.step.compensation} of ${branch} failed ${failed} times (${lastAnswer(b)})`,
        true,
        fx,
      );
    }
    alertOnAttempts(state.config, txn, run, branch, b, `compensation ${b.step.compensation}`, fx);
    b.attempts++;
    return call(state, txn, run, b, fx);
  }
}

/**
 * The saga's rules for an operator's action (the shared ones are in
 * `commonOperatorProblem`): `resolve` may not contradict the log —
 * `completed` only while the saga goes forward (no rollback decided), and
 * `compensated` not once a step that cannot be compensated has started;
 * `retry` of a hard-stopped saga only when it stopped on its compensations.
 */
function operatorProblem(_state: SagaOrchestratorState, run: SagaRun, msg: OperatorMsg): string | null {
  if (msg.action === 'resolve') {
    if (msg.outcome === 'completed' && run.direction === 'backward') {
      return `${msg.txn} is compensating (${run.reason ?? ''}); it cannot be resolved completed`;
    }
    const noReturn = pastNoReturn(run);
    if (msg.outcome === 'compensated' && noReturn !== undefined) {
      return `${noReturn.step.branch}, which cannot be compensated, has started; ${msg.txn} cannot be resolved compensated`;
    }
    if (msg.outcome !== 'completed' && msg.outcome !== 'compensated')
      return `unknown outcome ${String(msg.outcome)}`;
  }
  if (msg.action === 'retry' && run.status === 'stuck' && run.direction !== 'backward') {
    return `${msg.txn} stopped past its point of no return (${run.reason ?? ''}); resolve or abandon it`;
  }
  return null;
}

/** Send every outstanding call now; its backoff starts again from the next attempt. */
function retryNow(state: SagaOrchestratorState, txn: TxnId, run: SagaRun, fx: Fx[]): void {
  for (const b of run.branches.values()) {
    if (!isOut(run, b)) continue;
    b.attempts++;
    call(state, txn, run, b, fx);
  }
  advance(state, txn, run, fx);
}

/** Every saga record is forced; see `persistAgain` for why this repeats the right moves. */
function onPersistFailed(state: SagaOrchestratorState, record: SagaRecord, fx: Fx[]): void {
  const run = persistAgain(state.sagas, record, true, fx);
  if (run === undefined) return;
  for (const b of run.branches.values()) if (isOut(run, b)) call(state, record.txn, run, b, fx);
}

/** A call of `b` is out: an action still wanted, or a compensation. */
function isOut(run: SagaRun, b: BranchRun): boolean {
  return (b.phase === 'running' && run.direction === 'forward') || b.phase === 'compensating';
}

/** Replay one of this core's own records (the shared ones are `replayLog`'s). */
function replayRecord(r: Exclude<SagaRecord, CommonRecord<SagaPlan>>, run: SagaRun | undefined): void {
  switch (r.type) {
    case 'start': {
      const b = run?.branches.get(r.branch);
      if (b !== undefined) b.phase = r.op === 'action' ? 'running' : 'compensating';
      break;
    }
    case 'result': {
      const b = run?.branches.get(r.branch);
      if (b === undefined) break;
      if (r.op === 'compensate') b.phase = 'compensated';
      else b.phase = r.result === 'success' ? 'done' : 'refused';
      b.lastReason = r.reason;
      break;
    }
    case 'rollback':
      if (run !== undefined) {
        run.direction = 'backward';
        run.reason = r.reason;
      }
      break;
    default:
      unreachable(r, 'record');
  }
}

/**
 * Rebuild from the log (§3): every saga with a `begin` and no `end` is
 * resumed in the direction its log shows — calls that were out are sent
 * again, the next moves made; a stuck saga stays stuck and is reported again.
 * Attempt counters and the timeout start afresh (a core reads no clock).
 */
function resume(state: SagaOrchestratorState, txn: TxnId, run: SagaRun, effects: Fx[]): void {
  // A refusal logged without its rollback (a crash in between): turn back now.
  const refused = [...run.branches.values()].find((b) => b.phase === 'refused');
  if (run.direction === 'forward' && refused !== undefined) {
    rollback(state, txn, run, `${refused.step.branch} refused: ${refused.lastReason}`, effects);
    return;
  }
  for (const b of run.branches.values()) {
    if (isOut(run, b)) {
      b.attempts = 1;
      call(state, txn, run, b, effects);
    }
  }
  if (run.direction === 'forward' && !forwardRecovery(run)) {
    armTimeout(txn, run.def.timeoutMs ?? state.config.sagaTimeoutMs, effects);
  }
  if (run.direction === 'backward') armAlert(state.config, txn, run, effects);
  advance(state, txn, run, effects);
}

export const sagaOrchestrator: CoordinatorRole<
  SagaOrchestratorState,
  SagaPlan,
  SagaRecord,
  Partial<SagaConfig>
> = coordinatorRole({
  init(self, config: Partial<SagaConfig>): SagaOrchestratorState {
    const cfg = { ...defaultSagaConfig, ...config };
    return { self, config: cfg, sagas: new Map(), finished: new RecentIds(cfg.retainFinished) };
  },
  runs: (state) => state.sagas,
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
