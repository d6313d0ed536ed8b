// The embedded SQLite participant, over better-sqlite3: a real resource manager
// for two-phase commit built on a database that has no prepared transactions.
//
// Data model, deliberately small: one key/value table, `dtx_kv(key, value)`,
// values are JSON. A branch never writes `dtx_kv` before the decision. Instead:
//
// - while active, it buffers its writes (put/delete) in memory and remembers
//   what it read (optimistic concurrency; nothing durable, so an active branch
//   that dies leaves no trace: presumed abort);
// - prepare, in ONE local write transaction (BEGIN IMMEDIATE): checks that no
//   other prepared branch locks a key it reads or writes (else
//   DTX_LOCK_CONFLICT) and that every key it read still has the value it saw
//   (else DTX_SERIALIZATION_FAILURE), then records the branch (`dtx_branch`),
//   its intents (`dtx_branch_write`) and its key locks (`dtx_lock`);
// - commitPrepared, in one local transaction: applies the intents to `dtx_kv`
//   and deletes the branch, its intents and its locks;
// - rollbackPrepared: deletes the branch, its intents and its locks.
//
// A key locked by a prepared branch cannot be read or written by any other
// branch until that branch is resolved: the conflicting call fails with a
// retryable LockConflictError (no waiting) and rolls its own branch back.
// The database runs in WAL mode with synchronous=FULL, so a prepared branch
// survives process death (and power loss) and is found by `listPrepared` in a
// fresh process. Several processes may share one file: SQLite's own write lock
// serializes prepares and resolves, and the lock table is in the file.
//
// Writers that bypass this adapter (plain SQL on dtx_kv) bypass the locks too.

import '../dispose.ts';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import type BetterSqlite3 from 'better-sqlite3';
import { DtxError, LockConflictError, ResourceUnavailableError } from '../errors.ts';
import { sqliteBusyTimeoutMsDefault, sqliteKeyLengthMax } from '../runtime/limits.ts';
import { checkGid, checkGidPrefix, gidLimits } from './gid.ts';
import { checkNonNegativeInteger, messageOf, stringField } from './internal.ts';
import { adapterClosedError, notActiveError, rollbackNeeded } from './lifecycle.ts';
import type { Branch, BranchState, PreparedBranchInfo, Resolution, ResourceAdapter, Vote } from './types.ts';

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

export interface SqliteAdapterOptions {
  /** Path of the database file. */
  path: string;
  /**
   * Create the file (with the dtx tables) when it does not exist. Default
   * false: a missing file is DTX_LOG_NOT_FOUND naming the path, and nothing is
   * created, so that a mistyped path never passes for an empty participant
   * whose prepared branches recovery would then not find.
   */
  create?: boolean;
  /** How long to wait for another connection's write lock on the file. Default 5000. */
  busyTimeoutMs?: number;
}

const schemaVersion = 1;

const schemaSql = `
CREATE TABLE IF NOT EXISTS dtx_kv (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
) STRICT, WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dtx_branch (
  gid TEXT PRIMARY KEY,
  state TEXT NOT NULL CHECK (state = 'prepared'),
  created_at_ms INTEGER NOT NULL,
  prepared_at_ms INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS dtx_branch_write (
  gid TEXT NOT NULL REFERENCES dtx_branch (gid) ON DELETE CASCADE,
  seq INTEGER NOT NULL,
  key TEXT NOT NULL,
  op TEXT NOT NULL CHECK (op IN ('put', 'delete')),
  value TEXT,
  PRIMARY KEY (gid, seq)
) STRICT;
CREATE TABLE IF NOT EXISTS dtx_lock (
  key TEXT PRIMARY KEY,
  gid TEXT NOT NULL REFERENCES dtx_branch (gid) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dtx_lock_by_gid ON dtx_lock (gid);
`;

type Intent = { op: 'put'; valueJson: string } | { op: 'delete' };

function checkKey(key: unknown): string {
  if (typeof key !== 'string' || key.length === 0 || key.length > sqliteKeyLengthMax) {
    throw new TypeError(`a key must be a non-empty string of at most ${sqliteKeyLengthMax} characters`);
  }
  return key;
}

function toJson(value: JsonValue): string {
  const text = JSON.stringify(value);
  if (text === undefined) throw new TypeError('value is not JSON-serializable');
  return text;
}

/** Turns a better-sqlite3 error into a DtxError. */
function classifySqliteError(error: unknown, context: { gid?: string; what: string }): DtxError {
  if (error instanceof DtxError) return error;
  const code = stringField(error, 'code') ?? '';
  const base = { cause: error, gid: context.gid };
  if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) {
    return new ResourceUnavailableError(
      `SQLite database is locked by another connection during ${context.what}: ${messageOf(error)}`,
      base,
    );
  }
  if (code.startsWith('SQLITE_IOERR') || code === 'SQLITE_FULL' || code.startsWith('SQLITE_CANTOPEN')) {
    return new ResourceUnavailableError(
      `SQLite I/O failure during ${context.what}: ${messageOf(error)}`,
      base,
    );
  }
  return new DtxError('DTX_QUERY_FAILED', `SQLite failed during ${context.what}: ${messageOf(error)}`, base);
}

