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
import type { TccConfig, TccPlan, TccRecord } from '../../protocol/tcc/types.ts';
import {
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
  type SagaStatus,
} from '../branch/orchestrator.ts';
import { tccTxnViews } from '../branch/views.ts';
import { type LogLocation, openLog } from '../log/open.ts';
import type { DurableLog } from '../log/types.ts';
import type { OperatorActionOptions } from '../operator.ts';

/**
 * How a TCC transaction ended. The same shape as a saga's result, because the
 * shared base (../branch/orchestrator.ts) produces both; its own name so a TCC
 * caller does not read "saga" (`sagaId` is the transaction's id).
 */
export type TccResult = BranchRunResult;

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
  /** As a saga definition's `version` (default 1): the log names branch ops as `<name>@<version>/<branch>/<op>`. */
  version?: number;
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

export async function openTccLog(where: LogLocation): Promise<DurableLog<TccRecord> & AsyncDisposable> {
  return openLog(where, decodeTccRecord, 'tcc');
}

export function tccIdFor(definitionName: string, idempotencyKey: string): string {
  return derivedId(definitionName, `tcc\0${definitionName}\0${idempotencyKey}`);
}

const handlerName = (def: TccDefinition, b: TccBranch, op: (typeof ops)[number]): string =>
  handlerNameOf(def.name, def.version ?? 1, b.name, op);

function checkDefinition(def: TccDefinition): void {
  const bad = (why: string) => new DtxError('DTX_INVALID_ARGUMENT', `TCC definition: ${why}`);
  if (!isValidNodeId(def.name)) throw bad(`bad name ${JSON.stringify(def.name)}`);
  checkVersion(def.version ?? 1, `TCC definition ${def.name}`);
  if (!Array.isArray(def.branches)) throw bad('branches must be an array');
  for (const b of def.branches) {
    const parts = ops.map((op) => b[op]);
    if (parts.some(isHttpBranch) && !parts.every(isHttpBranch)) {
      throw bad(`branch ${b.name} mixes local functions and HTTP branches`);
    }
    for (const p of parts) {
      if (!isHttpBranch(p) && typeof p !== 'function')
        throw bad(`branch ${b.name} needs functions or { url }`);
    }
  }
}

const tccKind: OrchestratorKind<TccContext['op'], TccRecord> = {
  self: 'tcc',
  observed: 'tcc',
  idFor: tccIdFor,
  views: tccTxnViews,
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
  TccPlan,
  TccRecord,
  TccConfig,
  TccContext['op']
> {
  constructor(options: TccOrchestratorOptions) {
    super(tccCoordinator, tccKind, options);
    for (const def of options.definitions ?? []) this.define(def);
  }

  /** Registers a definition (functions and HTTP endpoints); throws DTX_INVALID_ARGUMENT as the saga's `define`. */
  define(def: TccDefinition): void {
    checkDefinition(def);
    for (const b of def.branches) {
      for (const op of ops)
        this.register(handlerName(def, b, op), b[op], `TCC definition ${def.name}: branch ${b.name}`);
    }
  }

  /**
   * Ends TCC transaction `id` with the outcome an operator established by
   * hand, recorded in the log with the reason. Refused (DTX_INVALID_STATE)
   * when it contradicts the decision: `confirmed` only once confirm was
   * decided, `cancelled` only before a decision or once cancel was decided.
   */
  async resolve(
    id: string,
    opts: OperatorActionOptions & { outcome: 'confirmed' | 'cancelled' },
  ): Promise<void> {
    if (opts?.outcome !== 'confirmed' && opts?.outcome !== 'cancelled') {
      throw new DtxError('DTX_INVALID_ARGUMENT', "a TCC transaction resolves as 'confirmed' or 'cancelled'");
    }
    await this.resolveAs(id, opts.outcome === 'confirmed' ? 'completed' : 'compensated', opts);
  }

  protected toPlan(def: TccDefinition, input: unknown): TccPlan {
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
  protected inFlightIds(state: TccCoordinatorState): Iterable<string> {
    return state.txns.keys();
  }

  protected inFlight(id: string, state: TccCoordinatorState): SagaStatus | undefined {
    const run = state.txns.get(id);
    if (run === undefined) return undefined;
    const branches: Record<string, string> = {};
    for (const [name, b] of run.branches) branches[name] = `${b.tried}/${b.second}`;
    const now =
      run.status === 'stuck' || run.alert !== null
        ? 'stuck'
        : run.phase === 'cancelling'
          ? 'compensating'
          : 'running';
    return { sagaId: id, state: now, reason: run.alert ?? run.reason, branches, alert: run.alert };
  }
}

/** Makes a TCC orchestrator on `options.log` and resumes every transaction the log left unfinished. */
export async function createTccOrchestrator(options: TccOrchestratorOptions): Promise<TccOrchestrator> {
  const o = new TccOrchestrator(options);
  await o.recover();
  return o;
}
