// `dtx/mysql`: MariaDB (10.5+) or MySQL (5.7.7+) as a two-phase-commit
// participant through XA. Needs the `mysql2` package.

export { mariadbBarrierDb, mariadbBarrierDb as mysqlBarrierDb } from './adapters/barrier.ts';
export {
  classifyMariaDbError,
  createMariaDbAdapter,
  createMariaDbAdapter as createMysqlAdapter,
  type MariaDbAdapter,
  type MariaDbAdapterOptions,
  type MariaDbBranch,
  type MariaDbIsolationLevel,
} from './adapters/mariadb.ts';
