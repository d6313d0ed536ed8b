// The vocabulary saga and TCC share: what a call asks of a branch and what
// it answers, the messages between an orchestrator and a service, the
// operator's actions, the records and report every run has (`begin`,
// `stuck`, `end`, `reportSaga`), and the retry, alert and retention settings.
// The saga core (../saga/), the TCC core (../tcc/), the service role
// (./service.ts) and the shared run bookkeeping (./run.ts) import it. See
// ../../../docs/protocols/saga.md and ../../../docs/protocols/tcc.md.
//
// The vocabulary extends ../common/types.ts by one effect: `reportSaga`, how
// a run ended (`completed`, `compensated`, visibly `stuck`, or `rejected`
// at the door). Commit protocols report `committed`/`aborted`; a saga has no
// atomic outcome to report, so it gets its own words rather than a stretched
// meaning of theirs. The ordering rule is the common one: every `persist` of
// a step is durable before any of its after-persist effects (`sendAfterPersist`,
// `reportSaga` with `afterPersist: true`) is carried out.
//
// May not touch: clocks, I/O, randomness, anything outside src/protocol.

import { isValidNodeId, isValidTxnId } from '../common/limits.ts';
import type { Effect, Input, NodeId, TxnId } from '../common/types.ts';

// ------------------------------------------------------------------ branches

/**
 * What a call asks of a branch. Sagas use `action` and `compensate`; TCC uses
 * `try`, `confirm` and `cancel`. `compensate` undoes `action` and `cancel`
 * undoes `try`: those pairs are what the barrier (./service.ts) ties together.
 */
export type BranchOp = 'action' | 'compensate' | 'try' | 'confirm' | 'cancel';

/**
 * A branch's answer, with dtm's meanings:
 * - `success`: done (and recorded at the service);
 * - `failure`: for `action`/`try`, a business refusal (recorded: the same call
 *   always gets the same refusal; never retried, the saga compensates); for a
 *   compensation or a confirm, a failed attempt, retried like `ongoing`;
 * - `ongoing`: not now, ask again later (retried with backoff).
 * No answer at all (a lost message, a crashed service) is treated as `ongoing`.
 */
export type BranchResult = 'success' | 'failure' | 'ongoing';

/** The op a compensating op undoes, or null for a forward op. */
export function originOf(op: BranchOp): BranchOp | null {
  return op === 'compensate' ? 'action' : op === 'cancel' ? 'try' : null;
}

/** Forward ops whose business refusal is final (recorded, never retried). */
export function isRefusable(op: BranchOp): boolean {
  return op === 'action' || op === 'try';
}

/** Messages between an orchestrator (saga or TCC) and a service. */
export type BranchMsg =
  | {
      type: 'CALL';
      txn: TxnId;
      branch: string;
      op: BranchOp;
      /** The service's handler to run, by name. */
      handler: string;
      /** Opaque to the orchestrator and the barrier; the handler reads it. */
      payload: string;
      /** 1 for the first call of this op, counting up with every retry. */
      attempt: number;
    }
  | { type: 'REPLY'; txn: TxnId; branch: string; op: BranchOp; result: BranchResult; reason: string };

/**
 * Why a branch's name or service is malformed, or its name already in `seen`
 * (which it then joins); null when both are fine. Saga steps and TCC
 * branches alike.
 */
export function checkBranchNames(b: { branch: string; service: NodeId }, seen: Set<string>): string | null {
  if (!isValidNodeId(b.branch)) return `bad branch name ${JSON.stringify(b.branch)}`;
  if (seen.has(b.branch)) return `branch ${b.branch} appears twice`;
  seen.add(b.branch);
  if (!isValidNodeId(b.service)) return `bad service ${JSON.stringify(b.service)} in ${b.branch}`;
  return null;
}

export function isValidSagaId(id: string): boolean {
  return isValidTxnId(id);
}

// ------------------------------------------------------------ orchestrator

