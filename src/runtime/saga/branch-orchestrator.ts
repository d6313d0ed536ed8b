// What the durable saga orchestrator (./orchestrator.ts) and the TCC
// orchestrator (./tcc.ts) share: a pure core that drives branches (saga or
// TCC, ../../protocol/saga/coordinator.ts) on the runtime Driver with a
// durable log, and a transport that turns the core's CALL messages into
// branch calls — a local async function, or a POST under the HTTP branch
// protocol (../../adapters/http-branch.ts). Each orchestrator adds its
// definitions: how they are checked, named, and turned into the core's.
//
// Owns: the outcome of every saga or TCC transaction its log knows (read as
// the log loads, then from the core's reports; the newest `retainFinished`),
// the callers waiting for one, the calls in flight, and the log's
// checkpoints (compactSagaLog every so many appends, so that the log and the
// time to recover stay bounded by what is open plus what is retained).

import { createHash, randomInt } from 'node:crypto';
import { callHttpBranch, type HttpBranchOp } from '../../adapters/http-branch.ts';
import { DtxError, isDtxError } from '../../errors.ts';
import type { NodeId } from '../../protocol/common/types.ts';
import { compactSagaLog } from '../../protocol/saga/log.ts';
import {
  type BeginMsg,
  type BranchMsg,
  type BranchOp,
  type BranchResult,
  defaultRetainFinished,
  type EndRecord,
  type ReportSaga,
  type RetentionConfig,
  type RetryConfig,
  type SagaRole,
} from '../../protocol/saga/types.ts';
import { Driver } from '../driver.ts';
import { openPostgresLog } from '../log/postgres.ts';
import { openSqliteLog } from '../log/sqlite.ts';
import type { DurableLog } from '../log/types.ts';

/** A branch served over HTTP at `url` (see the HTTP branch protocol). */
export interface HttpBranchRef {
  url: string;
}

/** True for an HTTP branch (`{ url }`), false for a local function. */
export function isHttpBranch<F>(b: F | HttpBranchRef): b is HttpBranchRef {
  return typeof b === 'object' && b !== null;
}

export type SagaState = 'running' | 'compensating' | 'completed' | 'compensated' | 'stuck' | 'unknown';

export interface SagaStatus {
  sagaId: string;
  state: SagaState;
  /** Why it is compensating, compensated or stuck; null otherwise. */
  reason: string | null;
  /** Per branch, while the saga is in flight: idle, running, done, refused, compensating, compensated. */
  branches: Record<string, string>;
}

