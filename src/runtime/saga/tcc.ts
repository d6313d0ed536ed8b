// The durable TCC (try-confirm-cancel) orchestrator: the pure TCC core
// (src/protocol/tcc/coordinator.ts) on the same runtime as the saga
// orchestrator (./orchestrator.ts): the Driver, a durable log, and branches
// that are local async functions or HTTP endpoints (op `try`, `confirm`,
// `cancel`). Branch handlers should use the barrier
// (../../adapters/barrier.ts): a cancel whose try never ran is then a no-op,
// and a try that arrives after its cancel is refused.
//
// See docs/saga-runtime.md ("TCC").

import { createHash, randomInt } from 'node:crypto';
import { callHttpBranch } from '../../adapters/http-branch.ts';
import { DtxError, isDtxError } from '../../errors.ts';
import { isValidNodeId } from '../../protocol/common/limits.ts';
import type { NodeId } from '../../protocol/common/types.ts';
import type { BranchMsg, BranchResult, ReportSaga } from '../../protocol/saga/types.ts';
import { type TccCoordinatorState, tccCoordinator } from '../../protocol/tcc/coordinator.ts';
import type {
  TccDefinition as CoreDefinition,
  TccConfig,
  TccMsg,
  TccRecord,
} from '../../protocol/tcc/types.ts';
import { Driver } from '../driver.ts';
import { openPostgresLog } from '../log/postgres.ts';
import { openSqliteLog } from '../log/sqlite.ts';
import type { DurableLog } from '../log/types.ts';
import { type HttpBranchRef, isHttpBranch, type SagaResult, type SagaStatus } from './orchestrator.ts';

export interface TccContext {
  sagaId: string;
  branchId: string;
  op: 'try' | 'confirm' | 'cancel';
  /** `<sagaId>:<branchId>:<op>`, stable across retries and restarts. */
  idempotencyKey: string;
  attempt: number;
  input: unknown;
}

/** Resolve = success; `refuse()` (DTX_BRANCH_REFUSED) or DTX_BRANCH_HANGING = failure; other throws = retry. */
export type TccFn = (ctx: TccContext) => Promise<unknown>;

export interface TccBranch {
  name: string;
  try: TccFn | HttpBranchRef;
  confirm: TccFn | HttpBranchRef;
  cancel: TccFn | HttpBranchRef;
}

export interface TccDefinition {
  name: string;
  branches: readonly TccBranch[];
  /** Tries still unanswered after this long: cancel. Default `TccConfig.tryTimeoutMs`. */
  timeoutMs?: number;
}

export interface TccOrchestratorOptions {
  log: DurableLog<TccRecord>;
  definitions?: readonly TccDefinition[];
  timing?: Partial<Omit<TccConfig, 'incarnation'>>;
  httpTimeoutMs?: number;
}

const ops = ['try', 'confirm', 'cancel'] as const;
const recordTypes = new Set(['begin', 'tried', 'decision', 'settled', 'stuck', 'end']);

export function decodeTccRecord(value: unknown): TccRecord {
  const v = value as { type?: unknown; txn?: unknown } | null;
  if (
    typeof v !== 'object' ||
    v === null ||
    !recordTypes.has(v.type as string) ||
    typeof v.txn !== 'string'
  ) {
    throw new TypeError('not a TCC log record');
  }
  return value as TccRecord;
}

export async function openTccLog(
  where: { sqlite: string } | { postgres: string; owner: string; table?: string },
): Promise<DurableLog<TccRecord>> {
  if ('sqlite' in where) return openSqliteLog<TccRecord>(where.sqlite, { decode: decodeTccRecord });
  return openPostgresLog<TccRecord>(where.postgres, {
    owner: where.owner,
    decode: decodeTccRecord,
    ...(where.table === undefined ? {} : { table: where.table }),
  });
}

export function tccIdFor(definitionName: string, idempotencyKey: string): string {
  const digest = createHash('sha256').update(`tcc\0${definitionName}\0${idempotencyKey}`).digest('hex');
  return `${definitionName.slice(0, 23)}.${digest.slice(0, 24)}`;
}

const handlerName = (def: TccDefinition, b: TccBranch, op: (typeof ops)[number]): string => {
  const f = b[op];
  return isHttpBranch(f) ? f.url : `${def.name}/${b.name}/${op}`;
};

function checkDefinition(def: TccDefinition): void {
  const bad = (why: string) => new DtxError('DTX_INVALID_ARGUMENT', `TCC definition: ${why}`);
  if (!isValidNodeId(def.name)) throw bad(`bad name ${JSON.stringify(def.name)}`);
  for (const b of def.branches) {
    const parts = ops.map((op) => b[op]);
    if (parts.some(isHttpBranch) && !parts.every(isHttpBranch)) {
      throw bad(`branch ${b.name} mixes local functions and HTTP branches`);
    }
    for (const p of parts) {
      if (isHttpBranch(p) ? !/^https?:\/\//.test(p.url) : typeof p !== 'function') {
        throw bad(`branch ${b.name} needs functions or { url }`);
      }
    }
  }
}

export class TccOrchestrator {
  private readonly driver: Driver<TccCoordinatorState, TccMsg, TccRecord, Partial<TccConfig>>;
  private readonly functions = new Map<string, TccFn>();
  private readonly outcomes = new Map<string, SagaResult>();
  private readonly waiters = new Map<
    string,
    { resolve: (r: SagaResult) => void; reject: (e: unknown) => void }[]
  >();
  private readonly rejected = new Map<string, string>();
  private readonly inflight = new Set<string>();
  private failure: unknown;
  private started = false;

