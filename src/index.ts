// dtx's public entry point: the coordinator, the saga and TCC orchestrators,
// their logs, the typed errors, and the ports an adapter implements. One name
// per concept: each engine is made by its async factory (`createCoordinator`,
// `createSagaOrchestrator`, `createTccOrchestrator`), which recovers before it
// returns; its class is exported as a type only, so there is no second way to
// make one that skips recovery. Database adapters live in subpath exports
// (`dtx/postgres`, `dtx/mysql`, `dtx/sqlite`) so that importing dtx loads no
// database driver you do not use.

export { type BarrierKey, type BarrierOp, type BarrierOutcome, withBarrier } from './adapters/barrier.ts';
export { callHttpBranch, classifyStatus } from './adapters/http-branch.ts';
export {
  SemanticLockError,
  type SemanticLockOwner,
  type SemanticLocks,
  semanticLocks,
} from './adapters/semantic-lock.ts';
export type {
  Branch,
  BranchFate,
  PreparedBranchInfo,
  Resolution,
  ResourceAdapter,
  SnapshotSession,
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
export type { CommitFence, FenceRelease } from './runtime/commit-fence.ts';
export {
  type Coordinator,
  type CoordinatorOptions,
  createCoordinator,
  openCoordinatorLog,
  type RecoveryReport,
  type Transaction,
  type TransactionOptions,
} from './runtime/coordinator.ts';
export { acquireLeadership, type Leadership, type LeaseOptions } from './runtime/lease.ts';
export { isLogError, LogError, type LogErrorReason } from './runtime/log/errors.ts';
export type { LogLocation } from './runtime/log/open.ts';
export { openSqliteLog, type SqliteLogOptions } from './runtime/log/sqlite.ts';
export type { DurableLog, LogIdentity, LogOptions, LogProtocol, LogStats } from './runtime/log/types.ts';
export type {
  BranchCalled,
  LogFlushed,
  Logger,
  ObservedOutcome,
  ObservedTxnType,
  Observer,
  TxnBegun,
  TxnEnded,
} from './runtime/observe.ts';
export { AcceptorServer, type AcceptorServerOptions } from './runtime/paxos-commit/acceptor-server.ts';
export type {
  PaxosCommitCoordinator,
  PaxosCommitCoordinatorOptions,
  PaxosTransaction,
  PaxosTransactionOptions,
} from './runtime/paxos-commit/coordinator.ts';
export {
  type CommutativeTarget,
  commutativeUpdate,
  lockedStep,
  releaseLocksStep,
} from './runtime/saga/countermeasures.ts';
export type { BranchHeaders, HttpBranchRef, StuckAlert } from './runtime/saga/orchestrator.ts';
export {
  type BranchContext,
  createSagaOrchestrator,
  openSagaLog,
  refuse,
  type SagaDefinition,
  type SagaOrchestrator,
  type SagaOrchestratorOptions,
  type SagaResult,
  type SagaStatus,
  type SagaStep,
  sagaIdFor,
} from './runtime/saga/orchestrator.ts';
export { type SnapshotOptions, type SnapshotReads, withSnapshot } from './runtime/snapshot.ts';
export {
  createTccOrchestrator,
  openTccLog,
  type TccBranch,
  type TccContext,
  type TccDefinition,
  type TccOrchestrator,
  type TccOrchestratorOptions,
  type TccResult,
} from './runtime/tcc/orchestrator.ts';
export { type TimedTwoPcRecord, twoPcTxnViews } from './runtime/twopc-views.ts';
