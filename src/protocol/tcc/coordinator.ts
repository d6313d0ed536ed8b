// The TCC coordinator: try every branch, then confirm all or cancel all.
//
// Owns: the decision for each TCC transaction it began. Phase one sends a try
// to every branch at once (after the forced `begin`); each try reserves at its
// service (seat held, amount frozen). Every try succeeded: confirm all. Any
// try refused (a business `failure`, final, never retried), unanswered past
// `tryAttemptsMax` attempts, or the transaction past its timeout: cancel all
// — every branch whose try was not refused, the unanswered ones included,
// because their try may have run; the barrier (../saga/service.ts) makes a
// cancel without try a recorded no-op and refuses a try that arrives after
// its cancel. The decision is forced before any confirm or cancel leaves, so a
// restarted coordinator never decides the other way. Confirms and cancels are
// retried with backoff until they succeed; past `phaseTwoAttemptsMax` the
// transaction is marked stuck, logged and reported with its reason, and kept
// in the state: never silently dropped.
//
// Compared with the saga (../saga/orchestrator.ts): nothing is visible to
// others until confirm (a try only reserves), at the price of a second round
// of calls and of services that implement three handlers.
//
// May not touch: clocks, I/O, randomness (see ../common/types.ts).

import { unreachable } from '../common/assert.ts';
import { limits } from '../common/limits.ts';
import type { Input, NodeId, TxnId } from '../common/types.ts';
import {
  type BranchMsg,
  backoffMs,
  isValidSagaId,
  type SagaEffect,
  type SagaRole,
  type SagaStepResult,
} from '../saga/types.ts';
import {
  checkTccDefinition,
  defaultTccConfig,
  type TccBranchDef,
  type TccConfig,
  type TccDefinition,
  type TccMsg,
  type TccRecord,
} from './types.ts';

type Fx = SagaEffect<TccMsg, TccRecord>;

export interface TccBranch {
  def: TccBranchDef;
  /** Phase one: the try's answer so far. */
  tried: 'pending' | 'success' | 'refused';
  /** Phase two: `none` before the decision (or for a refused try under cancel). */
  second: 'none' | 'pending' | 'done';
  attempts: number;
  lastReason: string;
}

export interface TccRun {
  client: NodeId;
  def: TccDefinition;
  entropy: number;
  phase: 'trying' | 'confirming' | 'cancelling';
  status: 'active' | 'stuck';
  reason: string | null;
  branches: Map<string, TccBranch>;
}

export interface TccCoordinatorState {
  self: NodeId;
  config: TccConfig;
  txns: Map<TxnId, TccRun>;
  finished: Set<TxnId>;
}

const retryTimer = (txn: TxnId, branch: string) => `retry|${branch}|${txn}`;
const timeoutTimer = (txn: TxnId) => `timeout|${txn}`;

