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

import { DtxError } from '../../errors.ts';
import { isValidNodeId } from '../../protocol/common/limits.ts';
import { type SagaOrchestratorState, sagaOrchestrator } from '../../protocol/saga/orchestrator.ts';
import type { SagaDefinition as CoreDefinition, SagaConfig, SagaRecord } from '../../protocol/saga/types.ts';
import type { DurableLog } from '../log/types.ts';
import {
  BranchOrchestrator,
  type BranchOrchestratorOptions,
  derivedId,
  type HttpBranchRef,
  handlerName as handlerNameOf,
  httpService,
  isHttpBranch,
  type LogLocation,
  localService,
  type OrchestratorKind,
  openLog,
  recordDecoder,
  type SagaResult,
  type SagaState,
  type SagaStatus,
} from './branch-orchestrator.ts';

export { type HttpBranchRef, isHttpBranch, type SagaResult, type SagaState, type SagaStatus };

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
export async function openSagaLog(where: LogLocation): Promise<DurableLog<SagaRecord>> {
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
  return handlerNameOf(def.name, step.name, op, op === 'action' ? step.action : step.compensation!);
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

const sagaKind: OrchestratorKind<'action' | 'compensation'> = {
  self: 'orchestrator',
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
  CoreDefinition,
  SagaRecord,
  SagaConfig,
  'action' | 'compensation'
> {
  constructor(options: SagaOrchestratorOptions) {
    super(sagaOrchestrator, sagaKind, options);
    for (const def of options.definitions ?? []) this.define(def);
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

  protected idFor(def: SagaDefinition, idempotencyKey: string): string {
    return sagaIdFor(def.name, idempotencyKey);
  }

  protected toCore(def: SagaDefinition, input: unknown): CoreDefinition {
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

  protected inFlight(sagaId: string, state: SagaOrchestratorState): SagaStatus | undefined {
    const run = state.sagas.get(sagaId);
    if (run === undefined) return undefined;
    const branches: Record<string, string> = {};
    for (const [name, b] of run.branches) branches[name] = b.phase;
    const now: SagaState =
      run.status === 'stuck' ? 'stuck' : run.direction === 'forward' ? 'running' : 'compensating';
    return { sagaId, state: now, reason: run.reason, branches };
  }
}

/** Makes an orchestrator on `options.log` and resumes every saga the log left unfinished. */
export async function createSagaOrchestrator(options: SagaOrchestratorOptions): Promise<SagaOrchestrator> {
  const o = new SagaOrchestrator(options);
  await o.recover();
  return o;
}