export interface SagaResult {
  sagaId: string;
  outcome: 'completed' | 'compensated' | 'stuck';
  reason: string | null;
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

/**
 * Where a log is: a SQLite file (`{ sqlite: path }`) or a PostgreSQL table
 * (`{ postgres, owner }`). A missing log is refused (DTX_LOG_NOT_FOUND) unless
 * `create` is set; `coordinatorId`, when given, must be the log's (and is the
 * new log's id with `create`). PostgreSQL: `leaseTtlMs` is the owner lease's
 * ttl (default 10,000), `waitForLease` makes a standby wait for it.
 */
export type LogLocation = (
  | { sqlite: string }
  | { postgres: string; owner: string; table?: string; leaseTtlMs?: number; waitForLease?: boolean }
) & { create?: boolean; coordinatorId?: string };

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

/**
 * Opens an orchestrator's log exclusively (SQLite file lock, PostgreSQL owner
 * lease), checking that it is a `protocol` log: another protocol's is
 * DTX_LOG_MISMATCH, so that recovery never reads records it does not own.
 */
export async function openLog<R>(
  where: LogLocation,
  decode: (value: unknown) => R,
  protocol: 'saga' | 'tcc',
): Promise<DurableLog<R>> {
  const id = where.coordinatorId === undefined ? {} : { coordinatorId: where.coordinatorId };
  const common = {
    decode,
    create: where.create === true,
    identity: { protocol, ...id },
    expect: { protocol, ...id },
  };
  if ('sqlite' in where) return openSqliteLog<R>(where.sqlite, common);
  return openPostgresLog<R>(where.postgres, {
    ...common,
    owner: where.owner,
    ...(where.table === undefined ? {} : { table: where.table }),
    lease: {
      ...(where.leaseTtlMs === undefined ? {} : { ttlMs: where.leaseTtlMs }),
      ...(where.waitForLease === true ? { wait: true } : {}),
    },
  });
}

/** An id derived from `material` (which holds the idempotency key), readable by its definition's name. */
export function derivedId(definitionName: string, material: string): string {
  const digest = createHash('sha256').update(material).digest('hex');
  return `${definitionName.slice(0, 23)}.${digest.slice(0, 24)}`;
}

/** The core's handler name for one op of a branch: the URL, or the local function's registry key. */
export function handlerName(definitionName: string, branch: string, op: string, f: unknown): string {
  return isHttpBranch(f) ? f.url : `${definitionName}/${branch}/${op}`;
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
): DurableLog<R> {
  let mirror: R[] = [];
  let appends = 0;
  const extras = passThrough(log);
  let keptLast = 0;
  return {
    ...extras,
    append(records, force) {
      const done = log.append(records, force);
      for (const r of records) mirror.push(structuredClone(r));
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
    close: () => log.close(),
    get stats() {
      return log.stats;
    },
    load: async () => {
      const records = await log.load();
      mirror = [...records];
      return records;
    },
  };
}

/** What a wrapper of `log` must show of it besides the four calls: identity, loss of ownership, history. */
export function passThrough<R>(log: DurableLog<R>): Pick<DurableLog<R>, 'identity' | 'lost' | 'history'> {
  return {
    ...(log.identity === undefined ? {} : { identity: log.identity }),
    ...(log.lost === undefined ? {} : { lost: log.lost }),
    ...(log.history === undefined ? {} : { history: () => log.history!() }),
  };
}

/** `log`, showing `seen` every record it loads (recovery's reading) before the caller gets them. */
export function watchLoad<R>(log: DurableLog<R>, seen: (records: readonly R[]) => void): DurableLog<R> {
  return {
    ...passThrough(log),
    append: (records, force) => log.append(records, force),
    checkpoint: (keep) => log.checkpoint(keep),
    close: () => log.close(),
    get stats() {
      return log.stats;
    },
    load: async () => {
      const records = await log.load();
      seen(records);
      return records;
    },
  };
}

/** The core's service for a branch's calls. */
export const localService = 'local';
export const httpService = 'http';
const appClient = 'app';

/** Runtime defaults: real services answer in milliseconds to seconds, not the simulator's 1 ms. */
const runtimeTiming: Partial<RetryConfig> = { retryBaseMs: 50, retryCapMs: 2000, jitter: 0.5 };

/** How one orchestrator speaks: its node id, its branch ops, and its error messages. */
export interface OrchestratorKind<Op extends HttpBranchOp> {
  /** The driver's node id. */
  self: NodeId;
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
  /** Timeout of each HTTP branch call. Default 5000. */
  httpTimeoutMs?: number;
}

/**
 * The shared runtime of both orchestrators. `Def` is the caller's definition,
 * `S`, `D`, `R`, `C` the core's state, definition, record and config, `Op`
 * the ops its branches see.
 */
export abstract class BranchOrchestrator<
  Def extends { name: string },
  S,
  D,
  R extends { type: string; txn: string },
  C extends RetryConfig & RetentionConfig & { incarnation: string },
  Op extends HttpBranchOp,
> {
  protected readonly driver: Driver<S, BeginMsg<D> | BranchMsg, R, Partial<C>>;
  protected readonly functions = new Map<string, (ctx: BranchCall<Op>) => Promise<unknown>>();
  private readonly outcomes = new Map<string, SagaResult>();
  private readonly waiters = new Map<
    string,
    { resolve: (r: SagaResult) => void; reject: (e: unknown) => void }[]
  >();
  private readonly rejected = new Map<string, string>();
  private readonly inflight = new Set<string>();
  private failure: unknown;
  private started = false;
  private readonly retainFinished: number;

  constructor(
    role: SagaRole<S, BeginMsg<D> | BranchMsg, R, Partial<C>>,
    private readonly kind: OrchestratorKind<Op>,
    private readonly settings: BranchOrchestratorOptions<R, C>,
  ) {
    this.retainFinished = settings.timing?.retainFinished ?? defaultRetainFinished;
    const every = settings.checkpointEvery ?? 10_000;
    if (!Number.isSafeInteger(this.retainFinished) || this.retainFinished < 0) {
      throw new DtxError('DTX_INVALID_ARGUMENT', 'timing.retainFinished must be an integer >= 0');
    }
    if (!Number.isSafeInteger(every) || every < 1) {
      throw new DtxError('DTX_INVALID_ARGUMENT', 'checkpointEvery must be an integer >= 1');
    }
    // Read the outcomes of finished sagas as the driver loads the log.
    const log = checkpointingLog(settings.log, this.retainFinished, every, (err) => this.driver.fail(err));
    const watching = watchLoad(log, (records) => {
      for (const r of records) {
        if (isEnd(r)) {
          this.remember({
            sagaId: r.txn,
            outcome: r.outcome,
            reason: r.outcome === 'completed' ? null : r.reason,
          });
        }
      }
    });
    this.driver = new Driver(
      role,
      kind.self,
      { ...runtimeTiming, ...settings.timing, incarnation: `${Date.now().toString(36)}` } as Partial<C>,
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
  protected abstract idFor(def: Def, idempotencyKey: string): string;
  /** The core's definition, with the caller's input as every branch's payload. */
  protected abstract toCore(def: Def, input: unknown): D;
  /** Where a run the core still holds is now. */
  protected abstract inFlight(id: string, state: S): SagaStatus | undefined;

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
    const id = this.idFor(def, opts.idempotencyKey);
    this.driver.input({
      type: 'receive',
      from: appClient,
      msg: { type: 'BEGIN', txn: id, def: this.toCore(def, opts.input), entropy: randomInt(2 ** 31) },
    });
    const rejection = this.rejected.get(id);
    if (rejection !== undefined) {
      this.rejected.delete(id);
      throw new DtxError('DTX_INVALID_ARGUMENT', `${this.kind.rejected}: ${rejection}`);
    }
    await this.driver.settled();
    this.throwIfFailed();
    return id;
  }

  /** Where a saga (or TCC transaction) is now. `unknown` for an id this orchestrator's log does not know. */
  status(id: string): SagaStatus {
    const done = this.outcomes.get(id);
    if (done !== undefined) return { sagaId: id, state: done.outcome, reason: done.reason, branches: {} };
    return (
      this.inFlight(id, this.driver.peek()) ?? { sagaId: id, state: 'unknown', reason: null, branches: {} }
    );
  }

  /**
   * How it ended: waits for it to complete, be compensated or get stuck.
   * `{ wait: false }` returns at once with null while it is still in flight.
   */
  result(id: string): Promise<SagaResult>;
  result(id: string, opts: { wait: false }): Promise<SagaResult | null>;
  async result(id: string, opts: { wait?: boolean } = {}): Promise<SagaResult | null> {
    const done = this.outcomes.get(id);
    if (done !== undefined) return done;
    const now = this.status(id);
    if (now.state === 'stuck') return { sagaId: id, outcome: 'stuck', reason: now.reason };
    if (opts.wait === false) return null;
    this.throwIfFailed();
    if (now.state === 'unknown') throw new DtxError('DTX_INVALID_ARGUMENT', this.kind.unknown(id));
    return new Promise((resolve, reject) => {
      const list = this.waiters.get(id) ?? [];
      list.push({ resolve, reject });
      this.waiters.set(id, list);
    });
  }

  /** Stops timers and calls; in-flight log writes complete. The log is the caller's to close. */
  async close(): Promise<void> {
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
  private remember(result: SagaResult): void {
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
    const result: SagaResult = { sagaId: r.txn, outcome: r.outcome, reason: r.reason };
    if (r.outcome !== 'stuck') this.remember(result);
    for (const w of this.waiters.get(r.txn) ?? []) w.resolve(result);
    this.waiters.delete(r.txn);
  }

  private deliver(to: NodeId, msg: BeginMsg<D> | BranchMsg): void {
    if (msg.type !== 'CALL') return;
    const key = `${msg.txn}|${msg.branch}|${msg.op}`;
    // A retry timer may fire while the previous call is still running: let it
    // finish; the core retries again after its next backoff.
    if (this.inflight.has(key)) return;
    this.inflight.add(key);
    void this.call(to, msg)
      .catch((error: unknown) => ({ result: 'ongoing' as const, reason: String(error) }))
      .then(({ result, reason }) => {
        this.inflight.delete(key);
        this.driver.input({
          type: 'receive',
          from: to,
          msg: { type: 'REPLY', txn: msg.txn, branch: msg.branch, op: msg.op, result, reason },
        });
      });
  }

  private async call(
    to: NodeId,
    msg: Extract<BranchMsg, { type: 'CALL' }>,
  ): Promise<{ result: BranchResult; reason: string }> {
    const op = this.kind.op(msg.op);
    const input = JSON.parse(msg.payload) as unknown;
    if (to === httpService) {
      const a = await callHttpBranch(msg.handler, {
        sagaId: msg.txn,
        branchId: msg.branch,
        op,
        payload: input,
        timeoutMs: this.settings.httpTimeoutMs ?? 5000,
      });
      return { result: a.result, reason: a.reason };
    }
    const fn = this.functions.get(msg.handler);
    if (fn === undefined) return { result: 'ongoing', reason: this.kind.noFunction(msg.handler) };
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
