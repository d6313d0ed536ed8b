// The durable log of the runtime: the port (./types.ts), its typed errors, and
// the two stores — an embedded SQLite file (the default) and a shared
// PostgreSQL table with leases for standby takeover. See docs/log.md.

export { isLogError, LogError, type LogErrorReason } from './errors.ts';
export {
  GroupCommitLog,
  type LogBackend,
  type StoredRow,
  serializeRecord,
  type WriteBatch,
} from './group-commit.ts';
export { openPostgresLog, type PostgresLog, type PostgresLogOptions } from './postgres.ts';
export { openSqliteLog, type SqliteLogOptions } from './sqlite.ts';
export type { DurableLog, LogOptions, LogStats } from './types.ts';
