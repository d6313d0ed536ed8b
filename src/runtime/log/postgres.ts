// The shared durable log: coordinator logs in one PostgreSQL database, for
// deployments where a standby coordinator must be able to take over a crashed
// one's log (the SQLite log, ./sqlite.ts, lives on one machine's disk).
//
// Layout: one table `<table>(seq bigserial, owner text, record jsonb, at timestamptz)`; every
// coordinator writes and loads only the rows of its `owner`, so several share
// one database and a standby that takes over an owner loads exactly its log.
// A write batch (./group-commit.ts) is one transaction: `BEGIN`, `SET LOCAL
// synchronous_commit TO on` (COMMIT returns only once the WAL is flushed, even
// on a server whose default is off), a DELETE of the owner's rows for a
// checkpoint, one multi-row INSERT, `COMMIT`. Each log holds one connection
// for its life, so its writes are strictly ordered; `seq` orders its rows.
//
// Ownership: every open takes the owner's lease in `<table>_lease(name,
// holder, expires_at)` (name `dtx-log:<owner>` by default, holder unique per
// open) before it reads anything, renews it every ttl/3 on an unref'd timer,
// and releases it on close. Leases are timed by the database's clock
// (`now()`), so coordinator clocks never need to agree. An opener that finds
// the lease held waits out its expiry once: a dead holder stops renewing and
// the lease passes on; a live one renews it, and the open fails with reason
// `locked` naming the holder (or keeps waiting, with `lease.wait`: a standby).
// Time alone cannot stop a paused primary from writing after its lease
// lapsed, so every write transaction also checks, under a row lock (`FOR
// SHARE`), that its holder still holds the lease: once a standby has acquired
// it, the old primary's writes fail with reason `fenced` and write nothing,
// and a write that got in first commits before the standby's acquisition
// does (the lock makes it wait), so the standby's `load()` sees it. A lease
// found lost (renewal refused, or failing for a whole ttl) resolves `lost`.
//
// Identity: `<table>_meta(owner, identity)` holds each owner's identity
// (./identity.ts); the tables and that row are created only with `create`.
//
// Table names are validated against a strict pattern and then double-quoted;
// every value (owner, records, lease fields) is a bound parameter. `pg` is
// loaded when a log is opened, so importing this module does not require it.

import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Client, Pool, PoolClient } from 'pg';
import {
  identifierPattern,
  leaseFieldCharsMax,
  ownerLeaseTtlMsDefault,
  schemaNameCharsMax,
  tableNameCharsMax,
} from '../limits.ts';
import { LogError } from './errors.ts';
import {
  GroupCommitLog,
  type LogBackend,
  type LogMeta,
  type StoredRow,
  type WriteBatch,
} from './group-commit.ts';
import { checkIdentity, checkIdentityOptions, newIdentity, noIdentity, parseIdentity } from './identity.ts';
import type { DurableLog, LogIdentity, LogOptions } from './types.ts';

/**
 * A lease holder id unique to one open: host and pid for the operator, plus
 * random bits, because two opens in one process (or a pid reused after a
 * restart) must never pass for the same holder.
 */
export function uniqueHolderId(): string {
  return `${hostname().slice(0, 40)}-${process.pid}-${randomBytes(6).toString('hex')}`;
}

export interface PostgresLogOptions<R> extends LogOptions<R> {
  /** Whose log this is: rows are written and loaded for this owner only. 1 to 200 characters, no NUL. */
  owner: string;
  /**
   * The log table, `name` or `schema.name`, each part matching `[a-z_][a-z0-9_]*`
   * (name at most 52 characters, schema at most 63). Default `dtx_log`. Created
   * with `<name>_lease` and `<name>_meta` (with `create: true`) when missing; a
   * schema must already exist.
   */
  table?: string;
  /**
   * The owner lease every open takes (see the module comment). `name`
   * defaults to `dtx-log:<owner>` (every opener of one owner must use the
   * same name, or they would not exclude each other), `holder` to a fresh unique id, `ttlMs` to
   * 10,000. With `wait`, opening waits (polling every `pollMs`, default
   * ttlMs / 4) for a live holder to go away instead of failing with reason
   * `locked`: a standby. `onWaiting` is called once when it starts waiting.
   */
  lease?: {
    name?: string;
    holder?: string;
    ttlMs?: number;
    wait?: boolean;
    pollMs?: number;
    onWaiting?: (holder: string) => void;
  };
}

