// The service side of sagas and TCC: a node that owns a small database (keyed
// numeric rows) and runs branch handlers on it as local transactions, guarded
// by the branch barrier of dtm-labs/dtm.
//
// Owns: its rows and its barrier table, both rebuilt from its log, which is
// the database's write-ahead log: one `local` record per local transaction,
// holding the business writes and the barrier entry together, so that a crash
// keeps both or neither (dtm inserts the barrier row in the same database
// transaction as the business SQL). Every REPLY that reports a recorded result
// leaves after that record is durable (`sendAfterPersist`).
//
// The barrier, for a call (txn, branch, op):
// - idempotency: a call whose (txn, branch, op) is already recorded runs
//   nothing and gets the recorded result again;
// - null compensation: a `compensate`/`cancel` whose action/try never ran here
//   succeeds as a no-op, and is recorded as such;
// - hanging prevention: that same null compensation also records the action
//   as refused, so an action/try that arrives after its compensation (a
//   delayed or duplicated call) is refused instead of run;
// - a compensation of a refused action is a recorded no-op too (the refusal
//   wrote nothing).
// A business refusal of an `action`/`try` is recorded (with no writes): a
// repeated call gets the same refusal even if the data changed meanwhile. A
// failing compensation or confirm, and any `ongoing` answer, is not recorded:
// the caller retries it. With `barrier: false` (the unprotected handler the
// barrier exists to fix; the simulator's broken variant) every call runs its
// handler.
//
// Handlers are pure functions supplied in the config by whoever deploys the
// service (the simulator's booking workload); they read rows and return
// writes (deltas). No write-ahead record is lost on its own: the driver keeps
// the log a prefix (see onPersistFailed).
//
// May not touch: clocks, I/O, randomness (see ../common/types.ts).

import { unreachable } from '../common/assert.ts';
import type { Effect, Input, NodeId, Role, StepResult, TxnId } from '../common/types.ts';
import { type BranchMsg, type BranchOp, type BranchResult, isRefusable, originOf } from './types.ts';

/** One row change: `key` += `delta`. Deltas rather than values, so that replay is order-free per row. */
export interface Write {
  key: string;
  delta: number;
}

export interface HandlerContext {
  txn: TxnId;
  branch: string;
  op: BranchOp;
  payload: string;
  attempt: number;
  /** The row's current value (0 when absent), including this service's earlier local transactions. */
  read(key: string): number;
}

export type HandlerResult =
  | { result: 'success'; writes: readonly Write[] }
  | { result: 'failure' | 'ongoing'; reason: string };

/** A branch handler's business logic: pure, synchronous. */
export type Handler = (ctx: HandlerContext) => HandlerResult;

export interface ServiceConfig {
  handlers: Readonly<Record<string, Handler>>;
  /** The rows the database holds before its log begins. */
  initialRows: readonly (readonly [string, number])[];
  /** Guard every handler with the barrier (true unless you are demonstrating why it exists). */
  barrier: boolean;
}

export const defaultServiceConfig: ServiceConfig = { handlers: {}, initialRows: [], barrier: true };

/**
 * One local transaction.
 * - `applied`: the handler ran and succeeded; `writes` are its business writes;
 * - `refused`: an action/try refused by the business; no writes;
 * - `noop`: a compensation with nothing to undo (the action never ran, or was
 *   refused); `blocks` names the origin op it marks as refused (hanging
 *   prevention) when the action never ran.
 */
export interface ServiceRecord {
  type: 'local';
  txn: TxnId;
  branch: string;
  op: BranchOp;
  kind: 'applied' | 'refused' | 'noop';
  reason: string;
  writes: readonly Write[];
  blocks: BranchOp | null;
}

export interface BarrierEntry {
  result: 'success' | 'failure';
  reason: string;
}

/** Counters for reports; volatile (a restart starts them again). */
export interface ServiceStats {
  /** Calls answered from the barrier without running anything. */
  duplicates: number;
  /** Compensations that found no action to undo. */
  nullCompensations: number;
  /** Actions refused because their compensation had come first. */
  hangingRefused: number;
}

export interface ServiceState {
  self: NodeId;
  config: ServiceConfig;
  rows: Map<string, number>;
  barrier: Map<string, BarrierEntry>;
  stats: ServiceStats;
}

type Fx = Effect<BranchMsg, ServiceRecord>;
type Call = Extract<BranchMsg, { type: 'CALL' }>;

export const hangingReason = 'hanging: its compensation ran first';

export function barrierKey(txn: TxnId, branch: string, op: BranchOp): string {
  return `${txn}|${branch}|${op}`;
}

function reply(call: Call, to: NodeId, result: BranchResult, reason: string, afterPersist: boolean): Fx {
  const msg: BranchMsg = { type: 'REPLY', txn: call.txn, branch: call.branch, op: call.op, result, reason };
  return afterPersist ? { type: 'sendAfterPersist', to, msg } : { type: 'send', to, msg };
}

/** Apply `r` to rows and barrier: the one place replay and live execution agree on. */
function applyRecord(state: ServiceState, r: ServiceRecord): void {
  for (const w of r.writes) state.rows.set(w.key, (state.rows.get(w.key) ?? 0) + w.delta);
  if (!state.config.barrier) return;
  state.barrier.set(barrierKey(r.txn, r.branch, r.op), {
    result: r.kind === 'refused' ? 'failure' : 'success',
    reason: r.reason,
  });
  if (r.blocks !== null) {
    state.barrier.set(barrierKey(r.txn, r.branch, r.blocks), { result: 'failure', reason: hangingReason });
  }
}

