// The shared durable log: coordinator logs in one PostgreSQL database, for
// deployments where a standby coordinator must be able to take over a crashed
// one's log (the SQLite log, ./sqlite.ts, lives on one machine's disk).
//
// Layout: one table `<table>(seq bigserial, owner text, record jsonb)`; every
// coordinator writes and loads only the rows of its `owner`, so several share
// one database and a standby that takes over an owner loads exactly its log.
// A write batch (./group-commit.ts) is one transaction: `BEGIN`, `SET LOCAL
// synchronous_commit TO on` (COMMIT returns only once the WAL is flushed, even
// on a server whose default is off), a DELETE of the owner's rows for a
// checkpoint, one multi-row INSERT, `COMMIT`. Each log holds one connection
// for its life, so its writes are strictly ordered; `seq` orders its rows.
//
// Leases, for standby takeover, live in `<table>_lease(name, holder,
// expires_at)` and are timed by the database's clock (`now()`), so coordinator
// clocks never need to agree. A lease lapses `ttlMs` after it was last taken
// or renewed, and a lapsed lease goes to the next `acquireLease`. Time alone
// cannot stop a paused primary from writing after its lease lapsed, so a log
// opened with `fence` also checks, inside every write transaction and under a
// row lock (`FOR SHARE`), that its holder still holds the lease: once a
// standby has acquired it, the old primary's writes fail with reason `fenced`
// and write nothing, and a write that got in first commits before the
// standby's acquisition does (the lock makes it wait), so the standby's
// `load()` sees it.
//
// Table names are validated against a strict pattern and then double-quoted;
// every value (owner, records, lease fields) is a bound parameter. `pg` is
// loaded when a log is opened, so importing this module does not require it.

import type { Client, Pool, PoolClient } from 'pg';
import { LogError } from './errors.ts';
import { GroupCommitLog, type LogBackend, type StoredRow, type WriteBatch } from './group-commit.ts';
import type { DurableLog, LogOptions } from './types.ts';

export interface PostgresLogOptions<R> extends LogOptions<R> {
  /** Whose log this is: rows are written and loaded for this owner only. 1 to 200 characters, no NUL. */
  owner: string;
  /**
   * The log table, `name` or `schema.name`, each part matching `[a-z_][a-z0-9_]*`
   * (name at most 52 characters, schema at most 63). Default `dtx_log`. Created
   * with `<name>_lease` when missing; a schema must already exist.
   */
  table?: string;
  /**
   * Refuse to write unless `holder` holds lease `lease` (see the module comment).
   * Acquire the lease before the first write; writes fail with reason `fenced` otherwise.
   */
  fence?: { lease: string; holder: string };
}

export interface PostgresLog<R> extends DurableLog<R> {
  /**
   * Takes lease `name` for `holder` for `ttlMs` (database time), if it is free,
   * lapsed, or already `holder`'s (then it is renewed). True when `holder`
   * holds it afterwards. To be safe against clock rate differences, treat the
   * lease as yours for somewhat less than `ttlMs`, counted from before the call.
   */
  acquireLease(name: string, holder: string, ttlMs: number): Promise<boolean>;
  /**
   * Extends `holder`'s lease to `ttlMs` from now. False when someone else has
   * acquired it (or it was released); a lapsed lease nobody took is renewed.
   */
  renewLease(name: string, holder: string, ttlMs: number): Promise<boolean>;
  /** Gives the lease up. False when `holder` did not hold it. */
  releaseLease(name: string, holder: string): Promise<boolean>;
}

/** One identifier part: lowercase, so quoting never changes its meaning. */
const identifierPattern = /^[a-z_][a-z0-9_]*$/;
/** Leaves room for the `_owner_seq` index suffix within PostgreSQL's 63-byte identifiers. */
export const tableNameCharsMax = 52;
const schemaNameCharsMax = 63;
/** Owners, lease names and holders. */
export const leaseFieldCharsMax = 200;

interface TableNames {
  /** For messages: `schema.name` or `name`. */
  display: string;
  /** Quoted, schema-qualified when a schema was given. */
  log: string;
  lease: string;
  /** Unqualified: CREATE INDEX puts the index in the table's schema. */
  index: string;
}

function quote(part: string): string {
  return `"${part}"`;
}

