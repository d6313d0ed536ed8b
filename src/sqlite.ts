// `dtx/sqlite`: the embedded SQLite participant (a key/value resource manager
// with durable prepared branches) and the default embedded coordinator log.
// Needs the `better-sqlite3` package (version 12 on Node 20).

export { sqliteBarrierDb } from './adapters/barrier.ts';
export {
  createSqliteAdapter,
  type JsonValue,
  type SqliteAdapter,
  type SqliteAdapterOptions,
  type SqliteBranch,
} from './adapters/sqlite.ts';
export { openSqliteLog, type SqliteLogOptions } from './runtime/log/sqlite.ts';
