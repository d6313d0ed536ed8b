// The durable saga orchestrator: the pure saga core
// (src/protocol/saga/orchestrator.ts) driven by the runtime Driver with a
// durable log (SQLite by default, PostgreSQL as an option), and a transport
// that turns the core's CALL messages into branch calls: a local async
// function, or a POST under the HTTP branch protocol (../../adapters/http-branch.ts).
//
// Owns: saga ids (derived from the caller's idempotency key, so starting
// twice runs once), the registry of saga definitions by name and version
// (local functions cannot be logged, and URLs and headers are not read back
// from the log, so a restarted orchestrator needs its definitions again before
// `start()`), and the outcome of every saga its log knows. Recovery is the core's: every
// saga with a `begin` and no `end` is resumed forward or backward from its
// log, and calls that were out are sent again — branch handlers must be
// idempotent (use the barrier, ../../adapters/barrier.ts).
//
// See docs/saga-runtime.md.

import { DtxError } from '../../errors.ts';
import { isValidNodeId } from '../../protocol/common/limits.ts';
import { type SagaOrchestratorState, sagaOrchestrator } from '../../protocol/saga/orchestrator.ts';
import type { SagaConfig, SagaPlan, SagaRecord } from '../../protocol/saga/types.ts';
import {
  type BranchHeaders,
  BranchOrchestrator,
  type BranchOrchestratorOptions,
  type BranchRunResult,
  checkVersion,
  derivedId,
  type HttpBranchRef,
  handlerName as handlerNameOf,
  httpService,
  isHttpBranch,
  localService,
  type OrchestratorKind,
  recordDecoder,
  type SagaState,
  type SagaStatus,
  type StuckAlert,
} from '../branch/orchestrator.ts';
import { sagaTxnViews } from '../branch/views.ts';
import { type LogLocation, openLog } from '../log/open.ts';
import type { DurableLog } from '../log/types.ts';
import type { OperatorActionOptions } from '../operator.ts';

export {
  type BranchHeaders,
  type HttpBranchRef,
  isHttpBranch,
  type SagaState,
  type SagaStatus,
  type StuckAlert,
};

/** How a saga ended: the result every branch run has (../branch/orchestrator.ts), under the saga's name. */
export type SagaResult = BranchRunResult;

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
  /**
   * Which version of the definition under `name` (an integer >= 1, default 1).
   * The log names each branch op as `<name>@<version>/<step>/<op>`: a saga
   * resumes only with the functions and URLs registered under its version, so
   * change it when the steps' meaning changes and keep the old version
   * registered until its sagas have ended.
   */
  version?: number;
  steps: readonly SagaStep[];
  /** `backward` (default): give up and compensate on failure; `forward`: retry actions forever. */
  recovery?: 'backward' | 'forward';
  timeoutMs?: number;
}

/** `timing`: the core's retry and limit settings (see SagaConfig). */
export interface SagaOrchestratorOptions extends BranchOrchestratorOptions<SagaRecord, SagaConfig> {
  /** Definitions with local functions, needed to resume their sagas after a restart. */
  definitions?: readonly SagaDefinition[];
}

/** The `decode` for saga logs: rejects rows that are not saga records. */
export const decodeSagaRecord = recordDecoder<SagaRecord>(
  ['begin', 'start', 'result', 'rollback', 'stuck', 'end'],
  'saga',
);

/** Opens a saga log: a SQLite file (`{ sqlite: path }`) or a PostgreSQL table (`{ postgres, owner }`). */
export async function openSagaLog(where: LogLocation): Promise<DurableLog<SagaRecord> & AsyncDisposable> {
  return openLog(where, decodeSagaRecord, 'saga');
}

/** Throw this from a local action to refuse it for a business reason: the saga compensates. */
export function refuse(reason: string): never {
  throw new DtxError('DTX_BRANCH_REFUSED', reason);
}

/** The saga id for an idempotency key: the same key always names the same saga. */
export function sagaIdFor(definitionName: string, idempotencyKey: string): string {
  return derivedId(definitionName, `${definitionName}\0${idempotencyKey}`);
}

const isHttp = isHttpBranch;

function handlerName(def: SagaDefinition, step: SagaStep, op: 'action' | 'compensation'): string {
  return handlerNameOf(def.name, def.version ?? 1, step.name, op);
}

