// The MariaDB (and MySQL-compatible) resource adapter, over `mysql2`. It owns
// the mapping from the ResourceAdapter port to XA:
//
//   begin    -> a pooled connection, XA START xid
//   prepare  -> XA END xid; XA PREPARE xid  (or XA END; XA ROLLBACK and vote
//               readOnly when the session's Handler_write/update/delete counters
//               did not move, i.e. the branch changed no row)
//   resolve  -> XA COMMIT / XA ROLLBACK xid
//   recover  -> XA RECOVER, decoded back to dtx gids
//   fateOf   -> the branch's marker row (see `markers`): present, the branch
//               committed; absent, it rolled back
//
// Markers. MariaDB keeps no memory of a resolved XA branch, so "XAER_NOTA"
// cannot tell our own commit whose reply was lost from someone's XA ROLLBACK.
// With `markers` on (the default), a branch that wrote inserts its gid into
// `dtx_xa_marker` in its own database just before XA END: the row commits or
// rolls back with the branch, so afterwards its presence is the answer. A row
// may only go once no coordinator can still ask about it, which the adapter
// cannot know (an `end` record is lazy, and a coordinator may crash before
// it): rows are kept for `markerRetentionMs`, then purged in batches, and the
// purge leaves a watermark so that a question about a purged branch is
// answered `unknown`, never a false "rolled back".
//
// Every XA statement goes over the text protocol (`query`, never `execute`:
// the binary protocol refuses XA). An xid is a gid split after its 64th byte
// into gtrid and bqual, plus a formatID (default 1, MariaDB's own default).
//
// MariaDB-specific behaviour this module works around, seen on 10.11:
// - After XA PREPARE the session is stuck in the PREPARED state until that
//   xid is resolved, and another session's XA COMMIT of it answers XAER_NOTA
//   for as long as the preparing session stays connected. So the adapter keeps
//   the preparing connection and resolves on it when it can; `close()` destroys
//   such connections, which detaches their branches (they survive, 10.5+).
//   Resolving from another connection treats XAER_NOTA for an xid that XA
//   RECOVER still lists as "not detached yet": it waits up to `detachWaitMs`,
//   then reports DTX_BRANCH_BUSY (retryable) rather than a false `unknown`.
// - A read-only XA branch that is prepared answers XA COMMIT with
//   XA_RBROLLBACK. Hence the readOnly vote: such branches are never prepared.
//
// `mysql2` is loaded lazily by createMariaDbAdapter.