export interface PostgresLog<R> extends DurableLog<R>, AsyncDisposable {
  /** The owner lease this instance holds (its name and its unique holder id). */
  readonly ownerLease: { name: string; holder: string; ttlMs: number };
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

interface TableNames {
  /** For messages: `schema.name` or `name`. */
  display: string;
  /** Quoted, schema-qualified when a schema was given. */
  log: string;
  lease: string;
  meta: string;
  /** For to_regclass: the meta table's name as text. */
  metaText: string;
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
    meta: `${prefix}${quote(`${name}_meta`)}`,
    metaText: `${prefix}${quote(`${name}_meta`)}`,
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
  readonly ownerLease: { name: string; holder: string; ttlMs: number };

  constructor(
    backend: LogBackend,
    leases: LeaseOps,
    options: LogOptions<R>,
    meta: LogMeta,
    ownerLease: { name: string; holder: string; ttlMs: number },
  ) {
    super(backend, options, meta);
    this.#leases = leases;
    this.ownerLease = ownerLease;
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

const sleep = (ms: number) =>
  new Promise<void>((resolve) => {
    setTimeout(resolve, ms).unref();
  });

/** The checked settings of one open, shared by the steps below. */
interface OpenSettings {
  owner: string;
  names: TableNames;
  leaseName: string;
  holder: string;
  ttlMs: number;
  pollMs: number;
  create: boolean;
  description: string;
  /** The SQL that takes (or renews, for its holder) a lease: $1 name, $2 holder, $3 ttl in ms. */
  acquireSql: string;
  unavailable: (doing: string, error: unknown) => LogError;
}

/** The connection's mutable state, read by every operation of the open log. */
interface ConnectionState {
  /** Set once the connection broke while idle. */
  broken: unknown;
  closed: boolean;
  lostError: LogError | undefined;
  renewTimer: ReturnType<typeof setInterval> | undefined;
}

const leaseInterval = `now() + $3::float8 * interval '1 millisecond'`;

/**
 * Opens the log of `options.owner` in the database at `connection` (a
 * connection string, or a pool to borrow one connection from for the log's
 * life). Takes the owner lease first (see the module comment): while another
 * live instance holds it, fails with reason `locked` naming that holder (or
 * waits, with `lease.wait`). Creates the tables and the owner's identity only
 * with `create: true`; otherwise a missing log is reason `notFound`.
 */
export async function openPostgresLog<R>(
  connection: string | Pool,
  options: PostgresLogOptions<R>,
): Promise<PostgresLog<R>> {
  // Split into its steps (settings, connecting, tables, identity, ownership,
  // then the backend, lease operations and renewal timer) so each is short
  // enough to review alone; they run in the same order as before, and share
  // the connection's mutable state through one ConnectionState object.
  const settings = openSettings(options);
  const { client, ownsClient } = await connectClient(connection, settings);
  const state: ConnectionState = {
    broken: undefined,
    closed: false,
    lostError: undefined,
    renewTimer: undefined,
  };
  const release = watchConnection(client, ownsClient, state);
  const identity = await takeOwnership(client, settings, options, release);

  const lock = new ConnectionLock();
  let onLost: (error: LogError) => void = () => {};
  const lost = new Promise<LogError>((resolve) => {
    onLost = resolve;
  });
  const loseLease = (why: string) => {
    if (state.lostError !== undefined || state.closed) return;
    state.lostError = new LogError(
      'fenced',
      `${settings.description}: lost the owner lease ${JSON.stringify(settings.leaseName)} (${why}); another coordinator may ` +
        'own the log now, so this one may write nothing more',
    );
    onLost(state.lostError);
  };
  const use = <T>(doing: string, operation: () => Promise<T>): Promise<T> =>
    lock.run(async () => {
      if (state.closed) throw new LogError('closed', `${settings.description} is closed`);
      if (state.broken !== undefined) throw settings.unavailable(doing, state.broken);
      return operation();
    });

  const backend = postgresBackend(client, settings, state, lock, use, loseLease, release);
  const leases = leaseOps(client, settings, use);
  startRenewal(settings, state, leases, loseLease);
  const { leaseName, holder, ttlMs } = settings;
  return new PgLog<R>(backend, leases, options, { identity, lost }, { name: leaseName, holder, ttlMs });
}

/** Checks the options (before anything is touched) and derives the names, lease fields and SQL used below. */
function openSettings<R>(options: PostgresLogOptions<R>): OpenSettings {
  const owner = checkText(options?.owner, 'owner');
  const names = tableNames(options.table ?? 'dtx_log');
  checkIdentityOptions(options);
  const leaseName = checkText(options.lease?.name ?? `dtx-log:${owner}`, 'lease.name');
  const holder = checkText(options.lease?.holder ?? uniqueHolderId(), 'lease.holder');
  const ttlMs = checkTtl(options.lease?.ttlMs ?? ownerLeaseTtlMsDefault);
  const pollMs = options.lease?.pollMs ?? Math.max(10, Math.floor(ttlMs / 4));
  const create = options.create === true;
  const description = `PostgreSQL log ${names.display} (owner ${JSON.stringify(owner)})`;
  const unavailable = (doing: string, error: unknown) =>
    new LogError('unavailable', `${description}: ${doing} failed: ${messageOf(error)}`, { cause: error });
  const acquireSql =
    `INSERT INTO ${names.lease} AS l (name, holder, expires_at) VALUES ($1, $2, ${leaseInterval}) ` +
    'ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at ' +
    'WHERE l.holder = EXCLUDED.holder OR l.expires_at <= now()';
  return { owner, names, leaseName, holder, ttlMs, pollMs, create, description, acquireSql, unavailable };
}

/** Connects (or borrows a pooled connection) and bounds how long it may idle inside a transaction. */
async function connectClient(
  connection: string | Pool,
  settings: OpenSettings,
): Promise<{ client: Connection; ownsClient: boolean }> {
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
    // A write transaction holds the lease row FOR SHARE; a process paused in
    // the middle of one (GC, SIGSTOP, a VM pause) would block every takeover
    // for as long as it stays paused. The server ends such a session once it
    // has idled in a transaction for a lease's ttl: its write fails (nothing
    // written), and the lease is free to pass on.
    await client.query(`SET idle_in_transaction_session_timeout = ${settings.ttlMs}`);
  } catch (error) {
    throw settings.unavailable('connecting', error);
  }
  return { client, ownsClient };
}

/** Records a connection that breaks while idle; returns the one-shot release (end, or give back to the pool). */
function watchConnection(
  client: Connection,
  ownsClient: boolean,
  state: ConnectionState,
): (discard: boolean) => Promise<void> {
  // A connection that breaks while idle emits 'error'; without a listener that would crash the process.
  const onError = (error: unknown) => {
    state.broken ??= error;
  };
  client.on('error', onError);
  let released = false;
  return async (discard: boolean) => {
    if (released) return;
    released = true;
    if (ownsClient) {
      await (client as Client).end().catch(() => undefined);
      client.off('error', onError);
    } else {
      client.off('error', onError);
      (client as PoolClient).release(discard || state.broken !== undefined ? true : undefined);
    }
  };
}

/**
 * Creates the tables (with `create`), checks the log exists, takes the owner
 * lease and settles the identity. On any failure gives the lease back (if
 * taken) and discards the connection.
 */
async function takeOwnership<R>(
  client: Connection,
  settings: OpenSettings,
  options: PostgresLogOptions<R>,
  release: (discard: boolean) => Promise<void>,
): Promise<LogIdentity> {
  const { description, create, names, leaseName, holder } = settings;
  let holdsLease = false;
  try {
    if (create) await createTables(client, settings);
    // Existence first, read-only: a missing log must leave nothing behind, not even a lease row.
    let stored = await readIdentity(client, settings);
    if (stored === undefined && !create) {
      // Rows without an identity: a log written by an earlier dtx, not a missing one.
      const older = await client
        .query(`SELECT 1 FROM ${names.log} WHERE owner = $1 LIMIT 1`, [settings.owner])
        .catch(() => ({ rowCount: 0 }));
      if (older.rowCount === 1) throw noIdentity(description);
      throw new LogError(
        'notFound',
        `${description} does not exist (no identity row in ${names.display}_meta); nothing was created ` +
          '(create it explicitly: `dtx bench --init`, or `create: true`)',
      );
    }
    if (stored !== undefined) checkIdentity(description, parseIdentity(description, stored), options);

    // Exclusive ownership before anything is read for recovery.
    await acquireOwnerLease(client, settings, options);
    holdsLease = true;

    // Under the lease, so that two creators cannot give one owner two identities.
    stored ??= await readIdentity(client, settings);
    const identity = await settleIdentity(client, settings, options, stored);
    checkIdentity(description, identity, options);
    return identity;
  } catch (error) {
    if (holdsLease) {
      await client
        .query(`DELETE FROM ${names.lease} WHERE name = $1 AND holder = $2`, [leaseName, holder])
        .catch(() => undefined);
    }
    await release(true);
    throw error;
  }
}

/** Creates (or upgrades) the log, lease and meta tables in one transaction, serialized against other creators. */
async function createTables(client: Connection, settings: OpenSettings): Promise<void> {
  const { names } = settings;
  try {
    await client.query('BEGIN');
    // CREATE TABLE IF NOT EXISTS is not safe against a concurrent creator; serialize the creators.
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`dtx_log:${names.display}`]);
    await client.query(
      `CREATE TABLE IF NOT EXISTS ${names.log} (seq bigserial PRIMARY KEY, owner text NOT NULL, record jsonb NOT NULL, ` +
        'at timestamptz NOT NULL DEFAULT now())',
    );
    // Logs created before records had times get the column; their old rows show the time of this upgrade.
    await client.query(
      `ALTER TABLE ${names.log} ADD COLUMN IF NOT EXISTS at timestamptz NOT NULL DEFAULT now()`,
    );
    await client.query(`CREATE INDEX IF NOT EXISTS ${names.index} ON ${names.log} (owner, seq)`);
    await client.query(
      `CREATE TABLE IF NOT EXISTS ${names.lease} (name text PRIMARY KEY, holder text NOT NULL, expires_at timestamptz NOT NULL)`,
    );
    await client.query(
      `CREATE TABLE IF NOT EXISTS ${names.meta} (owner text PRIMARY KEY, identity jsonb NOT NULL)`,
    );
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw settings.unavailable('creating the tables', error);
  }
}

