// The branch barrier for saga and TCC branch handlers on a real database
// (the rules of src/protocol/branch/service.ts, after dtm-labs/dtm): the
// barrier row of a call is written in the SAME local transaction as the
// business write, so a crash keeps both or neither.
//
// For a call (sagaId, branchId, op):
// - idempotency: a call whose row is already recorded runs nothing and
//   returns the first call's result (stored as JSON in the row);
// - null compensation: a `compensation`/`cancel` whose `action`/`try` never
//   ran here is recorded and succeeds as a no-op;
// - hanging prevention: that null compensation also records the action as
//   blocked, so an `action`/`try` arriving after it is refused with a
//   `DTX_BRANCH_HANGING` error and writes nothing.
// A handler that throws rolls back its writes and the barrier row together:
// the next call runs it again.
//
// Concurrency: two calls with the same key serialize on the row's primary
// key (PostgreSQL and InnoDB make the second insert wait for the first
// transaction); on SQLite, calls through one `BarrierDb` are serialized.
//
// Drivers are passed in by the caller (pg, mysql2/promise, better-sqlite3);
// this module imports none of them.

import type BetterSqlite3 from 'better-sqlite3';
import type { PoolConnection as MysqlConnection, Pool as MysqlPool } from 'mysql2/promise';
import type { PoolClient as PgClient, Pool as PgPool } from 'pg';
import { DtxError } from '../errors.ts';
import { barrierTablePattern } from '../runtime/limits.ts';
import { mariadbTransaction, pgTransaction, sqliteTransactions } from './local-txn.ts';

export type BarrierOp = 'action' | 'compensation' | 'try' | 'confirm' | 'cancel';

export interface BarrierKey {
  sagaId: string;
  branchId: string;
  op: BarrierOp;
}

/** What `withBarrier` did. */
export interface BarrierOutcome<T> {
  /**
   * `executed`: the handler ran and committed with its barrier row;
   * `duplicate`: the call was recorded already, nothing ran, `result` is the first call's;
   * `nullCompensation`: a compensation/cancel of an action/try that never ran here; nothing ran.
   */
  status: 'executed' | 'duplicate' | 'nullCompensation';
  /** The handler's result (JSON round-tripped for a duplicate); undefined for a null compensation. */
  result: T | undefined;
}

/** A database the barrier can write to, with the type of the transaction handle a handler gets. */
export interface BarrierDb<Tx> {
  readonly kind: 'postgres' | 'mariadb' | 'sqlite';
  readonly table: string;
  /** Runs `work` in one local transaction; commits when it resolves, rolls back when it throws. */
  transaction<T>(work: (tx: Tx, sql: SqlRunner) => Promise<T>): Promise<T>;
  /**
   * Runs `work` in one read-only transaction that reads one snapshot
   * (PostgreSQL REPEATABLE READ, MariaDB a consistent snapshot, SQLite a
   * transaction on the barrier's connection): what readers that respect
   * semantic locks (./semantic-lock.ts) read in.
   */
  readTransaction<T>(work: (tx: Tx) => Promise<T>): Promise<T>;
  /** Creates the barrier table if missing. `withBarrier` calls it once per `BarrierDb`. */
  ensureTable(): Promise<void>;
}

/** Dialect-neutral statements the barrier needs, run inside the current transaction. */
interface SqlRunner {
  /** Inserts the row unless its key exists; true when this call inserted it. */
  insertIgnore(key: BarrierKey, state: 'done' | 'blocked'): Promise<boolean>;
  /** The row's state and stored result, read under a shared lock (an exclusive one would deadlock InnoDB waiters). */
  select(key: BarrierKey): Promise<{ state: string; result: string | null } | undefined>;
  setResult(key: BarrierKey, result: string | null): Promise<void>;
}

function checkTable(table: string | undefined): string {
  const t = table ?? 'dtx_barrier';
  if (!barrierTablePattern.test(t)) {
    throw new DtxError(
      'DTX_INVALID_ARGUMENT',
      `barrier table ${JSON.stringify(t)} must match ${barrierTablePattern}`,
    );
  }
  return t;
}

const keyLimit = 128;