import '../dispose.ts';
import type {
  QueryResult as MysqlQueryResult,
  Pool,
  PoolConnection,
  PoolOptions,
  ResultSetHeader,
  RowDataPacket,
} from 'mysql2/promise';
import { DtxError, HeuristicError, LockConflictError, ResourceUnavailableError } from '../errors.ts';
import { markerPurgeBatch, markerPurgeEveryMs, markerRetentionMsDefault } from '../runtime/limits.ts';
import { checkGid, checkGidPrefix, gidLimits, isValidGid, sqlStringLiteral } from './gid.ts';
import {
  checkNonNegativeInteger,
  classifyDriverError,
  type DriverErrors,
  lockingReadSql,
  messageOf,
  networkErrorCodes,
  numberField,
  SerialQueue,
  sleep,
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

export type MariaDbIsolationLevel =
  | 'read uncommitted'
  | 'read committed'
  | 'repeatable read'
  | 'serializable';

export interface MariaDbAdapterOptions {
  /** A `mysql2/promise` pool to use. The adapter never ends a pool it was given. */
  pool?: Pool;
  /** Or connection settings: the adapter then creates a pool and ends it on `close()`. */
  connection?: PoolOptions;
  /** Isolation level of every branch. Default: the server's (repeatable read). */
  isolationLevel?: MariaDbIsolationLevel;
  /**
   * `innodb_lock_wait_timeout` for branch sessions, in whole seconds (MariaDB's
   * unit). Set per session, so it stays on pooled connections.
   */
  lockWaitTimeoutSeconds?: number;
  /** XID formatID of dtx branches. Default 1; with binlog on it must fit in 4 bytes. */
  formatId?: number;
  /**
   * Check the server version once, before the first branch: prepared XA
   * branches must survive disconnects (MariaDB 10.5+, MySQL 5.7.7+). Default true.
   */
  checkPrerequisites?: boolean;
  /**
   * How long a resolve waits for a branch that XA RECOVER lists but that is
   * still attached to another session (a crashed coordinator's connection the
   * server has not dropped yet) before giving up with DTX_BRANCH_BUSY. Default 2000.
   */
  detachWaitMs?: number;
  /**
   * Write a marker row (`dtx_xa_marker(gid, created_at)`, in the branch's
   * database, made on first use) inside every branch that wrote, so that a
   * branch no longer prepared can be told committed from rolled back
   * (`fateOf`). Costs one small INSERT per branch and, after
   * `markerRetentionMs`, its share of a batched DELETE; turn it off and every
   * "branch already gone" stays ambiguous. Default true. Needs a default
   * database on the connection and, once, the privilege to create the table;
   * without them markers are skipped.
   */
  markers?: boolean;
  /**
   * How long marker rows are kept: the longest a coordinator may stay down
   * and still have its recovery tell committed from rolled back (after that
   * the answer is `unknown`, reported as ambiguous, never a false heuristic).
   * Default 86400000 (a day).
   */
  markerRetentionMs?: number;
}

/** The marker table (see `markers`): one row per prepared branch that wrote, until known committed. */
const markerTable = 'dtx_xa_marker';
const markerTableSql =
  `CREATE TABLE IF NOT EXISTS ${markerTable} (gid varchar(128) CHARACTER SET ascii NOT NULL PRIMARY KEY, ` +
  'created_at datetime(3) NOT NULL, KEY (created_at)) ENGINE=InnoDB';
/** The watermark row: every marker created before its `created_at` may have been purged. No gid starts with `~`. */
const markerWatermarkGid = '~purged';
/** Evidence of a branch that wrote its marker: `marker:<ms since epoch of the marker's created_at>`. */
const markerEvidencePrefix = 'marker:';

/** One XID, as MariaDB wants it. */
interface Xid {
  gtrid: string;
  bqual: string;
  formatId: number;
}

const xidPartBytesMax = 64;

/** Splits a gid after its 64th byte. Gids are ASCII, so bytes are characters. */
export function gidToXid(gid: string, formatId = 1): Xid {
  return { gtrid: gid.slice(0, xidPartBytesMax), bqual: gid.slice(xidPartBytesMax), formatId };
}

/** `'gtrid','bqual',formatId` for XA statements. Only ever called on checked gids. */
function xidSql(xid: Xid): string {
  return `${sqlStringLiteral(xid.gtrid)},${sqlStringLiteral(xid.bqual)},${xid.formatId}`;
}

const isolationSql: Record<MariaDbIsolationLevel, string> = {
  'read uncommitted': 'READ UNCOMMITTED',
  'read committed': 'READ COMMITTED',
  'repeatable read': 'REPEATABLE READ',
  serializable: 'SERIALIZABLE',
};

// MariaDB error numbers (see mysql2/lib/constants/errors.js).
const ER_CON_COUNT_ERROR = 1040;
const ER_DBACCESS_DENIED_ERROR = 1044;
const ER_ACCESS_DENIED_ERROR = 1045;
const ER_BAD_DB_ERROR = 1049;
const ER_ACCESS_DENIED_NO_PASSWORD_ERROR = 1698;
const ER_SERVER_SHUTDOWN = 1053;
const ER_LOCK_WAIT_TIMEOUT = 1205;
const ER_LOCK_DEADLOCK = 1213;
const ER_XAER_NOTA = 1397;
const ER_XA_RBROLLBACK = 1402;
const ER_XAER_DUPID = 1440;
const ER_XA_RBTIMEOUT = 1613;
const ER_XA_RBDEADLOCK = 1614;
const ER_CONNECTION_KILLED = 1927;
const ER_STATEMENT_TIMEOUT = 1969;
const ER_LOCK_NOWAIT = 3572;

/** The server's error number, for errors the server sent. */
function errnoOf(error: unknown): number | undefined {
  if (stringField(error, 'sqlState') === undefined && stringField(error, 'sqlMessage') === undefined) {
    return undefined;
  }
  return numberField(error, 'errno');
}

function isConnectionError(error: unknown): boolean {
  if (error instanceof DtxError) return false;
  const code = stringField(error, 'code');
  if (code !== undefined && (networkErrorCodes.has(code) || code.startsWith('PROTOCOL_'))) return true;
  const errno = errnoOf(error);
  if (errno === ER_CON_COUNT_ERROR || errno === ER_SERVER_SHUTDOWN || errno === ER_CONNECTION_KILLED)
    return true;
  if (typeof error === 'object' && error !== null && (error as { fatal?: unknown }).fatal === true)
    return true;
  return /closed state|Connection lost|connect ETIMEDOUT|Pool is closed/i.test(messageOf(error));
}

const mariadbErrors: DriverErrors = {
  name: 'MariaDB',
  isConnectionError,
  classify(error, detail, base) {
    switch (errnoOf(error)) {
      case ER_LOCK_WAIT_TIMEOUT:
      case ER_LOCK_DEADLOCK:
      case ER_LOCK_NOWAIT:
      case ER_XA_RBDEADLOCK:
      case ER_XA_RBTIMEOUT:
        return new LockConflictError(`lock conflict during ${detail}`, base);
      case ER_STATEMENT_TIMEOUT:
        return new DtxError('DTX_TIMEOUT', `statement timed out during ${detail}`, base);
      case ER_XAER_DUPID:
        return new DtxError('DTX_DUPLICATE_GID', `gid already in use: ${detail}`, base);
      case ER_XAER_NOTA:
        return new DtxError('DTX_BRANCH_NOT_FOUND', `MariaDB does not know the branch: ${detail}`, base);
      // The server refused the login or the database: the connection settings
      // are wrong, and trying again with the same ones cannot help.
      case ER_ACCESS_DENIED_ERROR:
      case ER_ACCESS_DENIED_NO_PASSWORD_ERROR:
        return new DtxError('DTX_INVALID_ARGUMENT', `MariaDB refused the login during ${detail}`, base);
      case ER_DBACCESS_DENIED_ERROR:
        return new DtxError(
          'DTX_INVALID_ARGUMENT',
          `MariaDB refused access to the database (${detail})`,
          base,
        );
      case ER_BAD_DB_ERROR:
        return new DtxError('DTX_INVALID_ARGUMENT', `MariaDB has no such database (${detail})`, base);
    }
    return undefined;
  },
};

/** Turns a `mysql2` error into a DtxError. */
export function classifyMariaDbError(
  error: unknown,
  context: { gid?: string; what: string; inDoubt?: boolean },
): DtxError {
  return classifyDriverError(error, context, mariadbErrors);
}

/** Session counters of rows written, updated and deleted (any engine); SHOW STATUS itself moves none of them. */
const handlerCountersSql =
  "SHOW SESSION STATUS WHERE Variable_name IN ('Handler_write', 'Handler_update', 'Handler_delete')";

async function rowChangeCount(connection: PoolConnection): Promise<bigint> {
  const [rows] = await connection.query<RowDataPacket[]>(handlerCountersSql);
  let total = 0n;
  for (const row of rows) total += BigInt(String(row.Value ?? 0));
  return total;
}

/**
 * True when a statement's result proves it changed rows: an UPDATE whose info
 * line ("Rows matched: 1  Changed: 1  Warnings: 0") counts changed rows.
 * Affected rows are no proof (mysql2 connects with CLIENT_FOUND_ROWS, so an
 * UPDATE reports the rows it matched), nor is an info line in another
 * language: prepare then reads the counters, as it must, since a prepared
 * branch that changed no row answers its XA COMMIT with XA_RBROLLBACK.
 */
function provesChangedRows(header: ResultSetHeader): boolean {
  return typeof header.info === 'string' && header.info.startsWith('Rows matched') && header.changedRows > 0;
}

/**
 * True when a server of this `SELECT VERSION()` keeps a prepared XA branch
 * when its connection closes: MariaDB 10.5 and later, MySQL 5.7.7 and later.
 * Older servers roll it back, which breaks two-phase commit.
 */
export function xaSurvivesDisconnect(version: string): boolean {
  const match = /^(\d+)\.(\d+)\.(\d+)/.exec(version);
  if (match === null) return false;
  const [major, minor, patch] = [Number(match[1]), Number(match[2]), Number(match[3])];
  const atLeast = (a: number, b: number, c: number) =>
    major !== a ? major > a : minor !== b ? minor > b : patch >= c;
  return /mariadb/i.test(version) ? atLeast(10, 5, 0) : atLeast(5, 7, 7);
}

/** Listens for a connection's asynchronous errors while dtx holds it (else they would crash the process). */
function guard(connection: PoolConnection, onError: () => void): () => void {
  const core = connection.connection;
  core.on('error', onError);
  return () => core.removeListener('error', onError);
}

const mariadbConnections: ConnectionHandling<PoolConnection> = {
  watch: guard,
  release(connection, destroy) {
    if (destroy) connection.destroy();
    else connection.release();
  },
};

export class MariaDbBranch implements SqlBranch {
  readonly gid: string;
  #connection: BranchConnection<PoolConnection>;
  #adapter: MariaDbAdapter;
  #xid: string;
  #changesAtStart: bigint;
  /** A statement proved it changed rows (`provesChangedRows`): prepare skips the counter read. */
  #changedRows = false;
  #queue = new SerialQueue();
  #evidence: string | undefined;

  /** @internal Use `MariaDbAdapter.begin`. */
  constructor(
    adapter: MariaDbAdapter,
    gid: string,
    xid: string,
    connection: PoolConnection,
    changesAtStart: bigint,
  ) {
    this.#adapter = adapter;
    this.gid = gid;
    this.#xid = xid;
    this.#changesAtStart = changesAtStart;
    this.#connection = new BranchConnection(gid, connection, mariadbConnections, () => adapter.forget(this));
  }

  get state(): BranchState {
    return this.#connection.state;
  }

  /** `marker:<ms>` once a branch that wrote its marker row prepared (see MariaDbAdapterOptions.markers). */
  get evidence(): string | undefined {
    return this.#evidence;
  }

  query<Row extends SqlRow = SqlRow>(sql: string, params: readonly unknown[] = []): Promise<SqlResult<Row>> {
    return this.#queue.run(async () => {
      const connection = this.#connection.active('query');
      try {
        const [result] = await connection.query<MysqlQueryResult>(sql, [...params]);
        if (Array.isArray(result)) return { rows: result as unknown as Row[], rowCount: result.length };
        const header = result as ResultSetHeader;
        if (!this.#changedRows && provesChangedRows(header)) this.#changedRows = true;
        return { rows: [], rowCount: header.affectedRows };
      } catch (error) {
        const failure = classifyMariaDbError(error, { gid: this.gid, what: 'a branch query' });
        await this.#abort(isConnectionError(error));
        throw failure;
      }
    });
  }

  /**
   * See SqlBranch.lockingRead: `LOCK IN SHARE MODE` (with `NOWAIT` when it may
   * not wait). MariaDB 10.11 has no `FOR SHARE`. Locks move no row counter, so
   * a branch of locking reads only votes readOnly (XA ROLLBACK releases them).
   */
  lockingRead<Row extends SqlRow = SqlRow>(
    sql: string,
    params: readonly unknown[],
    options: { wait: boolean },
  ): Promise<SqlResult<Row>> {
    return this.query<Row>(
      lockingReadSql(sql, options.wait ? 'LOCK IN SHARE MODE' : 'LOCK IN SHARE MODE NOWAIT'),
      params,
    );
  }

  prepare(): Promise<Vote> {
    return this.#queue.run(async () => {
      const connection = this.#connection.active('prepare');
      let readOnly: boolean;
      let markedAtMs: number | undefined;
      try {
        // One round trip fewer when a statement already proved it changed rows.
        readOnly = !this.#changedRows && (await rowChangeCount(connection)) === this.#changesAtStart;
        // The marker commits or rolls back with the branch (see `markers`); a
        // read-only branch is never prepared, so it needs none.
        if (!readOnly && (await this.#adapter.markersReady())) {
          markedAtMs = Date.now();
          await connection.query(
            `INSERT INTO ${markerTable} (gid, created_at) VALUES (?, FROM_UNIXTIME(? / 1000))`,
            [this.gid, markedAtMs],
          );
        }
        await connection.query(`XA END ${this.#xid}`);
      } catch (error) {
        const failure = classifyMariaDbError(error, { gid: this.gid, what: 'XA END' });
        await this.#abort(isConnectionError(error));
        throw failure;
      }
      if (readOnly) {
        try {
          await connection.query(`XA ROLLBACK ${this.#xid}`);
        } catch (error) {
          const failure = classifyMariaDbError(error, { gid: this.gid, what: 'read-only XA ROLLBACK' });
          this.#connection.detach('rolledBack', true);
          throw failure;
        }
        this.#connection.detach('readOnly', false);
        return 'readOnly';
      }
      try {
        await connection.query(`XA PREPARE ${this.#xid}`);
      } catch (error) {
        if (isConnectionError(error)) {
          this.#connection.detach('inDoubt', true);
          throw classifyMariaDbError(error, { gid: this.gid, what: 'XA PREPARE', inDoubt: true });
        }
        const failure = classifyMariaDbError(error, { gid: this.gid, what: 'XA PREPARE' });
        await this.#abort(false);
        throw failure;
      }
      if (markedAtMs !== undefined) {
        this.#evidence = `${markerEvidencePrefix}${markedAtMs}`;
        // Housekeeping, at most every few minutes; a failure waits for the next.
        this.#adapter.purgeMarkers(false).catch(() => undefined);
      }
      // The session now stays in the PREPARED state: hand the connection to the adapter to resolve on.
      this.#connection.handOver('prepared');
      this.#adapter.holdPrepared(this, this.gid, connection);
      return 'yes';
    });
  }

  rollback(): Promise<void> {
    return this.#queue.run(async () => {
      if (rollbackNeeded(this.gid, this.#connection.state)) await this.#abort(false);
    });
  }

  /** @internal Used by `MariaDbAdapter.close`. */
  abandon(): Promise<void> {
    return this.rollback().catch(() => undefined);
  }

  /**
   * Rolls the unprepared branch back and releases its connection. XA END may
   * fail when the branch is already ended or rolled back by the server; the
   * XA ROLLBACK that follows settles it either way. When anything fails the
   * connection is destroyed: the server rolls back an unprepared XA branch
   * whose connection closes.
   */
  #abort(connectionBroken: boolean): Promise<void> {
    return this.#connection.end('rolledBack', connectionBroken, async (connection) => {
      await connection.query(`XA END ${this.#xid}`).catch(() => undefined);
      try {
        await connection.query(`XA ROLLBACK ${this.#xid}`);
      } catch (error) {
        // XAER_NOTA: the server already rolled it back and forgot it; the session is clean.
        if (errnoOf(error) !== ER_XAER_NOTA) throw error;
      }
    });
  }
}

