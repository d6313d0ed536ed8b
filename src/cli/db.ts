// Databases named on the command line (`--db URL`), and the transfer workload's
// operations on each kind: a transfer debits an account
// on the first database, credits one on the second, and appends an audit row
// on the third. Each database also records which transfers it took part in,
// so `dtx verify` can check that every transfer happened everywhere or nowhere.
//
// URLs: postgres://user@host:port/db, mysql://user:pass@host:port/db (MariaDB
// or MySQL), sqlite:PATH (dtx's embedded SQLite participant, a key/value store).
//
// Where the bench's tables live: on PostgreSQL in schema `dtx_bench` of the
// database the URL names; on MariaDB/MySQL in the database the URL names (which
// it must name), as `dtx_bench_accounts` etc. — never in a server-wide database
// of dtx's choosing, so that `--init` drops only what the URL points at.
// Nothing here creates a database or a SQLite file except `--init`.

import { createMariaDbAdapter, type MariaDbAdapter } from '../adapters/mariadb.ts';
import { createPostgresAdapter, type PostgresAdapter } from '../adapters/postgres.ts';
import { createSqliteAdapter, type SqliteAdapter, type SqliteBranch } from '../adapters/sqlite.ts';
import type { ResourceAdapter, SqlBranch } from '../adapters/types.ts';
import { DtxError } from '../errors.ts';
import { redact, serverUrlForms, withFix } from './errors.ts';

export type DbKind = 'postgres' | 'mysql' | 'sqlite';

export interface DbTarget {
  url: string;
  kind: DbKind;
  /** Resource name in the coordinator and in gids: db1, db2, db3. */
  name: string;
}

/** A usage error about `url` (a `what`: database URL, log URL), which it names with any password hidden. */
function badUrl(url: string, why: string, what = 'database URL'): DtxError {
  return withFix(
    new DtxError('DTX_INVALID_ARGUMENT', `cannot use ${what} ${JSON.stringify(redact(url))}: ${why}`),
    serverUrlForms,
  );
}

/**
 * Checks a `--db` URL before anything connects with it, so that a typo is a
 * usage error that names the URL (password hidden) instead of whatever the
 * driver makes of it: a URL that does not parse, a malformed `%` escape (the
 * drivers decode user, password and database), a missing host, an unknown
 * scheme, `sqlite:` with no path.
 */
export function parseDbUrl(url: string, index: number): DbTarget {
  const name = `db${index + 1}`;
  if (url.startsWith('sqlite:')) {
    if (url.length === 'sqlite:'.length) throw badUrl(url, 'sqlite: needs a file path (sqlite:PATH)');
    return { url, kind: 'sqlite', name };
  }
  return { url, kind: checkServerUrl(url), name };
}

/**
 * The kind of server a postgres://, postgresql://, mysql:// or mariadb:// URL
 * names, after the checks `parseDbUrl` makes; throws DTX_INVALID_ARGUMENT
 * naming the URL as `what` otherwise. For any server URL the command takes
 * (a `--log postgres://...` too), before a driver sees it.
 */
export function checkServerUrl(url: string, what = 'database URL'): 'postgres' | 'mysql' {
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(url)?.[1]?.toLowerCase();
  const kind =
    scheme === 'postgres' || scheme === 'postgresql'
      ? 'postgres'
      : scheme === 'mysql' || scheme === 'mariadb'
        ? 'mysql'
        : undefined;
  if (kind === undefined) {
    throw badUrl(url, scheme === undefined ? 'not a URL' : `unknown scheme "${scheme}:"`, what);
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw badUrl(url, 'not a valid URL (check the host and the port)', what);
  }
  if (parsed.hostname === '') throw badUrl(url, 'no host', what);
  const parts: [string, string][] = [
    ['user name', parsed.username],
    ['password', parsed.password],
    ['database name', parsed.pathname.slice(1)],
  ];
  for (const [part, text] of parts) {
    try {
      decodeURIComponent(text);
    } catch {
      // The password itself is not named: the message would print it.
      throw badUrl(url, `malformed %-escape in the ${part} (a literal % is written %25)`, what);
    }
  }
  if (parsed.pathname.slice(1).includes('/')) throw badUrl(url, 'the database name cannot contain "/"', what);
  return kind;
}