interface Statements {
  readCommitted: BetterSqlite3.Statement<[string, string], { holder: string | null; value: string | null }>;
  lockHolder: BetterSqlite3.Statement<[string], { gid: string }>;
  branchExists: BetterSqlite3.Statement<[string], { one: number }>;
  insertBranch: BetterSqlite3.Statement<[string, number, number]>;
  insertWrite: BetterSqlite3.Statement<[string, number, string, string, string | null]>;
  insertLock: BetterSqlite3.Statement<[string, string]>;
  writesOf: BetterSqlite3.Statement<[string], { key: string; op: string; value: string | null }>;
  upsertValue: BetterSqlite3.Statement<[string, string]>;
  deleteValue: BetterSqlite3.Statement<[string]>;
  deleteBranch: BetterSqlite3.Statement<[string]>;
  listPrepared: BetterSqlite3.Statement<[string, string], { gid: string; prepared_at_ms: number }>;
}

/**
 * A branch on the SQLite participant. `get`, `put` and `delete` are
 * synchronous (the database is in-process); the lifecycle is the port's.
 */
export class SqliteBranch implements Branch {
  readonly gid: string;
  #state: BranchState = 'active';
  #adapter: SqliteAdapter;
  #createdAtMs: number;
  /** JSON text seen at the first read of each key; null when the key was absent. */
  #reads = new Map<string, string | null>();
  /** Buffered writes, latest per key, in first-write order. */
  #writes = new Map<string, Intent>();

  /** @internal Use `SqliteAdapter.begin`. */
  constructor(adapter: SqliteAdapter, gid: string, createdAtMs: number) {
    this.#adapter = adapter;
    this.gid = gid;
    this.#createdAtMs = createdAtMs;
  }

  get state(): BranchState {
    return this.#state;
  }

  /**
   * The value of `key` as this branch sees it: its own buffered write, else the
   * committed value (undefined when absent). Repeatable: a second read of a key
   * returns what the first one saw. Throws LockConflictError (and rolls this
   * branch back) when another prepared branch holds the key.
   */
  get(key: string): JsonValue | undefined {
    this.#checkActive('get');
    checkKey(key);
    const intent = this.#writes.get(key);
    if (intent !== undefined)
      return intent.op === 'put' ? (JSON.parse(intent.valueJson) as JsonValue) : undefined;
    if (!this.#reads.has(key)) {
      const value = this.#guard('get', () => {
        const row = this.#adapter.statements().readCommitted.get(key, key);
        this.#failIfLocked(key, row?.holder ?? null);
        return row?.value ?? null;
      });
      this.#reads.set(key, value);
    }
    const seen = this.#reads.get(key) ?? null;
    return seen === null ? undefined : (JSON.parse(seen) as JsonValue);
  }

  /** Buffers a write of `key`. Throws LockConflictError (and rolls back) when another prepared branch holds the key. */
  put(key: string, value: JsonValue): void {
    this.#checkActive('put');
    checkKey(key);
    const valueJson = toJson(value);
    this.#checkNotLocked(key);
    this.#writes.delete(key);
    this.#writes.set(key, { op: 'put', valueJson });
  }

  /** Buffers a delete of `key`. Same lock rule as `put`. */
  delete(key: string): void {
    this.#checkActive('delete');
    checkKey(key);
    this.#checkNotLocked(key);
    this.#writes.delete(key);
    this.#writes.set(key, { op: 'delete' });
  }

  async prepare(): Promise<Vote> {
    this.#checkActive('prepare');
    const statements = this.#adapter.statements();
    const db = this.#adapter.database();
    const validate = (): void => {
      for (const [key, seen] of this.#reads) {
        const row = statements.readCommitted.get(key, key);
        this.#failIfLocked(key, row?.holder ?? null);
        if ((row?.value ?? null) !== seen) {
          throw new DtxError(
            'DTX_SERIALIZATION_FAILURE',
            `key ${JSON.stringify(key)} changed after branch ${this.gid} read it`,
            { gid: this.gid },
          );
        }
      }
    };
    if (this.#writes.size === 0) {
      // Read-only: validate the reads in one consistent read transaction; nothing to make durable.
      this.#guard('prepare', () => db.transaction(validate).deferred());
      this.#finish('readOnly');
      return 'readOnly';
    }
    const nowMs = Date.now();
    this.#guard('prepare', () =>
      db
        .transaction(() => {
          if (statements.branchExists.get(this.gid) !== undefined) {
            throw new DtxError('DTX_DUPLICATE_GID', `gid ${this.gid} is already prepared here`, {
              gid: this.gid,
            });
          }
          validate();
          for (const key of this.#writes.keys())
            this.#failIfLocked(key, statements.lockHolder.get(key)?.gid ?? null);
          statements.insertBranch.run(this.gid, this.#createdAtMs, nowMs);
          let seq = 0;
          for (const [key, intent] of this.#writes) {
            statements.insertWrite.run(
              this.gid,
              seq++,
              key,
              intent.op,
              intent.op === 'put' ? intent.valueJson : null,
            );
            statements.insertLock.run(key, this.gid);
          }
        })
        .immediate(),
    );
    this.#finish('prepared');
    return 'yes';
  }

  async rollback(): Promise<void> {
    if (rollbackNeeded(this.gid, this.#state)) this.#finish('rolledBack');
  }

  #checkActive(operation: string): void {
    if (this.#state !== 'active') throw notActiveError(this.gid, operation, this.#state);
    this.#adapter.checkOpen();
  }

  #checkNotLocked(key: string): void {
    this.#guard('lock check', () => {
      this.#failIfLocked(key, this.#adapter.statements().lockHolder.get(key)?.gid ?? null);
    });
  }

  #failIfLocked(key: string, holder: string | null): void {
    if (holder === null || holder === this.gid) return;
    throw new LockConflictError(
      `key ${JSON.stringify(key)} is locked by prepared branch ${holder}; branch ${this.gid} is rolled back`,
      { gid: this.gid, key, holderGid: holder },
    );
  }

  /** Runs `work`; any failure rolls this branch back and is rethrown as a DtxError. */
  #guard<T>(what: string, work: () => T): T {
    try {
      return work();
    } catch (error) {
      this.#finish('rolledBack');
      throw classifySqliteError(error, { gid: this.gid, what });
    }
  }

  #finish(state: BranchState): void {
    this.#state = state;
    this.#reads.clear();
    this.#writes.clear();
    this.#adapter.forget(this);
  }
}