function commitLocal(state: ServiceState, r: ServiceRecord, fx: Fx[]): void {
  applyRecord(state, r);
  fx.push({ type: 'persist', force: true, record: r });
}

/** The record of `call`'s local transaction. */
function local(
  call: Call,
  kind: ServiceRecord['kind'],
  reason: string,
  writes: readonly Write[],
  blocks: BranchOp | null,
): ServiceRecord {
  return { type: 'local', txn: call.txn, branch: call.branch, op: call.op, kind, reason, writes, blocks };
}

function onCall(state: ServiceState, from: NodeId, call: Call, fx: Fx[]): void {
  const { txn, branch, op } = call;
  if (state.config.barrier) {
    const seen = state.barrier.get(barrierKey(txn, branch, op));
    if (seen !== undefined) {
      // Idempotency, and hanging prevention for an action its compensation
      // blocked. The entry may not be durable yet: the reply waits for it.
      if (seen.reason === hangingReason) state.stats.hangingRefused++;
      else state.stats.duplicates++;
      fx.push(reply(call, from, seen.result, seen.reason, true));
      return;
    }
    const origin = originOf(op);
    if (origin !== null) {
      const done = state.barrier.get(barrierKey(txn, branch, origin));
      if (done === undefined) {
        state.stats.nullCompensations++;
        commitLocal(state, local(call, 'noop', `null ${op}: the ${origin} never ran here`, [], origin), fx);
        fx.push(reply(call, from, 'success', `null ${op}`, true));
        return;
      }
      if (done.result === 'failure') {
        commitLocal(state, local(call, 'noop', `nothing to undo: the ${origin} was refused`, [], null), fx);
        fx.push(reply(call, from, 'success', `nothing to undo`, true));
        return;
      }
    }
    if (op === 'confirm') {
      const tried = state.barrier.get(barrierKey(txn, branch, 'try'));
      if (tried?.result !== 'success') {
        // A coordinator's error, never recorded: the confirm stays unanswered
        // in substance and the saga visibly stuck rather than half-confirmed.
        fx.push(reply(call, from, 'failure', 'confirm without a successful try', false));
        return;
      }
    }
  }
  const handler = Object.hasOwn(state.config.handlers, call.handler)
    ? state.config.handlers[call.handler]
    : undefined;
  const rows = state.rows;
  const out: HandlerResult =
    handler === undefined
      ? { result: 'failure', reason: `no handler ${call.handler}` }
      : handler({
          txn,
          branch,
          op,
          payload: call.payload,
          attempt: call.attempt,
          // A method, not an arrow property: tsx names every arrow it finds in
          // a property (a defineProperty per call), and this runs on every call.
          read(k) {
            return rows.get(k) ?? 0;
          },
        });
  switch (out.result) {
    case 'success':
      commitLocal(state, local(call, 'applied', 'done', [...out.writes], null), fx);
      fx.push(reply(call, from, 'success', 'done', true));
      return;
    case 'failure':
      if (isRefusable(op)) {
        // A business refusal is final: record it, so that a retry of the same
        // call cannot succeed later and leave an action nobody compensates.
        if (state.config.barrier) commitLocal(state, local(call, 'refused', out.reason, [], null), fx);
        fx.push(reply(call, from, 'failure', out.reason, true));
      } else {
        // A compensation or confirm that failed this time: nothing happened
        // (its local transaction rolled back); the orchestrator retries.
        fx.push(reply(call, from, 'failure', out.reason, false));
      }
      return;
    case 'ongoing':
      fx.push(reply(call, from, 'ongoing', out.reason, false));
      return;
    default:
      unreachable(out, 'handler result');
  }
}

/**
 * A write failed. The driver keeps the log a prefix (a WAL stops at its first
 * failed write and so does every write after it), so writing the record again
 * restores the database the rows in memory already describe; the reply that
 * waited on it was dropped and the orchestrator's retry collects it.
 */
function onPersistFailed(record: ServiceRecord, fx: Fx[]): void {
  fx.push({ type: 'persist', force: true, record });
}

function initialState(self: NodeId, config: Partial<ServiceConfig>): ServiceState {
  const c: ServiceConfig = { ...defaultServiceConfig, ...config };
  return {
    self,
    config: c,
    rows: new Map(c.initialRows),
    barrier: new Map(),
    stats: { duplicates: 0, nullCompensations: 0, hangingRefused: 0 },
  };
}

export const sagaService: Role<ServiceState, BranchMsg, ServiceRecord, Partial<ServiceConfig>> = {
  init: initialState,

  /** Rebuild rows and barrier by replaying every local transaction in log order. */
  recover(self, config, log): StepResult<ServiceState, BranchMsg, ServiceRecord> {
    const state = initialState(self, config);
    for (const r of log) applyRecord(state, r);
    return { state, effects: [] };
  },

  step(state, input: Input<BranchMsg>) {
    const fx: Fx[] = [];
    switch (input.type) {
      case 'receive':
        if (input.msg.type === 'CALL') onCall(state, input.from, input.msg, fx);
        break; // a REPLY is for orchestrators
      case 'persistFailed':
        onPersistFailed(input.record as ServiceRecord, fx);
        break;
      case 'timeout':
      case 'begin':
      case 'executed':
      case 'wounded':
        break; // a service sets no timers and takes no 2PC inputs
      default:
        unreachable(input, 'input');
    }
    return { state, effects: fx };
  },
};
