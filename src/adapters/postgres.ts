// The PostgreSQL resource adapter, over `pg`. It owns the mapping from the
// ResourceAdapter port to PostgreSQL's two-phase commit:
//
//   begin    -> a pooled connection, BEGIN (plus per-branch SET LOCAL timeouts)
//   prepare  -> one probe for the branch's transaction id, then PREPARE
//               TRANSACTION 'gid' (or COMMIT and vote readOnly when the branch
//               was never assigned a transaction id, i.e. wrote nothing); a
//               branch whose statements reported changed rows sends the probe
//               and PREPARE TRANSACTION in one round trip
//   resolve  -> COMMIT PREPARED / ROLLBACK PREPARED 'gid' on any connection
//   fateOf   -> pg_xact_status(xid) of the id the probe learnt: how a branch
//               that is no longer prepared ended (committed, rolled back, or
//               too old to tell)
//   recover  -> pg_prepared_xacts, filtered to the current database
//
// and the translation of PostgreSQL's errors into dtx's typed errors. The
// server must run with max_prepared_transactions > 0; when it does not, the
// adapter says so with PreparedTxnsDisabledError instead of a bare SQL error.
//
// `pg` is loaded lazily by createPostgresAdapter, so importing this module (or
// the adapters index) does not require the driver to be installed.

import '../dispose.ts';
import type { Pool, PoolClient, PoolConfig } from 'pg';
import { DtxError, LockConflictError, PreparedTxnsDisabledError } from '../errors.ts';
import { checkGid, checkGidPrefix, gidLimits, gidLiteral, isValidGid } from './gid.ts';
import {
  checkNonNegativeInteger,
  classifyDriverError,
  type DriverErrors,
  lockingReadSql,
  messageOf,
  networkErrorCodes,
  SerialQueue,
  stringField,
} from './internal.ts';
import { AdapterLifecycle, BranchConnection, type ConnectionHandling, rollbackNeeded } from './lifecycle.ts';
import type {
  BranchFate,
  BranchState,
  PreparedBranchInfo,
  Resolution,
  ResourceAdapter,
  SnapshotSession,
  SqlBranch,
  SqlResult,
  SqlRow,
  Vote,
} from './types.ts';

export type PostgresIsolationLevel = 'read committed' | 'repeatable read' | 'serializable';

export interface PostgresAdapterOptions {
  /** A pool to use. The adapter never ends a pool it was given. */
  pool?: Pool;
  /** Or connection settings: the adapter then creates a pool and ends it on `close()`. */
  connection?: PoolConfig;
  /** Isolation level of every branch. Default: the server's default (read committed). */
  isolationLevel?: PostgresIsolationLevel;
  /** `lock_timeout` inside each branch: a lock wait longer than this fails with DTX_LOCK_CONFLICT. */
  lockTimeoutMs?: number;
  /** `statement_timeout` inside each branch: a statement longer than this fails with DTX_TIMEOUT. */
  statementTimeoutMs?: number;
  /**
   * Vote `readOnly` (commit locally, skip phase two) when a branch wrote
   * nothing. Default true. Turn it off when a read-only branch must keep its
   * locks or its serializable snapshot until the global decision.
   */
  readOnlyVote?: boolean;
  /**
   * Check `max_prepared_transactions` once, before the first branch, so that a
   * misconfigured server fails at `begin` rather than at `prepare`. Default true.
   */
  checkPrerequisites?: boolean;
}

const isolationSql: Record<PostgresIsolationLevel, string> = {
  'read committed': 'READ COMMITTED',
  'repeatable read': 'REPEATABLE READ',
  serializable: 'SERIALIZABLE',
};

/** SQLSTATEs that mean the connection or the server is going away. */
const unavailableSqlStates = new Set(['57P01', '57P02', '57P03', '57P04', '57P05', '53300', '53000']);

/** True for errors the server sent (they carry a SQLSTATE and a severity). */
function sqlStateOf(error: unknown): string | undefined {
  const code = stringField(error, 'code');
  if (code === undefined || stringField(error, 'severity') === undefined) return undefined;
  return code;
}

function isConnectionError(error: unknown): boolean {
  const code = stringField(error, 'code');
  if (code !== undefined && networkErrorCodes.has(code)) return true;
  const sqlState = sqlStateOf(error);
  if (sqlState !== undefined) return sqlState.startsWith('08') || unavailableSqlStates.has(sqlState);
  return /Connection terminated|Connection ended|not queryable|timeout exceeded when trying to connect|connection error/i.test(
    messageOf(error),
  );
}