export class MariaDbAdapter implements AsyncDisposable, ResourceAdapter<MariaDbBranch> {
  readonly kind = 'mariadb';
  readonly gidBytesMax = gidLimits.mariadbBytesMax;
  readonly formatId: number;
  #pool: Pool;
  #ownsPool: boolean;
  #options: MariaDbAdapterOptions;
  #lifecycle = new AdapterLifecycle<MariaDbBranch>('MariaDB');
  /** Connections whose session holds a prepared xid, by gid. */
  #held = new Map<string, { connection: PoolConnection; unguard: () => void }>();
  /** The marker table exists (true), cannot be used (false), or is being made. */
  #markers: Promise<boolean> | undefined;
  /** Gids whose marker row may go: their branch is known committed. */
  /** When the last purge started (Date.now() ms), or 0. */
  #lastPurgeMs = 0;

  /** The pool branches are drawn from, for plain (non-2PC) statements such as schema setup. */
  get pool(): Pool {
    return this.#pool;
  }

  /** @internal Use `createMariaDbAdapter`. */
  constructor(pool: Pool, ownsPool: boolean, options: MariaDbAdapterOptions) {
    checkNonNegativeInteger(options.lockWaitTimeoutSeconds, 'lockWaitTimeoutSeconds');
    checkNonNegativeInteger(options.formatId, 'formatId');
    checkNonNegativeInteger(options.detachWaitMs, 'detachWaitMs');
    checkNonNegativeInteger(options.markerRetentionMs, 'markerRetentionMs');
    if (options.formatId !== undefined && options.formatId > 0x7fffffff) {
      throw new RangeError(`formatId must fit in 4 bytes, got ${options.formatId}`);
    }
    this.#pool = pool;
    this.#ownsPool = ownsPool;
    this.#options = options;
    this.formatId = options.formatId ?? 1;
  }