/** The owner's stored identity as JSON text, or undefined when the meta table or its row is missing. */
async function readIdentity(client: Connection, settings: OpenSettings): Promise<string | undefined> {
  const { names } = settings;
  try {
    const exists = await client.query<{ t: string | null }>('SELECT to_regclass($1)::text AS t', [
      names.metaText,
    ]);
    if (exists.rows[0]?.t == null) return undefined;
    const row = await client.query<{ identity: string }>(
      `SELECT identity::text AS identity FROM ${names.meta} WHERE owner = $1`,
      [settings.owner],
    );
    return row.rows[0]?.identity;
  } catch (error) {
    throw settings.unavailable('reading the identity', error);
  }
}

/**
 * Takes the owner lease: at once if free; else waits (with `lease.wait`) or
 * waits out the holder's lease once and fails with `locked` if it was renewed.
 */
async function acquireOwnerLease<R>(
  client: Connection,
  settings: OpenSettings,
  options: PostgresLogOptions<R>,
): Promise<void> {
  const { acquireSql, leaseName, holder, ttlMs, names, description } = settings;
  let waiting = false;
  for (;;) {
    let held: { holder: string; remaining_ms: number } | undefined;
    try {
      const taken = await client.query(acquireSql, [leaseName, holder, ttlMs]);
      if (taken.rowCount === 1) return;
      const row = await client.query<{ holder: string; remaining_ms: number }>(
        `SELECT holder, GREATEST(0, EXTRACT(EPOCH FROM (expires_at - now())) * 1000)::float8 AS remaining_ms ` +
          `FROM ${names.lease} WHERE name = $1`,
        [leaseName],
      );
      held = row.rows[0];
    } catch (error) {
      throw settings.unavailable('taking the owner lease', error);
    }
    if (held === undefined) continue; // released between the two queries: try again
    if (options.lease?.wait === true) {
      if (!waiting) options.lease.onWaiting?.(held.holder);
      waiting = true;
      await sleep(settings.pollMs);
      continue;
    }
    // A holder that died stops renewing: wait out its lease once. If it was
    // renewed meanwhile, the holder is alive and the log is busy.
    const before = held;
    await sleep(Math.ceil(before.remaining_ms) + 50);
    try {
      const taken = await client.query(acquireSql, [leaseName, holder, ttlMs]);
      if (taken.rowCount === 1) return;
      const row = await client.query<{ holder: string }>(
        `SELECT holder FROM ${names.lease} WHERE name = $1`,
        [leaseName],
      );
      if (row.rows[0] === undefined) continue;
      throw new LogError(
        'locked',
        `${description} is owned by a live coordinator: lease ${JSON.stringify(leaseName)} is held and ` +
          `renewed by ${JSON.stringify(row.rows[0].holder)}; stop that process first (nothing was touched)`,
      );
    } catch (error) {
      if (error instanceof LogError) throw error;
      throw settings.unavailable('taking the owner lease', error);
    }
  }
}

