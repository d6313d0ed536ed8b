// The coordinator behind `dtx serve`: the same saga orchestrator and durable
// log a TypeScript process links (src/runtime/saga), driven by requests
// instead of code. Transport-neutral: the HTTP routes (./native.ts, ./dtm.ts)
// turn requests into these calls and errors into problem documents.
//
// How each transaction type maps onto the runtime:
// - a saga is a saga: its steps, order graph and timeout become the core's
//   plan, and every branch call is made by one function registered under the
//   handlers `serve/action` and `serve/compensation`, which reads the URL,
//   body and call style from the step's payload in the `begin` record;
// - a TCC transaction is prepared and its branches registered in the server
//   log (./store.ts); the caller calls each try itself. Submit forces the
//   decision, then runs every confirm as a forward-recovery saga of
//   concurrent steps (retried until they succeed); abort, a timeout, or an
//   operator does the same with every cancel;
// - a message (two-phase message) is a forward-recovery saga of its actions,
//   begun at submit; while prepared, past its timeout, the server asks the
//   caller's `query_prepared` URL and submits or aborts by the answer.
//
// Every transaction is named by its caller's gid, in one namespace: a gid
// used again with a different request is refused (DTX_DUPLICATE_GID), the same
// request again is answered as the first (idempotent).
//
// Owns: the prepared transactions (in memory, rebuilt from the server log),
// their timers, a per-gid lock that orders requests on one gid, and the
// index gid → (type, request hash) that idempotency and listings use.
//
// With several servers on one PostgreSQL store (./cluster.ts), an engine runs
// its server's own logs, and every request naming a gid is first routed by
// the gid's claim: to this engine, to an engine running an owner this server
// took over, or, for a gid another live server runs, answered from the store
// (queries, repeats) or refused with DTX_NOT_OWNER naming that server. The
// 2PC coordinator of the same owner (./twopc.ts) is opened with the engine's
// logs, after them: an owner's three logs are taken over, given up and handed
// back as one, and 2PC gids are routed by the same claims.

import { createHash } from 'node:crypto';
import { callHttpBranch } from '../adapters/http-branch.ts';
import { DtxError, isDtxError } from '../errors.ts';
import { isValidTxnId } from '../protocol/common/limits.ts';
import type { SagaConfig, SagaPlan, SagaRecord } from '../protocol/saga/types.ts';
import { type BranchCall, watchLoad } from '../runtime/branch/orchestrator.ts';
import { sagaTxnViews } from '../runtime/branch/views.ts';
import { KeyedLocks } from '../runtime/keyed-lock.ts';
import { httpBodyBytesMaxDefault, httpTimeoutMsDefault } from '../runtime/limits.ts';
import type { Observer } from '../runtime/observe.ts';
import type { TxnDetail, TxnState } from '../runtime/operator.ts';
import { activeTraceHeaders, remoteParent, type SpanParent, withSpan } from '../runtime/otel.ts';
import { refuse, type SagaDefinition, SagaOrchestrator } from '../runtime/saga/orchestrator.ts';
import { CallJournal, journalled } from './calls.ts';
import { type ClaimType, Cluster, type Remote } from './cluster.ts';
import { callDtmBranch } from './dtm-call.ts';
import { serverLimits } from './limits.ts';
import {
  type MsgStepSpec,
  openStores,
  type PreparedRequest,
  type ServerRecord,
  type ServeStores,
  type StoreLocation,
  type StoreOwnership,
  type TccBranchSpec,
} from './store.ts';
import type { TwoPcCoordinatorService } from './twopc.ts';

export type TransType = 'saga' | 'tcc' | 'msg';
/** How branches are called: dtx's HTTP branch protocol, or DTM's conventions. */
export type CallStyle = 'dtx' | 'dtm';

/** One endpoint of a step and the op name the branch is told. */
export interface Endpoint {
  url: string;
  op: string;
}

/** A step as the engine runs it. */
export interface StepSpec {
  branch: string;
  action: Endpoint;
  compensation: Endpoint | null;
  after?: readonly string[];
  /** The payload: DTM sends it as the body unchanged; dtx sends it (JSON text) as `payload`. */
  body: string;
  /** This step's own headers, over the transaction's. */
  headers?: Record<string, string>;
}

export interface SagaSubmit {
  gid: string;
  style: CallStyle;
  steps: StepSpec[];
  timeoutMs?: number;
  /** Attempts of an action before the saga gives up and compensates. */
  actionAttemptsMax?: number;
  headers: Record<string, string>;
  requestTimeoutMs?: number;
  hash: string;
}

/** What a step's payload in the saga log carries: everything one call needs. */
interface StepInput {
  style: CallStyle;
  type: TransType;
  /** For TCC: which decision the run carries out. */
  phase: 'saga' | 'msg' | 'confirm' | 'cancel';
  hash: string;
  action: Endpoint;
  compensation: Endpoint | null;
  body: string;
  headers: Record<string, string>;
  timeoutMs: number;
  /** Calls that must succeed (forward runs, compensations) are never given up. */
  forward: boolean;
  actionAttemptsMax: number | null;
  /**
   * The trace headers (W3C) of the request that began the transaction: after
   * a restart, the resumed run's span is their child again.
   */
  trace?: Record<string, string>;
}

/** Where a transaction is, as the native API shows it. */
export type ServeState = TxnState | 'prepared';

export interface BranchView {
  branch: string;
  op: string;
  url: string;
  status: 'prepared' | 'succeed' | 'failed';
}

export interface TxnView {
  id: string;
  type: TransType | null;
  state: ServeState;
  /** DTM's name for the state: prepared, submitted, aborting, succeed, failed. */
  dtmStatus: 'prepared' | 'submitted' | 'aborting' | 'succeed' | 'failed';
  startedAt: string | null;
  reason: string | null;
  branches: BranchView[];
  records: { at: string | null; record: unknown }[];
}

interface Prepared {
  gid: string;
  type: 'tcc' | 'msg';
  hash: string;
  request: PreparedRequest;
  branches: TccBranchSpec[];
  decision: Extract<ServerRecord, { type: 'decide' }> | null;
  records: { at: string; record: ServerRecord }[];
  timer: ReturnType<typeof setTimeout> | undefined;
  checks: number;
  /** The prepare request's trace headers: the parent of the span of the run that carries out the decision. */
  trace?: Record<string, string> | undefined;
}