  /**
   * Throws DTX_UNSUPPORTED_SERVER when the server rolls prepared XA branches
   * back on disconnect (MariaDB before 10.5, MySQL before 5.7.7). `begin` runs
   * it once per adapter unless `checkPrerequisites: false`.
   */
  async checkPrerequisites(): Promise<void> {
    this.#lifecycle.checkOpen();
    let version: string;
    try {
      const [rows] = await this.#pool.query<RowDataPacket[]>('SELECT VERSION() AS version');
      version = String(rows[0]?.version ?? '');
    } catch (error) {
      throw classifyMariaDbError(error, { what: 'the server version check' });
    }
    if (!xaSurvivesDisconnect(version)) {
      throw new DtxError(
        'DTX_UNSUPPORTED_SERVER',
        `server ${version} rolls prepared XA transactions back when their connection closes; ` +
          'two-phase commit needs MariaDB 10.5+ or MySQL 5.7.7+',
      );
    }
  }

  async begin(gid: string): Promise<MariaDbBranch> {
    const xid = xidSql(gidToXid(checkGid(gid, this.gidBytesMax), this.formatId));
    this.#lifecycle.checkOpen();
    if (this.#options.checkPrerequisites !== false) {
      await this.#lifecycle.prerequisites(() => this.checkPrerequisites());
    }
    let connection: PoolConnection;
    try {
      connection = await this.#pool.getConnection();
    } catch (error) {
      throw classifyMariaDbError(error, { gid, what: 'connect' });
    }
    let changesAtStart: bigint;
    try {
      if (this.#options.lockWaitTimeoutSeconds !== undefined) {
        // An integer checked in the constructor.
        await connection.query(
          `SET SESSION innodb_lock_wait_timeout = ${this.#options.lockWaitTimeoutSeconds}`,
        );
      }
      if (this.#options.isolationLevel !== undefined) {
        await connection.query(
          `SET TRANSACTION ISOLATION LEVEL ${isolationSql[this.#options.isolationLevel]}`,
        );
      }
      changesAtStart = await rowChangeCount(connection);
      await connection.query(`XA START ${xid}`);
    } catch (error) {
      connection.destroy();
      throw classifyMariaDbError(error, { gid, what: 'XA START' });
    }
    return this.#lifecycle.admit(new MariaDbBranch(this, gid, xid, connection, changesAtStart));
  }

