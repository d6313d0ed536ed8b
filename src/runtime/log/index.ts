// The durable log of the runtime: the port (./types.ts), its typed errors, and
// the two stores — an embedded SQLite file (the default) and a shared
// PostgreSQL table with leases for standby takeover. See docs/log.md.

export { coordinatorIdPattern, ownerLeaseTtlMsDefault } from '../limits.ts';
export { isLogError, LogError, type LogErrorReason } from './errors.ts';
export {
  GroupCommitLog,
  type LogBackend,
  type StoredRow,
  serializeRecord,
  type WriteBatch,
} from './group-commit.ts';
export { generateCoordinatorId } from './identity.ts';
export {
  openPostgresLog,
  type PostgresLog,
  type PostgresLogOptions,
  uniqueHolderId,
} from './postgres.ts';
export { openSqliteLog, type SqliteLogOptions } from './sqlite.ts';
export {
  type DurableLog,
  type LogIdentity,
  type LogOptions,
  type LogProtocol,
  type LogStats,
  logProtocols,
} from './types.ts';
