// The resource-adapter layer's public surface: the port, gid rules, and the
// three adapters. Importing it loads no database driver; each create* function
// loads its own (pg, mysql2, better-sqlite3) when first called.

export { sqliteKeyLengthMax } from '../runtime/limits.ts';
export {
  checkGid,
  checkGidPrefix,
  gidLimits,
  gidLiteral,
  gidPattern,
  isValidGid,
  makeGid,
  sqlStringLiteral,
} from './gid.ts';
export {
  classifyMariaDbError,
  createMariaDbAdapter,
  gidToXid,
  MariaDbAdapter,
  type MariaDbAdapterOptions,
  MariaDbBranch,
  type MariaDbIsolationLevel,
  xaSurvivesDisconnect,
} from './mariadb.ts';
export {
  classifyPostgresError,
  createPostgresAdapter,
  PostgresAdapter,
  type PostgresAdapterOptions,
  PostgresBranch,
  type PostgresIsolationLevel,
} from './postgres.ts';
export {
  createSqliteAdapter,
  type JsonValue,
  SqliteAdapter,
  type SqliteAdapterOptions,
  SqliteBranch,
} from './sqlite.ts';
export type {
  Branch,
  BranchState,
  PreparedBranchInfo,
  Resolution,
  ResourceAdapter,
  SqlBranch,
  SqlResult,
  SqlRow,
  Vote,
} from './types.ts';