export interface EngineOptions {
  store: StoreLocation;
  /** The server's DTM API URL, sent to DTM branches as `dtm=`. */
  dtmUrl?: string;
  timing?: Partial<Omit<SagaConfig, 'incarnation'>>;
  /** Default per-call timeout of a branch call (ms). */
  httpTimeoutMs?: number;
  /** Default time a TCC or message may stay prepared (ms). */
  preparedTimeoutMs?: number;
  /** Who hears of transactions begun and ended, branch calls and log flushes (./telemetry.ts). */
  hooks?: EngineHooks;
  /**
   * PostgreSQL store only: run as server `serverId` among several on the
   * store (./cluster.ts), with owner leases of `leaseTtlMs`.
   */
  cluster?: { serverId: string; leaseTtlMs: number };
  /** Whose logs to open (set for an engine running an owner taken over). */
  ownership?: StoreOwnership;
  /**
   * Opens the 2PC coordinator on the same owner (`ownership` undefined: the
   * store's only one), after the engine's logs and before a server asking
   * for its logs back lets go of its request: an engine opened for an owner
   * taken over opens that owner's 2PC log too.
   */
  twoPc?: (engine: Engine, ownership: StoreOwnership | undefined) => Promise<TwoPcCoordinatorService>;
}

/** What the engine reports to (./telemetry.ts): its own begins and ends, and its runs' observer. */
export interface EngineHooks {
  /** Called once the engine exists, before recovery: how to read a gid's type and phase. */
  attach(describe: (gid: string) => { type: TransType; phase: StepInput['phase'] } | undefined): void;
  /** A transaction the engine accepted (a saga, a message submitted without prepare, a prepare). */
  begun(gid: string, type: TransType): void;
  /** A transaction that ended without a branch call (a message aborted while prepared). */
  ended(gid: string, type: TransType, outcome: 'completed' | 'compensated', reason: string | null): void;
  /** The saga orchestrator's observer. */
  readonly observer: Observer;
  /** The observer of each log's flushes. */
  flushes(log: 'saga' | 'server'): Pick<Observer, 'logFlushed'>;
}

const serveDefinition: SagaDefinition = { name: 'serve', steps: [] };
const handlers = { action: 'serve/action', compensation: 'serve/compensation' } as const;