/** Lock waits are bounded so that a cycle across databases (which no single database can see) ends in an abort. */
export const lockWaitMs = 2_000;

/** The bench's SQL for `target`: on MariaDB/MySQL, tables `dtx_bench_x` in the URL's database instead of `dtx_bench.x`. */
export function benchSql(target: DbTarget, sql: string): string {
  return target.kind === 'mysql' ? sql.replaceAll('dtx_bench.', 'dtx_bench_') : sql;
}

/**
 * Opens the adapter for `target`. `create` (bench --init only) allows a
 * missing SQLite participant file to be created; otherwise it is
 * DTX_LOG_NOT_FOUND naming the path.
 */
export async function openAdapter(
  target: DbTarget,
  options: { create?: boolean; isolationLevel?: 'serializable' } = {},
): Promise<ResourceAdapter> {
  const isolation = options.isolationLevel === undefined ? {} : { isolationLevel: options.isolationLevel };
  switch (target.kind) {
    case 'postgres':
      return createPostgresAdapter({
        connection: { connectionString: target.url, max: 32 },
        lockTimeoutMs: lockWaitMs,
        ...isolation,
      });
    case 'mysql': {
      const u = new URL(target.url.replace(/^mariadb:/, 'mysql:'));
      const database = decodeURIComponent(u.pathname.slice(1));
      if (!/^[A-Za-z0-9_$]{1,64}$/.test(database)) {
        throw new DtxError(
          'DTX_INVALID_ARGUMENT',
          `${target.name}: a mysql:// URL must name the database the bench uses (letters, digits, _ and $), ` +
            `e.g. mysql://root@127.0.0.1:3306/test, got ${JSON.stringify(database)}`,
        );
      }
      return createMariaDbAdapter({
        connection: {
          host: u.hostname,
          port: Number(u.port || 3306),
          user: decodeURIComponent(u.username || 'root'),
          password: decodeURIComponent(u.password),
          database,
          connectionLimit: 64,
        },
        lockWaitTimeoutSeconds: Math.ceil(lockWaitMs / 1000),
        ...isolation,
      });
    }
    case 'sqlite':
      return createSqliteAdapter({
        create: options.create === true,
        path: target.url.slice('sqlite:'.length),
      });
  }
}

/** A plain (non-2PC) SQL session for schema setup and verification. */
export async function withSql<T>(
  target: DbTarget,
  adapter: ResourceAdapter,
  work: (q: SqlQuery) => Promise<T>,
): Promise<T> {
  if (target.kind === 'postgres') {
    const pool = (adapter as PostgresAdapter).pool;
    return work(async (sql, params) => (await pool.query(sql, params as unknown[])).rows);
  }
  const pool = (adapter as MariaDbAdapter).pool;
  return work(async (sql, params) => {
    const [rows] = await pool.query(benchSql(target, sql), params as unknown[]);
    return rows as Record<string, unknown>[];
  });
}

type SqlQuery = (sql: string, params?: readonly unknown[]) => Promise<Record<string, unknown>[]>;

const schemaStatements: Record<'postgres' | 'mysql', string[]> = {
  postgres: [
    'DROP SCHEMA IF EXISTS dtx_bench CASCADE',
    'CREATE SCHEMA dtx_bench',
    'CREATE TABLE dtx_bench.accounts (id integer PRIMARY KEY, balance bigint NOT NULL)',
    'CREATE TABLE dtx_bench.transfers (txn text PRIMARY KEY, amount bigint NOT NULL)',
    'CREATE TABLE dtx_bench.meta (k text PRIMARY KEY, v bigint NOT NULL)',
  ],
  mysql: [
    'DROP TABLE IF EXISTS dtx_bench.accounts, dtx_bench.transfers, dtx_bench.meta, dtx_bench.holds',
    'CREATE TABLE dtx_bench.accounts (id int PRIMARY KEY, balance bigint NOT NULL) ENGINE=InnoDB',
    'CREATE TABLE dtx_bench.transfers (txn varchar(128) PRIMARY KEY, amount bigint NOT NULL) ENGINE=InnoDB',
    'CREATE TABLE dtx_bench.meta (k varchar(32) PRIMARY KEY, v bigint NOT NULL) ENGINE=InnoDB',
  ],
};