/** Parses the stored identity, or (none stored) writes a new one and reads back whichever won. */
async function settleIdentity<R>(
  client: Connection,
  settings: OpenSettings,
  options: PostgresLogOptions<R>,
  stored: string | undefined,
): Promise<LogIdentity> {
  const { description, names } = settings;
  if (stored !== undefined) return parseIdentity(description, stored);
  const identity = newIdentity(options, new Date());
  try {
    await client.query(
      `INSERT INTO ${names.meta} (owner, identity) VALUES ($1, $2::jsonb) ON CONFLICT (owner) DO NOTHING`,
      [settings.owner, JSON.stringify(identity)],
    );
  } catch (error) {
    throw settings.unavailable('writing the identity', error);
  }
  const again = await readIdentity(client, settings);
  if (again === undefined) throw noIdentity(description);
  return parseIdentity(description, again);
}

/** The group-commit backend: fenced write transactions, the owner's rows in order, and close. */
function postgresBackend(
  client: Connection,
  settings: OpenSettings,
  state: ConnectionState,
  lock: ConnectionLock,
  use: <T>(doing: string, operation: () => Promise<T>) => Promise<T>,
  loseLease: (why: string) => void,
  release: (discard: boolean) => Promise<void>,
): LogBackend {
  const { description, names, leaseName, holder, owner } = settings;
  return {
    description,
    write: (batch: WriteBatch) =>
      lock.run(async () => {
        if (state.lostError !== undefined) throw state.lostError;
        if (state.broken !== undefined) throw state.broken;
        await client.query('BEGIN; SET LOCAL synchronous_commit TO on');
        try {
          // Fencing: a takeover changes the holder, and this row lock makes a
          // write that got in first commit before the takeover's acquisition.
          const held = await client.query(
            `SELECT 1 FROM ${names.lease} WHERE name = $1 AND holder = $2 FOR SHARE`,
            [leaseName, holder],
          );
          if (held.rowCount !== 1) {
            loseLease('taken over');
            throw new LogError(
              'fenced',
              `${description}: ${JSON.stringify(holder)} no longer holds lease ` +
                `${JSON.stringify(leaseName)}, so it may not write (another coordinator has taken over); ` +
                'nothing was written',
            );
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
        const result = await client.query<{ seq_text: string; record_text: string; at_ms: number }>(
          `SELECT seq::text AS seq_text, record::text AS record_text, ` +
            `(EXTRACT(EPOCH FROM at) * 1000)::float8 AS at_ms FROM ${names.log} ` +
            'WHERE owner = $1 ORDER BY seq',
          [owner],
        );
        return result.rows.map(
          (row): StoredRow => ({ seq: row.seq_text, text: row.record_text, atMs: Math.round(row.at_ms) }),
        );
      }),
    close: (discard: boolean) =>
      lock.run(async () => {
        state.closed = true;
        clearInterval(state.renewTimer);
        if (state.lostError === undefined && state.broken === undefined) {
          // Give the log up at once, so that the next owner need not wait out the lease.
          await client
            .query(`DELETE FROM ${names.lease} WHERE name = $1 AND holder = $2`, [leaseName, holder])
            .catch(() => undefined);
        }
        await release(discard);
      }),
  };
}

/** The public lease operations, each run on the log's connection under its lock. */
function leaseOps(
  client: Connection,
  settings: OpenSettings,
  use: <T>(doing: string, operation: () => Promise<T>) => Promise<T>,
): LeaseOps {
  const { names, acquireSql } = settings;
  const leaseQuery = (doing: string, sql: string, params: unknown[]) =>
    use(doing, async () => {
      try {
        const result = await client.query(sql, params);
        return result.rowCount === 1;
      } catch (error) {
        throw settings.unavailable(doing, error);
      }
    });
  return {
    acquire: async (name, holderId, leaseTtlMs) =>
      leaseQuery('acquireLease', acquireSql, [
        checkText(name, 'lease name'),
        checkText(holderId, 'holder'),
        checkTtl(leaseTtlMs),
      ]),
    renew: async (name, holderId, leaseTtlMs) =>
      leaseQuery(
        'renewLease',
        `UPDATE ${names.lease} SET expires_at = ${leaseInterval} WHERE name = $1 AND holder = $2`,
        [checkText(name, 'lease name'), checkText(holderId, 'holder'), checkTtl(leaseTtlMs)],
      ),
    release: async (name, holderId) =>
      leaseQuery('releaseLease', `DELETE FROM ${names.lease} WHERE name = $1 AND holder = $2`, [
        checkText(name, 'lease name'),
        checkText(holderId, 'holder'),
      ]),
  };
}

/**
 * Renews every ttl/3 on an unref'd timer (it never keeps a process alive).
 * A renewal refused means another holder took over; renewals failing for a
 * whole ttl mean a standby may have taken over: either way, the lease is lost.
 */
function startRenewal(
  settings: OpenSettings,
  state: ConnectionState,
  leases: LeaseOps,
  loseLease: (why: string) => void,
): void {
  const { leaseName, holder, ttlMs } = settings;
  let lastRenewedAt = Date.now();
  let renewing = false;
  state.renewTimer = setInterval(
    () => {
      if (renewing || state.closed || state.lostError !== undefined) return;
      renewing = true;
      const startedAt = Date.now();
      leases
        .renew(leaseName, holder, ttlMs)
        .then(
          (renewed) => {
            if (renewed) lastRenewedAt = startedAt;
            else loseLease('renewal refused: another holder took it');
          },
          () => {
            if (Date.now() - lastRenewedAt >= ttlMs) loseLease(`not renewed for ${ttlMs} ms`);
          },
        )
        .finally(() => {
          renewing = false;
        });
    },
    Math.max(5, Math.floor(ttlMs / 3)),
  );
  state.renewTimer.unref();
}