const postgresErrors: DriverErrors = {
  name: 'PostgreSQL',
  isConnectionError,
  classify(error, detail, base) {
    const message = messageOf(error);
    switch (sqlStateOf(error)) {
      case '40001':
        return new DtxError('DTX_SERIALIZATION_FAILURE', `serialization failure during ${detail}`, base);
      case '40P01':
      case '55P03':
        return new LockConflictError(`lock conflict during ${detail}`, base);
      case '57014':
        return new DtxError('DTX_TIMEOUT', `statement timed out or was canceled during ${detail}`, base);
      // The server refused the login or the database: the connection settings
      // are wrong, and trying again with the same ones cannot help.
      case '28P01':
      case '28000':
        return new DtxError('DTX_INVALID_ARGUMENT', `PostgreSQL refused the login during ${detail}`, base);
      case '3D000':
        return new DtxError('DTX_INVALID_ARGUMENT', `PostgreSQL has no such database (${detail})`, base);
      case '42710':
        if (/transaction identifier/.test(message)) {
          return new DtxError('DTX_DUPLICATE_GID', `gid already in use: ${detail}`, base);
        }
        break;
      case '55000':
        if (/prepared transactions are disabled/i.test(message)) return new PreparedTxnsDisabledError(base);
        if (/is busy/.test(message)) {
          return new DtxError(
            'DTX_BRANCH_BUSY',
            `prepared branch is busy in another session: ${detail}`,
            base,
          );
        }
        break;
    }
    return undefined;
  },
};

/**
 * Turns a `pg` error into a DtxError. `inDoubt` marks a connection failure
 * while PREPARE TRANSACTION was in flight.
 */
export function classifyPostgresError(
  error: unknown,
  context: { gid?: string; what: string; inDoubt?: boolean },
): DtxError {
  return classifyDriverError(error, context, postgresErrors);
}

function connectionFailure(error: unknown): boolean {
  return !(error instanceof DtxError) && isConnectionError(error);
}

/** A connection-level failure makes a client unusable: destroy it instead of pooling it. */
function releaseClient(client: PoolClient, destroy: boolean): void {
  try {
    client.release(destroy ? true : undefined);
  } catch {
    // Already released: nothing to do.
  }
}

const pgClients: ConnectionHandling<PoolClient> = {
  watch(client, onError) {
    client.on('error', onError);
    return () => client.removeListener('error', onError);
  },
  release: releaseClient,
};

const rollbackSql = (client: PoolClient) => client.query('ROLLBACK');

/**
 * True when a statement's result says it inserted, updated or deleted rows:
 * changing a row takes a transaction id, so the branch is not read-only. (An
 * INSTEAD OF trigger may report rows it did not write; such a branch then
 * votes yes when it could have voted readOnly, which is always safe.)
 */
function changedRows(result: { command?: string; rowCount?: number | null } | undefined): boolean {
  const command = result?.command;
  return (
    (command === 'INSERT' || command === 'UPDATE' || command === 'DELETE' || command === 'MERGE') &&
    (result?.rowCount ?? 0) > 0
  );
}

/** The branch's transaction id (xid8) as text, or NULL when it was never assigned one. */
const xidSql = 'pg_current_xact_id_if_assigned()::text';

/** This backend's rows inserted, updated and deleted, as text (see PostgresBranch's #writesAtFirstRead). */
const rowChangesSql =
  '(SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_xact_all_tables)::text';

export class PostgresBranch implements SqlBranch {
  readonly gid: string;
  #connection: BranchConnection<PoolClient>;
  #adapter: PostgresAdapter;
  #queue = new SerialQueue();
  #readOnlyVote: boolean;
  #xid: string | undefined;
  /**
   * What ran in the branch: nothing, only locking reads, or any statement. A
   * locking read gets the branch a transaction id (row locks are written to
   * the rows), so the id alone cannot tell such a branch from one that wrote.
   */
  #statements: 'none' | 'lockingReads' | 'any' = 'none';
  /**
   * This backend's row-change counters when the first locking read ran. The
   * counters (pg_stat_xact_all_tables) also hold earlier transactions' changes
   * not yet reported, which are only reported between transactions: so, within
   * this one, an unchanged sum at prepare means it changed no row.
   */
  #writesAtFirstRead: string | undefined;
  /**
   * A statement reported rows inserted, updated or deleted: the branch surely
   * has a transaction id and is not read-only, so prepare needs no separate
   * probe to choose between COMMIT and PREPARE TRANSACTION (see `prepare`).
   */
  #changedRows = false;