/** Client request: run saga (or TCC transaction) `txn`. `entropy` seeds the backoff jitter (a core draws no randomness). */
export type BeginMsg<D> = { type: 'BEGIN'; txn: TxnId; def: D; entropy: number };

/**
 * An operator's action on one transaction, from the runtime's operator API
 * (src/runtime/operator.ts). The runtime checks it first with the core's own
 * rule (`operatorProblem` in ./orchestrator.ts and ../tcc/coordinator.ts), so
 * that a refusal reaches the operator as an error; the core checks again and
 * ignores an action its state forbids.
 * - `retry`: call every outstanding branch now instead of at its next backoff;
 *   a run hard-stopped on a call that must succeed (a finite attempts limit)
 *   resumes retrying;
 * - `resolve`: end it with `outcome`, the operator having settled the branches
 *   by hand; refused when the log already decided the other way;
 * - `abandon`: end it as it stands, nothing more is called.
 * `resolve` and `abandon` force an `end` record carrying the reason.
 */
export type OperatorMsg =
  | { type: 'OPERATOR'; txn: TxnId; action: 'retry'; reason: string }
  | {
      type: 'OPERATOR';
      txn: TxnId;
      action: 'resolve';
      outcome: 'completed' | 'compensated';
      reason: string;
    }
  | { type: 'OPERATOR'; txn: TxnId; action: 'abandon'; reason: string };

/**
 * `stuck` is reported twice over: with `retrying: true` as an alert (a call
 * that must succeed keeps failing past the alert threshold, and is still
 * retried), without it as a hard stop (a finite attempts limit was reached, or
 * nothing correct is left to do without an operator). `abandoned`: an operator
 * ended it as it stood.
 */
export type SagaOutcome = 'completed' | 'compensated' | 'stuck' | 'rejected' | 'abandoned';

/** The records the saga and TCC logs share (see ./run.ts). */
export type BeginRecord<D> = { type: 'begin'; txn: TxnId; client: NodeId; def: D; entropy: number };
/**
 * `retrying: true`: an alert; the run goes on retrying (and a later one after
 * a hard stop says an operator resumed it). Absent: a hard stop, the run
 * waits for an operator.
 */
export type StuckRecord = {
  type: 'stuck';
  txn: TxnId;
  client: NodeId;
  branch: string;
  reason: string;
  retrying?: true;
};
/** `operator`: the run was ended by an operator's `resolve` or `abandon`, for `reason`. */
export type EndRecord = {
  type: 'end';
  txn: TxnId;
  client: NodeId;
  outcome: 'completed' | 'compensated' | 'abandoned';
  reason: string;
  operator?: { action: 'resolve' | 'abandon'; reason: string };
};

/** How a saga (or a TCC transaction) ended, for the client and for the driver's report. */
export interface ReportSaga {
  type: 'reportSaga';
  txn: TxnId;
  client: NodeId;
  outcome: SagaOutcome;
  /** Why it was compensated, stuck or rejected; null when it completed. */
  reason: string | null;
  afterPersist: boolean;
  /** For `stuck`: true when it is an alert and the run is still retried. */
  retrying?: boolean;
}

/** The common effects plus `reportSaga`. */
export type SagaEffect<M, R> = Effect<M, R> | ReportSaga;

export interface SagaStepResult<S, M, R> {
  state: S;
  effects: SagaEffect<M, R>[];
}

/** The common `Role`, with `reportSaga` among the effects. */
export interface SagaRole<S, M, R, C = unknown> {
  init(self: NodeId, config: C): S;
  recover(self: NodeId, config: C, log: readonly R[]): SagaStepResult<S, M, R>;
  step(state: S, input: Input<M>): SagaStepResult<S, M, R>;
}