  constructor(private readonly options: TccOrchestratorOptions) {
    for (const def of options.definitions ?? []) this.define(def);
    const log = options.log;
    const watching: DurableLog<TccRecord> = {
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
      tccCoordinator,
      'tcc',
      {
        retryBaseMs: 50,
        retryCapMs: 2000,
        jitter: 0.5,
        ...options.timing,
        incarnation: Date.now().toString(36),
      },
      {
        log: watching,
        send: (to, msg) => this.deliver(to, msg),
        outcome: () => undefined,
        saga: (report) => this.onReport(report),
        halted: (err) => this.onHalt(err),
      },
    );
  }

  define(def: TccDefinition): void {
    checkDefinition(def);
    for (const b of def.branches) {
      for (const op of ops) {
        const f = b[op];
        if (!isHttpBranch(f)) this.functions.set(handlerName(def, b, op), f);
      }
    }
  }

  async recover(): Promise<void> {
    if (this.started) throw new DtxError('DTX_INVALID_STATE', 'recover() was called already');
    await this.driver.start();
    this.started = true;
  }

  /** Starts a TCC transaction once per idempotency key; resolves with its id once `begin` is durable. */
  async start(def: TccDefinition, opts: { idempotencyKey: string; input?: unknown }): Promise<string> {
    if (!this.started) throw new DtxError('DTX_INVALID_STATE', 'call recover() before starting');
    this.throwIfFailed();
    if (typeof opts?.idempotencyKey !== 'string' || opts.idempotencyKey === '') {
      throw new DtxError('DTX_INVALID_ARGUMENT', 'an idempotencyKey is required');
    }
    this.define(def);
    const id = tccIdFor(def.name, opts.idempotencyKey);
    const payload = JSON.stringify(opts.input ?? null);
    const core: CoreDefinition = {
      branches: def.branches.map((b) => ({
        branch: b.name,
        service: isHttpBranch(b.try) ? 'http' : 'local',
        try: handlerName(def, b, 'try'),
        confirm: handlerName(def, b, 'confirm'),
        cancel: handlerName(def, b, 'cancel'),
        payload,
      })),
      ...(def.timeoutMs === undefined ? {} : { timeoutMs: def.timeoutMs }),
    };
    this.driver.input({
      type: 'receive',
      from: 'app',
      msg: { type: 'BEGIN', txn: id, def: core, entropy: randomInt(2 ** 31) },
    });
    const rejection = this.rejected.get(id);
    if (rejection !== undefined) {
      this.rejected.delete(id);
      throw new DtxError('DTX_INVALID_ARGUMENT', `TCC transaction rejected: ${rejection}`);
    }
    await this.driver.settled();
    this.throwIfFailed();
    return id;
  }

  /** `running` while trying or confirming, `compensating` while cancelling. */
  status(id: string): SagaStatus {
    const done = this.outcomes.get(id);
    if (done !== undefined) return { sagaId: id, state: done.outcome, reason: done.reason, branches: {} };
    const run = this.driver.peek().txns.get(id);
    if (run === undefined) return { sagaId: id, state: 'unknown', reason: null, branches: {} };
    const branches: Record<string, string> = {};
    for (const [name, b] of run.branches) branches[name] = `${b.tried}/${b.second}`;
    const state = run.status === 'stuck' ? 'stuck' : run.phase === 'cancelling' ? 'compensating' : 'running';
    return { sagaId: id, state, reason: run.reason, branches };
  }

  result(id: string): Promise<SagaResult>;
  result(id: string, opts: { wait: false }): Promise<SagaResult | null>;
  async result(id: string, opts: { wait?: boolean } = {}): Promise<SagaResult | null> {
    const done = this.outcomes.get(id);
    if (done !== undefined) return done;
    const now = this.status(id);
    if (now.state === 'stuck') return { sagaId: id, outcome: 'stuck', reason: now.reason };
    if (opts.wait === false) return null;
    this.throwIfFailed();
    if (now.state === 'unknown')
      throw new DtxError('DTX_INVALID_ARGUMENT', `TCC transaction ${id} is unknown`);
    return new Promise((resolve, reject) => {
      const list = this.waiters.get(id) ?? [];
      list.push({ resolve, reject });
      this.waiters.set(id, list);
    });
  }

  async close(): Promise<void> {
    await this.driver.close();
  }

  private throwIfFailed(): void {
    if (this.failure !== undefined) {
      throw new DtxError('DTX_RESOURCE_UNAVAILABLE', 'the TCC log failed; restart the orchestrator', {
        cause: this.failure,
      });
    }
  }

  private onHalt(err: unknown): void {
    this.failure = err;
    for (const list of this.waiters.values()) {
      for (const w of list)
        w.reject(new DtxError('DTX_OUTCOME_UNKNOWN', 'the TCC log failed', { cause: err }));
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

  private deliver(to: NodeId, msg: TccMsg): void {
    if (msg.type !== 'CALL') return;
    const key = `${msg.txn}|${msg.branch}|${msg.op}`;
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
    const op = msg.op as TccContext['op'];
    const input = JSON.parse(msg.payload) as unknown;
    if (to === 'http') {
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
    if (fn === undefined) return { result: 'ongoing', reason: `no local function ${msg.handler} is defined` };
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

/** Makes a TCC orchestrator on `options.log` and resumes every transaction the log left unfinished. */
export async function createTccOrchestrator(options: TccOrchestratorOptions): Promise<TccOrchestrator> {
  const o = new TccOrchestrator(options);
  await o.recover();
  return o;
}