export const initialBalance = 1_000;

/** Every naive-commit transfer's gids start so (`dtx_naive.<incarnation>.<n>_<db>`). */
export const naiveGidPrefix = 'dtx_naive.';

/**
 * Creates the `dtx_bench` schema on one database: accounts (on the first two)
 * and the transfer/audit record. Prepared branches that bench itself made and
 * nothing will resolve hold locks on the tables about to be dropped, so they
 * are rolled back first: its own coordinator's (`own.prefix`, unless `own.mayRollBack`
 * says the log holds a commit decision for it: then --init is refused) and naive commit's (`dtx_naive.`: naive commit has no log
 * and no recovery; a kill between its commits leaves one prepared). Nothing
 * with another prefix is ever touched (XA RECOVER and pg_prepared_xacts are
 * server-wide: they list other deployments' branches too).
 */
export async function initSchema(
  target: DbTarget,
  adapter: ResourceAdapter,
  accounts: number,
  role: 'debit' | 'credit' | 'audit',
  own?: { prefix: string; mayRollBack: (gid: string) => boolean },
): Promise<void> {
  const withAccounts = role !== 'audit';
  await rollBackLeftovers(adapter, own);
  if (target.kind === 'sqlite') {
    const db = (adapter as SqliteAdapter).database();
    db.exec("DELETE FROM dtx_kv WHERE key LIKE 'bench:%'");
    const put = db.prepare('INSERT INTO dtx_kv (key, value) VALUES (?, ?)');
    db.transaction(() => {
      if (withAccounts)
        for (let i = 0; i < accounts; i++) put.run(`bench:acct:${i}`, JSON.stringify(initialBalance));
      put.run('bench:meta:total', JSON.stringify(withAccounts ? accounts * initialBalance : 0));
      put.run('bench:meta:accounts', JSON.stringify(withAccounts ? accounts : 0));
      put.run('bench:meta:role', JSON.stringify(roleCodes[role]));
    })();
    return;
  }
  await withSql(target, adapter, async (q) => {
    for (const sql of schemaStatements[target.kind as 'postgres' | 'mysql']) await q(sql);
    const p = (i: number) => (target.kind === 'postgres' ? `$${i}` : '?');
    if (withAccounts) {
      for (let start = 0; start < accounts; start += 1000) {
        const n = Math.min(1000, accounts - start);
        const values = Array.from({ length: n }, (_, i) => `(${p(2 * i + 1)}, ${p(2 * i + 2)})`).join(', ');
        const params = Array.from({ length: n }, (_, i) => [start + i, initialBalance]).flat();
        await q(`INSERT INTO dtx_bench.accounts (id, balance) VALUES ${values}`, params);
      }
    }
    await q(
      `INSERT INTO dtx_bench.meta (k, v) VALUES ('total', ${p(1)}), ('accounts', ${p(2)}), ('role', ${p(3)})`,
      [withAccounts ? accounts * initialBalance : 0, withAccounts ? accounts : 0, roleCodes[role]],
    );
  });
}

/**
 * Before `--init` drops tables: rolls back the prepared branches bench made
 * that nothing will resolve (they hold locks on those tables): its own
 * coordinator's, unless the log holds a commit decision for one (then
 * --init is refused), and naive commit's. See initSchema.
 */