export interface RetryConfig {
  /** Delay before the first retry of a call that has not answered (or answered `ongoing`). */
  retryBaseMs: number;
  /** Each further retry waits this many times longer... */
  retryFactor: number;
  /** ...up to this. */
  retryCapMs: number;
  /**
   * Fraction of each delay drawn away at random ("equal jitter" when 0.5):
   * delay × (1 − jitter × u), u in [0, 1) derived from the saga's `entropy`,
   * the branch and the attempt. 0 (the default) means no jitter.
   */
  jitter: number;
}

/**
 * When a run whose calls must succeed (compensations, TCC confirms and
 * cancels, forward-recovery actions) is reported stuck as an alert while it
 * keeps retrying. Infinity (the default) raises no alert: the simulator's
 * runs stay as they were.
 */
export interface AlertConfig {
  /** A call that has failed this many times raises the alert. */
  stuckAfterAttempts: number;
  /** A run still in its must-succeed phase this long after entering it raises the alert. */
  stuckAfterMs: number;
}

export const defaultAlertConfig: AlertConfig = {
  stuckAfterAttempts: Number.POSITIVE_INFINITY,
  stuckAfterMs: Number.POSITIVE_INFINITY,
};

export interface RetentionConfig {
  /**
   * Ended transactions whose ids (and, in the log, `end` records) are kept, so
   * that a repeated BEGIN is not run again and its outcome can still be
   * asked for; the oldest are forgotten first. Bounds the coordinator's memory
   * and its log (see ./log.ts).
   */
  retainFinished: number;
}

/** Ids of ended transactions: the newest `limit` of them, the oldest forgotten first. */
export class RecentIds {
  readonly ids = new Set<TxnId>();
  constructor(readonly limit: number) {}
  has(id: TxnId): boolean {
    return this.ids.has(id);
  }
  delete(id: TxnId): void {
    this.ids.delete(id);
  }
  add(id: TxnId): void {
    this.ids.delete(id);
    this.ids.add(id);
    while (this.ids.size > this.limit) this.ids.delete(this.ids.values().next().value!);
  }
  get size(): number {
    return this.ids.size;
  }
}

export const defaultRetainFinished = 100_000;

export const defaultRetryConfig: RetryConfig = {
  retryBaseMs: 20,
  retryFactor: 2,
  retryCapMs: 1000,
  jitter: 0,
};

/** The settings the saga and TCC cores both have; each core's config adds its own limits. */
export interface BranchConfig extends RetryConfig, RetentionConfig, AlertConfig {
  /** Distinguishes starts of the node (supplied by the driver; unused by the cores themselves). */
  incarnation: string;
}

export const defaultBranchConfig: BranchConfig = {
  ...defaultRetryConfig,
  ...defaultAlertConfig,
  incarnation: '0',
  retainFinished: defaultRetainFinished,
};

/** What a saga or TCC core takes: a client's BEGIN of plan `D`, a service's REPLY, an operator's action. */
export type RunMsg<D> = BeginMsg<D> | BranchMsg | OperatorMsg;

/** The records the saga and TCC logs share (see ./run.ts). */
export type CommonRecord<D> = BeginRecord<D> | StuckRecord | EndRecord;

/** 32-bit FNV-1a of `text`, continued from `seed`. */
function hash32(seed: number, text: string): number {
  let h = (seed ^ 0x811c9dc5) >>> 0;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  // Final avalanche (murmur3's fmix32), so that nearby inputs spread out.
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35) >>> 0;
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * How long to wait after call attempt `attempt` (1, 2, ...) before the next:
 * exponential from `retryBaseMs`, capped at `retryCapMs`, minus the jitter.
 * Deterministic: the only randomness is `entropy`, which arrived as input.
 */
export function backoffMs(config: RetryConfig, attempt: number, entropy: number, salt: string): number {
  const exp = config.retryBaseMs * config.retryFactor ** Math.max(0, attempt - 1);
  const delay = Math.min(config.retryCapMs, exp);
  if (config.jitter <= 0) return delay;
  const u = hash32(entropy >>> 0, `${salt}#${attempt}`) / 4294967296;
  return delay * (1 - Math.min(1, config.jitter) * u);
}
