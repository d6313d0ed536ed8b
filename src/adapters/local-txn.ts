// One local transaction on a pooled connection, for the modules that commit
// a record of their own together with the caller's business writes (the
// branch barrier, the inbox): begin, run the work, commit when it resolves,
// roll back when it throws, give the connection back. Drivers are passed in.

import type BetterSqlite3 from 'better-sqlite3';
import type { PoolConnection as MysqlConnection, Pool as MysqlPool } from 'mysql2/promise';
import type { PoolClient as PgClient, Pool as PgPool } from 'pg';

/** `begin`: the statement that opens it (an isolation level, READ ONLY). */
export async function pgTransaction<T>(
  pool: PgPool,
  work: (client: PgClient) => Promise<T>,
  begin = 'BEGIN',
): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query(begin);
    const out = await work(client);
    await client.query('COMMIT');
    return out;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    client.release();
  }
}

/** `begin`: the statements that open it (an isolation level, a consistent snapshot). */
export async function mariadbTransaction<T>(
  pool: MysqlPool,
  work: (conn: MysqlConnection) => Promise<T>,
  begin: readonly string[] = ['START TRANSACTION'],
): Promise<T> {
  const conn = await pool.getConnection();
  try {
    for (const statement of begin) await conn.query(statement);
    const out = await work(conn);
    await conn.query('COMMIT');
    return out;
  } catch (error) {
    await conn.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    conn.release();
  }
}

/**
 * Async transactions on one better-sqlite3 connection. The connection has one
 * transaction at a time, so each waits for the previous one (BEGIN IMMEDIATE:
 * the write lock is taken up front, so a transaction never fails half way
 * for want of it).
 */
export function sqliteTransactions(
  db: BetterSqlite3.Database,
): <T>(work: (db: BetterSqlite3.Database) => Promise<T>) => Promise<T> {
  let queue: Promise<unknown> = Promise.resolve();
  return <T>(work: (db: BetterSqlite3.Database) => Promise<T>): Promise<T> => {
    const run = async (): Promise<T> => {
      db.exec('BEGIN IMMEDIATE');
      try {
        const out = await work(db);
        db.exec('COMMIT');
        return out;
      } catch (error) {
        if (db.inTransaction) db.exec('ROLLBACK');
        throw error;
      }
    };
    const next = queue.then(run, run);
    queue = next.catch(() => undefined);
    return next;
  };
}
