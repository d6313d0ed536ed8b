// `dtx/postgres`: PostgreSQL as a two-phase-commit participant
// (PREPARE TRANSACTION / COMMIT PREPARED) and as a shared coordinator log with
// leases for standby takeover. Needs the `pg` package.

export { postgresBarrierDb } from './adapters/barrier.ts';
export {
  classifyPostgresError,
  createPostgresAdapter,
  type PostgresAdapter,
  type PostgresAdapterOptions,
  type PostgresBranch,
  type PostgresIsolationLevel,
} from './adapters/postgres.ts';
export { openPostgresLog, type PostgresLog, type PostgresLogOptions } from './runtime/log/postgres.ts';