export async function rollBackLeftovers(
  adapter: ResourceAdapter,
  own?: { prefix: string; mayRollBack: (gid: string) => boolean },
): Promise<void> {
  if (own !== undefined) {
    for (const { gid } of await adapter.listPrepared(own.prefix)) {
      // A branch of a decided commit (still being applied, or left to an
      // operator by abandon/resolve) must be committed, never rolled back:
      // refuse to reset the books over it.
      if (!own.mayRollBack(gid)) {
        throw new DtxError(
          'DTX_INVALID_STATE',
          `branch ${gid} belongs to a transaction whose commit is decided and is still prepared; ` +
            '--init would roll it back: settle it first (dtx txn list --state in-doubt, docs/operations.md)',
        );
      }
      await adapter.rollbackPrepared(gid);
    }
  }
  for (const { gid } of await adapter.listPrepared(naiveGidPrefix)) await adapter.rollbackPrepared(gid);
}

/** Applies this database's part of transfer `txn` inside its branch. */
export async function applyTransferPart(
  target: DbTarget,
  branch: unknown,
  role: 'debit' | 'credit' | 'audit',
  txn: string,
  account: number,
  amount: number,
): Promise<void> {
  const delta = role === 'debit' ? -amount : role === 'credit' ? amount : 0;
  if (target.kind === 'sqlite') {
    const b = branch as SqliteBranch;
    if (role !== 'audit') {
      const key = `bench:acct:${account}`;
      const balance = b.get(key);
      if (typeof balance !== 'number')
        throw new DtxError(
          'DTX_INVALID_STATE',
          `account ${account} missing on ${target.name}: run with --init`,
        );
      b.put(key, balance + delta);
    }
    b.put(`bench:transfer:${txn}`, amount);
    return;
  }
  const b = branch as SqlBranch;
  const p = (i: number) => (target.kind === 'postgres' ? `$${i}` : '?');
  if (role !== 'audit') {
    const r = await b.query(
      benchSql(target, `UPDATE dtx_bench.accounts SET balance = balance + ${p(1)} WHERE id = ${p(2)}`),
      [delta, account],
    );
    if (r.rowCount !== 1)
      throw new DtxError(
        'DTX_INVALID_STATE',
        `account ${account} missing on ${target.name}: run with --init`,
      );
  }
  await b.query(benchSql(target, `INSERT INTO dtx_bench.transfers (txn, amount) VALUES (${p(1)}, ${p(2)})`), [
    txn,
    amount,
  ]);
}

/** What `initSchema` records of each database's part, so that a later run given the `--db`s in another order is refused. */
const roleCodes = { debit: 1, credit: 2, audit: 3 } as const;

/**
 * Refuses a database given in another place than `bench --init` gave it.
 * Resource names are positional (db1, db2, db3) and are part of every gid, so
 * `dtx recover` with two `--db`s swapped would send each branch's COMMIT to
 * the wrong database, find nothing there, and take the commit for done. A
 * database initialized before roles were recorded is not checked.
 */
export async function checkRole(
  target: DbTarget,
  adapter: ResourceAdapter,
  role: 'debit' | 'credit' | 'audit',
): Promise<void> {
  let recorded: number | undefined;
  if (target.kind === 'sqlite') {
    const v = (adapter as SqliteAdapter).read('bench:meta:role');
    recorded = typeof v === 'number' ? v : undefined;
  } else {
    recorded = await withSql(target, adapter, async (q) => {
      const [row] = await q("SELECT v FROM dtx_bench.meta WHERE k = 'role'");
      return row === undefined ? undefined : Number(row.v);
    }).catch(() => undefined);
  }
  if (recorded === undefined || recorded === roleCodes[role]) return;
  const actual = (Object.keys(roleCodes) as (keyof typeof roleCodes)[]).find(
    (r) => roleCodes[r] === recorded,
  );
  throw new DtxError(
    'DTX_INVALID_ARGUMENT',
    `--db number ${target.name.slice(2)} was set up by bench --init as the ${actual ?? 'unknown'} database, ` +
      `but is given here as the ${role} database: give the --db URLs in the order bench --init had them; nothing was touched`,
  );
}

