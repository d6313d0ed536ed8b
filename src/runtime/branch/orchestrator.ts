// What the durable saga orchestrator (./orchestrator.ts) and the TCC
// orchestrator (../tcc/orchestrator.ts) share: a pure core that drives branches (saga or
// TCC, ../../protocol/branch/run.ts) on the runtime Driver with a
// durable log, and a transport that turns the core's CALL messages into
// branch calls — a local async function, or a POST under the HTTP branch
// protocol (../../adapters/http-branch.ts). Each orchestrator adds its
// definitions: how they are checked, named, and turned into the core's.
//
// Owns: the outcome of every saga or TCC transaction its log knows (read as
// the log loads, then from the core's reports; the newest `retainFinished`),
// the callers waiting for one (each with its own deadline: giving up waiting
// never stops the run), the calls in flight, the registry that turns the
// core's handler keys (`<definition>@<version>/<branch>/<op>`) into local
// functions or HTTP endpoints — URLs come only from definitions registered
// in code, never from the log — the stuck alerts (`onStuck`), the operator's
// actions (`TxnOperator`: list, show, retry, resolve, abandon, each carried
// out by the core and recorded in the log), and the log's checkpoints
// (compactSagaLog every so many appends, so that the log and the time to
// recover stay bounded by what is open plus what is retained). It reports
// what it does to an optional logger and observer (../observe.ts) and as
// OpenTelemetry spans (../otel.ts): one per run, one per branch call.

import '../../dispose.ts';
import { createHash, randomInt } from 'node:crypto';
import {
  callHttpBranch,
  checkBranchHeaders,
  checkBranchUrl,
  checkHttpTimeoutMs,
  type HttpBranchOp,
} from '../../adapters/http-branch.ts';
import { DtxError, isDtxError } from '../../errors.ts';
import { compactSagaLog } from '../../protocol/branch/log.ts';
import {
  type BeginMsg,
  type BranchMsg,
  type BranchOp,
  type BranchResult,
  defaultRetainFinished,
  type EndRecord,
  type OperatorMsg,
  type ReportSaga,
  type RetentionConfig,
  type RetryConfig,
  type SagaRole,
} from '../../protocol/branch/types.ts';
import type { NodeId } from '../../protocol/common/types.ts';
import { Driver } from '../driver.ts';
import {
  branchCheckpointEveryDefault,
  branchRuntimeTiming,
  httpTimeoutMsDefault,
  timerDelayMsMax,
} from '../limits.ts';
import { timedRecords } from '../log/timed.ts';
import type { DurableLog } from '../log/types.ts';
import { wrapLog } from '../log/wrap.ts';
import { type Logger, logSafely, notify, type ObservedOutcome, type Observer } from '../observe.ts';
import type { OperatorActionOptions, TxnDetail, TxnOperator, TxnState, TxnSummary } from '../operator.ts';
import { type SpanHandle, type SpanParent, startSpan, withSpan } from '../otel.ts';
import type { TimedRecord } from './views.ts';

/** What a branch's `headers` function is told about the call it adds headers to. */
export interface BranchHeaderCall {
  sagaId: string;
  branchId: string;
  op: HttpBranchOp;
  attempt: number;
}

/**
 * A branch's own request headers (an auth token, a `traceparent`): a fixed
 * record, or a function of the call, run for every attempt. They live only in
 * the registered definition: never in the log, never in a message.
 */
export type BranchHeaders =
  | Readonly<Record<string, string>>
  | ((
      call: BranchHeaderCall,
    ) => Readonly<Record<string, string>> | Promise<Readonly<Record<string, string>>>);

/** A branch served over HTTP at `url` (see the HTTP branch protocol): http: or https: only. */
export interface HttpBranchRef {
  url: string;
  headers?: BranchHeaders;
  /** This branch's call timeout, overriding the orchestrator's `httpTimeoutMs`. */
  timeoutMs?: number;
}

/** True for an HTTP branch (`{ url }`), false for a local function. */
export function isHttpBranch<F>(b: F | HttpBranchRef): b is HttpBranchRef {
  return typeof b === 'object' && b !== null;
}

export type SagaState =
  | 'running'
  | 'compensating'
  | 'completed'
  | 'compensated'
  | 'abandoned'
  | 'stuck'
  | 'unknown';

export interface SagaStatus {
  sagaId: string;
  state: SagaState;
  /** Why it is compensating, compensated or stuck; null otherwise. */
  reason: string | null;
  /** Per branch, while the saga is in flight: idle, running, done, refused, compensating, compensated. */
  branches: Record<string, string>;
  /** The stuck alert while it is raised (the run is still retried); null otherwise. */
  alert: string | null;
}

/**
 * How it ended. `stuck`: hard-stopped, waiting for an operator (only with a
 * finite attempts limit, or past a point of no return); `abandoned`: an
 * operator ended it as it stood.
 */
export interface BranchRunResult {
  sagaId: string;
  outcome: 'completed' | 'compensated' | 'stuck' | 'abandoned';
  reason: string | null;
}