/** Validates `table` and returns the quoted names derived from it; throws a TypeError otherwise. */
export function tableNames(table: string): TableNames {
  if (typeof table !== 'string') throw new TypeError('table must be a string');
  const parts = table.split('.');
  const name = parts.length === 1 ? parts[0]! : parts.length === 2 ? parts[1]! : '';
  const schema = parts.length === 2 ? parts[0]! : undefined;
  const valid =
    identifierPattern.test(name) &&
    name.length <= tableNameCharsMax &&
    (schema === undefined || (identifierPattern.test(schema) && schema.length <= schemaNameCharsMax));
  if (!valid) {
    throw new TypeError(
      `table must be "name" or "schema.name", each part [a-z_][a-z0-9_]* (name at most ` +
        `${tableNameCharsMax} characters, schema at most ${schemaNameCharsMax}), got ${JSON.stringify(table)}`,
    );
  }
  const prefix = schema === undefined ? '' : `${quote(schema)}.`;
  return {
    display: table,
    log: `${prefix}${quote(name)}`,
    lease: `${prefix}${quote(`${name}_lease`)}`,
    index: quote(`${name}_owner_seq`),
  };
}

function checkText(value: unknown, what: string): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > leaseFieldCharsMax) {
    throw new TypeError(`${what} must be a string of 1 to ${leaseFieldCharsMax} characters`);
  }
  if (value.includes('\u0000')) throw new TypeError(`${what} may not contain NUL characters`);
  return value;
}

