// The durable saga orchestrator: the pure saga core
// (src/protocol/saga/orchestrator.ts) driven by the runtime Driver with a
// durable log (SQLite by default, PostgreSQL as an option), and a transport
// that turns the core's CALL messages into branch calls: a local async
// function, or a POST under the HTTP branch protocol (../../adapters/http-branch.ts).
//
// Owns: saga ids (derived from the caller's idempotency key, so starting
// twice runs once), the registry of saga definitions (local functions cannot
// be logged, so a restarted orchestrator needs them again before `start()`),
// and the outcome of every saga its log knows. Recovery is the core's: every
// saga with a `begin` and no `end` is resumed forward or backward from its
// log, and calls that were out are sent again — branch handlers must be
// idempotent (use the barrier, ../../adapters/barrier.ts).
//
// See docs/saga-runtime.md.

import { createHash, randomInt } from 'node:crypto';
import { callHttpBranch, type HttpBranchOp } from '../../adapters/http-branch.ts';
import { DtxError, isDtxError } from '../../errors.ts';
import { isValidNodeId } from '../../protocol/common/limits.ts';
import type { NodeId } from '../../protocol/common/types.ts';
import { type SagaOrchestratorState, sagaOrchestrator } from '../../protocol/saga/orchestrator.ts';
import type {
  BranchMsg,
  BranchResult,
  SagaDefinition as CoreDefinition,
  ReportSaga,
  SagaConfig,
  SagaMsg,
  SagaRecord,
} from '../../protocol/saga/types.ts';
import { Driver } from '../driver.ts';
import { openPostgresLog } from '../log/postgres.ts';
import { openSqliteLog } from '../log/sqlite.ts';
import type { DurableLog } from '../log/types.ts';

/** What a local branch function gets. */
export interface BranchContext {
  sagaId: string;
  branchId: string;
  op: 'action' | 'compensation';
  /** Stable across retries and restarts of this (saga, branch, op): `<sagaId>:<branchId>:<op>`. */
  idempotencyKey: string;
  /** 1 for the first call, counting up with every retry (restarts count from 1 again). */
  attempt: number;
  /** The `input` given to `start()`. */
  input: unknown;
}

/**
 * A local branch: resolve = success; throw a `DtxError` `DTX_BRANCH_REFUSED`
 * (see `refuse`) or `DTX_BRANCH_HANGING` (the barrier) = failure (an action
 * then compensates and is never retried); any other throw = unknown, retried
 * with backoff (an action past `actionAttemptsMax` attempts compensates).
 */
export type BranchFn = (ctx: BranchContext) => Promise<unknown>;

/** A branch served over HTTP at `url` (see the HTTP branch protocol). */
export interface HttpBranchRef {
  url: string;
}

export interface SagaStep {
  /** The branch id: letters, digits, `_ . : -`, at most 32, unique in the saga. */
  name: string;
  action: BranchFn | HttpBranchRef;
  /** The undo, or null for a step that cannot be undone (it must come last). */
  compensation: BranchFn | HttpBranchRef | null;
  /** The steps that must succeed before this one; omitted = the previous step. */
  after?: readonly string[];
}