/** How many accounts `initSchema` created on this database (0 when it was never initialized). */
export async function accountCount(target: DbTarget, adapter: ResourceAdapter): Promise<number> {
  if (target.kind === 'sqlite') {
    const v = (adapter as SqliteAdapter).read('bench:meta:accounts');
    return typeof v === 'number' ? v : 0;
  }
  try {
    return await withSql(target, adapter, async (q) => {
      const [row] = await q("SELECT v FROM dtx_bench.meta WHERE k = 'accounts'");
      return Number(row?.v ?? 0);
    });
  } catch (err) {
    // Only a missing schema means "not initialized"; anything else (auth, network) is an error.
    if (/does not exist|doesn't exist|unknown database/i.test(String((err as Error).message))) return 0;
    throw err;
  }
}

/**
 * True for the error a query on `dtx_bench.*` gets when bench never created
 * the schema: PostgreSQL's undefined_table/invalid_schema_name, MariaDB's
 * no-such-table/unknown-database.
 */
function missingSchema(err: unknown): boolean {
  const e = err as { code?: unknown; errno?: unknown };
  return e.code === '42P01' || e.code === '3F000' || e.errno === 1146 || e.errno === 1049;
}

function notInitialized(target: DbTarget, cause: unknown): DtxError {
  return withFix(
    new DtxError(
      'DTX_INVALID_STATE',
      `${target.name} (${redact(target.url)}) has no dtx_bench schema: bench never initialized it`,
      { cause },
    ),
    'run dtx bench --init with the same --db URLs first',
  );
}

export interface DbState {
  /** Sum of balances (0 for the audit database). */
  total: number;
  expectedTotal: number;
  transfers: Set<string>;
  preparedLeft: string[];
}

/**
 * `gidPrefixes`: which prepared branches count as left behind. Default every
 * dtx branch (`dtx_`, and Paxos Commit's `pc_<cluster>_`); `dtx verify --log`
 * narrows it to that coordinator's own, because MariaDB's XA list is
 * server-wide and other deployments' branches in flight there are none of
 * this bench's business.
 */
export async function readState(
  target: DbTarget,
  adapter: ResourceAdapter,
  gidPrefixes: readonly string[] = ['dtx_', 'pc_'],
): Promise<DbState> {
  const preparedLeft: string[] = [];
  for (const prefix of gidPrefixes) {
    for (const b of await adapter.listPrepared(prefix)) preparedLeft.push(b.gid);
  }
  if (target.kind === 'sqlite') {
    const db = (adapter as SqliteAdapter).database();
    const rows = db.prepare("SELECT key, value FROM dtx_kv WHERE key LIKE 'bench:%'").all() as {
      key: string;
      value: string;
    }[];
    let total = 0;
    let expectedTotal = 0;
    const transfers = new Set<string>();
    for (const { key, value } of rows) {
      if (key.startsWith('bench:acct:')) total += Number(JSON.parse(value));
      else if (key === 'bench:meta:total') expectedTotal = Number(JSON.parse(value));
      else if (key.startsWith('bench:transfer:')) transfers.add(key.slice('bench:transfer:'.length));
    }
    return { total, expectedTotal, transfers, preparedLeft };
  }
  return withSql(target, adapter, async (q) => {
    const [sum] = await q('SELECT COALESCE(SUM(balance), 0) AS s FROM dtx_bench.accounts').catch(
      (err: unknown) => {
        throw missingSchema(err) ? notInitialized(target, err) : err;
      },
    );
    const [meta] = await q("SELECT v FROM dtx_bench.meta WHERE k = 'total'");
    const transfers = new Set((await q('SELECT txn FROM dtx_bench.transfers')).map((r) => String(r.txn)));
    return { total: Number(sum?.s ?? 0), expectedTotal: Number(meta?.v ?? 0), transfers, preparedLeft };
  });
}

/** The barrier table of `dtx bench --protocol saga|tcc` (one per database; `--init` drops it). */
export const benchBarrierTable = 'dtx_bench_barrier';

const holdsDdl: Record<'postgres' | 'mysql', string> = {
  postgres:
    'CREATE TABLE IF NOT EXISTS dtx_bench.holds (txn text PRIMARY KEY, account integer NOT NULL, amount bigint NOT NULL)',
  mysql:
    'CREATE TABLE IF NOT EXISTS dtx_bench.holds (txn varchar(128) PRIMARY KEY, account int NOT NULL, amount bigint NOT NULL) ENGINE=InnoDB',
};

/**
 * The saga/TCC bench's extra tables on one database: `dtx_bench.holds` (TCC
 * reservations; on SQLite, `bench:hold:<txn>` keys need no table). With
 * `reset`, the barrier table is dropped too (after `initSchema` reset the books).
 */
export async function initSagaTables(
  target: DbTarget,
  adapter: ResourceAdapter,
  reset: boolean,
): Promise<void> {
  if (target.kind === 'sqlite') {
    if (reset) (adapter as SqliteAdapter).database().exec(`DROP TABLE IF EXISTS ${benchBarrierTable}`);
    return;
  }
  await withSql(target, adapter, async (q) => {
    if (reset) await q(`DROP TABLE IF EXISTS ${benchBarrierTable}`);
    await q(holdsDdl[target.kind as 'postgres' | 'mysql']);
  });
}

/** TCC reservations (`dtx_bench.holds` rows) still on this database: a try neither confirmed nor cancelled. */
export async function holdsLeft(target: DbTarget, adapter: ResourceAdapter): Promise<number> {
  if (target.kind === 'sqlite') {
    const row = (adapter as SqliteAdapter)
      .database()
      .prepare("SELECT count(*) AS n FROM dtx_kv WHERE key LIKE 'bench:hold:%'")
      .get() as { n: number };
    return row.n;
  }
  try {
    return await withSql(target, adapter, async (q) => {
      const [row] = await q('SELECT count(*) AS n FROM dtx_bench.holds');
      return Number(row?.n ?? 0);
    });
  } catch {
    // No holds table: the database never ran a TCC bench.
    return 0;
  }
}

/** The accounts' sum, as every auditor reads it (`dtx bench --auditors`, `dtx verify --live`). */
export const accountsSumSql = 'SELECT COALESCE(SUM(balance), 0) AS s FROM dtx_bench.accounts';

/**
 * The accounts' sum on one database, outside any distributed transaction:
 * `plain`, one autocommit statement; `serializable`, one SERIALIZABLE
 * READ ONLY transaction of its own on that database.
 */
export async function accountsSum(
  target: DbTarget,
  adapter: ResourceAdapter,
  isolation: 'plain' | 'serializable',
): Promise<number> {
  if (target.kind === 'sqlite') {
    throw new DtxError(
      'DTX_INVALID_ARGUMENT',
      `${target.name}: auditors read PostgreSQL or MariaDB, not SQLite`,
    );
  }
  if (isolation === 'plain') {
    return withSql(target, adapter, async (q) => Number((await q(accountsSumSql))[0]?.s ?? 0));
  }
  if (target.kind === 'postgres') {
    const client = await (adapter as PostgresAdapter).pool.connect();
    let destroy = true;
    try {
      const results = await client.query(
        `BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY; ${accountsSumSql}; COMMIT`,
      );
      destroy = false;
      const rows = (results as unknown as { rows: { s: unknown }[] }[])[1]?.rows ?? [];
      return Number(rows[0]?.s ?? 0);
    } finally {
      client.release(destroy ? true : undefined);
    }
  }
  const connection = await (adapter as MariaDbAdapter).pool.getConnection();
  try {
    await connection.query('SET TRANSACTION ISOLATION LEVEL SERIALIZABLE');
    await connection.query('START TRANSACTION READ ONLY');
    const [rows] = await connection.query(benchSql(target, accountsSumSql));
    await connection.query('COMMIT');
    connection.release();
    return Number((rows as { s: unknown }[])[0]?.s ?? 0);
  } catch (err) {
    connection.destroy();
    throw err;
  }
}

/** What `--init` recorded as the accounts' total on this database. */
export async function expectedAccountsTotal(target: DbTarget, adapter: ResourceAdapter): Promise<number> {
  if (target.kind === 'sqlite') return Number((adapter as SqliteAdapter).read('bench:meta:total') ?? 0);
  return withSql(target, adapter, async (q) =>
    Number((await q("SELECT v FROM dtx_bench.meta WHERE k = 'total'"))[0]?.v ?? 0),
  );
}