function makeRun(client: NodeId, def: TccDefinition, entropy: number): TccRun {
  return {
    client,
    def,
    entropy,
    phase: 'trying',
    status: 'active',
    reason: null,
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
  const msg: BranchMsg = {
    type: 'CALL',
    txn,
    branch: b.def.branch,
    op,
    handler: b.def[op],
    payload: b.def.payload,
    attempt: b.attempts,
  };
  fx.push({ type: 'sendAfterPersist', to: b.def.service, msg });
  fx.push({
    type: 'setTimer',
    timer: retryTimer(txn, b.def.branch),
    delayMs: backoffMs(state.config, b.attempts, run.entropy, `${txn}|${b.def.branch}|${op}`),
  });
}

function finishIfSettled(state: TccCoordinatorState, txn: TxnId, run: TccRun, fx: Fx[]): void {
  if (run.phase === 'trying' || run.status === 'stuck') return;
  for (const b of run.branches.values()) if (b.second === 'pending') return;
  const outcome = run.phase === 'confirming' ? 'completed' : 'compensated';
  const reason = run.reason ?? '';
  fx.push({
    type: 'persist',
    force: true,
    record: { type: 'end', txn, client: run.client, outcome, reason },
  });
  fx.push({
    type: 'reportSaga',
    txn,
    client: run.client,
    outcome,
    reason: outcome === 'completed' ? null : reason,
    afterPersist: true,
  });
  state.txns.delete(txn);
  state.finished.add(txn);
}

/** Enter phase two in memory: who must be told. (The record is written by `decide`.) */
function enterPhaseTwo(run: TccRun, decision: 'confirm' | 'cancel', reason: string): void {
  run.phase = decision === 'confirm' ? 'confirming' : 'cancelling';
  run.reason = decision === 'cancel' ? reason : null;
  for (const b of run.branches.values()) {
    // A refused try reserved nothing (the barrier recorded the refusal): no cancel.
    b.second = decision === 'cancel' && b.tried === 'refused' ? 'none' : 'pending';
    b.attempts = 1;
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
  sendPhaseTwo(state, txn, run, fx);
}

function markStuck(txn: TxnId, run: TccRun, branch: string, reason: string, fx: Fx[]): void {
  run.status = 'stuck';
  run.reason = reason;
  for (const b of run.branches.values())
    fx.push({ type: 'cancelTimer', timer: retryTimer(txn, b.def.branch) });
  fx.push({
    type: 'persist',
    force: true,
    record: { type: 'stuck', txn, client: run.client, branch, reason },
  });
  fx.push({ type: 'reportSaga', txn, client: run.client, outcome: 'stuck', reason, afterPersist: true });
}

function onBegin(
  state: TccCoordinatorState,
  from: NodeId,
  msg: Extract<TccMsg, { type: 'BEGIN' }>,
  fx: Fx[],
): void {
  const { txn, def } = msg;
  if (state.txns.has(txn) || state.finished.has(txn)) return;
  const reject = (reason: string): void => {
    fx.push({ type: 'reportSaga', txn, client: from, outcome: 'rejected', reason, afterPersist: false });
  };
  if (!isValidSagaId(txn)) return reject('bad transaction id');
  const problem = checkTccDefinition(def);
  if (problem !== null) return reject(`bad definition: ${problem}`);
  if (state.txns.size >= limits.inFlightTxnsMax) return reject('too many transactions in flight');
  const entropy = msg.entropy >>> 0;
  const run = makeRun(from, def, entropy);
  state.txns.set(txn, run);
  fx.push({ type: 'persist', force: true, record: { type: 'begin', txn, client: from, def, entropy } });
  fx.push({
    type: 'setTimer',
    timer: timeoutTimer(txn),
    delayMs: def.timeoutMs ?? state.config.tryTimeoutMs,
  });
  for (const b of run.branches.values()) call(state, txn, run, b, fx);
}

function onReply(
  state: TccCoordinatorState,
  from: NodeId,
  msg: Extract<BranchMsg, { type: 'REPLY' }>,
  fx: Fx[],
): void {
  const run = state.txns.get(msg.txn);
  if (run === undefined || run.status === 'stuck') return;
  const b = run.branches.get(msg.branch);
  if (b === undefined || b.def.service !== from) return;
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
  const parts = timer.split('|');
  if (parts[0] === 'timeout') {
    const txn = timer.slice('timeout|'.length);
    const run = state.txns.get(txn);
    if (run === undefined || run.phase !== 'trying' || run.status === 'stuck') return;
    return decide(
      state,
      txn,
      run,
      'cancel',
      `timed out after ${run.def.timeoutMs ?? state.config.tryTimeoutMs} ms`,
      fx,
    );
  }
  if (parts[0] !== 'retry' || parts.length < 3) return;
  const branch = parts[1]!;
  const txn = timer.slice(`retry|${branch}|`.length);
  const run = state.txns.get(txn);
  const b = run?.branches.get(branch);
  if (run === undefined || b === undefined || run.status === 'stuck') return;
  const why = b.lastReason === '' ? 'no answer' : `last answer: ${b.lastReason}`;
  if (run.phase === 'trying') {
    if (b.tried !== 'pending') return;
    if (b.attempts >= state.config.tryAttemptsMax) {
      return decide(
        state,
        txn,
        run,
        'cancel',
        `${branch} gave no result in ${b.attempts} attempts (${why})`,
        fx,
      );
    }
  } else {
    if (b.second !== 'pending') return;
    if (b.attempts >= state.config.phaseTwoAttemptsMax) {
      const op = run.phase === 'confirming' ? 'confirm' : 'cancel';
      return markStuck(
        txn,
        run,
        branch,
        `${op} ${b.def[op]} of ${branch} failed ${b.attempts} times (${why})`,
        fx,
      );
    }
  }
  b.attempts++;
  call(state, txn, run, b, fx);
}

/** As the saga orchestrator's: write the record again, re-send what is out, re-report what ended. */
function onPersistFailed(state: TccCoordinatorState, record: TccRecord, fx: Fx[]): void {
  fx.push({ type: 'persist', force: record.type !== 'tried' && record.type !== 'settled', record });
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
  const run = state.txns.get(record.txn);
  if (run === undefined || run.status === 'stuck') return;
  for (const b of run.branches.values()) {
    if (run.phase === 'trying' ? b.tried === 'pending' : b.second === 'pending')
      call(state, record.txn, run, b, fx);
  }
}

export const tccCoordinator: SagaRole<TccCoordinatorState, TccMsg, TccRecord, Partial<TccConfig>> = {
  init(self, config) {
    return { self, config: { ...defaultTccConfig, ...config }, txns: new Map(), finished: new Set() };
  },

  /**
   * Rebuild from the log: a transaction without a decision is still trying
   * (unanswered tries are asked again; a logged refusal cancels at once); one
   * with a decision re-sends that decision to every branch not yet settled;
   * a stuck one stays stuck and is reported again.
   */
  recover(self, config, log): SagaStepResult<TccCoordinatorState, TccMsg, TccRecord> {
    const state = tccCoordinator.init(self, config);
    for (const r of log) {
      const run = state.txns.get(r.txn);
      switch (r.type) {
        case 'begin':
          if (!state.finished.has(r.txn)) state.txns.set(r.txn, makeRun(r.client, r.def, r.entropy));
          break;
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
        case 'stuck':
          if (run !== undefined) {
            run.status = 'stuck';
            run.reason = r.reason;
          }
          break;
        case 'end':
          state.txns.delete(r.txn);
          state.finished.add(r.txn);
          break;
        default:
          unreachable(r, 'record');
      }
    }
    const effects: Fx[] = [];
    for (const [txn, run] of state.txns) {
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
      if (run.phase !== 'trying') {
        sendPhaseTwo(state, txn, run, effects);
        continue;
      }
      const refused = [...run.branches.values()].find((b) => b.tried === 'refused');
      if (refused !== undefined) {
        decide(state, txn, run, 'cancel', `${refused.def.branch} refused: ${refused.lastReason}`, effects);
      } else if ([...run.branches.values()].every((b) => b.tried === 'success')) {
        decide(state, txn, run, 'confirm', '', effects);
      } else {
        effects.push({
          type: 'setTimer',
          timer: timeoutTimer(txn),
          delayMs: run.def.timeoutMs ?? state.config.tryTimeoutMs,
        });
        for (const b of run.branches.values()) {
          if (b.tried === 'pending') {
            b.attempts = 1;
            call(state, txn, run, b, effects);
          }
        }
      }
    }
    return { state, effects };
  },

  step(state, input: Input<TccMsg>) {
    const fx: Fx[] = [];
    switch (input.type) {
      case 'receive': {
        const msg = input.msg;
        if (msg.type === 'BEGIN') onBegin(state, input.from, msg, fx);
        else if (msg.type === 'REPLY') onReply(state, input.from, msg, fx);
        break;
      }
      case 'timeout':
        onTimeout(state, input.timer, fx);
        break;
      case 'persistFailed':
        onPersistFailed(state, input.record as TccRecord, fx);
        break;
      case 'begin':
      case 'executed':
      case 'wounded':
        break;
      default:
        unreachable(input, 'input');
    }
    return { state, effects: fx };
  },
};