  /** @internal Use `PostgresAdapter.begin`. */
  constructor(adapter: PostgresAdapter, gid: string, client: PoolClient, readOnlyVote: boolean) {
    this.#adapter = adapter;
    this.gid = gid;
    this.#readOnlyVote = readOnlyVote;
    this.#connection = new BranchConnection(gid, client, pgClients, () => adapter.forget(this));
  }

  get state(): BranchState {
    return this.#connection.state;
  }

  /** The branch's transaction id (xid8, as text) once it prepared: `fateOf` asks the server about it. */
  get evidence(): string | undefined {
    return this.#xid;
  }

  query<Row extends SqlRow = SqlRow>(sql: string, params: readonly unknown[] = []): Promise<SqlResult<Row>> {
    return this.#run<Row>(sql, params, 'any');
  }

  /** See SqlBranch.lockingRead: `FOR SHARE` (with `NOWAIT` when it may not wait). */
  lockingRead<Row extends SqlRow = SqlRow>(
    sql: string,
    params: readonly unknown[],
    options: { wait: boolean },
  ): Promise<SqlResult<Row>> {
    const locking = lockingReadSql(sql, options.wait ? 'FOR SHARE' : 'FOR SHARE NOWAIT');
    return this.#run<Row>(locking, params, 'lockingReads');
  }