/** The request's hash: what "the same request again" means. */
export function requestHash(value: unknown): string {
  return createHash('sha256').update(canonicalJson(value)).digest('hex').slice(0, 32);
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (typeof value === 'object' && value !== null) {
    const keys = Object.keys(value).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/** The saga orchestrator with gids as ids and plans given whole with each start. */
class ServeOrchestrator extends SagaOrchestrator {
  constructor(
    options: ConstructorParameters<typeof SagaOrchestrator>[0],
    call: (ctx: BranchCall<'action' | 'compensation'>) => Promise<unknown>,
    private readonly resumedTrace: (gid: string) => SpanParent | undefined,
  ) {
    super(options, (_name, key) => key);
    this.register(handlers.action, call, 'dtx serve');
    this.register(handlers.compensation, call, 'dtx serve');
  }

  /** A run resumed after a restart continues the trace of the request that began it (kept in its `begin`). */
  protected override resumedSpanParent(gid: string): SpanParent | 'root' {
    return this.resumedTrace(gid) ?? 'root';
  }

  /** Sagas the core still runs (begun, not yet ended durably). */
  openRuns(): number {
    return this.driver.peek().sagas.size;
  }

  /** Nothing to register: the one branch function reads everything from the step. */
  override define(_def: SagaDefinition): void {}

  protected override toPlan(_def: SagaDefinition, input: unknown): SagaPlan {
    return input as SagaPlan;
  }
}

export class Engine {
  private readonly prepared = new Map<string, Prepared>();
  /** Ended without a branch call, newest last (bounded). */
  private readonly endedHere = new Map<
    string,
    { at: string; record: Extract<ServerRecord, { type: 'end' }> }
  >();
  /** gid → type and request hash, for idempotency and listings (bounded, oldest forgotten first). */
  private readonly index = new Map<string, { type: TransType; hash: string; phase: StepInput['phase'] }>();
  private readonly locks = new KeyedLocks();
  private serverAppends = 0;
  private closed = false;
  private foreignGids: ((gid: string) => boolean) | undefined;
  /** Set when this server shares its store with others. */
  private cluster: Cluster | undefined;
  /** On a shared store: the cluster and the owner of this engine's logs. */
  private shared: { cluster: Cluster; owner: string } | undefined;
  /** The 2PC coordinator of this engine's owner (EngineOptions.twoPc). */
  private twopc: TwoPcCoordinatorService | undefined;
  /** The branch calls this process made, for the dashboard's timeline (./calls.ts). */
  readonly calls = new CallJournal();

  private constructor(
    private readonly stores: ServeStores,
    readonly orchestrator: ServeOrchestrator,
    private readonly options: EngineOptions,
  ) {}

  /** Gids another part of the server uses (its 2PC transactions): one namespace, so they are refused here. */
  setForeignGids(uses: (gid: string) => boolean): void {
    this.foreignGids = uses;
  }

  private refuseForeign(gid: string): void {
    if (this.foreignGids?.(gid) === true) {
      throw new DtxError('DTX_DUPLICATE_GID', `gid ${gid} is already used by a 2PC transaction`, { gid });
    }
  }

  /** The server's DTM API URL, sent to DTM branches as `dtm=` (known once it listens). */
  setDtmUrl(url: string): void {
    this.options.dtmUrl = url;
  }

  get storeDescription(): string {
    return this.stores.describe;
  }

  /** Resolves once this engine's logs were taken over by another server (never for SQLite). */
  get lost(): Promise<unknown> {
    const losses = [this.stores.saga.lost, this.stores.server.lost, this.twopc?.lost].filter(
      (l) => l !== undefined,
    );
    return losses.length === 0 ? new Promise(() => undefined) : Promise.race(losses);
  }

  /** Nothing open here: no prepared transaction, no saga still running, no 2PC transaction unfinished. */
  idle(): boolean {
    return (
      this.prepared.size === 0 &&
      this.orchestrator.openRuns() === 0 &&
      this.locks.size === 0 &&
      (this.twopc?.idle() ?? true)
    );
  }

  /** Opens the store, recovers every transaction it left unfinished, and arms the prepared ones' timers. */
  static async open(options: EngineOptions): Promise<Engine> {
    const hooks = options.hooks;
    let cluster: Cluster | undefined;
    let ownership = options.ownership;
    let top: Engine | undefined;
    if (options.cluster !== undefined && 'postgres' in options.store) {
      const { serverId, leaseTtlMs } = options.cluster;
      cluster = await Cluster.open({
        postgres: options.store.postgres,
        serverId,
        leaseTtlMs,
        twoPc: options.twoPc !== undefined,
        adopt: async (owner, holder) => {
          const { cluster: _cluster, ...rest } = options;
          const adopted = await Engine.open({
            ...rest,
            ...(top?.options.dtmUrl === undefined ? {} : { dtmUrl: top.options.dtmUrl }),
            ownership: { owner, holder, leaseTtlMs, waitForLease: false },
          });
          adopted.shared = { cluster: cluster!, owner };
          return adopted;
        },
      });
      ownership = {
        owner: cluster.owner,
        holder: cluster.holder(),
        leaseTtlMs,
        waitForLease: await cluster.ownLogsHeldElsewhere(),
      };
    }
    let stores: ServeStores;
    // Held until every log of the owner is open again, the 2PC log included.
    const handedBack = ownership?.waitForLease === true ? await cluster?.askOwnLogsBack() : undefined;
    try {
      stores = await openStores(options.store, {
        ownership,
        observers:
          hooks === undefined ? undefined : { saga: hooks.flushes('saga'), server: hooks.flushes('server') },
      });
    } catch (error) {
      await handedBack?.();
      await cluster?.close();
      throw error;
    }
    let engine: Engine | undefined;
    try {
      const seen: SagaRecord[] = [];
      // The begun requests' trace headers, for the spans of the runs recovery resumes (each used once).
      const traces = new Map<string, Record<string, string>>();
      const log = watchLoad(stores.saga, (records) => {
        seen.push(...records);
        for (const r of records) {
          const trace = r.type === 'begin' ? traceOf(r.def) : undefined;
          if (trace !== undefined) traces.set(r.txn, trace);
        }
      });
      const resumedTrace = (gid: string) => {
        const trace = traces.get(gid);
        traces.delete(gid);
        return remoteParent(trace);
      };
      const orchestrator = new ServeOrchestrator(
        {
          log,
          ...(options.timing === undefined ? {} : { timing: options.timing }),
          httpTimeoutMs: options.httpTimeoutMs ?? httpTimeoutMsDefault,
          ...(hooks === undefined ? {} : { observer: hooks.observer }),
        },
        (ctx) => journalled(engine!.calls, ctx, (c) => engine!.callBranch(c)),
        resumedTrace,
      );
      engine = new Engine(stores, orchestrator, options);
      // An engine running an owner taken over reports its runs, but the
      // gauges read the server's own engine (which lists the adopted ones).
      if (options.ownership === undefined) hooks?.attach((gid) => engine!.describe(gid));
      await orchestrator.recover();
      for (const r of seen) if (r.type === 'begin') engine.indexBegin(r.txn, r.def);
      // Only runs still open resume (at their next call): forget the others' trace headers.
      for (const gid of [...traces.keys()])
        if (!['running', 'compensating', 'stuck'].includes(orchestrator.status(gid).state))
          traces.delete(gid);
      await engine.recoverPrepared();
      if (options.twoPc !== undefined) {
        const twopc = await options.twoPc(engine, ownership);
        engine.twopc = twopc;
        engine.setForeignGids((gid) => twopc.knows(gid));
      }
      await handedBack?.();
      if (cluster !== undefined) {
        top = engine;
        engine.cluster = cluster;
        engine.shared = { cluster, owner: cluster.owner };
        await cluster.watch();
      }
      return engine;
    } catch (error) {
      await handedBack?.();
      await cluster?.close();
      await engine?.twopc?.close().catch(() => undefined);
      await stores.saga.close().catch(() => undefined);
      await stores.server.close().catch(() => undefined);
      throw error;
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.cluster?.close();
    await this.twopc?.close();
    for (const p of this.prepared.values()) clearTimeout(p.timer);
    await this.orchestrator.close();
    await this.stores.saga.close();
    await this.stores.server.close();
  }

  // ------------------------------------------------------------------ sagas

  /** Submits a saga (or a message without prepare): idempotent by gid. `created` is false for a repeat. */
  submitSaga(s: SagaSubmit, type: 'saga' | 'msg' = 'saga'): Promise<{ created: boolean }> {
    checkGid(s.gid);
    return this.routed(
      s.gid,
      { type, hash: s.hash },
      (e) => e.submitSagaHere(s, type),
      (r) => this.repeatElsewhere(r),
    );
  }

  private submitSagaHere(s: SagaSubmit, type: 'saga' | 'msg'): Promise<{ created: boolean }> {
    return this.locked(s.gid, async () => {
      const known = this.known(s.gid);
      if (known !== undefined) {
        if (known.type !== type || known.hash !== s.hash) throw duplicate(s.gid, known.type);
        return { created: false };
      }
      this.refuseForeign(s.gid);
      await this.beginSaga(s.gid, type, type === 'saga' ? 'saga' : 'msg', s);
      this.options.hooks?.begun(s.gid, type);
      return { created: true };
    });
  }

  private async beginSaga(
    gid: string,
    type: TransType,
    phase: StepInput['phase'],
    s: Omit<SagaSubmit, 'gid'>,
  ): Promise<void> {
    const forward = phase !== 'saga';
    // The active trace: the beginning request's (./app.ts), or the prepare's for a TCC or message.
    const trace = activeTraceHeaders();
    const plan: SagaPlan = {
      steps: s.steps.map((step, i) => {
        const input: StepInput = {
          style: s.style,
          type,
          phase,
          hash: s.hash,
          action: step.action,
          compensation: step.compensation,
          body: step.body,
          headers: { ...s.headers, ...step.headers },
          timeoutMs: s.requestTimeoutMs ?? this.options.httpTimeoutMs ?? httpTimeoutMsDefault,
          forward,
          actionAttemptsMax: s.actionAttemptsMax ?? null,
          ...(i === 0 && trace !== undefined ? { trace } : {}),
        };
        return {
          branch: step.branch,
          service: 'http',
          action: handlers.action,
          compensation: step.compensation === null ? null : handlers.compensation,
          payload: JSON.stringify(input),
          ...(step.after === undefined ? {} : { after: step.after }),
        };
      }),
      ...(forward ? { recovery: 'forward' as const } : {}),
      ...(s.timeoutMs === undefined || forward ? {} : { timeoutMs: s.timeoutMs }),
    };
    this.remember(gid, { type, hash: s.hash, phase });
    await this.orchestrator.start(serveDefinition, { idempotencyKey: gid, input: plan });
  }

  private indexBegin(gid: string, def: SagaPlan): void {
    const entry = entryOf(def);
    if (entry !== undefined) this.remember(gid, entry);
  }

  private remember(gid: string, entry: { type: TransType; hash: string; phase: StepInput['phase'] }): void {
    this.index.delete(gid);
    this.index.set(gid, entry);
    while (this.index.size > serverLimits.indexEntriesMax) this.index.delete(this.index.keys().next().value!);
  }

  /** A gid's type and the decision its saga run carries out, from the index (for telemetry). */
  describe(gid: string): { type: TransType; phase: StepInput['phase'] } | undefined {
    const i = this.index.get(gid);
    return i === undefined ? undefined : { type: i.type, phase: i.phase };
  }

  /**
   * How many transactions are where, now: calling branches (`running`, a
   * TCC's cancels and a saga's compensations included), `stuck` (an alert
   * raised, or hard-stopped), and prepared waiting for their decision
   * (`inDoubt`: a TCC or message before submit or abort).
   */
  counts(): { running: number; stuck: number; inDoubt: number } {
    const runs = this.orchestrator.inFlightCounts();
    let inDoubt = 0;
    for (const p of this.prepared.values()) if (p.decision === null) inDoubt++;
    return { running: runs.running + runs.compensating, stuck: runs.stuck, inDoubt };
  }

  /** What the engine knows of `gid`: its type and request hash, or undefined. */
  private known(gid: string): { type: TransType; hash: string } | undefined {
    const p = this.prepared.get(gid);
    if (p !== undefined) return { type: p.type, hash: p.hash };
    const e = this.endedHere.get(gid);
    if (e !== undefined) return { type: e.record.transType, hash: '' };
    const i = this.index.get(gid);
    if (i !== undefined) return i;
    if (this.orchestrator.status(gid).state !== 'unknown') return { type: 'saga', hash: '' };
    return undefined;
  }

  /** Waits up to `timeoutMs` for `gid` to end; null when it has not. */
  wait(gid: string, timeoutMs: number): Promise<TxnView | null> {
    return this.routed(
      gid,
      undefined,
      (e) => e.waitHere(gid, timeoutMs),
      (r) => this.waitElsewhere(r, timeoutMs),
    );
  }

  private async waitHere(gid: string, timeoutMs: number): Promise<TxnView | null> {
    try {
      // Only a saga run can be waited for: a prepared or already-ended-here one answers at once.
      if (this.orchestrator.status(gid).state !== 'unknown') {
        await this.orchestrator.result(gid, { timeoutMs });
      }
    } catch (error) {
      if (isDtxError(error, 'DTX_TIMEOUT')) return null;
      throw error;
    }
    const view = await this.view(gid);
    return view;
  }

  // ------------------------------------------------------------ TCC and msg

  /** Prepares a TCC or message transaction: idempotent for the same request. */
  prepare(
    gid: string,
    type: 'tcc' | 'msg',
    request: PreparedRequest,
    hash: string,
  ): Promise<{ created: boolean }> {
    checkGid(gid);
    return this.routed(
      gid,
      { type, hash },
      (e) => e.prepareHere(gid, type, request, hash),
      (r) => this.repeatElsewhere(r),
    );
  }

  private prepareHere(
    gid: string,
    type: 'tcc' | 'msg',
    request: PreparedRequest,
    hash: string,
  ): Promise<{ created: boolean }> {
    return this.locked(gid, async () => {
      const known = this.known(gid);
      if (known !== undefined) {
        if (known.type !== type || known.hash !== hash) throw duplicate(gid, known.type);
        return { created: false };
      }
      this.refuseForeign(gid);
      if (this.prepared.size >= serverLimits.preparedMax) {
        throw new DtxError(
          'DTX_RESOURCE_UNAVAILABLE',
          `${serverLimits.preparedMax} transactions are prepared already`,
        );
      }
      const p: Prepared = {
        gid,
        type,
        hash,
        request,
        branches: [],
        decision: null,
        records: [],
        timer: undefined,
        checks: 0,
        trace: activeTraceHeaders(),
      };
      await this.appendServer(p, {
        type: 'prepare',
        txn: gid,
        transType: type,
        hash,
        request,
        ...(p.trace === undefined ? {} : { trace: p.trace }),
      });
      this.prepared.set(gid, p);
      this.remember(gid, { type, hash, phase: type === 'tcc' ? 'confirm' : 'msg' });
      this.armPrepared(p, request.preparedTimeoutMs);
      this.options.hooks?.begun(gid, type);
      return { created: true };
    });
  }

  /** Registers a TCC branch of a prepared transaction (the caller then calls its try). */
  registerBranch(gid: string, branch: TccBranchSpec): Promise<void> {
    checkGid(gid);
    return this.routed(gid, undefined, (e) => e.registerBranchHere(gid, branch));
  }

  private registerBranchHere(gid: string, branch: TccBranchSpec): Promise<void> {
    return this.locked(gid, async () => {
      const p = this.prepared.get(gid);
      if (p === undefined || p.decision !== null) throw this.notPrepared(gid, 'register a branch on');
      if (p.type !== 'tcc')
        throw new DtxError('DTX_INVALID_STATE', `${gid} is a msg transaction: branches are its steps`);
      const same = p.branches.find((b) => b.branch === branch.branch);
      if (same !== undefined) {
        if (canonicalJson(same) === canonicalJson(branch)) return;
        throw new DtxError(
          'DTX_DUPLICATE_GID',
          `branch ${branch.branch} of ${gid} is registered with other URLs`,
          { gid },
        );
      }
      if (p.branches.length >= serverLimits.branchesMax) {
        throw new DtxError(
          'DTX_INVALID_ARGUMENT',
          `a transaction has at most ${serverLimits.branchesMax} branches`,
        );
      }
      await this.appendServer(p, { type: 'branch', txn: gid, branch });
      p.branches.push(branch);
    });
  }

  /** Submits a prepared TCC (confirm every branch) or message (run its steps). Idempotent. */
  submit(gid: string, type: 'tcc' | 'msg', steps?: MsgStepSpec[]): Promise<void> {
    checkGid(gid);
    return this.routed(gid, undefined, (e) =>
      e.locked(gid, () => e.decide(gid, 'submit', 'submitted', steps, type)),
    );
  }

  /** Aborts a prepared TCC (cancel every branch) or message (it ends failed). Idempotent. */
  abort(gid: string, type: 'tcc' | 'msg', reason = 'aborted by the caller'): Promise<void> {
    checkGid(gid);
    return this.routed(gid, undefined, (e) =>
      e.locked(gid, () => e.decide(gid, 'abort', reason, undefined, type)),
    );
  }

  private async decide(
    gid: string,
    decision: 'submit' | 'abort',
    reason: string,
    steps?: MsgStepSpec[],
    type?: 'tcc' | 'msg',
  ): Promise<void> {
    const known = this.known(gid);
    if (type !== undefined && known !== undefined && known.type !== type) throw duplicate(gid, known.type);
    const p = this.prepared.get(gid);
    if (p === undefined) {
      const view = await this.viewOrNull(gid);
      if (view === null) throw new DtxError('DTX_NOT_FOUND', `no transaction ${gid}`, { gid });
      const was = view.type === 'saga' ? 'submit' : wasDecided(view);
      if (was === decision) return; // the same decision again
      throw new DtxError('DTX_INVALID_STATE', `${gid} is ${view.dtmStatus}: ${decision} refused`, { gid });
    }
    if (p.decision !== null) {
      if (p.decision.decision === decision) return;
      throw new DtxError(
        'DTX_INVALID_STATE',
        `${gid} was ${p.decision.decision === 'submit' ? 'submitted' : 'aborted'}: ${decision} refused`,
        { gid },
      );
    }
    clearTimeout(p.timer);
    const record: Extract<ServerRecord, { type: 'decide' }> = {
      type: 'decide',
      txn: gid,
      decision,
      reason,
      ...(steps === undefined || steps.length === 0 ? {} : { steps }),
    };
    await this.appendServer(p, record);
    p.decision = record;
    await this.carryOut(p);
  }

  /** Begins the run that carries out `p`'s decision (or ends it here), then lets the server log forget it. */
  private async carryOut(p: Prepared): Promise<void> {
    const d = p.decision!;
    const r = p.request;
    const steps: StepSpec[] =
      p.type === 'tcc'
        ? p.branches.map((b) => {
            const url = d.decision === 'submit' ? b.confirm : b.cancel;
            const op = d.decision === 'submit' ? 'confirm' : 'cancel';
            return { branch: b.branch, action: { url, op }, compensation: null, after: [], body: b.body };
          })
        : d.decision === 'submit'
          ? (d.steps ?? r.steps).map((s) => ({
              branch: s.branch,
              action: { url: s.url, op: 'action' },
              compensation: null,
              body: s.body,
            }))
          : [];
    if (steps.length === 0) {
      const outcome = d.decision === 'submit' ? 'succeed' : 'failed';
      const end: Extract<ServerRecord, { type: 'end' }> = {
        type: 'end',
        txn: p.gid,
        transType: p.type,
        outcome,
        reason: d.reason,
      };
      await this.appendServer(p, end);
      this.prepared.delete(p.gid);
      this.endedHere.set(p.gid, { at: new Date().toISOString(), record: end });
      while (this.endedHere.size > serverLimits.indexEntriesMax)
        this.endedHere.delete(this.endedHere.keys().next().value!);
      this.options.hooks?.ended(p.gid, p.type, outcome === 'succeed' ? 'completed' : 'compensated', d.reason);
      return;
    }
    const phase: StepInput['phase'] =
      p.type === 'msg' ? 'msg' : d.decision === 'submit' ? 'confirm' : 'cancel';
    // The run's span continues the prepare request's trace (else the one active: the submit's).
    await withSpan(remoteParent(p.trace), () =>
      this.beginSaga(p.gid, p.type, phase, {
        style: r.style,
        steps,
        headers: r.headers,
        hash: p.hash,
        ...(r.requestTimeoutMs === null ? {} : { requestTimeoutMs: r.requestTimeoutMs }),
      }),
    );
    this.prepared.delete(p.gid);
    // Lazy: if it is lost, recovery begins the run again, which is idempotent.
    await this.appendServer(p, { type: 'started', txn: p.gid }, false);
  }

  private armPrepared(p: Prepared, delayMs: number): void {
    clearTimeout(p.timer);
    if (this.closed) return;
    p.timer = setTimeout(() => {
      void this.onPreparedTimeout(p.gid).catch(() => undefined);
    }, delayMs);
    p.timer.unref?.();
  }

  /** A TCC left prepared too long aborts; a message is checked with its `query_prepared`. */
  private async onPreparedTimeout(gid: string): Promise<void> {
    const p = this.prepared.get(gid);
    if (p === undefined || p.decision !== null || this.closed) return;
    if (p.type === 'tcc' || p.request.queryPrepared === null) {
      await this.locked(gid, () => this.decide(gid, 'abort', 'prepared past its timeout'));
      return;
    }
    await this.checkPrepared(p);
  }

  /** Asks a prepared message's `query_prepared` URL: SUCCESS submits, FAILURE aborts, anything else asks again later. */
  async checkPrepared(p: Prepared): Promise<void> {
    p.checks++;
    const r = p.request;
    const answer = await callDtmBranch(r.queryPrepared!, {
      method: 'GET',
      query: {
        gid: p.gid,
        trans_type: 'msg',
        branch_id: '00',
        op: 'msg',
        ...(this.options.dtmUrl === undefined ? {} : { dtm: this.options.dtmUrl }),
      },
      body: '',
      headers: r.headers,
      timeoutMs: r.requestTimeoutMs ?? this.options.httpTimeoutMs ?? httpTimeoutMsDefault,
      maxBodyBytes: httpBodyBytesMaxDefault,
    });
    if (answer.result === 'ongoing') {
      const base = this.options.timing?.retryBaseMs ?? 1000;
      this.armPrepared(
        p,
        Math.min(base * 2 ** Math.min(p.checks, 16), serverLimits.queryPreparedIntervalMsMax),
      );
      return;
    }
    await this.locked(p.gid, () =>
      answer.result === 'success'
        ? this.decide(p.gid, 'submit', 'query_prepared answered SUCCESS')
        : this.decide(p.gid, 'abort', `query_prepared answered: ${answer.reason}`),
    );
  }

  private async recoverPrepared(): Promise<void> {
    const records = await this.stores.server.load();
    const now = new Date().toISOString();
    for (const r of records) {
      const p = this.prepared.get(r.txn);
      switch (r.type) {
        case 'prepare':
          this.prepared.set(r.txn, {
            gid: r.txn,
            type: r.transType,
            hash: r.hash,
            request: r.request,
            branches: [],
            decision: null,
            records: [{ at: now, record: r }],
            timer: undefined,
            checks: 0,
            trace: r.trace,
          });
          this.remember(r.txn, {
            type: r.transType,
            hash: r.hash,
            phase: r.transType === 'tcc' ? 'confirm' : 'msg',
          });
          break;
        case 'branch':
          p?.branches.push(r.branch);
          p?.records.push({ at: now, record: r });
          break;
        case 'decide':
          if (p !== undefined) {
            p.decision = r;
            p.records.push({ at: now, record: r });
          }
          break;
        case 'started':
          this.prepared.delete(r.txn);
          break;
        case 'end':
          this.prepared.delete(r.txn);
          this.endedHere.set(r.txn, { at: now, record: r });
          this.remember(r.txn, {
            type: r.transType,
            hash: '',
            phase: r.transType === 'tcc' ? 'cancel' : 'msg',
          });
          break;
      }
    }
    // Compact: keep what is still open and the ends.
    await this.stores.server.checkpoint(this.serverKeep());
    for (const p of [...this.prepared.values()]) {
      if (p.decision !== null) await this.locked(p.gid, () => this.carryOut(p));
      else this.armPrepared(p, p.request.preparedTimeoutMs);
    }
  }

  private serverKeep(): ServerRecord[] {
    const keep: ServerRecord[] = [];
    for (const e of this.endedHere.values()) keep.push(e.record);
    for (const p of this.prepared.values()) keep.push(...p.records.map((x) => x.record));
    return keep;
  }

  private async appendServer(p: Prepared, record: ServerRecord, force = true): Promise<void> {
    p.records.push({ at: new Date().toISOString(), record });
    const done = this.stores.server.append([record], force);
    if (++this.serverAppends >= serverLimits.serverCheckpointEvery) {
      this.serverAppends = 0;
      const keep = this.serverKeep();
      await done;
      await this.stores.server.checkpoint(keep);
      return;
    }
    await done;
  }

  private notPrepared(gid: string, what: string): DtxError {
    if (this.known(gid) === undefined) return new DtxError('DTX_NOT_FOUND', `no transaction ${gid}`, { gid });
    return new DtxError('DTX_INVALID_STATE', `${gid} is not prepared: cannot ${what} it`, { gid });
  }

  /** Runs `work` after every earlier request on `gid` has finished. */
  private locked<T>(gid: string, work: () => Promise<T>): Promise<T> {
    return this.locks.run(gid, work);
  }

  // ------------------------------------------------------------ branch calls

  /** The one branch function: a call under dtx's HTTP branch protocol or DTM's. */
  private async callBranch(ctx: BranchCall<'action' | 'compensation'>): Promise<unknown> {
    const s = ctx.input as StepInput;
    const target = ctx.op === 'action' ? s.action : s.compensation;
    if (target === null) throw new Error(`step ${ctx.branchId} has no compensation`);
    const mustSucceed = s.forward || ctx.op === 'compensation';
    if (!mustSucceed && s.actionAttemptsMax !== null && ctx.attempt > s.actionAttemptsMax) {
      refuse(`no answer after ${s.actionAttemptsMax} attempts`);
    }
    const answer =
      s.style === 'dtm'
        ? await callDtmBranch(target.url, {
            method: 'POST',
            query: {
              gid: ctx.sagaId,
              trans_type: s.type,
              branch_id: ctx.branchId,
              op: target.op,
              ...(this.options.dtmUrl === undefined ? {} : { dtm: this.options.dtmUrl }),
            },
            body: s.body,
            headers: s.headers,
            timeoutMs: s.timeoutMs,
            maxBodyBytes: httpBodyBytesMaxDefault,
          })
        : await callHttpBranch(target.url, {
            sagaId: ctx.sagaId,
            branchId: ctx.branchId,
            op: target.op as 'action',
            payload: JSON.parse(s.body) as unknown,
            timeoutMs: s.timeoutMs,
            headers: s.headers,
          });
    if (answer.result === 'success') return undefined;
    if (answer.result === 'failure' && !mustSucceed) refuse(answer.reason);
    throw new Error(answer.reason);
  }

  // ------------------------------------------------------------ views

  /** One transaction with its branches and every record; DTX_NOT_FOUND when unknown. */
  async view(gid: string): Promise<TxnView> {
    const v = await this.routed(
      gid,
      undefined,
      (e) => e.viewOrNull(gid),
      (r) => this.viewElsewhere(r),
    );
    if (v === null) throw new DtxError('DTX_NOT_FOUND', `no transaction ${gid}`, { gid });
    return v;
  }

  private async viewOrNull(gid: string): Promise<TxnView | null> {
    const p = this.prepared.get(gid);
    if (p !== undefined) return preparedView(p);
    const e = this.endedHere.get(gid);
    if (e !== undefined) {
      return {
        id: gid,
        type: e.record.transType,
        state: e.record.outcome === 'succeed' ? 'completed' : 'compensated',
        dtmStatus: e.record.outcome,
        startedAt: e.at,
        reason: e.record.reason,
        branches: [],
        records: [{ at: e.at, record: e.record }],
      };
    }
    if (this.orchestrator.status(gid).state === 'unknown') return null;
    if (this.shared !== undefined) {
      // A shared store reads one gid's records by index, not the whole log.
      const v = await this.sharedView(this.shared.owner, gid);
      if (v !== null) return v;
    }
    try {
      return this.sagaView(await this.orchestrator.show(gid));
    } catch (error) {
      if (isDtxError(error, 'DTX_INVALID_ARGUMENT')) return null;
      throw error;
    }
  }

  private sagaView(d: TxnDetail, entry = this.index.get(d.id)): TxnView {
    const phase = entry?.phase ?? 'saga';
    const branches: BranchView[] = [];
    const status = new Map<string, BranchView['status']>();
    let turnedBack = false;
    for (const { record } of d.records) {
      const r = record as SagaRecord;
      if (r.type === 'result')
        status.set(`${r.branch}|${r.op}`, r.result === 'success' ? 'succeed' : 'failed');
      if (r.type === 'rollback') turnedBack = true;
      if (r.type !== 'begin') continue;
      for (const step of r.def.steps) {
        const s = JSON.parse(step.payload) as StepInput;
        branches.push({ branch: step.branch, op: s.action.op, url: s.action.url, status: 'prepared' });
        if (s.compensation !== null)
          branches.push({
            branch: step.branch,
            op: s.compensation.op,
            url: s.compensation.url,
            status: 'prepared',
          });
      }
    }
    for (const b of branches) {
      const coreOp = b.op === 'compensate' || b.op === 'compensation' ? 'compensate' : 'action';
      b.status = status.get(`${b.branch}|${coreOp}`) ?? 'prepared';
    }
    let state: ServeState = d.state;
    if (phase === 'cancel')
      state = d.state === 'running' ? 'compensating' : d.state === 'completed' ? 'compensated' : d.state;
    const end = d.records.map((x) => x.record as SagaRecord).find((r) => r.type === 'end');
    const dtmStatus = dtmStatusOf(
      state,
      phase === 'cancel' || turnedBack,
      end?.type === 'end' ? end.outcome : null,
    );
    return {
      id: d.id,
      type: entry?.type ?? null,
      state,
      dtmStatus,
      startedAt: d.startedAt,
      reason: d.reason,
      branches,
      records: d.records,
    };
  }

  /** Every transaction the store holds, newest first, filtered. */
  async list(filter: { state?: ServeState; type?: TransType }): Promise<TxnView[]> {
    const out: TxnView[] = [];
    // With several servers: this server's transactions and those of the owners it took over.
    for (const e of this.cluster?.adoptedEngines() ?? []) out.push(...(await e.list(filter)));
    for (const p of this.prepared.values()) out.push(preparedView(p));
    for (const gid of this.endedHere.keys()) {
      const v = await this.viewOrNull(gid);
      if (v !== null) out.push(v);
    }
    const summaries = await this.orchestrator.list();
    for (const s of summaries) out.push(this.sagaView({ ...s, records: [] }));
    // Summaries carry no records: fill the branch-free fields from the index.
    return out
      .filter(
        (v) =>
          (filter.state === undefined || v.state === filter.state) &&
          (filter.type === undefined || v.type === filter.type),
      )
      .sort(newestFirst);
  }

  // ------------------------------------------------------------ operator

  retry(gid: string): Promise<void> {
    return this.routed(gid, undefined, (e) => e.retryHere(gid));
  }

  private async retryHere(gid: string): Promise<void> {
    const p = this.prepared.get(gid);
    if (p !== undefined) {
      if (p.type === 'msg' && p.request.queryPrepared !== null && p.decision === null) {
        clearTimeout(p.timer);
        await this.checkPrepared(p);
        return;
      }
      throw new DtxError('DTX_INVALID_STATE', `${gid} is prepared: submit or abort it`, { gid });
    }
    await this.known404(gid);
    await this.orchestrator.retry(gid);
  }

  resolve(gid: string, outcome: 'completed' | 'compensated', reason: string, force: boolean): Promise<void> {
    return this.routed(gid, undefined, async (e) => {
      await e.known404(gid);
      await e.orchestrator.resolve(gid, { outcome, reason, force: force as true });
    });
  }

  abandon(gid: string, reason: string, force: boolean): Promise<void> {
    return this.routed(gid, undefined, async (e) => {
      await e.known404(gid);
      await e.orchestrator.abandon(gid, { reason, force: force as true });
    });
  }

  // ------------------------------------------------------------ several servers

  /**
   * Runs a request on `gid` where the gid's claim sends it (./cluster.ts):
   * `here` on this engine or on the engine of an owner this server took
   * over; `elsewhere` for a gid another server's owner holds (default:
   * DTX_NOT_OWNER). `create`: the request begins a transaction (the gid is
   * claimed for this server when unclaimed; a claim for another request is
   * DTX_DUPLICATE_GID). One server alone: always `here` on this engine.
   */
  private async routed<T>(
    gid: string,
    create: { type: ClaimType; hash: string } | undefined,
    here: (e: Engine) => Promise<T>,
    elsewhere: (r: Remote) => Promise<T> = async (r) => {
      throw notOwner(r);
    },
  ): Promise<T> {
    if (this.cluster === undefined) return here(this);
    const to = await this.cluster.route(gid, this, create);
    if (to instanceof Engine) return here(to);
    if (create !== undefined && (to.type !== create.type || to.hash !== create.hash))
      throw duplicate(gid, to.type);
    return elsewhere(to);
  }

  /**
   * The 2PC coordinator that runs `gid`: this server's own, or that of an
   * owner this server took over, by the gid's claim (`create`, a begin:
   * claimed here when unclaimed). A gid another server runs is DTX_NOT_OWNER
   * (nothing of a 2PC transaction is answered from the store), a gid claimed
   * by another type or request DTX_DUPLICATE_GID.
   */
  twoPcFor(gid: string, create?: { hash: string }): Promise<TwoPcCoordinatorService> {
    checkGid(gid);
    return this.routed(
      gid,
      create === undefined ? undefined : { type: '2pc', hash: create.hash },
      async (e) => {
        if (e.twopc === undefined)
          throw new DtxError('DTX_UNSUPPORTED', 'this server runs no 2PC coordinator');
        return e.twopc;
      },
    );
  }

  /** The same request again, for a transaction another server has begun: answered as the first. */
  private async repeatElsewhere(r: Remote): Promise<{ created: boolean }> {
    if ((await this.viewElsewhere(r)) === null) throw notOwner(r);
    return { created: false };
  }

  /** A transaction of another server's owner, read from the store; null when its log has nothing of it (yet). */
  private viewElsewhere(r: Remote): Promise<TxnView | null> {
    return this.sharedView(r.owner, r.gid);
  }

  /** A transaction of `owner`'s logs in the shared store, read from its records there; null when they have none. */
  private async sharedView(owner: string, gid: string): Promise<TxnView | null> {
    const { saga, server } = await this.shared!.cluster.records(owner, gid);
    if (saga.length > 0) {
      const d = sagaTxnViews(saga).find((v) => v.id === gid);
      // The request's type and phase are in the `begin`; once compacted away, in the index (this server's gids).
      const begin = saga.map((x) => x.record).find((x) => x.type === 'begin');
      if (d !== undefined) return this.sagaView(d, begin === undefined ? undefined : entryOf(begin.def));
    }
    return server.length === 0 ? null : serverRecordsView(gid, server);
  }

  /** Polls the store until the transaction another server runs has ended, or `timeoutMs`. */
  private async waitElsewhere(r: Remote, timeoutMs: number): Promise<TxnView | null> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = await this.viewElsewhere(r);
      if (v !== null && ended(v)) return v;
      if (Date.now() >= deadline) return null;
      await new Promise((resolve) => setTimeout(resolve, serverLimits.waitElsewherePollMs));
    }
  }

  private async known404(gid: string): Promise<void> {
    if (this.prepared.has(gid))
      throw new DtxError('DTX_INVALID_STATE', `${gid} is prepared: submit or abort it`, { gid });
    if ((await this.viewOrNull(gid)) === null)
      throw new DtxError('DTX_NOT_FOUND', `no transaction ${gid}`, { gid });
  }
}

function preparedView(p: Prepared): TxnView {
  const branches: BranchView[] = [];
  for (const b of p.branches) {
    branches.push({ branch: b.branch, op: 'confirm', url: b.confirm, status: 'prepared' });
    branches.push({ branch: b.branch, op: 'cancel', url: b.cancel, status: 'prepared' });
  }
  for (const s of p.request.steps)
    branches.push({ branch: s.branch, op: 'action', url: s.url, status: 'prepared' });
  const decided = p.decision;
  return {
    id: p.gid,
    type: p.type,
    state: decided === null ? 'prepared' : decided.decision === 'submit' ? 'running' : 'compensating',
    dtmStatus: decided === null ? 'prepared' : decided.decision === 'submit' ? 'submitted' : 'aborting',
    startedAt: p.records[0]?.at ?? null,
    reason: decided?.reason ?? null,
    branches,
    records: p.records,
  };
}

/** DTM's status for a saga-run state; `back`: it is turning back (or cancelling). */
function dtmStatusOf(state: ServeState, back: boolean, endOutcome: string | null): TxnView['dtmStatus'] {
  switch (state) {
    case 'prepared':
      return 'prepared';
    case 'completed':
      return back ? 'failed' : 'succeed';
    case 'resolved':
      return endOutcome === 'completed' && !back ? 'succeed' : 'failed';
    case 'compensated':
    case 'abandoned':
    case 'aborted':
      return 'failed';
    case 'compensating':
      return 'aborting';
    default:
      return back ? 'aborting' : 'submitted';
  }
}

/** Which decision a transaction no longer prepared shows. */
function wasDecided(v: TxnView): 'submit' | 'abort' {
  return v.dtmStatus === 'aborting' || v.dtmStatus === 'failed' ? 'abort' : 'submit';
}

/** What a saga's `begin` says of the request it came from; undefined for a saga not begun by a server. */
function entryOf(def: SagaPlan): { type: TransType; hash: string; phase: StepInput['phase'] } | undefined {
  const first = def.steps[0];
  if (first === undefined) return undefined;
  try {
    const input = JSON.parse(first.payload) as StepInput;
    return { type: input.type, hash: input.hash, phase: input.phase };
  } catch {
    return undefined; // not one of ours
  }
}

/** The trace headers a saga's `begin` kept of the request that began it (in its first step's input). */
function traceOf(def: SagaPlan): Record<string, string> | undefined {
  const first = def.steps[0];
  if (first === undefined) return undefined;
  try {
    return (JSON.parse(first.payload) as StepInput).trace;
  } catch {
    return undefined; // not one of ours
  }
}

/** The order of listings: newest first (by first record), then by id. */
export function newestFirst(
  a: { id: string; startedAt: string | null },
  b: { id: string; startedAt: string | null },
): number {
  return (b.startedAt ?? '').localeCompare(a.startedAt ?? '') || a.id.localeCompare(b.id);
}

/** Whether a transaction has ended (nothing more will be called). */
function ended(v: TxnView): boolean {
  return ['completed', 'compensated', 'resolved', 'abandoned'].includes(v.state);
}

/** A prepared (or ended-before-any-call) transaction of another server, from its server-log records. */
function serverRecordsView(gid: string, records: { at: Date; record: ServerRecord }[]): TxnView | null {
  let p: Prepared | undefined;
  for (const { at, record: r } of records) {
    const timed = { at: at.toISOString(), record: r };
    if (r.type === 'prepare') {
      p = {
        gid,
        type: r.transType,
        hash: r.hash,
        request: r.request,
        branches: [],
        decision: null,
        records: [timed],
        timer: undefined,
        checks: 0,
      };
    } else if (r.type === 'end') {
      const state = r.outcome === 'succeed' ? 'completed' : 'compensated';
      return {
        id: gid,
        type: r.transType,
        state,
        dtmStatus: r.outcome,
        startedAt: timed.at,
        reason: r.reason,
        branches: [],
        records: [timed],
      };
    } else if (p !== undefined) {
      p.records.push(timed);
      if (r.type === 'branch') p.branches.push(r.branch);
      if (r.type === 'decide') p.decision = r;
    }
  }
  return p === undefined ? null : preparedView(p);
}

/** A gid another server's owner holds: send the request there, or retry once a survivor has taken it over. */
function notOwner(r: Remote): DtxError {
  const owner = r.owner.replace(/^dtx-serve:?/, '') || '(unnamed)';
  const detail =
    r.heldBy === null
      ? `server ${owner}, which is not running: another server takes its transactions over within the lease ttl; retry`
      : `server ${r.heldBy}${r.heldBy === owner ? '' : ` (which took over server ${owner})`}: send this request there`;
  return new DtxError('DTX_NOT_OWNER', `${r.gid} is run by ${detail}`, { gid: r.gid });
}

function duplicate(gid: string, type: ClaimType): DtxError {
  return new DtxError('DTX_DUPLICATE_GID', `gid ${gid} is already used by another ${type} request`, { gid });
}

/** Throws DTX_INVALID_GID unless `gid` is a safe transaction id. */
export function checkGid(gid: unknown): asserts gid is string {
  if (typeof gid !== 'string' || !isValidTxnId(gid)) {
    throw new DtxError(
      'DTX_INVALID_GID',
      `gid must be 1 to 48 characters of letters, digits and _ . : - (starting with a letter or digit), got ${JSON.stringify(gid)?.slice(0, 80)}`,
    );
  }
}