/** What `onStuck` is told. `retrying`: an alert, the run goes on; false: hard-stopped. */
export interface StuckAlert {
  sagaId: string;
  reason: string;
  retrying: boolean;
}

/** How long `result()` waits: a deadline and/or a caller's AbortSignal. */
export interface ResultOptions {
  wait?: boolean;
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** What a local branch function gets. */
export interface BranchCall<Op extends HttpBranchOp> {
  sagaId: string;
  branchId: string;
  op: Op;
  idempotencyKey: string;
  attempt: number;
  input: unknown;
}

/** A log's `decode`: rejects rows that are not one of `types`, naming `what` they should have been. */
export function recordDecoder<R>(types: readonly string[], what: string): (value: unknown) => R {
  const recordTypes = new Set(types);
  return (value) => {
    const v = value as { type?: unknown; txn?: unknown } | null;
    if (
      typeof v !== 'object' ||
      v === null ||
      !recordTypes.has(v.type as string) ||
      typeof v.txn !== 'string'
    ) {
      throw new TypeError(`not a ${what} log record`);
    }
    return value as R;
  };
}

/** An id derived from `material` (which holds the idempotency key), readable by its definition's name. */
export function derivedId(definitionName: string, material: string): string {
  const digest = createHash('sha256').update(material).digest('hex');
  return `${definitionName.slice(0, 23)}.${digest.slice(0, 24)}`;
}

/**
 * The core's handler name for one op of a branch, local or HTTP alike:
 * `<definition>@<version>/<branch>/<op>`. The log keeps this key, never a URL
 * or a header; the runtime finds the function or endpoint under it in the
 * definitions registered in this process.
 */
export function handlerName(definitionName: string, version: number, branch: string, op: string): string {
  return `${definitionName}@${version}/${branch}/${op}`;
}

/** Throws DTX_INVALID_ARGUMENT unless `version` is a positive integer. */
export function checkVersion(version: unknown, where: string): number {
  if (typeof version !== 'number' || !Number.isSafeInteger(version) || version < 1) {
    throw new DtxError(
      'DTX_INVALID_ARGUMENT',
      `${where}: version must be an integer >= 1, got ${String(version)}`,
    );
  }
  return version;
}

/** Checks an HTTP branch at define time: its URL, headers and timeout. */
export function checkHttpBranch(ref: HttpBranchRef, where: string): void {
  checkBranchUrl(ref.url, where);
  if (ref.headers !== undefined && typeof ref.headers !== 'function') checkBranchHeaders(ref.headers, where);
  if (ref.timeoutMs !== undefined) checkHttpTimeoutMs(ref.timeoutMs, `${where}: timeoutMs`);
}

/**
 * `log`, checkpointed every `every` appends at the least (and never before as
 * many appends as the last checkpoint kept, so that rewriting costs O(1) per
 * append): the checkpoint is `compactSagaLog` of a mirror of the log's
 * records, kept in memory from the load on, in call order, as copies taken at
 * append time (a record is what was appended, whatever its objects became
 * after). A failed checkpoint goes to `failed`: the store refuses every later
 * call, so the orchestrator must stop as on a failed append.
 */
export function checkpointingLog<R extends { type: string; txn: string }>(
  log: DurableLog<R>,
  retainFinished: number,
  every: number,
  failed: (err: unknown) => void,
  /** Called with the copies of each append's records once the append resolved. */
  appended?: (records: readonly R[]) => void,
): DurableLog<R> {
  let mirror: R[] = [];
  let appends = 0;
  let keptLast = 0;
  return wrapLog(log, {
    append(records, force) {
      const done = log.append(records, force);
      const copies = records.map((r) => structuredClone(r));
      for (const r of copies) mirror.push(r);
      if (appended !== undefined)
        void done.then(
          () => appended(copies),
          () => undefined,
        );
      appends++;
      if (appends >= Math.max(every, keptLast)) {
        appends = 0;
        mirror = compactSagaLog(mirror, retainFinished);
        keptLast = mirror.length;
        log.checkpoint(mirror.slice()).catch(failed);
      }
      return done;
    },
    checkpoint: (keep) => {
      mirror = [...keep];
      return log.checkpoint(keep);
    },
    load: async () => {
      const records = await log.load();
      mirror = [...records];
      return records;
    },
  });
}

/** `log`, showing `seen` every record it loads (recovery's reading) before the caller gets them. */
export function watchLoad<R>(log: DurableLog<R>, seen: (records: readonly R[]) => void): DurableLog<R> {
  return wrapLog(log, {
    load: async () => {
      const records = await log.load();
      seen(records);
      return records;
    },
  });
}

/** The core's service for a branch's calls. */
export const localService = 'local';
export const httpService = 'http';
const appClient = 'app';

/** How one orchestrator speaks: its node id, its branch ops, and its error messages. */
export interface OrchestratorKind<Op extends HttpBranchOp, R = unknown> {
  /** The driver's node id. */
  self: NodeId;
  /** What its runs are called in logs, metrics and spans (`dtx.saga`, `dtx.tcc`). */
  observed: 'saga' | 'tcc';
  /** The id a start of definition `definitionName` with `idempotencyKey` gets. */
  idFor(definitionName: string, idempotencyKey: string): string;
  /** The operator's view of the log's records. */
  views(records: readonly TimedRecord<R>[]): TxnDetail[];
  /** The op a local function or an HTTP endpoint sees for the core's `op`. */
  op(op: BranchOp): Op;
  /** The error when the log failed: `the saga log failed; ...`. */
  logFailed: string;
  /** What waiters are told when the log fails under them. */
  haltedWaiters: string;
  notStarted: string;
  /** Prefix of the error for a start the core rejected. */
  rejected: string;
  unknown(id: string): string;
  noFunction(handler: string): string;
}

export interface BranchOrchestratorOptions<R, C> {
  log: DurableLog<R>;
  /**
   * Retry and limit settings of the core, among them `retainFinished`: how
   * many ended sagas (or TCC transactions) keep their outcome, in the log and
   * in memory, so that a repeated start with the same idempotency key is not
   * run again and `result(id)` still answers (default 100,000; the oldest are
   * forgotten first).
   */
  timing?: Partial<Omit<C, 'incarnation'>>;
  /** Checkpoint the log every this many appends at the least. Default 10,000. */
  checkpointEvery?: number;
  /** Timeout of each HTTP branch call: an integer from 1 to 600,000. Default 5000. */
  httpTimeoutMs?: number;
  /** Longest HTTP branch response body read; a longer one fails the attempt. Default 64 KiB. */
  httpMaxBodyBytes?: number;
  /**
   * Called when a run is reported stuck: as an alert (`retrying`, raised once
   * per run and again after a restart while it lasts) or as a hard stop.
   * Must not throw.
   */
  onStuck?: (alert: StuckAlert) => void;
  /**
   * A structured logger (pino-compatible, ../observe.ts): stuck alerts at
   * `warn` (a hard stop at `error`), runs that end otherwise than completed
   * at `info`, starts, ends and branch calls that did not succeed at `debug`.
   * Default: none, and nothing is logged.
   */
  logger?: Logger;
  /** Hooks for metrics: runs begun and ended, branch calls (../observe.ts). */
  observer?: Observer;
}

/** A registered branch op: a local function, or an HTTP endpoint. */
type Target<Op extends HttpBranchOp> = ((ctx: BranchCall<Op>) => Promise<unknown>) | HttpBranchRef;

/** What the core's role offers the runtime beyond a role: its rule for operator actions. */
export type OperatedRole<S, D, R, C> = SagaRole<S, BeginMsg<D> | BranchMsg | OperatorMsg, R, C> & {
  operatorProblem(state: S, msg: OperatorMsg): string | null;
};

/**
 * The shared runtime of both orchestrators. `Def` is the caller's definition,
 * `S`, `D`, `R`, `C` the core's state, definition, record and config, `Op`
 * the ops its branches see.
 */
export abstract class BranchOrchestrator<
  Def extends { name: string },
  S extends { finished: { has(id: string): boolean } },
  D,
  R extends { type: string; txn: string },
  C extends RetryConfig & RetentionConfig & { incarnation: string },
  Op extends HttpBranchOp,
> implements TxnOperator, AsyncDisposable
{
  protected readonly driver: Driver<S, BeginMsg<D> | BranchMsg | OperatorMsg, R, Partial<C>>;
  /** Handler key to local function or HTTP endpoint, from the registered definitions. */
  private readonly targets = new Map<string, Target<Op>>();
  private readonly outcomes = new Map<string, BranchRunResult>();
  private readonly waiters = new Map<
    string,
    { resolve: (r: BranchRunResult) => void; reject: (e: unknown) => void }[]
  >();
  private readonly rejected = new Map<string, string>();
  private readonly inflight = new Set<string>();
  /** Runs started (or resumed) in this process and not ended: their span and start, for spans and durations. */
  private readonly runs = new Map<string, { span: SpanHandle | undefined; startMs: number | null }>();
  private failure: unknown;
  private started = false;
  private closed = false;
  private readonly retainFinished: number;
  /** Records of the transactions begun here, for `show` without reading the whole log. */
  private readonly timeline = new TimelineIndex<R>();
  private readonly httpTimeoutMs: number;

  constructor(
    private readonly role: OperatedRole<S, D, R, Partial<C>>,
    private readonly kind: OrchestratorKind<Op, R>,
    private readonly settings: BranchOrchestratorOptions<R, C>,
  ) {
    this.retainFinished = settings.timing?.retainFinished ?? defaultRetainFinished;
    this.httpTimeoutMs = checkHttpTimeoutMs(settings.httpTimeoutMs ?? httpTimeoutMsDefault, 'httpTimeoutMs');
    const timing = { ...branchRuntimeTiming, ...settings.timing } as Record<string, unknown>;
    for (const key of ['stuckAfterAttempts', 'stuckAfterMs']) {
      const v = timing[key];
      if (typeof v !== 'number' || !(v > 0) || (Number.isFinite(v) && v > timerDelayMsMax)) {
        throw new DtxError(
          'DTX_INVALID_ARGUMENT',
          `timing.${key} must be a positive number up to ${timerDelayMsMax}, or Infinity`,
        );
      }
    }
    const every = settings.checkpointEvery ?? branchCheckpointEveryDefault;
    if (!Number.isSafeInteger(this.retainFinished) || this.retainFinished < 0) {
      throw new DtxError('DTX_INVALID_ARGUMENT', 'timing.retainFinished must be an integer >= 0');
    }
    if (!Number.isSafeInteger(every) || every < 1) {
      throw new DtxError('DTX_INVALID_ARGUMENT', 'checkpointEvery must be an integer >= 1');
    }
    // Read the outcomes of finished sagas as the driver loads the log.
    const log = checkpointingLog(
      settings.log,
      this.retainFinished,
      every,
      (err) => this.driver.fail(err),
      (records) => this.timeline.add(records),
    );
    const watching = watchLoad(log, (records) => {
      for (const r of records) {
        if (isEnd(r)) this.remember({ sagaId: r.txn, outcome: r.outcome, reason: endResultReason(r) });
      }
    });
    this.driver = new Driver(
      role,
      kind.self,
      { ...timing, incarnation: `${Date.now().toString(36)}` } as Partial<C>,
      {
        log: watching,
        send: (to, msg) => this.deliver(to, msg),
        outcome: () => undefined,
        saga: (report) => this.onReport(report),
        halted: (err) => this.onHalt(err),
      },
    );
  }

  /** Registers a definition (its local functions), for `start()` and for resuming its runs. */
  abstract define(def: Def): void;
  /** The id the definition and the idempotency key name. */
  /** The core's definition, with the caller's input as every branch's payload. */
  protected abstract toPlan(def: Def, input: unknown): D;
  /** Where a run the core still holds is now. */
  protected abstract inFlight(id: string, state: S): SagaStatus | undefined;
  /** The ids of every run the core holds now (in flight, or hard-stopped). */
  protected abstract inFlightIds(state: S): Iterable<string>;

  /**
   * How many runs the core holds now, by where they are: calling forward
   * (`running`), turning back (`compensating`), or `stuck` (an alert raised,
   * or hard-stopped). Read from the core's state: cheap enough for a gauge.
   */
  inFlightCounts(): { running: number; compensating: number; stuck: number } {
    const counts = { running: 0, compensating: 0, stuck: 0 };
    const state = this.driver.peek();
    for (const id of this.inFlightIds(state)) {
      const s = this.inFlight(id, state)?.state;
      if (s === 'running' || s === 'compensating' || s === 'stuck') counts[s]++;
    }
    return counts;
  }
  /**
   * Registers one branch op under its handler key. Throws DTX_INVALID_ARGUMENT
   * for an HTTP branch with a bad URL, headers or timeout.
   */
  protected register(key: string, target: Target<Op>, where: string): void {
    if (isHttpBranch(target)) checkHttpBranch(target, where);
    else if (typeof target !== 'function') {
      throw new DtxError('DTX_INVALID_ARGUMENT', `${where} needs a function or { url }`);
    }
    this.targets.set(key, target);
    // Logs written before definitions had versions name a local function
    // `<definition>/<branch>/<op>`: version 1 answers to that key too, so
    // their runs resume. (Their HTTP branches were named by URL: never called.)
    const legacy = /^(.*)@1\/(.*)$/.exec(key);
    if (legacy !== null && !isHttpBranch(target)) this.targets.set(`${legacy[1]}/${legacy[2]}`, target);
  }

  /** Recovers from the log and resumes every unfinished run. The `create…` functions call it. */
  async recover(): Promise<void> {
    if (this.started) throw new DtxError('DTX_INVALID_STATE', 'recover() was called already');
    await this.driver.start();
    this.started = true;
  }

  /**
   * Starts a saga (or TCC transaction), once per idempotency key: a second
   * start with the same key (in this process or after a restart, while the
   * log keeps it) returns the same id and runs nothing. Resolves with the id
   * once its `begin` is durable; `result(id)` waits for the end.
   */
  async start(def: Def, opts: { idempotencyKey: string; input?: unknown }): Promise<string> {
    if (!this.started) throw new DtxError('DTX_INVALID_STATE', this.kind.notStarted);
    this.throwIfFailed();
    if (typeof opts?.idempotencyKey !== 'string' || opts.idempotencyKey === '') {
      throw new DtxError('DTX_INVALID_ARGUMENT', 'an idempotencyKey is required');
    }
    this.define(def);
    const id = this.kind.idFor(def.name, opts.idempotencyKey);
    // A start of a run this orchestrator knows already is a repeat: no new span.
    const fresh = !this.outcomes.has(id) && this.status(id).state === 'unknown';
    if (fresh) {
      const span = startSpan(`dtx.${this.kind.observed}`, {
        'dtx.transaction.type': this.kind.observed,
        'dtx.transaction.id': id,
        'dtx.definition': def.name,
      });
      this.runs.set(id, { span, startMs: Date.now() });
    }
    this.driver.input({
      type: 'receive',
      from: appClient,
      msg: { type: 'BEGIN', txn: id, def: this.toPlan(def, opts.input), entropy: randomInt(2 ** 31) },
    });
    const rejection = this.rejected.get(id);
    if (rejection !== undefined) {
      this.rejected.delete(id);
      this.runs.get(id)?.span?.end({}, rejection);
      this.runs.delete(id);
      throw new DtxError('DTX_INVALID_ARGUMENT', `${this.kind.rejected}: ${rejection}`);
    }
    if (fresh) {
      notify(this.settings.observer, 'transactionBegun', { type: this.kind.observed, id });
      logSafely(this.settings.logger, 'debug', { txn: id, type: this.kind.observed }, 'transaction started');
    }
    await this.driver.settled();
    this.throwIfFailed();
    return id;
  }

  /** Where a saga (or TCC transaction) is now. `unknown` for an id this orchestrator's log does not know. */
  status(id: string): SagaStatus {
    const done = this.outcomes.get(id);
    if (done !== undefined) {
      return { sagaId: id, state: done.outcome, reason: done.reason, branches: {}, alert: null };
    }
    const state = this.driver.peek();
    // Ended in the core, its `end` not yet durable (so not yet reported):
    // still in flight for the caller, whose result() waits for the report.
    if (state.finished.has(id))
      return { sagaId: id, state: 'running', reason: null, branches: {}, alert: null };
    return (
      this.inFlight(id, state) ?? {
        sagaId: id,
        state: 'unknown',
        reason: null,
        branches: {},
        alert: null,
      }
    );
  }

  /**
   * How it ended: waits for it to complete, be compensated or get stuck.
   * `{ wait: false }` returns at once with null while it is still in flight.
   */
  /**
   * How it ended: waits for it to complete, be compensated, be ended by an
   * operator, or be hard-stopped (`stuck` without retrying; a stuck alert is
   * not an end, the run goes on and `result` keeps waiting).
   * `{ wait: false }` returns at once with null while it is still in flight.
   * `timeoutMs` / `signal`: stop waiting — rejects with DTX_TIMEOUT or
   * DTX_CANCELLED. Only the wait ends: the saga itself carries on (its
   * compensations cannot be called off), and a later `result()` still answers.
   */
  result(id: string, opts?: { timeoutMs?: number; signal?: AbortSignal }): Promise<BranchRunResult>;
  result(id: string, opts: { wait: false }): Promise<BranchRunResult | null>;
  async result(id: string, opts: ResultOptions = {}): Promise<BranchRunResult | null> {
    const { timeoutMs, signal } = opts;
    if (
      timeoutMs !== undefined &&
      (typeof timeoutMs !== 'number' || !(timeoutMs >= 0) || timeoutMs > timerDelayMsMax)
    ) {
      throw new DtxError('DTX_INVALID_ARGUMENT', `timeoutMs must be a number from 0 to ${timerDelayMsMax}`);
    }
    const done = this.outcomes.get(id);
    if (done !== undefined) return done;
    const now = this.status(id);
    if (now.state === 'stuck' && now.alert === null)
      return { sagaId: id, outcome: 'stuck', reason: now.reason };
    if (opts.wait === false) return null;
    this.throwIfFailed();
    if (now.state === 'unknown') throw new DtxError('DTX_INVALID_ARGUMENT', this.kind.unknown(id));
    if (signal?.aborted) throw cancelled(id, signal);
    return new Promise((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const onAbort = () => stop(cancelled(id, signal!));
      const waiter = {
        resolve: (r: BranchRunResult) => {
          cleanup();
          resolve(r);
        },
        reject: (e: unknown) => {
          cleanup();
          reject(e);
        },
      };
      const cleanup = () => {
        if (timer !== undefined) clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      };
      const stop = (error: DtxError) => {
        const list = this.waiters.get(id);
        const at = list?.indexOf(waiter) ?? -1;
        if (at >= 0) list!.splice(at, 1);
        if (list?.length === 0) this.waiters.delete(id);
        waiter.reject(error);
      };
      if (timeoutMs !== undefined) {
        timer = setTimeout(
          () =>
            stop(
              new DtxError(
                'DTX_TIMEOUT',
                `${id} has not ended within ${timeoutMs} ms; it carries on (ask result() again)`,
                {
                  gid: id,
                },
              ),
            ),
          timeoutMs,
        );
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      const list = this.waiters.get(id) ?? [];
      list.push(waiter);
      this.waiters.set(id, list);
    });
  }

  // ------------------------------------------------------------ operator

  /** Every transaction the log holds (open, and the retained ended ones), optionally of one state. */
  async list(filter: { state?: TxnState } = {}): Promise<TxnSummary[]> {
    const all = await this.loadViews();
    return all
      .filter((v) => filter.state === undefined || v.state === filter.state)
      .map(({ records: _records, ...summary }) => summary);
  }

  /** One transaction with every record the log holds for it. Throws DTX_INVALID_ARGUMENT for an id the log does not know. */
  async show(id: string): Promise<TxnDetail> {
    if (this.timeline.get(id) !== undefined) {
      if (!this.started) throw new DtxError('DTX_INVALID_STATE', this.kind.notStarted);
      this.throwIfFailed();
      await this.driver.settled();
      const records = this.timeline.get(id);
      const view = records === undefined ? undefined : this.kind.views(records).find((v) => v.id === id);
      if (view !== undefined) return view;
    }
    const view = (await this.loadViews()).find((v) => v.id === id);
    if (view === undefined) throw new DtxError('DTX_INVALID_ARGUMENT', this.kind.unknown(id));
    return view;
  }

  /**
   * Calls every outstanding branch of `id` now, instead of at its next
   * backoff; a run hard-stopped on its compensations (or confirms, cancels)
   * resumes retrying. Recorded in the log only in that second case.
   */
  async retry(id: string, opts: { reason?: string } = {}): Promise<void> {
    await this.operate({
      type: 'OPERATOR',
      txn: id,
      action: 'retry',
      reason: opts.reason ?? 'operator retry',
    });
  }

  /**
   * Ends `id` as it stands: nothing more is called, an `end` record
   * (outcome `abandoned`) carries the reason. Needs `force: true` and a reason.
   */
  async abandon(id: string, opts: OperatorActionOptions): Promise<void> {
    checkForce(opts, 'abandon');
    await this.operate({ type: 'OPERATOR', txn: id, action: 'abandon', reason: opts.reason });
  }

  /** Ends `id` with the outcome an operator established by hand (see each orchestrator's `resolve`). */
  protected async resolveAs(
    id: string,
    outcome: 'completed' | 'compensated',
    opts: OperatorActionOptions,
  ): Promise<void> {
    checkForce(opts, 'resolve');
    await this.operate({ type: 'OPERATOR', txn: id, action: 'resolve', outcome, reason: opts.reason });
  }

  private async operate(msg: OperatorMsg): Promise<void> {
    if (!this.started) throw new DtxError('DTX_INVALID_STATE', this.kind.notStarted);
    if (this.closed) throw new DtxError('DTX_INVALID_STATE', 'the orchestrator is closed');
    this.throwIfFailed();
    if (typeof msg.txn !== 'string' || msg.txn === '') {
      throw new DtxError('DTX_INVALID_ARGUMENT', 'a transaction id is required');
    }
    // The core's own rule, asked first so that a refusal reaches the operator.
    const problem = this.role.operatorProblem(this.driver.peek(), msg);
    if (problem !== null) {
      const state = this.driver.peek();
      const unknown =
        !this.outcomes.has(msg.txn) &&
        !state.finished.has(msg.txn) &&
        this.inFlight(msg.txn, state) === undefined;
      throw new DtxError(
        unknown ? 'DTX_INVALID_ARGUMENT' : 'DTX_INVALID_STATE',
        `${msg.action} refused: ${unknown ? this.kind.unknown(msg.txn) : problem}`,
        { gid: msg.txn },
      );
    }
    this.driver.input({ type: 'receive', from: operatorClient, msg });
    await this.driver.settled();
    this.throwIfFailed();
  }

  private async loadViews(): Promise<TxnDetail[]> {
    if (!this.started) throw new DtxError('DTX_INVALID_STATE', this.kind.notStarted);
    this.throwIfFailed();
    await this.driver.settled();
    // The store serializes a load after every append called before it.
    return this.kind.views(await timedRecords(this.settings.log));
  }

  /** `await using` closes the orchestrator on leaving the block (the log stays open). */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** Stops timers and calls; in-flight log writes complete. The log is the caller's to close. */
  async close(): Promise<void> {
    this.closed = true;
    await this.driver.close();
  }

  private throwIfFailed(): void {
    if (this.failure !== undefined) {
      throw new DtxError('DTX_RESOURCE_UNAVAILABLE', this.kind.logFailed, { cause: this.failure });
    }
  }

  private onHalt(err: unknown): void {
    this.failure = err;
    for (const list of this.waiters.values()) {
      for (const w of list) {
        w.reject(new DtxError('DTX_OUTCOME_UNKNOWN', this.kind.haltedWaiters, { cause: err }));
      }
    }
    this.waiters.clear();
  }

  /** Keeps an outcome, forgetting the oldest beyond `retainFinished` (as the core and the log do). */
  private remember(result: BranchRunResult): void {
    this.outcomes.delete(result.sagaId);
    this.outcomes.set(result.sagaId, result);
    while (this.outcomes.size > this.retainFinished) {
      this.outcomes.delete(this.outcomes.keys().next().value!);
    }
  }

  private onReport(r: ReportSaga): void {
    if (r.outcome === 'rejected') {
      this.rejected.set(r.txn, r.reason ?? 'rejected');
      return;
    }
    if (r.outcome === 'stuck') {
      const retrying = r.retrying === true;
      try {
        this.settings.onStuck?.({ sagaId: r.txn, reason: r.reason ?? '', retrying });
      } catch {
        // The callback must not throw; one that does cannot stop the run.
      }
      const reason = r.reason ?? '';
      notify(this.settings.observer, 'stuck', { type: this.kind.observed, id: r.txn, reason, retrying });
      logSafely(
        this.settings.logger,
        retrying ? 'warn' : 'error',
        { txn: r.txn, type: this.kind.observed, reason, retrying },
        retrying
          ? 'transaction stuck: still retrying'
          : 'transaction stuck: stopped, waiting for an operator',
      );
      if (retrying) return; // an alert: the run goes on, its waiters wait
    }
    const result: BranchRunResult = { sagaId: r.txn, outcome: r.outcome, reason: r.reason };
    // A hard stop is not an end: an operator ends the run later (one end per run).
    if (r.outcome !== 'stuck') this.onRunEnded(r.txn, r.outcome, r.reason);
    if (r.outcome !== 'stuck') this.remember(result);
    for (const w of this.waiters.get(r.txn) ?? []) w.resolve(result);
    this.waiters.delete(r.txn);
  }

  /** Ends a run's span and tells the observer and the logger. */
  private onRunEnded(id: string, outcome: ObservedOutcome, reason: string | null): void {
    const run = this.runs.get(id);
    this.runs.delete(id);
    const durationMs = run?.startMs == null ? null : Date.now() - run.startMs;
    run?.span?.end(
      { 'dtx.transaction.outcome': outcome },
      outcome === 'completed' ? undefined : (reason ?? outcome),
    );
    const type = this.kind.observed;
    notify(this.settings.observer, 'transactionEnded', { type, id, outcome, durationMs, reason });
    logSafely(
      this.settings.logger,
      outcome === 'completed' ? 'debug' : 'info',
      { txn: id, type, outcome, durationMs, reason },
      'transaction ended',
    );
  }

  /**
   * The parent of the span of a run resumed by recovery: by default none (a
   * new trace). A subclass that kept its runs' callers' trace context with
   * them (`dtx serve`) returns it, so the resumed run continues that trace.
   */
  protected resumedSpanParent(_id: string): SpanParent | 'root' {
    return 'root';
  }

  /** The run `id` belongs to: one resumed by recovery gets its span at its first call. */
  private runOf(id: string): { span: SpanHandle | undefined; startMs: number | null } {
    let run = this.runs.get(id);
    if (run === undefined) {
      const span = startSpan(
        `dtx.${this.kind.observed}`,
        { 'dtx.transaction.type': this.kind.observed, 'dtx.transaction.id': id, 'dtx.recovered': true },
        this.resumedSpanParent(id),
      );
      run = { span, startMs: null };
      this.runs.set(id, run);
    }
    return run;
  }

  private deliver(to: NodeId, msg: BeginMsg<D> | BranchMsg | OperatorMsg): void {
    if (msg.type !== 'CALL') return;
    const key = `${msg.txn}|${msg.branch}|${msg.op}`;
    // A retry timer may fire while the previous call is still running: let it
    // finish; the core retries again after its next backoff.
    if (this.inflight.has(key)) return;
    this.inflight.add(key);
    const op = this.kind.op(msg.op);
    const span = startSpan(
      `dtx.branch.${op}`,
      {
        'dtx.transaction.type': this.kind.observed,
        'dtx.transaction.id': msg.txn,
        'dtx.branch.id': msg.branch,
        'dtx.branch.op': op,
        'dtx.branch.attempt': msg.attempt,
      },
      this.runOf(msg.txn).span ?? 'root',
      'client',
    );
    const startedMs = Date.now();
    void withSpan(span, () => this.call(to, msg))
      .catch((error: unknown) => ({ result: 'ongoing' as const, reason: String(error) }))
      .then(({ result, reason }) => {
        this.onCalled(msg, op, result, reason, Date.now() - startedMs, span);
        this.inflight.delete(key);
        this.driver.input({
          type: 'receive',
          from: to,
          msg: { type: 'REPLY', txn: msg.txn, branch: msg.branch, op: msg.op, result, reason },
        });
      });
  }

  private onCalled(
    msg: Extract<BranchMsg, { type: 'CALL' }>,
    op: Op,
    result: BranchResult,
    reason: string,
    durationMs: number,
    span: SpanHandle | undefined,
  ): void {
    const status = result === 'success' ? 'success' : result === 'failure' ? 'failure' : 'retry';
    span?.end({ 'dtx.branch.status': status }, status === 'success' ? undefined : reason);
    const type = this.kind.observed;
    const event = { type, id: msg.txn, branch: msg.branch, op, status, durationMs } as const;
    notify(this.settings.observer, 'branchCalled', {
      ...event,
      reason: status === 'success' ? null : reason,
    });
    if (status !== 'success') {
      logSafely(
        this.settings.logger,
        'debug',
        { txn: msg.txn, type, branch: msg.branch, op, status, attempt: msg.attempt, reason },
        'branch call did not succeed',
      );
    }
  }

  private async call(
    _to: NodeId,
    msg: Extract<BranchMsg, { type: 'CALL' }>,
  ): Promise<{ result: BranchResult; reason: string }> {
    const op = this.kind.op(msg.op);
    const input = JSON.parse(msg.payload) as unknown;
    const fn = this.targets.get(msg.handler);
    // Not registered: retried (and alerted on) until a process that has the
    // definition runs it. A handler that reads as a URL is from a log written
    // before definitions were versioned; it is never called, since a URL read
    // back from the log is not one the code names.
    if (fn === undefined) return { result: 'ongoing', reason: notRegistered(msg.handler, this.kind) };
    if (isHttpBranch(fn)) {
      let headers: Readonly<Record<string, string>> | undefined;
      try {
        headers =
          typeof fn.headers === 'function'
            ? checkBranchHeaders(
                await fn.headers({ sagaId: msg.txn, branchId: msg.branch, op, attempt: msg.attempt }),
                `headers of ${msg.handler}`,
              )
            : fn.headers;
      } catch (error) {
        // The message names the header, never a value.
        return {
          result: 'ongoing',
          reason: `headers of ${msg.handler} failed: ${error instanceof Error ? error.message : 'error'}`,
        };
      }
      const a = await callHttpBranch(fn.url, {
        sagaId: msg.txn,
        branchId: msg.branch,
        op,
        payload: input,
        timeoutMs: fn.timeoutMs ?? this.httpTimeoutMs,
        ...(headers === undefined ? {} : { headers }),
        ...(this.settings.httpMaxBodyBytes === undefined
          ? {}
          : { maxBodyBytes: this.settings.httpMaxBodyBytes }),
      });
      return { result: a.result, reason: a.reason };
    }
    try {
      await fn({
        sagaId: msg.txn,
        branchId: msg.branch,
        op,
        idempotencyKey: `${msg.txn}:${msg.branch}:${op}`,
        attempt: msg.attempt,
        input,
      });
      return { result: 'success', reason: '' };
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      const failed = isDtxError(error, 'DTX_BRANCH_REFUSED') || isDtxError(error, 'DTX_BRANCH_HANGING');
      return { result: failed ? 'failure' : 'ongoing', reason };
    }
  }
}

function isEnd(r: { type: string }): r is EndRecord {
  return r.type === 'end';
}

/** The reason a `BranchRunResult` gives for an `end` record (as the core's report does). */
export function endResultReason(r: EndRecord): string | null {
  if (r.operator !== undefined)
    return `${r.operator.action === 'resolve' ? 'resolved' : 'abandoned'} by an operator: ${r.operator.reason}`;
  return r.outcome === 'completed' ? null : r.reason;
}

const operatorClient = 'operator';

function cancelled(id: string, signal: AbortSignal): DtxError {
  return new DtxError(
    'DTX_CANCELLED',
    `stopped waiting for ${id}: the caller's signal aborted; it carries on`,
    {
      gid: id,
      cause: signal.reason,
    },
  );
}

function checkForce(opts: OperatorActionOptions, action: string): void {
  if (opts?.force !== true) {
    throw new DtxError(
      'DTX_INVALID_ARGUMENT',
      `${action} needs { force: true }: it ends the transaction by hand`,
    );
  }
  if (typeof opts.reason !== 'string' || opts.reason.trim() === '') {
    throw new DtxError('DTX_INVALID_ARGUMENT', `${action} needs a reason, recorded in the log`);
  }
}

/** Why a call under `handler` was not made: its definition (or version) is not registered here. */
function notRegistered(handler: string, kind: OrchestratorKind<HttpBranchOp>): string {
  if (/^https?:\/\//i.test(handler)) {
    return `the log names an endpoint by URL (from before definitions had versions); branch URLs are taken only from definitions registered in code: register it and restart`;
  }
  const m = /^(.*)@(\d+)\/([^/]*)\/([^/]*)$/.exec(handler);
  if (m === null) return kind.noFunction(handler);
  return `definition ${m[1]} version ${m[2]} (branch ${m[3]}, ${m[4]}) is not registered in this process; register it to resume`;
}

/**
 * The records of the transactions begun by this process, with the time each
 * append resolved, so that `show(id)` answers without reading the whole log:
 * a transaction is indexed from its `begin` on (one begun before this process
 * started, or evicted, is read from the log instead). Open transactions stay;
 * the newest `endedMax` ended ones are kept, the oldest dropped first.
 */
export class TimelineIndex<R extends { type: string; txn: string }> {
  readonly #byTxn = new Map<string, TimedRecord<R>[]>();
  readonly #ended = new Set<string>();
  readonly #endedMax: number;

  constructor(endedMax = 1_000) {
    this.#endedMax = endedMax;
  }

  add(records: readonly R[]): void {
    const at = new Date();
    for (const record of records) {
      let list = this.#byTxn.get(record.txn);
      if (list === undefined) {
        if (record.type !== 'begin') continue;
        list = [];
        this.#byTxn.set(record.txn, list);
      }
      list.push({ at, record });
      if (isEnd(record)) this.#ended.add(record.txn);
    }
    for (const txn of this.#ended) {
      if (this.#ended.size <= this.#endedMax) break;
      this.#ended.delete(txn);
      this.#byTxn.delete(txn);
    }
  }

  get(txn: string): readonly TimedRecord<R>[] | undefined {
    return this.#byTxn.get(txn);
  }
}
