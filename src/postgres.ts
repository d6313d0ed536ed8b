// `dtx/postgres`: PostgreSQL as a two-phase-commit participant
// (PREPARE TRANSACTION / COMMIT PREPARED) and as a shared coordinator log with
// leases for standby takeover, and the commit fence shared by coordinators and
// snapshot readers in several processes. Needs the `pg` package.

export { postgresBarrierDb } from './adapters/barrier.ts';
export {
  classifyPostgresError,
  createPostgresAdapter,
  type PostgresAdapter,
  type PostgresAdapterOptions,
  type PostgresBranch,
  type PostgresIsolationLevel,
} from './adapters/postgres.ts';
export {
  commitFenceLockKeyDefault,
  createPostgresCommitFence,
  type PostgresCommitFence,
  type PostgresCommitFenceOptions,
} from './runtime/commit-fence.ts';
export { openPostgresLog, type PostgresLog, type PostgresLogOptions } from './runtime/log/postgres.ts';