export class SqliteAdapter implements AsyncDisposable, ResourceAdapter<SqliteBranch> {
  readonly kind = 'sqlite';
  readonly gidBytesMax = gidLimits.sqliteBytesMax;
  readonly path: string;
  #db: BetterSqlite3.Database;
  #statements: Statements;
  #active = new Map<string, SqliteBranch>();
  #closed = false;

  /** @internal Use `createSqliteAdapter`. */
  constructor(db: BetterSqlite3.Database, path: string) {
    this.#db = db;
    this.path = path;
    this.#statements = {
      readCommitted: db.prepare(
        'SELECT (SELECT gid FROM dtx_lock WHERE key = ?) AS holder, (SELECT value FROM dtx_kv WHERE key = ?) AS value',
      ),
      lockHolder: db.prepare('SELECT gid FROM dtx_lock WHERE key = ?'),
      branchExists: db.prepare('SELECT 1 AS one FROM dtx_branch WHERE gid = ?'),
      insertBranch: db.prepare(
        "INSERT INTO dtx_branch (gid, state, created_at_ms, prepared_at_ms) VALUES (?, 'prepared', ?, ?)",
      ),
      insertWrite: db.prepare(
        'INSERT INTO dtx_branch_write (gid, seq, key, op, value) VALUES (?, ?, ?, ?, ?)',
      ),
      insertLock: db.prepare('INSERT INTO dtx_lock (key, gid) VALUES (?, ?)'),
      writesOf: db.prepare('SELECT key, op, value FROM dtx_branch_write WHERE gid = ? ORDER BY seq'),
      upsertValue: db.prepare(
        'INSERT INTO dtx_kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
      ),
      deleteValue: db.prepare('DELETE FROM dtx_kv WHERE key = ?'),
      // Cascades to dtx_branch_write and dtx_lock.
      deleteBranch: db.prepare('DELETE FROM dtx_branch WHERE gid = ?'),
      listPrepared: db.prepare(
        'SELECT gid, prepared_at_ms FROM dtx_branch WHERE substr(gid, 1, length(?)) = ? ORDER BY gid',
      ),
    };
  }

  async begin(gid: string): Promise<SqliteBranch> {
    checkGid(gid, this.gidBytesMax);
    this.checkOpen();
    let prepared: boolean;
    try {
      prepared = this.#statements.branchExists.get(gid) !== undefined;
    } catch (error) {
      throw classifySqliteError(error, { gid, what: 'begin' });
    }
    if (prepared || this.#active.has(gid)) {
      throw new DtxError('DTX_DUPLICATE_GID', `gid ${gid} is already in use here`, { gid });
    }
    const branch = new SqliteBranch(this, gid, Date.now());
    this.#active.set(gid, branch);
    return branch;
  }

  /** The committed value of `key` (undefined when absent), ignoring locks: a read-committed peek. */
  read(key: string): JsonValue | undefined {
    this.checkOpen();
    checkKey(key);
    const row = this.#statements.readCommitted.get(key, key);
    return row?.value == null ? undefined : (JSON.parse(row.value) as JsonValue);
  }

  /** The gid of the prepared branch that locks `key`, if any. */
  lockHolder(key: string): string | undefined {
    this.checkOpen();
    checkKey(key);
    return this.#statements.lockHolder.get(key)?.gid;
  }

  async commitPrepared(gid: string): Promise<Resolution> {
    checkGid(gid, this.gidBytesMax);
    this.checkOpen();
    const s = this.#statements;
    try {
      return this.#db
        .transaction((): Resolution => {
          if (s.branchExists.get(gid) === undefined) return 'unknown';
          for (const write of s.writesOf.all(gid)) {
            if (write.op === 'put' && write.value !== null) s.upsertValue.run(write.key, write.value);
            else s.deleteValue.run(write.key);
          }
          s.deleteBranch.run(gid);
          return 'done';
        })
        .immediate();
    } catch (error) {
      throw classifySqliteError(error, { gid, what: 'commitPrepared' });
    }
  }

  async rollbackPrepared(gid: string): Promise<Resolution> {
    checkGid(gid, this.gidBytesMax);
    this.checkOpen();
    try {
      return this.#statements.deleteBranch.run(gid).changes > 0 ? 'done' : 'unknown';
    } catch (error) {
      throw classifySqliteError(error, { gid, what: 'rollbackPrepared' });
    }
  }

  async listPrepared(prefix = ''): Promise<PreparedBranchInfo[]> {
    checkGidPrefix(prefix, this.gidBytesMax);
    this.checkOpen();
    try {
      return this.#statements.listPrepared
        .all(prefix, prefix)
        .map((row) => ({ gid: row.gid, preparedAt: new Date(row.prepared_at_ms) }));
    } catch (error) {
      throw classifySqliteError(error, { what: 'listPrepared' });
    }
  }

  /** Drops active branches (they leave nothing behind) and closes the file. Prepared branches stay. */
  /** `await using` closes the adapter on leaving the block. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    for (const branch of [...this.#active.values()]) await branch.rollback();
    this.#closed = true;
    this.#db.close();
  }

  /** @internal */
  statements(): Statements {
    return this.#statements;
  }

  /** @internal */
  database(): BetterSqlite3.Database {
    return this.#db;
  }

  /** @internal */
  forget(branch: SqliteBranch): void {
    if (this.#active.get(branch.gid) === branch) this.#active.delete(branch.gid);
  }

  /** @internal */
  checkOpen(): void {
    if (this.#closed) throw adapterClosedError('SQLite');
  }
}

/**
 * Opens (creating when needed) the SQLite participant's database file, in WAL
 * mode with synchronous=FULL, and creates the dtx tables.
 */
export async function createSqliteAdapter(options: SqliteAdapterOptions): Promise<SqliteAdapter> {
  checkNonNegativeInteger(options.busyTimeoutMs, 'busyTimeoutMs');
  const { default: Database } = await import('better-sqlite3');
  const memory = options.path === ':memory:' || options.path === '';
  if (!memory && options.create !== true && !existsSync(options.path)) {
    throw new DtxError(
      'DTX_LOG_NOT_FOUND',
      `SQLite participant ${resolve(options.path)} does not exist; nothing was created ` +
        '(create it explicitly: `dtx bench --init`, or `create: true`)',
    );
  }
  let db: BetterSqlite3.Database;
  try {
    db = new Database(options.path, { fileMustExist: !memory && options.create !== true });
  } catch (error) {
    throw classifySqliteError(error, { what: `opening ${options.path}` });
  }
  try {
    db.pragma(`busy_timeout = ${options.busyTimeoutMs ?? sqliteBusyTimeoutMsDefault}`);
    const mode = db.pragma('journal_mode = WAL', { simple: true });
    if (String(mode).toLowerCase() !== 'wal')
      throw new Error(`could not switch to WAL mode (got ${String(mode)})`);
    db.pragma('synchronous = FULL');
    db.pragma('foreign_keys = ON');
    db.transaction(() => {
      const version = Number(db.pragma('user_version', { simple: true }));
      if (version > schemaVersion) {
        throw new Error(`database schema version ${version} is newer than this dtx (${schemaVersion})`);
      }
      db.exec(schemaSql);
      if (version < schemaVersion) db.pragma(`user_version = ${schemaVersion}`);
    }).immediate();
  } catch (error) {
    db.close();
    throw classifySqliteError(error, { what: `opening ${options.path}` });
  }
  return new SqliteAdapter(db, options.path);
}
