// The durable TCC (try-confirm-cancel) orchestrator: the pure TCC core
// (src/protocol/tcc/coordinator.ts) on the same runtime as the saga
// orchestrator (./orchestrator.ts): the Driver, a durable log, and branches
// that are local async functions or HTTP endpoints (op `try`, `confirm`,
// `cancel`). Branch handlers should use the barrier
// (../../adapters/barrier.ts): a cancel whose try never ran is then a no-op,
// and a try that arrives after its cancel is refused.
//
// See docs/saga-runtime.md ("TCC").

import { DtxError } from '../../errors.ts';
import { isValidNodeId } from '../../protocol/common/limits.ts';
import { type TccCoordinatorState, tccCoordinator } from '../../protocol/tcc/coordinator.ts';
import type { TccDefinition as CoreDefinition, TccConfig, TccRecord } from '../../protocol/tcc/types.ts';
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
  type SagaStatus,
} from './branch-orchestrator.ts';

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

export interface TccOrchestratorOptions extends BranchOrchestratorOptions<TccRecord, TccConfig> {
  definitions?: readonly TccDefinition[];
}

const ops = ['try', 'confirm', 'cancel'] as const;

export const decodeTccRecord = recordDecoder<TccRecord>(
  ['begin', 'tried', 'decision', 'settled', 'stuck', 'end'],
  'TCC',
);

export async function openTccLog(where: LogLocation): Promise<DurableLog<TccRecord>> {
  return openLog(where, decodeTccRecord, 'tcc');
}

export function tccIdFor(definitionName: string, idempotencyKey: string): string {
  return derivedId(definitionName, `tcc\0${definitionName}\0${idempotencyKey}`);
}

const handlerName = (def: TccDefinition, b: TccBranch, op: (typeof ops)[number]): string =>
  handlerNameOf(def.name, b.name, op, b[op]);

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

const tccKind: OrchestratorKind<TccContext['op']> = {
  self: 'tcc',
  op: (op) => op as TccContext['op'],
  logFailed: 'the TCC log failed; restart the orchestrator',
  haltedWaiters: 'the TCC log failed',
  notStarted: 'call recover() before starting',
  rejected: 'TCC transaction rejected',
  unknown: (id) => `TCC transaction ${id} is unknown`,
  noFunction: (handler) => `no local function ${handler} is defined`,
};

export class TccOrchestrator extends BranchOrchestrator<
  TccDefinition,
  TccCoordinatorState,
  CoreDefinition,
  TccRecord,
  TccConfig,
  TccContext['op']
> {
  constructor(options: TccOrchestratorOptions) {
    super(tccCoordinator, tccKind, options);
    for (const def of options.definitions ?? []) this.define(def);
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

  protected idFor(def: TccDefinition, idempotencyKey: string): string {
    return tccIdFor(def.name, idempotencyKey);
  }

  protected toCore(def: TccDefinition, input: unknown): CoreDefinition {
    const payload = JSON.stringify(input ?? null);
    return {
      branches: def.branches.map((b) => ({
        branch: b.name,
        service: isHttpBranch(b.try) ? httpService : localService,
        try: handlerName(def, b, 'try'),
        confirm: handlerName(def, b, 'confirm'),
        cancel: handlerName(def, b, 'cancel'),
        payload,
      })),
      ...(def.timeoutMs === undefined ? {} : { timeoutMs: def.timeoutMs }),
    };
  }

  /** `running` while trying or confirming, `compensating` while cancelling. */
  protected inFlight(id: string, state: TccCoordinatorState): SagaStatus | undefined {
    const run = state.txns.get(id);
    if (run === undefined) return undefined;
    const branches: Record<string, string> = {};
    for (const [name, b] of run.branches) branches[name] = `${b.tried}/${b.second}`;
    const now = run.status === 'stuck' ? 'stuck' : run.phase === 'cancelling' ? 'compensating' : 'running';
    return { sagaId: id, state: now, reason: run.reason, branches };
  }
}

/** Makes a TCC orchestrator on `options.log` and resumes every transaction the log left unfinished. */
export async function createTccOrchestrator(options: TccOrchestratorOptions): Promise<TccOrchestrator> {
  const o = new TccOrchestrator(options);
  await o.recover();
  return o;
}