function checkDefinition(def: SagaDefinition): void {
  const bad = (why: string) => new DtxError('DTX_INVALID_ARGUMENT', `saga definition: ${why}`);
  if (!isValidNodeId(def.name)) throw bad(`bad name ${JSON.stringify(def.name)}`);
  checkVersion(def.version ?? 1, `saga definition ${def.name}`);
  if (!Array.isArray(def.steps)) throw bad('steps must be an array');
  for (const s of def.steps) {
    const parts = [s.action, ...(s.compensation === null ? [] : [s.compensation])];
    if (parts.some(isHttp) && !parts.every(isHttp)) {
      throw bad(`step ${s.name} mixes a local function and an HTTP branch`);
    }
    for (const p of parts) {
      if (!isHttp(p) && typeof p !== 'function') throw bad(`step ${s.name} needs a function or { url }`);
    }
  }
}

const sagaKind: OrchestratorKind<'action' | 'compensation', SagaRecord> = {
  self: 'orchestrator',
  observed: 'saga',
  idFor: sagaIdFor,
  views: sagaTxnViews,
  op: (op) => (op === 'compensate' ? 'compensation' : op) as 'action' | 'compensation',
  logFailed: 'the saga log failed; restart the orchestrator',
  haltedWaiters: 'the saga log failed; a restart resumes the saga',
  notStarted: 'call recover() before starting sagas',
  rejected: 'saga rejected',
  unknown: (sagaId: string) => `saga ${sagaId} is not known to this orchestrator`,
  noFunction: (handler: string) => `no local function ${handler} is defined in this process`,
};

export class SagaOrchestrator extends BranchOrchestrator<
  SagaDefinition,
  SagaOrchestratorState,
  SagaPlan,
  SagaRecord,
  SagaConfig,
  'action' | 'compensation'
> {
  /**
   * `idFor` replaces how a start's idempotency key names its saga (default
   * `sagaIdFor`): `dtx serve` names each saga by its caller's id itself.
   */
  constructor(options: SagaOrchestratorOptions, idFor?: (definitionName: string, key: string) => string) {
    super(sagaOrchestrator, idFor === undefined ? sagaKind : { ...sagaKind, idFor }, options);
    for (const def of options.definitions ?? []) this.define(def);
  }

  /**
   * Registers a definition (its local functions and HTTP endpoints), for
   * `start()` and for resuming its sagas. Throws DTX_INVALID_ARGUMENT for a
   * bad name, version, URL (http: and https: only), header or timeout.
   */
  define(def: SagaDefinition): void {
    checkDefinition(def);
    // Defining a name and version again replaces its branches.
    for (const s of def.steps) {
      const where = `saga definition ${def.name}: step ${s.name}`;
      this.register(handlerName(def, s, 'action'), s.action, where);
      if (s.compensation !== null) this.register(handlerName(def, s, 'compensation'), s.compensation, where);
    }
  }

  /**
   * Ends saga `id` with the outcome an operator established by hand, recorded
   * in the log with the reason. Refused (DTX_INVALID_STATE) when the log
   * already decided otherwise: `completed` once compensation has been
   * decided, `compensated` once a step that cannot be compensated has started.
   */
  async resolve(
    id: string,
    opts: OperatorActionOptions & { outcome: 'completed' | 'compensated' },
  ): Promise<void> {
    if (opts?.outcome !== 'completed' && opts?.outcome !== 'compensated') {
      throw new DtxError('DTX_INVALID_ARGUMENT', "a saga resolves as 'completed' or 'compensated'");
    }
    await this.resolveAs(id, opts.outcome, opts);
  }

  protected toPlan(def: SagaDefinition, input: unknown): SagaPlan {
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

  protected inFlightIds(state: SagaOrchestratorState): Iterable<string> {
    return state.sagas.keys();
  }

  protected inFlight(sagaId: string, state: SagaOrchestratorState): SagaStatus | undefined {
    const run = state.sagas.get(sagaId);
    if (run === undefined) return undefined;
    const branches: Record<string, string> = {};
    for (const [name, b] of run.branches) branches[name] = b.phase;
    const now: SagaState =
      run.status === 'stuck' || run.alert !== null
        ? 'stuck'
        : run.direction === 'forward'
          ? 'running'
          : 'compensating';
    return { sagaId, state: now, reason: run.alert ?? run.reason, branches, alert: run.alert };
  }
}

/** Makes an orchestrator on `options.log` and resumes every saga the log left unfinished. */
export async function createSagaOrchestrator(options: SagaOrchestratorOptions): Promise<SagaOrchestrator> {
  const o = new SagaOrchestrator(options);
  await o.recover();
  return o;
}