function checkKey(key: BarrierKey): void {
  for (const [name, v] of [
    ['sagaId', key.sagaId],
    ['branchId', key.branchId],
  ] as const) {
    if (typeof v !== 'string' || v.length === 0 || v.length > keyLimit) {
      throw new DtxError('DTX_INVALID_ARGUMENT', `barrier ${name} must be 1 to ${keyLimit} characters`);
    }
  }
  if (!['action', 'compensation', 'try', 'confirm', 'cancel'].includes(key.op)) {
    throw new DtxError('DTX_INVALID_ARGUMENT', `unknown barrier op ${JSON.stringify(key.op)}`);
  }
}

const ddl = (table: string, text: string) =>
  `CREATE TABLE IF NOT EXISTS ${table} (saga_id VARCHAR(${keyLimit}) NOT NULL, branch_id VARCHAR(${keyLimit}) NOT NULL, ` +
  `op VARCHAR(16) NOT NULL, state VARCHAR(8) NOT NULL, result ${text}, ` +
  `created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP, PRIMARY KEY (saga_id, branch_id, op))`;

/** A barrier on PostgreSQL through a `pg` pool; handlers get the pool client inside the transaction. */
export function postgresBarrierDb(pool: PgPool, options: { table?: string } = {}): BarrierDb<PgClient> {
  const table = checkTable(options.table);
  return {
    kind: 'postgres',
    table,
    async ensureTable() {
      await pool.query(ddl(table, 'TEXT'));
    },
    readTransaction(work) {
      return pgTransaction(pool, work, 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    },
    transaction(work) {
      return pgTransaction(pool, async (client) => {
        const sql: SqlRunner = {
          async insertIgnore(k, state) {
            const r = await client.query(
              `INSERT INTO ${table} (saga_id, branch_id, op, state) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`,
              [k.sagaId, k.branchId, k.op, state],
            );
            return r.rowCount === 1;
          },
          async select(k) {
            const r = await client.query(
              `SELECT state, result FROM ${table} WHERE saga_id = $1 AND branch_id = $2 AND op = $3 FOR SHARE`,
              [k.sagaId, k.branchId, k.op],
            );
            return r.rows[0] as { state: string; result: string | null } | undefined;
          },
          async setResult(k, result) {
            await client.query(
              `UPDATE ${table} SET result = $4 WHERE saga_id = $1 AND branch_id = $2 AND op = $3`,
              [k.sagaId, k.branchId, k.op, result],
            );
          },
        };
        return work(client, sql);
      });
    },
  };
}

/** A barrier on MariaDB/MySQL (InnoDB) through a `mysql2/promise` pool; handlers get the pool connection. */
export function mariadbBarrierDb(
  pool: MysqlPool,
  options: { table?: string } = {},
): BarrierDb<MysqlConnection> {
  const table = checkTable(options.table);
  return {
    kind: 'mariadb',
    table,
    async ensureTable() {
      await pool.query(`${ddl(table, 'LONGTEXT')} ENGINE=InnoDB`);
    },
    readTransaction(work) {
      return mariadbTransaction(pool, work, [
        'SET TRANSACTION ISOLATION LEVEL REPEATABLE READ',
        'START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY',
      ]);
    },
    transaction(work) {
      return mariadbTransaction(pool, async (conn) => {
        const sql: SqlRunner = {
          async insertIgnore(k, state) {
            const [r] = await conn.query(
              `INSERT IGNORE INTO ${table} (saga_id, branch_id, op, state) VALUES (?, ?, ?, ?)`,
              [k.sagaId, k.branchId, k.op, state],
            );
            return (r as { affectedRows: number }).affectedRows === 1;
          },
          async select(k) {
            const [rows] = await conn.query(
              `SELECT state, result FROM ${table} WHERE saga_id = ? AND branch_id = ? AND op = ? LOCK IN SHARE MODE`,
              [k.sagaId, k.branchId, k.op],
            );
            return (rows as { state: string; result: string | null }[])[0];
          },
          async setResult(k, result) {
            await conn.query(
              `UPDATE ${table} SET result = ? WHERE saga_id = ? AND branch_id = ? AND op = ?`,
              [result, k.sagaId, k.branchId, k.op],
            );
          },
        };
        return work(conn, sql);
      });
    },
  };
}

/**
 * A barrier on a SQLite file through a better-sqlite3 connection. The
 * connection has one transaction at a time, so every `transaction()` through
 * this `BarrierDb` waits for the previous one; do not write through the same
 * connection outside it while a barrier call runs.
 */
export function sqliteBarrierDb(
  db: BetterSqlite3.Database,
  options: { table?: string } = {},
): BarrierDb<BetterSqlite3.Database> {
  const table = checkTable(options.table);
  const serial = sqliteTransactions(db);
  const sql: SqlRunner = {
    async insertIgnore(k, state) {
      const r = db
        .prepare(`INSERT OR IGNORE INTO ${table} (saga_id, branch_id, op, state) VALUES (?, ?, ?, ?)`)
        .run(k.sagaId, k.branchId, k.op, state);
      return r.changes === 1;
    },
    async select(k) {
      return db
        .prepare(`SELECT state, result FROM ${table} WHERE saga_id = ? AND branch_id = ? AND op = ?`)
        .get(k.sagaId, k.branchId, k.op) as { state: string; result: string | null } | undefined;
    },
    async setResult(k, result) {
      db.prepare(`UPDATE ${table} SET result = ? WHERE saga_id = ? AND branch_id = ? AND op = ?`).run(
        result,
        k.sagaId,
        k.branchId,
        k.op,
      );
    },
  };
  return {
    kind: 'sqlite',
    table,
    async ensureTable() {
      db.exec(ddl(table, 'TEXT'));
    },
    transaction<T>(work: (tx: BetterSqlite3.Database, sql: SqlRunner) => Promise<T>): Promise<T> {
      return serial((tx) => work(tx, sql));
    },
    readTransaction<T>(work: (tx: BetterSqlite3.Database) => Promise<T>): Promise<T> {
      // One transaction at a time on the connection: a SQLite transaction is serializable.
      return serial(work);
    },
  };
}

const ready = new WeakMap<object, Promise<void>>();

function ensure(db: BarrierDb<unknown>): Promise<void> {
  let p = ready.get(db);
  if (p === undefined) {
    p = db.ensureTable();
    ready.set(db, p);
    p.catch(() => ready.delete(db));
  }
  return p;
}

/** The forward op a compensating op undoes, or null. */
function originOf(op: BarrierOp): BarrierOp | null {
  return op === 'compensation' ? 'action' : op === 'cancel' ? 'try' : null;
}

/**
 * Runs `work` (the branch's business writes, on `tx`) in one local
 * transaction together with the barrier row of `key`. The result must be
 * JSON-serializable: it is stored so that a repeated call returns it.
 */
export async function withBarrier<Tx, T>(
  db: BarrierDb<Tx>,
  key: BarrierKey,
  work: (tx: Tx) => Promise<T>,
): Promise<BarrierOutcome<T>> {
  checkKey(key);
  await ensure(db as BarrierDb<unknown>);
  return db.transaction(async (tx, sql) => {
    const origin = originOf(key.op);
    if (origin !== null) {
      // Block the origin if it has not run: this is both the null-compensation
      // test and the hanging guard.
      const originKey = { ...key, op: origin };
      if (await sql.insertIgnore(originKey, 'blocked')) {
        await sql.insertIgnore(key, 'done');
        return { status: 'nullCompensation', result: undefined };
      }
    }
    if (!(await sql.insertIgnore(key, 'done'))) {
      const row = await sql.select(key);
      if (row?.state === 'blocked') {
        throw new DtxError(
          'DTX_BRANCH_HANGING',
          `${key.op} of ${key.sagaId}/${key.branchId} arrived after its ${key.op === 'try' ? 'cancel' : 'compensation'}; refused`,
        );
      }
      const stored = row?.result ?? null;
      return { status: 'duplicate', result: stored === null ? undefined : (JSON.parse(stored) as T) };
    }
    const result = await work(tx);
    // The row was inserted with a NULL result, which is what a handler that
    // returns nothing stores: only a result costs the round trip of an UPDATE.
    if (result !== undefined) await sql.setResult(key, JSON.stringify(result));
    return { status: 'executed', result };
  });
}
