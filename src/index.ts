// dtx's public entry point: the coordinator, its logs, the typed errors, and
// the ports an adapter implements. Database adapters live in subpath exports
// (`dtx/postgres`, `dtx/mysql`, `dtx/sqlite`) so that importing dtx loads no
// database driver you do not use.

export { type BarrierKey, type BarrierOp, type BarrierOutcome, withBarrier } from './adapters/barrier.ts';
export { callHttpBranch, classifyStatus } from './adapters/http-branch.ts';
export type {
  Branch,
  BranchFate,
  PreparedBranchInfo,
  Resolution,
  ResourceAdapter,
  SqlBranch,
  Vote,
} from './adapters/types.ts';
export {
  DtxError,
  type DtxErrorCode,
  type HeuristicBranch,
  HeuristicError,
  InvalidGidError,
  isDtxError,
  LockConflictError,
  PreparedTxnsDisabledError,
  ResourceUnavailableError,
} from './errors.ts';
export { CodecError, twoPcRecordCodec } from './protocol/twopc/codec.ts';
export type { TwoPcRecord } from './protocol/twopc/types.ts';
export { sagaTxnViews, type TimedRecord, tccTxnViews } from './runtime/branch/views.ts';
export {
  Coordinator,
  type CoordinatorOptions,
  createCoordinator,
  type RecoveryReport,
  type Transaction,
  type TransactionOptions,
} from './runtime/coordinator.ts';
export { acquireLeadership, type Leadership, type LeaseOptions } from './runtime/lease.ts';
export { openSqliteLog, type SqliteLogOptions } from './runtime/log/sqlite.ts';
export type { DurableLog, LogIdentity, LogOptions, LogProtocol, LogStats } from './runtime/log/types.ts';
export type { BranchHeaders, HttpBranchRef, StuckAlert } from './runtime/saga/orchestrator.ts';
export {
  type BranchContext,
  createSagaOrchestrator,
  openSagaLog,
  refuse,
  type SagaDefinition,
  SagaOrchestrator,
  type SagaOrchestratorOptions,
  type SagaResult,
  type SagaStatus,
  type SagaStep,
  sagaIdFor,
} from './runtime/saga/orchestrator.ts';
export {
  createTccOrchestrator,
  openTccLog,
  type TccBranch,
  type TccContext,
  type TccDefinition,
  TccOrchestrator,
  type TccOrchestratorOptions,
  type TccResult,
} from './runtime/tcc/orchestrator.ts';
export { type TimedTwoPcRecord, twoPcTxnViews } from './runtime/twopc-views.ts';
