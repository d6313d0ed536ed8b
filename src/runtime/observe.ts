// What the runtime tells the world about itself: a logger port and the
// hooks of an observer. The 2PC coordinator (./coordinator.ts), the saga and
// TCC orchestrators (./branch/orchestrator.ts) and the log's group commit
// (./log/group-commit.ts) call them; `dtx serve` (src/server/metrics.ts,
// src/server/logging.ts) turns them into Prometheus metrics and JSON log
// lines, and a program that links dtx can do the same with its own tools.
//
// Both are optional. Without a logger the runtime says nothing except the
// warnings it always gave (`process.emitWarning`), so that nothing changes
// for a program that passes none. A hook that throws is ignored: observing a
// transaction must never change how it ends.
//
// OpenTelemetry spans are separate (./otel.ts): they need no option, only
// `@opentelemetry/api` installed and a tracer provider registered.

/**
 * A structured logger: the subset of pino's (and of most JSON loggers') API
 * dtx calls, `logger.warn({ txn }, 'message')`. A pino logger fits as is.
 */
export interface Logger {
  debug(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/** Which runtime a transaction belongs to. */
export type ObservedTxnType = '2pc' | 'saga' | 'tcc';

/**
 * How a transaction ended: 2PC `committed` / `aborted` / `unknown` (the log
 * failed while it was decided: recovery will tell); saga and TCC `completed`
 * / `compensated` (a TCC's cancels) / `abandoned` (by an operator). A run
 * hard-stopped waiting for an operator has not ended: `stuck` says so, and
 * its end comes with the operator's action.
 */
export type ObservedOutcome = 'committed' | 'aborted' | 'unknown' | 'completed' | 'compensated' | 'abandoned';

export interface TxnBegun {
  type: ObservedTxnType;
  id: string;
}

export interface TxnEnded {
  type: ObservedTxnType;
  id: string;
  outcome: ObservedOutcome;
  /** From its start in this process; null for a run resumed by recovery (its start is not known here). */
  durationMs: number | null;
  /** Why it did not complete, when the runtime knows. */
  reason: string | null;
}

export interface BranchCalled {
  type: ObservedTxnType;
  id: string;
  /** The branch: a saga step's or TCC branch's name, a 2PC resource's. */
  branch: string;
  /** `action`, `compensation`, `try`, `confirm`, `cancel`; 2PC: `prepare`, `commit`, `rollback`. */
  op: string;
  /**
   * `success`; `failure` (a refusal, a NO vote); `retry` (no answer, or an
   * error the runtime retries: the call is made again later).
   */
  status: 'success' | 'failure' | 'retry';
  durationMs: number;
  /** Why it did not succeed. */
  reason: string | null;
}

export interface LogFlushed {
  /** Records appended by this flush (one durable write): the group commit's batch size. */
  records: number;
  durationMs: number;
}

/** Hooks the runtime calls; each optional, each must be quick (they run on the event loop). */
export interface Observer {
  transactionBegun?(e: TxnBegun): void;
  transactionEnded?(e: TxnEnded): void;
  branchCalled?(e: BranchCalled): void;
  logFlushed?(e: LogFlushed): void;
  /** A run that keeps failing was reported stuck (`retrying`: an alert, the run goes on). */
  stuck?(e: { type: ObservedTxnType; id: string; reason: string; retrying: boolean }): void;
}

/** Calls one hook, swallowing what it throws: an observer cannot change an outcome. */
export function notify<K extends keyof Observer>(
  observer: Observer | undefined,
  hook: K,
  event: Parameters<NonNullable<Observer[K]>>[0],
): void {
  const fn = observer?.[hook] as ((e: typeof event) => void) | undefined;
  if (fn === undefined) return;
  try {
    fn.call(observer, event);
  } catch {
    // Ignored on purpose: see the module comment.
  }
}

/** Logs through `logger`, never throwing (a logger that fails must not stop the protocol). */
export function logSafely(
  logger: Logger | undefined,
  level: keyof Logger,
  obj: object,
  msg: string,
): boolean {
  if (logger === undefined) return false;
  try {
    logger[level](obj, msg);
  } catch {
    // Ignored: see the module comment.
  }
  return true;
}

/**
 * A warning: to `logger.warn` when there is a logger, else as dtx has always
 * given it, `process.emitWarning`.
 */
export function warn(logger: Logger | undefined, obj: object, msg: string): void {
  if (!logSafely(logger, 'warn', obj, msg)) process.emitWarning(msg);
}