  #run<Row extends SqlRow>(
    sql: string,
    params: readonly unknown[],
    kind: 'any' | 'lockingReads',
  ): Promise<SqlResult<Row>> {
    return this.#queue.run(async () => {
      const client = this.#connection.active('query');
      try {
        if (kind === 'lockingReads' && this.#statements === 'none' && this.#readOnlyVote) {
          const before = await client.query<{ writes: string }>(`SELECT ${rowChangesSql} AS writes`);
          this.#writesAtFirstRead = before.rows[0]?.writes;
        }
        // Counted before it runs: a statement that fails still ran.
        if (kind === 'any' || this.#statements === 'none') this.#statements = kind;
        const result = await client.query<Row>(sql, [...params]);
        if (client.getTransactionStatus() !== 'T') {
          // COMMIT, ROLLBACK or PREPARE TRANSACTION sent through query(): the work escaped the branch.
          throw new DtxError(
            'DTX_INVALID_STATE',
            `a statement ended the transaction of branch ${this.gid}; transaction control ` +
              '(COMMIT, ROLLBACK, PREPARE TRANSACTION) belongs to the adapter, not to query()',
            { gid: this.gid },
          );
        }
        // A multi-statement string (no params) yields one result per statement: report the last.
        const results = Array.isArray(result) ? (result as (typeof result)[]) : [result];
        if (!this.#changedRows) this.#changedRows = results.some(changedRows);
        const last = results.at(-1);
        const rows: Row[] = last?.rows ?? [];
        return { rows, rowCount: last?.rowCount ?? rows.length };
      } catch (error) {
        const failure = classifyPostgresError(error, { gid: this.gid, what: 'a branch query' });
        await this.#finish('rolledBack', connectionFailure(error), true);
        throw failure;
      }
    });
  }

  prepare(): Promise<Vote> {
    return this.#queue.run(async () => {
      const client = this.#connection.active('prepare');
      // A branch known to have changed rows cannot vote readOnly: its id is
      // read in the same round trip as PREPARE TRANSACTION (one simple query
      // of two statements), as hand-written two-phase commit would send it.
      if (this.#changedRows) return this.#prepareTransaction(client, { probed: false });
      // Otherwise one round trip answers both questions first: NULL means the
      // branch wrote nothing (read-only), and otherwise it is the id
      // pg_xact_status will answer about once the prepared branch is gone (fateOf).
      let xid: string | null;
      let wrote: boolean;
      try {
        // A branch of nothing but locking reads has an id (its row locks) but
        // wrote no row: this transaction's own table counters say so (a SELECT
        // calling a function that writes is counted there too).
        const probe = await client.query<{ xid: string | null; writes: string | null }>(
          this.#statements === 'lockingReads'
            ? `SELECT ${xidSql} AS xid, ${rowChangesSql} AS writes`
            : `SELECT ${xidSql} AS xid, NULL::text AS writes`,
        );
        xid = probe.rows[0]?.xid ?? null;
        wrote =
          xid !== null &&
          (this.#statements !== 'lockingReads' ||
            this.#writesAtFirstRead === undefined ||
            probe.rows[0]?.writes !== this.#writesAtFirstRead);
      } catch (error) {
        const failure = classifyPostgresError(error, { gid: this.gid, what: 'prepare' });
        await this.#finish('rolledBack', connectionFailure(error), true);
        throw failure;
      }
      if (this.#readOnlyVote) {
        // Read-only, locking reads included: COMMIT ends it here and releases
        // its locks; every lock of the global transaction was taken before
        // its first prepare, so releasing now keeps it two-phase.
        if (!wrote) {
          try {
            const done = await client.query('COMMIT');
            if (done.command !== 'COMMIT') throw new Error(`server answered ${done.command} to COMMIT`);
          } catch (error) {
            const failure = classifyPostgresError(error, { gid: this.gid, what: 'read-only commit' });
            await this.#finish('rolledBack', connectionFailure(error), true);
            throw failure;
          }
          await this.#finish('readOnly', false, false);
          return 'readOnly';
        }
      }
      return this.#prepareTransaction(client, { probed: true, xid });
    });
  }

  /**
   * PREPARE TRANSACTION: 'yes' once prepared, a thrown NO vote otherwise.
   * Unless the id was `probed` already, it is read by a SELECT sent in the
   * same query string, just before the PREPARE.
   */
  async #prepareTransaction(
    client: PoolClient,
    id: { probed: true; xid: string | null } | { probed: false },
  ): Promise<Vote> {
    const prepareSql = `PREPARE TRANSACTION ${gidLiteral(this.gid, gidLimits.postgresBytesMax)}`;
    let command: string | undefined;
    let xid = id.probed ? id.xid : null;
    try {
      if (id.probed) command = (await client.query(prepareSql)).command;
      else {
        const results = (await client.query(`SELECT ${xidSql} AS xid; ${prepareSql}`)) as unknown as {
          command: string;
          rows: { xid?: string | null }[];
        }[];
        xid = results[0]?.rows[0]?.xid ?? null;
        command = results[1]?.command;
      }
    } catch (error) {
      if (connectionFailure(error)) {
        await this.#finish('inDoubt', true, false);
        throw classifyPostgresError(error, { gid: this.gid, what: 'PREPARE TRANSACTION', inDoubt: true });
      }
      // A server error: PREPARE TRANSACTION failing rolls the transaction
      // back; the SELECT sent before it failing leaves it open and failed.
      let failure = classifyPostgresError(error, { gid: this.gid, what: 'PREPARE TRANSACTION' });
      if (failure.code === 'DTX_QUERY_FAILED' && sqlStateOf(error) === '55000') {
        if (await this.#adapter.preparedTxnsDisabled(client)) {
          failure = new PreparedTxnsDisabledError({ cause: error, gid: this.gid });
        }
      }
      await this.#finish('rolledBack', false, client.getTransactionStatus() !== 'I');
      throw failure;
    }
    if (command !== 'PREPARE') {
      // The server rolled back instead (the transaction had failed): a NO vote, never a silent yes.
      await this.#finish('rolledBack', false, false);
      throw new DtxError(
        'DTX_QUERY_FAILED',
        `PostgreSQL answered ${command} to PREPARE TRANSACTION: the branch had failed and was rolled back`,
        { gid: this.gid },
      );
    }
    this.#xid = xid ?? undefined;
    await this.#finish('prepared', false, false);
    return 'yes';
  }

  rollback(): Promise<void> {
    return this.#queue.run(async () => {
      if (rollbackNeeded(this.gid, this.#connection.state)) await this.#finish('rolledBack', false, true);
    });
  }

  /** @internal Used by `PostgresAdapter.close`. */
  abandon(): Promise<void> {
    return this.rollback().catch(() => undefined);
  }

  /**
   * Ends the branch locally: optional ROLLBACK, then give the connection back
   * (or destroy it). A failed ROLLBACK destroys it: the server rolls back an
   * open transaction when its connection closes.
   */
  #finish(state: BranchState, destroy: boolean, sendRollback: boolean): Promise<void> {
    return this.#connection.end(state, destroy, sendRollback ? rollbackSql : undefined);
  }
}

export class PostgresAdapter implements AsyncDisposable, ResourceAdapter<PostgresBranch> {
  readonly kind = 'postgres';
  readonly gidBytesMax = gidLimits.postgresBytesMax;
  #pool: Pool;
  #ownsPool: boolean;
  #options: PostgresAdapterOptions;
  #beginSql: string;
  #lifecycle = new AdapterLifecycle<PostgresBranch>('PostgreSQL');