  commitPrepared(gid: string): Promise<Resolution> {
    return this.#resolve(gid, 'commit');
  }

  /**
   * How branch `gid` ended, from its marker row (`evidence` `marker:<ms>`: it
   * wrote one before it prepared): present, committed; absent, rolled back —
   * unless the purge watermark is past the marker's time, when it may have
   * been purged: `unknown`. Without that evidence (markers off, a read-only
   * branch, an older coordinator) the answer is `unknown` too.
   */
  async fateOf(gid: string, evidence: string | undefined): Promise<BranchFate> {
    checkGid(gid, this.gidBytesMax);
    this.#lifecycle.checkOpen();
    const markedAtMs = evidence?.startsWith(markerEvidencePrefix)
      ? Number(evidence.slice(markerEvidencePrefix.length))
      : Number.NaN;
    if (!Number.isSafeInteger(markedAtMs)) return 'unknown';
    let rows: RowDataPacket[];
    try {
      [rows] = await this.#pool.query<RowDataPacket[]>(
        `SELECT gid, UNIX_TIMESTAMP(created_at) * 1000 AS atMs FROM ${markerTable} WHERE gid IN (?, ?)`,
        [gid, markerWatermarkGid],
      );
    } catch (error) {
      throw classifyMariaDbError(error, { gid, what: 'reading the branch marker' });
    }
    if (rows.some((row) => row.gid === gid)) return 'committed';
    const watermark = rows.find((row) => row.gid === markerWatermarkGid);
    if (watermark !== undefined && Number(watermark.atMs) >= markedAtMs) return 'unknown';
    return 'rolledBack';
  }

  /** @internal Makes the marker table once; false when markers are off or the connection has no database. */
  markersReady(): Promise<boolean> {
    if (this.#options.markers === false) return Promise.resolve(false);
    this.#markers ??= (async () => {
      try {
        const [rows] = await this.#pool.query<RowDataPacket[]>('SELECT DATABASE() AS db');
        if (rows[0]?.db == null) return false;
        await this.#pool.query(markerTableSql);
        return true;
      } catch (error) {
        if (isConnectionError(error)) {
          this.#markers = undefined; // try again with the next branch
          throw classifyMariaDbError(error, { what: `creating ${markerTable}` });
        }
        // The server refused (no CREATE privilege, read-only database): work
        // without markers rather than refuse every transaction; resolved
        // branches then stay ambiguous, as with `markers: false`.
        return false;
      }
    })();
    return this.#markers;
  }

  /**
   * Deletes marker rows older than `markerRetentionMs` (now, or at most every
   * 10 minutes when `force` is false), a batch at a time. The watermark moves
   * first, so that no `fateOf` ever finds a purged row missing without it.
   * Runs in the background after a prepare; failures wait for the next one.
   */
  async purgeMarkers(force = true): Promise<void> {
    const nowMs = Date.now();
    if (!force && nowMs - this.#lastPurgeMs < markerPurgeEveryMs) return;
    this.#lastPurgeMs = nowMs;
    this.#lifecycle.checkOpen();
    const beforeMs = nowMs - (this.#options.markerRetentionMs ?? markerRetentionMsDefault);
    await this.#pool.query(
      `INSERT INTO ${markerTable} (gid, created_at) VALUES (?, FROM_UNIXTIME(? / 1000)) ` +
        'ON DUPLICATE KEY UPDATE created_at = GREATEST(created_at, VALUES(created_at))',
      [markerWatermarkGid, beforeMs],
    );
    // Pick rows with a plain (non-locking) read, which sees only committed
    // markers, then delete them by primary key: a range DELETE would lock its
    // way up to the next marker, which may belong to a branch prepared and in
    // doubt for hours, and stall both the purge and every new marker behind it.
    for (;;) {
      const [rows] = await this.#pool.query<RowDataPacket[]>(
        `SELECT gid FROM ${markerTable} WHERE created_at < FROM_UNIXTIME(? / 1000) AND gid <> ? LIMIT ${markerPurgeBatch}`,
        [beforeMs, markerWatermarkGid],
      );
      if (rows.length === 0) return;
      await this.#pool.query(`DELETE FROM ${markerTable} WHERE gid IN (?)`, [
        rows.map((row) => String(row.gid)),
      ]);
      if (rows.length < markerPurgeBatch) return;
    }
  }

  rollbackPrepared(gid: string): Promise<Resolution> {
    return this.#resolve(gid, 'rollback');
  }

  /**
   * A read-only session on its own pooled connection: REPEATABLE READ for
   * that one transaction, then START TRANSACTION WITH CONSISTENT SNAPSHOT,
   * which fixes InnoDB's read view at once.
   */
  async openSnapshot(): Promise<SnapshotSession> {
    this.#lifecycle.checkOpen();
    let connection: PoolConnection;
    try {
      connection = await this.#pool.getConnection();
    } catch (error) {
      throw classifyMariaDbError(error, { what: 'connect' });
    }
    try {
      await connection.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ');
      await connection.query('START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY');
    } catch (error) {
      connection.destroy();
      throw classifyMariaDbError(error, { what: 'opening a snapshot' });
    }
    let closed = false;
    return {
      query: async <Row extends SqlRow = SqlRow>(sql: string, params: readonly unknown[] = []) => {
        if (closed) throw new DtxError('DTX_INVALID_STATE', 'the snapshot session is closed');
        try {
          const [result] = await connection.query<MysqlQueryResult>(sql, [...params]);
          const rows = Array.isArray(result) ? (result as unknown as Row[]) : [];
          return { rows, rowCount: rows.length };
        } catch (error) {
          throw classifyMariaDbError(error, { what: 'a snapshot read' });
        }
      },
      close: async () => {
        if (closed) return;
        closed = true;
        try {
          await connection.query('COMMIT');
          connection.release();
        } catch {
          connection.destroy();
        }
      },
    };
  }

  async listPrepared(prefix = ''): Promise<PreparedBranchInfo[]> {
    checkGidPrefix(prefix, this.gidBytesMax);
    this.#lifecycle.checkOpen();
    const gids = await this.#recover();
    return gids
      .filter((gid) => gid.startsWith(prefix))
      .sort()
      .map((gid) => ({ gid }));
  }

  /**
   * Rolls back active branches, ends the pool if the adapter made it, and
   * closes the connections holding prepared branches: the branches detach from
   * them and stay prepared (MariaDB 10.5+), for any process to resolve by gid.
   */
  /** `await using` closes the adapter on leaving the block. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async close(): Promise<void> {
    if (!(await this.#lifecycle.close())) return;
    for (const { connection, unguard } of this.#held.values()) {
      unguard();
      connection.destroy();
    }
    this.#held.clear();
    if (this.#ownsPool) await this.#pool.end();
  }

  /** @internal A branch that has finished. */
  forget(branch: MariaDbBranch): void {
    this.#lifecycle.forget(branch);
  }

  /** @internal A branch that prepared: keep its connection to resolve on. */
  holdPrepared(branch: MariaDbBranch, gid: string, connection: PoolConnection): void {
    this.#lifecycle.forget(branch);
    if (this.#lifecycle.closed) {
      connection.destroy();
      return;
    }
    const entry = {
      connection,
      unguard: guard(connection, () => {
        // The connection died: the branch detached from it and is resolvable from any session.
        if (this.#held.get(gid) === entry) this.#held.delete(gid);
      }),
    };
    this.#held.set(gid, entry);
  }

  async #resolve(gid: string, decision: 'commit' | 'rollback'): Promise<Resolution> {
    const xid = xidSql(gidToXid(checkGid(gid, this.gidBytesMax), this.formatId));
    this.#lifecycle.checkOpen();
    const statement = decision === 'commit' ? `XA COMMIT ${xid}` : `XA ROLLBACK ${xid}`;

    const held = this.#held.get(gid);
    // Set when an attempt was cut off after it was sent: the server may have
    // applied it, so finding the branch gone afterwards proves nothing.
    let lostAttempt: unknown;
    if (held !== undefined) {
      this.#held.delete(gid);
      held.unguard();
      try {
        await held.connection.query(statement);
        held.connection.release();
        return 'done';
      } catch (error) {
        if (isConnectionError(error)) {
          // The branch detached when the connection broke; resolve it from the pool below.
          lostAttempt = error;
          held.connection.destroy();
        } else {
          held.connection.destroy();
          return this.#resolved(error, gid, decision);
        }
      }
    }

    const detachWaitMs = this.#options.detachWaitMs ?? 2000;
    const deadline = Date.now() + detachWaitMs;
    for (;;) {
      try {
        await this.#pool.query(statement);
        return 'done';
      } catch (error) {
        if (errnoOf(error) !== ER_XAER_NOTA) return this.#resolved(error, gid, decision);
      }
      // XAER_NOTA: unknown, unless XA RECOVER still lists it (attached to a live or dying session).
      if (!(await this.#recover()).includes(gid)) {
        // Gone after our own attempt was cut off: most likely that attempt did
        // it. Say so as a failure in doubt (the caller retries, and judges the
        // next `unknown` knowing an attempt may have landed), never as a plain
        // `unknown` that reads as someone else's doing.
        if (lostAttempt !== undefined) {
          throw new ResourceUnavailableError(
            `the connection of branch ${gid} broke during XA ${decision.toUpperCase()}; it may have been applied`,
            { gid, inDoubt: true, cause: lostAttempt },
          );
        }
        return 'unknown';
      }
      if (Date.now() >= deadline) {
        throw new DtxError(
          'DTX_BRANCH_BUSY',
          `branch ${gid} is prepared but still attached to another MariaDB session after ${detachWaitMs} ms; ` +
            'retry once that session has ended',
          { gid },
        );
      }
      await sleep(25);
    }
  }

  /** Maps the error of an XA COMMIT/ROLLBACK that did not succeed. */
  #resolved(error: unknown, gid: string, decision: 'commit' | 'rollback'): Resolution {
    const errno = errnoOf(error);
    if (errno === ER_XAER_NOTA) return 'unknown';
    if (errno === ER_XA_RBROLLBACK || errno === ER_XA_RBDEADLOCK || errno === ER_XA_RBTIMEOUT) {
      // The server rolled the branch back on its own.
      if (decision === 'rollback') return 'done';
      throw new HeuristicError(
        `MariaDB rolled back branch ${gid} instead of committing it (${messageOf(error)}); ` +
          'a read-only XA branch that was prepared reports this too',
        { cause: error, gid, decision, outcome: 'rolledBack' },
      );
    }
    throw classifyMariaDbError(error, { gid, what: decision === 'commit' ? 'XA COMMIT' : 'XA ROLLBACK' });
  }

  /** Gids of the prepared dtx branches XA RECOVER reports (other formatIDs and foreign xids skipped). */
  async #recover(): Promise<string[]> {
    let rows: RowDataPacket[];
    try {
      [rows] = await this.#pool.query<RowDataPacket[]>('XA RECOVER');
    } catch (error) {
      throw classifyMariaDbError(error, { what: 'XA RECOVER' });
    }
    const gids: string[] = [];
    for (const row of rows) {
      if (Number(row.formatID) !== this.formatId) continue;
      const data: unknown = row.data;
      const text = Buffer.isBuffer(data) ? data.toString('latin1') : String(data);
      const gtridLength = Number(row.gtrid_length);
      const bqualLength = Number(row.bqual_length);
      if (text.length !== gtridLength + bqualLength) continue;
      const gid = text;
      const canonical = gidToXid(gid, this.formatId);
      if (canonical.gtrid.length !== gtridLength || !isValidGid(gid, this.gidBytesMax)) continue;
      gids.push(gid);
    }
    return gids;
  }
}

/**
 * Creates a MariaDB adapter. Connects lazily: nothing is sent to the server
 * until the first call that needs it.
 */
export async function createMariaDbAdapter(options: MariaDbAdapterOptions): Promise<MariaDbAdapter> {
  if (options.pool !== undefined) return new MariaDbAdapter(options.pool, false, options);
  if (options.connection === undefined)
    throw new TypeError('createMariaDbAdapter needs `pool` or `connection`');
  const { createPool } = await import('mysql2/promise');
  const pool = createPool({ ...options.connection, multipleStatements: false });
  return new MariaDbAdapter(pool, true, options);
}
