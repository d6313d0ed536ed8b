// The idempotent inbox's table, on PostgreSQL, MariaDB/MySQL (InnoDB) or
// SQLite: one row per message id a consumer has dealt with, written in the
// SAME local transaction as the handler's business writes, so a message's
// effect and the record that it happened commit together or not at all. A
// redelivered message finds its row and is skipped. A dead-lettered message
// gets a row too (state `dead`, with the error), so it is visible in the
// database and never handled again.
//
// Drivers are passed in by the caller (pg, mysql2/promise, better-sqlite3);
// this module imports none of them.

import type BetterSqlite3 from 'better-sqlite3';
import type { PoolConnection as MysqlConnection, Pool as MysqlPool } from 'mysql2/promise';
import type { PoolClient as PgClient, Pool as PgPool } from 'pg';
import { mariadbTransaction, pgTransaction, sqliteTransactions } from './local-txn.ts';
import { checkOutboxTable } from './outbox.ts';

/** What the inbox records about a message. */
export interface InboxEntry {
  id: string;
  subject: string;
  streamSeq: number;
  deliveries: number;
  /** `done`: handled; `dead`: dead-lettered after too many failed deliveries. */
  state: 'done' | 'dead';
  error?: string;
}

/** Statements the inbox runs inside the current transaction. */
export interface InboxSql {
  /** Inserts the entry unless its id is recorded; true when this call inserted it. */
  record(entry: InboxEntry): Promise<boolean>;
}

/** A consumer's database; `Tx` is the transaction handle its handler gets. */
export interface InboxDb<Tx> {
  readonly kind: 'postgres' | 'mariadb' | 'sqlite';
  readonly table: string;
  /** Runs `work` in one local transaction; commits when it resolves, rolls back when it throws. */
  transaction<T>(work: (tx: Tx, sql: InboxSql) => Promise<T>): Promise<T>;
  /** Creates the inbox table if missing. */
  ensureSchema(): Promise<void>;
  /** The entry recorded for `id`, if any (for monitoring and tests). */
  entry(id: string): Promise<InboxEntry | undefined>;
}

const ddl = (table: string, text: string) =>
  `CREATE TABLE IF NOT EXISTS ${table} (id VARCHAR(200) NOT NULL PRIMARY KEY, subject VARCHAR(255) NOT NULL, ` +
  `stream_seq BIGINT NOT NULL, deliveries INTEGER NOT NULL, state VARCHAR(8) NOT NULL, error ${text}, ` +
  'recorded_ms BIGINT NOT NULL)';

const values = (e: InboxEntry) => [
  e.id,
  e.subject,
  e.streamSeq,
  e.deliveries,
  e.state,
  e.error ?? null,
  Date.now(),
];

interface RawEntry {
  id: string;
  subject: string;
  stream_seq: number | string;
  deliveries: number;
  state: string;
  error: string | null;
}

function toEntry(r: RawEntry | undefined): InboxEntry | undefined {
  if (r === undefined) return undefined;
  return {
    id: r.id,
    subject: r.subject,
    streamSeq: Number(r.stream_seq),
    deliveries: Number(r.deliveries),
    state: r.state === 'dead' ? 'dead' : 'done',
    ...(r.error === null ? {} : { error: r.error }),
  };
}

const insertColumns = '(id, subject, stream_seq, deliveries, state, error, recorded_ms)';
const selectEntry = (table: string, param: string) =>
  `SELECT id, subject, stream_seq, deliveries, state, error FROM ${table} WHERE id = ${param}`;

/** An inbox in a PostgreSQL database through a `pg` pool; handlers get the pool client inside the transaction. */
export function postgresInbox(pool: PgPool, options: { table?: string } = {}): InboxDb<PgClient> {
  const table = checkOutboxTable(options.table, 'dtx_inbox');
  return {
    kind: 'postgres',
    table,
    async ensureSchema() {
      await pool.query(ddl(table, 'TEXT'));
    },
    transaction(work) {
      return pgTransaction(pool, (client) =>
        work(client, {
          async record(e) {
            const r = await client.query(
              `INSERT INTO ${table} ${insertColumns} VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING`,
              values(e),
            );
            return r.rowCount === 1;
          },
        }),
      );
    },
    async entry(id) {
      return toEntry((await pool.query(selectEntry(table, '$1'), [id])).rows[0] as RawEntry | undefined);
    },
  };
}

/** An inbox in a MariaDB/MySQL database (InnoDB) through a `mysql2/promise` pool; handlers get the pool connection. */
export function mariadbInbox(pool: MysqlPool, options: { table?: string } = {}): InboxDb<MysqlConnection> {
  const table = checkOutboxTable(options.table, 'dtx_inbox');
  return {
    kind: 'mariadb',
    table,
    async ensureSchema() {
      await pool.query(`${ddl(table, 'LONGTEXT')} ENGINE=InnoDB`);
    },
    transaction(work) {
      return mariadbTransaction(pool, (conn) =>
        work(conn, {
          async record(e) {
            const [r] = await conn.query(
              `INSERT IGNORE INTO ${table} ${insertColumns} VALUES (?, ?, ?, ?, ?, ?, ?)`,
              values(e),
            );
            return (r as { affectedRows: number }).affectedRows === 1;
          },
        }),
      );
    },
    async entry(id) {
      const [rows] = await pool.query(selectEntry(table, '?'), [id]);
      return toEntry((rows as RawEntry[])[0]);
    },
  };
}

/**
 * An inbox in a SQLite file through a better-sqlite3 connection; handlers get
 * the connection. Transactions through one inbox run one at a time; do not
 * write through the same connection outside them while the consumer runs.
 */
export function sqliteInbox(
  db: BetterSqlite3.Database,
  options: { table?: string } = {},
): InboxDb<BetterSqlite3.Database> {
  const table = checkOutboxTable(options.table, 'dtx_inbox');
  const serial = sqliteTransactions(db);
  const sql: InboxSql = {
    async record(e) {
      return (
        db
          .prepare(`INSERT OR IGNORE INTO ${table} ${insertColumns} VALUES (?, ?, ?, ?, ?, ?, ?)`)
          .run(...values(e)).changes === 1
      );
    },
  };
  return {
    kind: 'sqlite',
    table,
    async ensureSchema() {
      db.exec(ddl(table, 'TEXT'));
    },
    transaction(work) {
      return serial((tx) => work(tx, sql));
    },
    async entry(id) {
      return toEntry(db.prepare(selectEntry(table, '?')).get(id) as RawEntry | undefined);
    },
  };
}

/** Creates the inbox table if missing. Nothing creates it implicitly. */
export function ensureInboxSchema(inbox: InboxDb<unknown>): Promise<void> {
  return inbox.ensureSchema();
}