function checkTtl(ttlMs: unknown): number {
  if (typeof ttlMs !== 'number' || !Number.isSafeInteger(ttlMs) || ttlMs <= 0) {
    throw new RangeError(`ttlMs must be a positive integer, got ${String(ttlMs)}`);
  }
  return ttlMs;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Runs operations on the log's one connection one at a time, so a lease query never lands inside a write transaction. */
class ConnectionLock {
  #tail: Promise<unknown> = Promise.resolve();

  run<T>(operation: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(operation);
    this.#tail = result.catch(() => undefined);
    return result;
  }
}

type Connection = Client | PoolClient;

class PgLog<R> extends GroupCommitLog<R> implements PostgresLog<R> {
  readonly #leases: LeaseOps;

  constructor(backend: LogBackend, leases: LeaseOps, options: LogOptions<R>) {
    super(backend, options);
    this.#leases = leases;
  }

  acquireLease(name: string, holder: string, ttlMs: number): Promise<boolean> {
    return this.#leases.acquire(name, holder, ttlMs);
  }

  renewLease(name: string, holder: string, ttlMs: number): Promise<boolean> {
    return this.#leases.renew(name, holder, ttlMs);
  }

  releaseLease(name: string, holder: string): Promise<boolean> {
    return this.#leases.release(name, holder);
  }
}

interface LeaseOps {
  acquire(name: string, holder: string, ttlMs: number): Promise<boolean>;
  renew(name: string, holder: string, ttlMs: number): Promise<boolean>;
  release(name: string, holder: string): Promise<boolean>;
}

/**
 * Opens the log of `options.owner` in the database at `connection` (a
 * connection string, or a pool to borrow one connection from for the log's
 * life), creating the tables when missing.
 */
export async function openPostgresLog<R>(
  connection: string | Pool,
  options: PostgresLogOptions<R>,
): Promise<PostgresLog<R>> {
  const owner = checkText(options?.owner, 'owner');
  const names = tableNames(options.table ?? 'dtx_log');
  const fence =
    options.fence === undefined
      ? undefined
      : {
          lease: checkText(options.fence.lease, 'fence.lease'),
          holder: checkText(options.fence.holder, 'fence.holder'),
        };
  const description = `PostgreSQL log ${names.display} (owner ${JSON.stringify(owner)})`;
  const unavailable = (doing: string, error: unknown) =>
    new LogError('unavailable', `${description}: ${doing} failed: ${messageOf(error)}`, { cause: error });

  let client: Connection;
  let ownsClient: boolean;
  try {
    if (typeof connection === 'string') {
      const { default: pg } = await import('pg');
      client = new pg.Client({ connectionString: connection, application_name: 'dtx-log' });
      ownsClient = true;
      await client.connect();
    } else {
      client = await connection.connect();
      ownsClient = false;
    }
  } catch (error) {
    throw unavailable('connecting', error);
  }
  // A connection that breaks while idle emits 'error'; without a listener that would crash the process.
  let broken: unknown;
  const onError = (error: unknown) => {
    broken ??= error;
  };
  client.on('error', onError);
  let released = false;
  const release = async (discard: boolean) => {
    if (released) return;
    released = true;
    if (ownsClient) {
      await (client as Client).end().catch(() => undefined);
      client.off('error', onError);
    } else {
      client.off('error', onError);
      (client as PoolClient).release(discard || broken !== undefined ? true : undefined);
    }
  };

  try {
    await client.query('BEGIN');
    // CREATE TABLE IF NOT EXISTS is not safe against a concurrent creator; serialize the creators.
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`dtx_log:${names.display}`]);
    await client.query(
      `CREATE TABLE IF NOT EXISTS ${names.log} (seq bigserial PRIMARY KEY, owner text NOT NULL, record jsonb NOT NULL)`,
    );
    await client.query(`CREATE INDEX IF NOT EXISTS ${names.index} ON ${names.log} (owner, seq)`);
    await client.query(
      `CREATE TABLE IF NOT EXISTS ${names.lease} (name text PRIMARY KEY, holder text NOT NULL, expires_at timestamptz NOT NULL)`,
    );
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    await release(true);
    throw unavailable('creating the tables', error);
  }

  const lock = new ConnectionLock();
  let closed = false;
  const use = <T>(doing: string, operation: () => Promise<T>): Promise<T> =>
    lock.run(async () => {
      if (closed) throw new LogError('closed', `${description} is closed`);
      if (broken !== undefined) throw unavailable(doing, broken);
      return operation();
    });

  const backend: LogBackend = {
    description,
    write: (batch: WriteBatch) =>
      lock.run(async () => {
        if (broken !== undefined) throw broken;
        await client.query('BEGIN; SET LOCAL synchronous_commit TO on');
        try {
          if (fence !== undefined) {
            const held = await client.query(
              `SELECT 1 FROM ${names.lease} WHERE name = $1 AND holder = $2 FOR SHARE`,
              [fence.lease, fence.holder],
            );
            if (held.rowCount !== 1) {
              throw new LogError(
                'fenced',
                `${description}: ${JSON.stringify(fence.holder)} does not hold lease ` +
                  `${JSON.stringify(fence.lease)}, so it may not write (another coordinator has taken over); ` +
                  'nothing was written',
              );
            }
          }
          if (batch.replace) await client.query(`DELETE FROM ${names.log} WHERE owner = $1`, [owner]);
          if (batch.texts.length > 0) {
            await client.query(
              `INSERT INTO ${names.log} (owner, record) ` +
                'SELECT $1, r FROM unnest($2::jsonb[]) WITH ORDINALITY AS u (r, i) ORDER BY i',
              [owner, batch.texts],
            );
          }
        } catch (error) {
          await client.query('ROLLBACK').catch(() => undefined);
          throw error;
        }
        await client.query('COMMIT');
      }),
    read: () =>
      use('load', async () => {
        // Aliases differ from the column names: ORDER BY seq must sort the bigint, not its text.
        const result = await client.query<{ seq_text: string; record_text: string }>(
          `SELECT seq::text AS seq_text, record::text AS record_text FROM ${names.log} ` +
            'WHERE owner = $1 ORDER BY seq',
          [owner],
        );
        return result.rows.map((row): StoredRow => ({ seq: row.seq_text, text: row.record_text }));
      }),
    close: (discard: boolean) =>
      lock.run(async () => {
        closed = true;
        await release(discard);
      }),
  };

  const leaseQuery = (doing: string, sql: string, params: unknown[]) =>
    use(doing, async () => {
      try {
        const result = await client.query(sql, params);
        return result.rowCount === 1;
      } catch (error) {
        throw unavailable(doing, error);
      }
    });
  const interval = `now() + $3::float8 * interval '1 millisecond'`;
  const leases: LeaseOps = {
    acquire: async (name, holder, ttlMs) =>
      leaseQuery(
        'acquireLease',
        `INSERT INTO ${names.lease} AS l (name, holder, expires_at) VALUES ($1, $2, ${interval}) ` +
          'ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at ' +
          'WHERE l.holder = EXCLUDED.holder OR l.expires_at <= now()',
        [checkText(name, 'lease name'), checkText(holder, 'holder'), checkTtl(ttlMs)],
      ),
    renew: async (name, holder, ttlMs) =>
      leaseQuery(
        'renewLease',
        `UPDATE ${names.lease} SET expires_at = ${interval} WHERE name = $1 AND holder = $2`,
        [checkText(name, 'lease name'), checkText(holder, 'holder'), checkTtl(ttlMs)],
      ),
    release: async (name, holder) =>
      leaseQuery('releaseLease', `DELETE FROM ${names.lease} WHERE name = $1 AND holder = $2`, [
        checkText(name, 'lease name'),
        checkText(holder, 'holder'),
      ]),
  };

  return new PgLog<R>(backend, leases, options);
}