  /** The pool branches are drawn from, for plain (non-2PC) statements such as schema setup. */
  get pool(): Pool {
    return this.#pool;
  }

  /** @internal Use `createPostgresAdapter`. */
  constructor(pool: Pool, ownsPool: boolean, options: PostgresAdapterOptions) {
    checkNonNegativeInteger(options.lockTimeoutMs, 'lockTimeoutMs');
    checkNonNegativeInteger(options.statementTimeoutMs, 'statementTimeoutMs');
    this.#pool = pool;
    this.#ownsPool = ownsPool;
    this.#options = options;
    const statements = [
      options.isolationLevel === undefined
        ? 'BEGIN'
        : `BEGIN ISOLATION LEVEL ${isolationSql[options.isolationLevel]}`,
    ];
    // Integers checked above, so these are safe to splice into SQL.
    if (options.lockTimeoutMs !== undefined)
      statements.push(`SET LOCAL lock_timeout = ${options.lockTimeoutMs}`);
    if (options.statementTimeoutMs !== undefined) {
      statements.push(`SET LOCAL statement_timeout = ${options.statementTimeoutMs}`);
    }
    this.#beginSql = statements.join('; ');
  }

  /**
   * Throws PreparedTxnsDisabledError when the server has
   * max_prepared_transactions = 0. `begin` runs it once per adapter unless
   * `checkPrerequisites: false`.
   */
  async checkPrerequisites(): Promise<void> {
    this.#lifecycle.checkOpen();
    let setting: number;
    try {
      const result = await this.#pool.query<{ n: number }>(
        "SELECT current_setting('max_prepared_transactions')::int AS n",
      );
      setting = result.rows[0]?.n ?? 0;
    } catch (error) {
      throw classifyPostgresError(error, { what: 'the max_prepared_transactions check' });
    }
    if (setting <= 0) throw new PreparedTxnsDisabledError();
  }

  async begin(gid: string): Promise<PostgresBranch> {
    checkGid(gid, this.gidBytesMax);
    this.#lifecycle.checkOpen();
    if (this.#options.checkPrerequisites !== false) {
      await this.#lifecycle.prerequisites(() => this.checkPrerequisites());
    }
    let client: PoolClient;
    try {
      client = await this.#pool.connect();
    } catch (error) {
      throw classifyPostgresError(error, { gid, what: 'connect' });
    }
    // A checked-out client has no error listener of the pool's: until the
    // branch attaches its own, a server that dies now must not crash the process.
    const ignore = (): void => undefined;
    client.on('error', ignore);
    try {
      await client.query(this.#beginSql);
    } catch (error) {
      client.removeListener('error', ignore);
      releaseClient(client, true);
      throw classifyPostgresError(error, { gid, what: 'BEGIN' });
    }
    const branch = new PostgresBranch(this, gid, client, this.#options.readOnlyVote !== false);
    client.removeListener('error', ignore);
    return this.#lifecycle.admit(branch);
  }

  commitPrepared(gid: string): Promise<Resolution> {
    return this.#resolve(gid, 'COMMIT PREPARED');
  }

  rollbackPrepared(gid: string): Promise<Resolution> {
    return this.#resolve(gid, 'ROLLBACK PREPARED');
  }

  /**
   * How branch `gid` ended, from the transaction id it reported at prepare
   * (`evidence`): `pg_xact_status` says committed or aborted for as long as
   * the server keeps that id's commit status. Ambiguous (`unknown`): no
   * evidence, a malformed one, an id too old (its status truncated away after
   * a wraparound's worth of transactions) or from another cluster (the
   * server's ids restarted), or one still in progress (prepared again).
   */
  async fateOf(gid: string, evidence: string | undefined): Promise<BranchFate> {
    checkGid(gid, this.gidBytesMax);
    this.#lifecycle.checkOpen();
    if (evidence === undefined || !/^[0-9]{1,20}$/.test(evidence)) return 'unknown';
    let status: string | null;
    try {
      const result = await this.#pool.query<{ status: string | null }>(
        'SELECT pg_xact_status($1::text::xid8) AS status',
        [evidence],
      );
      status = result.rows[0]?.status ?? null;
    } catch (error) {
      // 22023: "transaction ID ... is in the future": not this cluster's id.
      if (sqlStateOf(error) === '22023') return 'unknown';
      throw classifyPostgresError(error, { gid, what: 'pg_xact_status' });
    }
    if (status === 'committed') return 'committed';
    if (status === 'aborted') return 'rolledBack';
    return 'unknown';
  }

  async listPrepared(prefix = ''): Promise<PreparedBranchInfo[]> {
    checkGidPrefix(prefix, this.gidBytesMax);
    this.#lifecycle.checkOpen();
    try {
      const result = await this.#pool.query<{ gid: string; prepared: Date }>(
        'SELECT gid, prepared FROM pg_prepared_xacts ' +
          'WHERE database = current_database() AND left(gid, length($1::text)) = $1::text ORDER BY gid',
        [prefix],
      );
      return result.rows
        .filter((row) => isValidGid(row.gid, this.gidBytesMax))
        .map((row) => ({ gid: row.gid, preparedAt: row.prepared }));
    } catch (error) {
      throw classifyPostgresError(error, { what: 'listing pg_prepared_xacts' });
    }
  }

  /**
   * A read-only session on its own pooled connection, in a REPEATABLE READ
   * transaction whose snapshot is taken by its first statement, sent with the
   * BEGIN (one round trip): it resolves once the snapshot is fixed.
   */
  async openSnapshot(): Promise<SnapshotSession> {
    this.#lifecycle.checkOpen();
    let client: PoolClient;
    try {
      client = await this.#pool.connect();
    } catch (error) {
      throw classifyPostgresError(error, { what: 'connect' });
    }
    const ignore = (): void => undefined;
    client.on('error', ignore);
    try {
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SELECT 1');
    } catch (error) {
      client.removeListener('error', ignore);
      releaseClient(client, true);
      throw classifyPostgresError(error, { what: 'opening a snapshot' });
    }
    let closed = false;
    return {
      query: async <Row extends SqlRow = SqlRow>(sql: string, params: readonly unknown[] = []) => {
        if (closed) throw new DtxError('DTX_INVALID_STATE', 'the snapshot session is closed');
        try {
          const result = await client.query<Row>(sql, [...params]);
          return { rows: result.rows, rowCount: result.rowCount ?? result.rows.length };
        } catch (error) {
          throw classifyPostgresError(error, { what: 'a snapshot read' });
        }
      },
      close: async () => {
        if (closed) return;
        closed = true;
        let destroy = false;
        try {
          await client.query('COMMIT');
        } catch {
          destroy = true;
        }
        client.removeListener('error', ignore);
        releaseClient(client, destroy);
      },
    };
  }

  /** `await using` closes the adapter on leaving the block. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async close(): Promise<void> {
    if (!(await this.#lifecycle.close())) return;
    if (this.#ownsPool) await this.#pool.end();
  }

  /** @internal A branch that has finished. */
  forget(branch: PostgresBranch): void {
    this.#lifecycle.forget(branch);
  }

  /** @internal After a 55000 from PREPARE TRANSACTION: is it the disabled setting? */
  async preparedTxnsDisabled(client: PoolClient): Promise<boolean> {
    try {
      const result = await client.query<{ n: number }>(
        "SELECT current_setting('max_prepared_transactions')::int AS n",
      );
      return (result.rows[0]?.n ?? 0) <= 0;
    } catch {
      return false;
    }
  }

  async #resolve(gid: string, statement: 'COMMIT PREPARED' | 'ROLLBACK PREPARED'): Promise<Resolution> {
    const literal = gidLiteral(gid, this.gidBytesMax);
    this.#lifecycle.checkOpen();
    try {
      await this.#pool.query(`${statement} ${literal}`);
      return 'done';
    } catch (error) {
      // 42704 undefined_object: "prepared transaction with identifier ... does not exist".
      if (sqlStateOf(error) === '42704') return 'unknown';
      throw classifyPostgresError(error, { gid, what: statement });
    }
  }
}

/**
 * Creates a PostgreSQL adapter. Connects lazily: nothing is sent to the server
 * until the first call that needs it.
 */
export async function createPostgresAdapter(options: PostgresAdapterOptions): Promise<PostgresAdapter> {
  if (options.pool !== undefined) return new PostgresAdapter(options.pool, false, options);
  if (options.connection === undefined)
    throw new TypeError('createPostgresAdapter needs `pool` or `connection`');
  const { Pool: PgPool } = await import('pg');
  const pool = new PgPool(options.connection);
  // An idle pooled connection that dies is dropped by the pool; without a listener it would crash the process.
  pool.on('error', () => undefined);
  return new PostgresAdapter(pool, true, options);
}
