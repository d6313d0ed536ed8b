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
// mode actions are retried without limit. A compensation is retried up to
// `compensationAttemptsMax` times, then the saga is marked stuck: logged,
// reported with its reason, and kept in the state for an operator — never
// silently dropped. A saga still going forward after its timeout compensates.
//
// May not touch: clocks, I/O, randomness (see ../common/types.ts).

import { assert, unreachable } from '../common/assert.ts';
import { limits } from '../common/limits.ts';
import type { Input, NodeId, TxnId } from '../common/types.ts';
import {
  type BranchMsg,
  backoffMs,
  checkSagaDefinition,
  defaultSagaConfig,
  isValidSagaId,
  type NormalizedStep,
  normalizeSteps,
  type SagaConfig,
  type SagaDefinition,
  type SagaEffect,
  type SagaMsg,
  type SagaRecord,
  type SagaRole,
  type SagaStepResult,
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

export interface BranchRun {
  step: NormalizedStep;
  phase: BranchPhase;
  /** Attempts of the current call (volatile: a restart counts from 1 again). */
  attempts: number;
  /** The last non-definitive answer, for the stuck or give-up reason. */
  lastReason: string;
}

export interface SagaRun {
  client: NodeId;
  def: SagaDefinition;
  entropy: number;
  direction: 'forward' | 'backward';
  /** `stuck`: a compensation failed past its limit; kept for an operator to see. */
  status: 'active' | 'stuck';
  /** Why the saga is compensating or stuck. */
  reason: string | null;
  /** In definition order. */
  branches: Map<string, BranchRun>;
  /** For each branch, the branches that come after it. */
  successors: Map<string, string[]>;
}

export interface SagaOrchestratorState {
  self: NodeId;
  config: SagaConfig;
  sagas: Map<TxnId, SagaRun>;
  /** Sagas that ended here, so that a repeated BEGIN does not run one again. */
  finished: Set<TxnId>;
}

// Saga ids may contain ':', branch names may not contain '|'.
const retryTimer = (txn: TxnId, branch: string) => `retry|${branch}|${txn}`;
const timeoutTimer = (txn: TxnId) => `timeout|${txn}`;

function makeRun(client: NodeId, def: SagaDefinition, entropy: number): SagaRun {
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
  const msg: BranchMsg = {
    type: 'CALL',
    txn,
    branch: b.step.branch,
    op,
    handler: op === 'action' ? b.step.action : b.step.compensation!,
    payload: b.step.payload,
    attempt: b.attempts,
  };
  // After persist: a retry must not overtake the start record it depends on.
  fx.push({ type: 'sendAfterPersist', to: b.step.service, msg });
  fx.push({
    type: 'setTimer',
    timer: retryTimer(txn, b.step.branch),
    delayMs: backoffMs(state.config, b.attempts, run.entropy, `${txn}|${b.step.branch}|${op}`),
  });
}

function start(
  state: SagaOrchestratorState,
  txn: TxnId,
  run: SagaRun,
  b: BranchRun,
  op: 'action' | 'compensate',
  fx: Fx[],
): void {
  // checkSagaDefinition orders every compensable step before any step without
  // a compensation, and rollback() refuses to turn back past one.
  assert(op === 'action' || b.step.compensation !== null, `${b.step.branch} has no compensation`);
  b.phase = op === 'action' ? 'running' : 'compensating';
  b.attempts = 1;
  b.lastReason = '';
  fx.push({ type: 'persist', force: true, record: { type: 'start', txn, branch: b.step.branch, op } });
  call(state, txn, run, b, fx);
}

function finish(
  state: SagaOrchestratorState,
  txn: TxnId,
  run: SagaRun,
  outcome: 'completed' | 'compensated',
  fx: Fx[],
): void {
  const reason = run.reason ?? '';
  fx.push({
    type: 'persist',
    force: true,
    record: { type: 'end', txn, client: run.client, outcome, reason },
  });
  fx.push({ type: 'cancelTimer', timer: timeoutTimer(txn) });
  fx.push({
    type: 'reportSaga',
    txn,
    client: run.client,
    outcome,
    reason: outcome === 'completed' ? null : reason,
    afterPersist: true,
  });
  state.sagas.delete(txn);
  state.finished.add(txn);
}

function markStuck(txn: TxnId, run: SagaRun, branch: string, reason: string, fx: Fx[]): void {
  run.status = 'stuck';
  run.reason = reason;
  for (const b of run.branches.values())
    fx.push({ type: 'cancelTimer', timer: retryTimer(txn, b.step.branch) });
  fx.push({ type: 'cancelTimer', timer: timeoutTimer(txn) });
  fx.push({
    type: 'persist',
    force: true,
    record: { type: 'stuck', txn, client: run.client, branch, reason },
  });
  fx.push({ type: 'reportSaga', txn, client: run.client, outcome: 'stuck', reason, afterPersist: true });
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
    // (checkSagaDefinition orders every other before it), and then only while
    // another such step has started: nothing correct is left to do alone.
    return markStuck(
      txn,
      run,
      noReturn.step.branch,
      `${reason}, after ${noReturn.step.branch}, which cannot be compensated, started`,
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
  advance(state, txn, run, fx);
}

function onBegin(
  state: SagaOrchestratorState,
  from: NodeId,
  msg: Extract<SagaMsg, { type: 'BEGIN' }>,
  fx: Fx[],
): void {
  const { txn, def } = msg;
  if (state.sagas.has(txn) || state.finished.has(txn)) return; // a repeated request
  const reject = (reason: string): void => {
    fx.push({ type: 'reportSaga', txn, client: from, outcome: 'rejected', reason, afterPersist: false });
  };
  if (!isValidSagaId(txn)) return reject('bad saga id');
  const problem = checkSagaDefinition(def);
  if (problem !== null) return reject(`bad definition: ${problem}`);
  if (state.sagas.size >= limits.inFlightTxnsMax) return reject('too many sagas in flight');
  const entropy = msg.entropy >>> 0;
  const run = makeRun(from, def, entropy);
  state.sagas.set(txn, run);
  fx.push({ type: 'persist', force: true, record: { type: 'begin', txn, client: from, def, entropy } });
  if (!forwardRecovery(run)) {
    fx.push({
      type: 'setTimer',
      timer: timeoutTimer(txn),
      delayMs: def.timeoutMs ?? state.config.sagaTimeoutMs,
    });
  }
  advance(state, txn, run, fx);
}

function onReply(
  state: SagaOrchestratorState,
  from: NodeId,
  msg: Extract<BranchMsg, { type: 'REPLY' }>,
  fx: Fx[],
): void {
  const run = state.sagas.get(msg.txn);
  if (run === undefined || run.status === 'stuck') return;
  const b = run.branches.get(msg.branch);
  if (b === undefined || b.step.service !== from) return;
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
  const parts = timer.split('|');
  if (parts[0] === 'timeout') {
    const txn = timer.slice('timeout|'.length);
    const run = state.sagas.get(txn);
    if (run === undefined || run.direction !== 'forward' || run.status === 'stuck') return;
    // Past the point of no return the saga can only finish forward.
    if (pastNoReturn(run) !== undefined) return;
    const ms = run.def.timeoutMs ?? state.config.sagaTimeoutMs;
    return rollback(state, txn, run, `timed out after ${ms} ms`, fx);
  }
  if (parts[0] !== 'retry' || parts.length < 3) return;
  const branch = parts[1]!;
  const txn = timer.slice(`retry|${branch}|`.length);
  const run = state.sagas.get(txn);
  const b = run?.branches.get(branch);
  if (run === undefined || b === undefined || run.status === 'stuck') return;
  const why = b.lastReason === '' ? 'no answer' : `last answer: ${b.lastReason}`;
  if (b.phase === 'running' && run.direction === 'forward') {
    const limit =
      forwardRecovery(run) || b.step.compensation === null ? Infinity : state.config.actionAttemptsMax;
    if (b.attempts >= limit) {
      return rollback(state, txn, run, `${branch} gave no result in ${b.attempts} attempts (${why})`, fx);
    }
    b.attempts++;
    return call(state, txn, run, b, fx);
  }
  if (b.phase === 'compensating') {
    if (b.attempts >= state.config.compensationAttemptsMax) {
      return markStuck(
        txn,
        run,
        branch,
        `compensation ${b.step.compensation} of ${branch} failed ${b.attempts} times (${why})`,
        fx,
      );
    }
    b.attempts++;
    return call(state, txn, run, b, fx);
  }
}

/**
 * A forced write failed. The driver keeps the log a prefix (a write-ahead log
 * stops at its first failed write), so writing the record again, and then
 * re-sending every call of its saga that is out, repeats exactly the moves
 * whose after-persist effects were dropped; the services' barrier absorbs the
 * repeats. A lost `end` or `stuck` is re-reported from the record itself.
 */
function onPersistFailed(state: SagaOrchestratorState, record: SagaRecord, fx: Fx[]): void {
  fx.push({ type: 'persist', force: true, record });
  if (record.type === 'end' || record.type === 'stuck') {
    fx.push({
      type: 'reportSaga',
      txn: record.txn,
      client: record.client,
      outcome: record.type === 'end' ? record.outcome : 'stuck',
      reason: record.type === 'end' && record.outcome === 'completed' ? null : record.reason,
      afterPersist: true,
    });
    return;
  }
  const run = state.sagas.get(record.txn);
  if (run === undefined || run.status === 'stuck') return;
  for (const b of run.branches.values()) {
    if ((b.phase === 'running' && run.direction === 'forward') || b.phase === 'compensating') {
      call(state, record.txn, run, b, fx);
    }
  }
}

export const sagaOrchestrator: SagaRole<SagaOrchestratorState, SagaMsg, SagaRecord, Partial<SagaConfig>> = {
  init(self, config) {
    return { self, config: { ...defaultSagaConfig, ...config }, sagas: new Map(), finished: new Set() };
  },

  /**
   * Rebuild from the log (§3): every saga with a `begin` and no `end` is
   * resumed in the direction its log shows — calls that were out are sent
   * again, the next moves made; a stuck saga stays stuck and is reported again.
   * Attempt counters and the timeout start afresh (a core reads no clock).
   */
  recover(self, config, log): SagaStepResult<SagaOrchestratorState, SagaMsg, SagaRecord> {
    const state = sagaOrchestrator.init(self, config);
    for (const r of log) {
      const run = state.sagas.get(r.txn);
      switch (r.type) {
        case 'begin':
          if (!state.finished.has(r.txn)) state.sagas.set(r.txn, makeRun(r.client, r.def, r.entropy));
          break;
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
        case 'stuck':
          if (run !== undefined) {
            run.status = 'stuck';
            run.reason = r.reason;
          }
          break;
        case 'end':
          state.sagas.delete(r.txn);
          state.finished.add(r.txn);
          break;
        default:
          unreachable(r, 'record');
      }
    }
    const effects: Fx[] = [];
    for (const [txn, run] of state.sagas) {
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
      // A refusal logged without its rollback (a crash in between): turn back now.
      const refused = [...run.branches.values()].find((b) => b.phase === 'refused');
      if (run.direction === 'forward' && refused !== undefined) {
        rollback(state, txn, run, `${refused.step.branch} refused: ${refused.lastReason}`, effects);
        continue;
      }
      for (const b of run.branches.values()) {
        if ((b.phase === 'running' && run.direction === 'forward') || b.phase === 'compensating') {
          b.attempts = 1;
          call(state, txn, run, b, effects);
        }
      }
      if (run.direction === 'forward' && !forwardRecovery(run)) {
        effects.push({
          type: 'setTimer',
          timer: timeoutTimer(txn),
          delayMs: run.def.timeoutMs ?? state.config.sagaTimeoutMs,
        });
      }
      advance(state, txn, run, effects);
    }
    return { state, effects };
  },

  step(state, input: Input<SagaMsg>) {
    const fx: Fx[] = [];
    switch (input.type) {
      case 'receive': {
        const msg = input.msg;
        if (msg.type === 'BEGIN') onBegin(state, input.from, msg, fx);
        else if (msg.type === 'REPLY') onReply(state, input.from, msg, fx);
        break; // a CALL is for services
      }
      case 'timeout':
        onTimeout(state, input.timer, fx);
        break;
      case 'persistFailed':
        onPersistFailed(state, input.record as SagaRecord, fx);
        break;
      case 'begin':
      case 'executed':
      case 'wounded':
        break; // 2PC inputs; a saga begins with a BEGIN message
      default:
        unreachable(input, 'input');
    }
    return { state, effects: fx };
  },
};