export interface SagaDefinition {
  /** Names the definition; local functions are found again by it after a restart. Same rules as a step name. */
  name: string;
  steps: readonly SagaStep[];
  /** `backward` (default): give up and compensate on failure; `forward`: retry actions forever. */
  recovery?: 'backward' | 'forward';
  timeoutMs?: number;
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

export interface SagaOrchestratorOptions {
  log: DurableLog<SagaRecord>;
  /** Definitions with local functions, needed to resume their sagas after a restart. */
  definitions?: readonly SagaDefinition[];
  /** Retry and limit settings of the core (see SagaConfig). */
  timing?: Partial<Omit<SagaConfig, 'incarnation'>>;
  /** Timeout of each HTTP branch call. Default 5000. */
  httpTimeoutMs?: number;
}

const appClient = 'app';
const localService = 'local';
const httpService = 'http';

const recordTypes = new Set(['begin', 'start', 'result', 'rollback', 'stuck', 'end']);

/** The `decode` for saga logs: rejects rows that are not saga records. */
export function decodeSagaRecord(value: unknown): SagaRecord {
  const v = value as { type?: unknown; txn?: unknown } | null;
  if (
    typeof v !== 'object' ||
    v === null ||
    !recordTypes.has(v.type as string) ||
    typeof v.txn !== 'string'
  ) {
    throw new TypeError('not a saga log record');
  }
  return value as SagaRecord;
}

/** Opens a saga log: a SQLite file (`{ sqlite: path }`) or a PostgreSQL table (`{ postgres, owner }`). */
export async function openSagaLog(
  where: { sqlite: string } | { postgres: string; owner: string; table?: string },
): Promise<DurableLog<SagaRecord>> {
  if ('sqlite' in where) return openSqliteLog<SagaRecord>(where.sqlite, { decode: decodeSagaRecord });
  return openPostgresLog<SagaRecord>(where.postgres, {
    owner: where.owner,
    decode: decodeSagaRecord,
    ...(where.table === undefined ? {} : { table: where.table }),
  });
}

/** Throw this from a local action to refuse it for a business reason: the saga compensates. */
export function refuse(reason: string): never {
  throw new DtxError('DTX_BRANCH_REFUSED', reason);
}

/** The saga id for an idempotency key: the same key always names the same saga. */
export function sagaIdFor(definitionName: string, idempotencyKey: string): string {
  const digest = createHash('sha256').update(`${definitionName}\0${idempotencyKey}`).digest('hex');
  return `${definitionName.slice(0, 23)}.${digest.slice(0, 24)}`;
}

/** True for an HTTP branch (`{ url }`), false for a local function. */
export function isHttpBranch<F>(b: F | HttpBranchRef): b is HttpBranchRef {
  return typeof b === 'object' && b !== null;
}
const isHttp = isHttpBranch;

function handlerName(def: SagaDefinition, step: SagaStep, op: 'action' | 'compensation'): string {
  const fn = op === 'action' ? step.action : step.compensation!;
  return isHttp(fn) ? fn.url : `${def.name}/${step.name}/${op}`;
}

function checkDefinition(def: SagaDefinition): void {
  const bad = (why: string) => new DtxError('DTX_INVALID_ARGUMENT', `saga definition: ${why}`);
  if (!isValidNodeId(def.name)) throw bad(`bad name ${JSON.stringify(def.name)}`);
  for (const s of def.steps) {
    const parts = [s.action, ...(s.compensation === null ? [] : [s.compensation])];
    if (parts.some(isHttp) && !parts.every(isHttp)) {
      throw bad(`step ${s.name} mixes a local function and an HTTP branch`);
    }
    for (const p of parts) {
      if (isHttp(p) && !/^https?:\/\//.test(p.url)) throw bad(`step ${s.name} has a bad URL ${p.url}`);
      if (!isHttp(p) && typeof p !== 'function') throw bad(`step ${s.name} needs a function or { url }`);
    }
  }
}

function toCore(def: SagaDefinition, input: unknown): CoreDefinition {
  const payload = JSON.stringify(input ?? null);
  return {
    steps: def.steps.map((s) => ({
      branch: s.name,
      service: isHttp(s.action) ? httpService : localService,
      action: handlerName(def, s, 'action'),
      compensation: s.compensation === null ? null : handlerName(def, s, 'compensation'),
      payload,
      ...(s.after === undefined ? {} : { after: s.after }),
    })),
    ...(def.recovery === undefined ? {} : { recovery: def.recovery }),
    ...(def.timeoutMs === undefined ? {} : { timeoutMs: def.timeoutMs }),
  };
}

/** Runtime defaults: real services answer in milliseconds to seconds, not the simulator's 1 ms. */
const runtimeTiming: Partial<SagaConfig> = { retryBaseMs: 50, retryCapMs: 2000, jitter: 0.5 };

export class SagaOrchestrator {
  private readonly driver: Driver<SagaOrchestratorState, SagaMsg, SagaRecord, Partial<SagaConfig>>;
  private readonly functions = new Map<string, BranchFn>();
  private readonly outcomes = new Map<string, SagaResult>();
  private readonly waiters = new Map<
    string,
    { resolve: (r: SagaResult) => void; reject: (e: unknown) => void }[]
  >();
  private readonly rejected = new Map<string, string>();
  private readonly inflight = new Set<string>();
  private failure: unknown;
  private started = false;

  constructor(private readonly options: SagaOrchestratorOptions) {
    for (const def of options.definitions ?? []) this.define(def);
    const log = options.log;
    // Read the outcomes of finished sagas as the driver loads the log.
    const watching: DurableLog<SagaRecord> = {
      append: (records, force) => log.append(records, force),
      checkpoint: (keep) => log.checkpoint(keep),
      close: () => log.close(),
      get stats() {
        return log.stats;
      },
      load: async () => {
        const records = await log.load();
        for (const r of records) {
          if (r.type === 'end') {
            this.outcomes.set(r.txn, {
              sagaId: r.txn,
              outcome: r.outcome,
              reason: r.outcome === 'completed' ? null : r.reason,
            });
          }
        }
        return records;
      },
    };
    this.driver = new Driver(
      sagaOrchestrator,
      'orchestrator',
      { ...runtimeTiming, ...options.timing, incarnation: `${Date.now().toString(36)}` },
      {
        log: watching,
        send: (to, msg) => this.deliver(to, msg),
        outcome: () => undefined,
        saga: (report) => this.onReport(report),
        halted: (err) => this.onHalt(err),
      },
    );
  }

  /** Registers a definition (its local functions), for `start()` and for resuming its sagas. */
  define(def: SagaDefinition): void {
    checkDefinition(def);
    // Defining a name again replaces its functions.
    for (const s of def.steps) {
      if (!isHttp(s.action)) this.functions.set(handlerName(def, s, 'action'), s.action);
      if (s.compensation !== null && !isHttp(s.compensation)) {
        this.functions.set(handlerName(def, s, 'compensation'), s.compensation);
      }
    }
  }

  /** Recovers from the log and resumes every unfinished saga. `createSagaOrchestrator` calls it. */
  async recover(): Promise<void> {
    if (this.started) throw new DtxError('DTX_INVALID_STATE', 'recover() was called already');
    await this.driver.start();
    this.started = true;
  }

  /**
   * Starts a saga, once per idempotency key: a second start with the same key
   * (in this process or after a restart, while the log keeps the saga) returns
   * the same saga id and runs nothing. Resolves with the saga id once its
   * `begin` is durable; `result(sagaId)` waits for the end.
   */
  async start(def: SagaDefinition, opts: { idempotencyKey: string; input?: unknown }): Promise<string> {
    if (!this.started) throw new DtxError('DTX_INVALID_STATE', 'call recover() before starting sagas');
    this.throwIfFailed();
    if (typeof opts?.idempotencyKey !== 'string' || opts.idempotencyKey === '') {
      throw new DtxError('DTX_INVALID_ARGUMENT', 'an idempotencyKey is required');
    }
    this.define(def);
    const sagaId = sagaIdFor(def.name, opts.idempotencyKey);
    this.driver.input({
      type: 'receive',
      from: appClient,
      msg: { type: 'BEGIN', txn: sagaId, def: toCore(def, opts.input), entropy: randomInt(2 ** 31) },
    });
    const rejection = this.rejected.get(sagaId);
    if (rejection !== undefined) {
      this.rejected.delete(sagaId);
      throw new DtxError('DTX_INVALID_ARGUMENT', `saga rejected: ${rejection}`);
    }
    await this.driver.settled();
    this.throwIfFailed();
    return sagaId;
  }

  /** Where a saga is now. `unknown` for an id this orchestrator's log does not know. */
  status(sagaId: string): SagaStatus {
    const done = this.outcomes.get(sagaId);
    if (done !== undefined) return { sagaId, state: done.outcome, reason: done.reason, branches: {} };
    const run = this.driver.peek().sagas.get(sagaId);
    if (run === undefined) return { sagaId, state: 'unknown', reason: null, branches: {} };
    const branches: Record<string, string> = {};
    for (const [name, b] of run.branches) branches[name] = b.phase;
    const state: SagaState =
      run.status === 'stuck' ? 'stuck' : run.direction === 'forward' ? 'running' : 'compensating';
    return { sagaId, state, reason: run.reason, branches };
  }

  /**
   * How the saga ended: waits for it to complete, be compensated or get stuck.
   * `{ wait: false }` returns at once with null while it is still in flight.
   */
  result(sagaId: string): Promise<SagaResult>;
  result(sagaId: string, opts: { wait: false }): Promise<SagaResult | null>;
  async result(sagaId: string, opts: { wait?: boolean } = {}): Promise<SagaResult | null> {
    const done = this.outcomes.get(sagaId);
    if (done !== undefined) return done;
    const now = this.status(sagaId);
    if (now.state === 'stuck') return { sagaId, outcome: 'stuck', reason: now.reason };
    if (opts.wait === false) return null;
    this.throwIfFailed();
    if (now.state === 'unknown') {
      throw new DtxError('DTX_INVALID_ARGUMENT', `saga ${sagaId} is not known to this orchestrator`);
    }
    return new Promise((resolve, reject) => {
      const list = this.waiters.get(sagaId) ?? [];
      list.push({ resolve, reject });
      this.waiters.set(sagaId, list);
    });
  }

  /** Stops timers and calls; in-flight log writes complete. The log is the caller's to close. */
  async close(): Promise<void> {
    await this.driver.close();
  }

  private throwIfFailed(): void {
    if (this.failure !== undefined) {
      throw new DtxError('DTX_RESOURCE_UNAVAILABLE', 'the saga log failed; restart the orchestrator', {
        cause: this.failure,
      });
    }
  }

  private onHalt(err: unknown): void {
    this.failure = err;
    for (const list of this.waiters.values()) {
      for (const w of list) {
        w.reject(
          new DtxError('DTX_OUTCOME_UNKNOWN', 'the saga log failed; a restart resumes the saga', {
            cause: err,
          }),
        );
      }
    }
    this.waiters.clear();
  }

  private onReport(r: ReportSaga): void {
    if (r.outcome === 'rejected') {
      this.rejected.set(r.txn, r.reason ?? 'rejected');
      return;
    }
    const result: SagaResult = { sagaId: r.txn, outcome: r.outcome, reason: r.reason };
    if (r.outcome !== 'stuck') this.outcomes.set(r.txn, result);
    for (const w of this.waiters.get(r.txn) ?? []) w.resolve(result);
    this.waiters.delete(r.txn);
  }

  private deliver(to: NodeId, msg: SagaMsg): void {
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
    const op: HttpBranchOp = msg.op === 'compensate' ? 'compensation' : (msg.op as HttpBranchOp);
    const input = JSON.parse(msg.payload) as unknown;
    if (to === httpService) {
      const a = await callHttpBranch(msg.handler, {
        sagaId: msg.txn,
        branchId: msg.branch,
        op,
        payload: input,
        timeoutMs: this.options.httpTimeoutMs ?? 5000,
      });
      return { result: a.result, reason: a.reason };
    }
    const fn = this.functions.get(msg.handler);
    if (fn === undefined) {
      return { result: 'ongoing', reason: `no local function ${msg.handler} is defined in this process` };
    }
    try {
      await fn({
        sagaId: msg.txn,
        branchId: msg.branch,
        op: op as 'action' | 'compensation',
        idempotencyKey: `${msg.txn}:${msg.branch}:${op}`,
        attempt: msg.attempt,
        input,
      });
      return { result: 'success', reason: '' };
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      if (isDtxError(error, 'DTX_BRANCH_REFUSED') || isDtxError(error, 'DTX_BRANCH_HANGING')) {
        return { result: 'failure', reason };
      }
      return { result: 'ongoing', reason };
    }
  }
}

/** Makes an orchestrator on `options.log` and resumes every saga the log left unfinished. */
export async function createSagaOrchestrator(options: SagaOrchestratorOptions): Promise<SagaOrchestrator> {
  const o = new SagaOrchestrator(options);
  await o.recover();
  return o;
}
