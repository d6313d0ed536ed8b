// The embedded durable log: one SQLite file per coordinator, over
// better-sqlite3. This is the default store of the runtime — nothing to run,
// and a forced append is one fsync of the write-ahead log.
//
// Durability: WAL journal mode, and every write batch (one SQLite
// transaction; see ./group-commit.ts for how concurrent appends share one) is
// on stable storage before its appends resolve. On the main thread the
// connection runs with `synchronous = NORMAL` (SQLite syncs the WAL before a
// checkpoint copies it into the database, and the database after) and the log
// itself then fdatasyncs the WAL file after each batch's commit, on libuv's
// thread pool (WalSync below): the same guarantee as `synchronous = FULL`,
// whose fsync inside the commit would block the event loop, and every
// transaction in flight with it, for the length of each flush. A worker-thread
// log (`thread: 'worker'`) and `:memory:` keep `synchronous = FULL`.
//
// Records are JSON text in one table, `dtx_log(seq, record, at)` (`at`:
// append time in ms); the log's identity (./identity.ts) is a row of
// `dtx_log_meta`, which checkpoints never touch.
//
// Existence: a missing file is created only with `create: true`; otherwise
// opening fails with reason `notFound` and creates nothing (no file, no
// directory), so a mistyped path can never pass for an empty log.
//
// One process at a time: the connection runs in EXCLUSIVE locking mode and
// takes the write lock when it opens (`BEGIN EXCLUSIVE`), then keeps it until
// `close()`. A second opener — another process or another connection in this
// one — waits up to `lockTimeoutMs` and then fails with a `LogError` of reason
// `locked`. The lock is an OS file lock, so it dies with its process (even on
// SIGKILL) and the next opener takes over and recovers from the WAL.
//
// better-sqlite3 is synchronous: a write blocks its thread for the duration
// of its fsync. With `thread: 'worker'` the connection lives on a worker
// thread of its own (./sqlite-thread.ts): the event loop goes on serving the
// transactions in flight while a batch is made durable, and group commit
// collects the next batch meanwhile (one fsync per batch either way).
// The driver is loaded when a log is opened, so importing this module does not
// require it to be installed.

import {
  closeSync,
  existsSync,
  fdatasync,
  fstatSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  statSync,
} from 'node:fs';
import { hostname } from 'node:os';
import { dirname, resolve } from 'node:path';
import type BetterSqlite3 from 'better-sqlite3';
import { LogError } from './errors.ts';
import {
  checkSyncsInFlight,
  GroupCommitLog,
  type LogBackend,
  type StoredRow,
  type WriteBatch,
} from './group-commit.ts';
import { checkIdentity, checkIdentityOptions, newIdentity, noIdentity, parseIdentity } from './identity.ts';
import type { DurableLog, LogIdentity, LogOptions } from './types.ts';

export interface SqliteLogOptions<R> extends LogOptions<R> {
  /**
   * Allows `:memory:` (and `''`, a private temporary database). Nothing
   * survives the process, so this is for tests only; without it such a path
   * is refused with a `LogError` of reason `notDurable`.
   */
  unsafeMemory?: boolean;
  /** How long opening waits for another connection's lock on the file before failing with reason `locked`. Default 0. */
  lockTimeoutMs?: number;
  /**
   * Where the connection lives. `main` (the default): on the calling thread;
   * every write blocks the event loop for its fsync. `worker`: a worker
   * thread of its own, so that the fsync of each group commit runs while the
   * event loop goes on serving the transactions in flight, at the cost of a
   * message to and from the thread per batch (`npm run bench:2pc --
   * --compare-log-thread` measures both). Durability is the same: the same
   * SQLite settings, and a write resolves only once its transaction is on
   * stable storage. `:memory:` is always `main`.
   */
  thread?: 'worker' | 'main';
  /**
   * How many fdatasyncs of the WAL may be in flight at once (1 to 16; main
   * thread and a file only). Default 1: a record appended while a batch is
   * syncing waits for that sync, then for its own batch's. With 2 or more its
   * batch is written and its sync started at once, so it waits about one sync
   * instead of up to two, at the cost of more, smaller batches (more CPU per
   * record). Batches still resolve in order, each once it and every batch
   * before it are durable. Each sync in flight holds a libuv thread-pool
   * thread (4 by default, UV_THREADPOOL_SIZE), so more than that only queue.
   * `dtx acceptor --syncs-in-flight` sets it for a Paxos Commit acceptor.
   */
  syncsInFlight?: number;
}

/**
 * Bumped when the table layout changes; stored in `PRAGMA user_version`.
 * 1: `dtx_log(seq, record)`. 2: adds `dtx_log.at` and `dtx_log_meta` (identity).
 */
const schemaVersion = 2;

function isMemoryPath(path: string): boolean {
  return path === ':memory:' || path === '';
}

function sqliteCode(error: unknown): string {
  const code = typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined;
  return typeof code === 'string' ? code : '';
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** fsync a directory, so that an entry just created in it survives power loss. */
function syncDirectory(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * The pids holding a POSIX lock on `path`, read from /proc/locks (Linux; an
 * empty list elsewhere or when it cannot tell). Only for messages: the lock
 * itself is what keeps a second process out.
 */
export function lockHolderPids(path: string): number[] {
  try {
    const { ino } = statSync(path);
    const pids = new Set<number>();
    for (const line of readFileSync('/proc/locks', 'utf8').split('\n')) {
      // "1: POSIX  ADVISORY  WRITE 4242 08:01:1234567 0 EOF"
      const fields = line.trim().split(/\s+/);
      const inode = fields[5]?.split(':')[2];
      if (fields[1] === 'POSIX' && inode === String(ino)) pids.add(Number(fields[4]));
    }
    return [...pids].filter((pid) => Number.isSafeInteger(pid) && pid > 0);
  } catch {
    return [];
  }
}

function openError(description: string, error: unknown, path?: string): LogError {
  if (error instanceof LogError) return error;
  const code = sqliteCode(error);
  if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) {
    const pids = path === undefined ? [] : lockHolderPids(path);
    const holder = pids.length === 0 ? 'another process or connection' : `process ${pids.join(', ')}`;
    return new LogError(
      'locked',
      `${description} is owned by ${holder} (SQLite holds it locked until that one closes it or exits); ` +
        'nothing was touched',
      { cause: error },
    );
  }
  if (code === 'SQLITE_NOTADB' || code.startsWith('SQLITE_CORRUPT')) {
    return new LogError('corrupt', `${description} is not a valid SQLite log: ${messageOf(error)}`, {
      cause: error,
    });
  }
  return new LogError('unavailable', `${description} could not be opened: ${messageOf(error)}`, {
    cause: error,
  });
}

/**
 * Opens the SQLite log at `path` and takes its lock for this process until
 * `close()`. With `create: true`, creates it (and its parent directories) when
 * missing; otherwise a missing file is a `LogError` of reason `notFound`.
 */
export async function openSqliteLog<R>(
  path: string,
  options: SqliteLogOptions<R> = {},
): Promise<DurableLog<R> & AsyncDisposable> {
  const { memory, description } = checkOpenArguments(path, options);
  checkIdentityOptions(options);
  const syncsInFlight = checkSyncsInFlight(options.syncsInFlight ?? 1);
  if (syncsInFlight > 1 && (memory || options.thread === 'worker')) {
    throw new RangeError(
      `${description}: syncsInFlight ${syncsInFlight} needs a log file on the main thread (thread: 'main')`,
    );
  }
  if (options.thread !== 'worker' || memory) {
    const { db, identity } = await openSqliteDatabase(path, options, memory ? 'full' : 'wal-sync');
    let wal: WalSync | undefined;
    try {
      wal = memory ? undefined : new WalSync(path, description, syncsInFlight);
    } catch (error) {
      db.close();
      throw error;
    }
    return new GroupCommitLog<R>(
      sqliteBackend(db, description, wal),
      options,
      { identity },
      { syncsInFlight },
    );
  }
  const { startSqliteWorker } = await import('./sqlite-thread.ts');
  const { backend, identity } = await startSqliteWorker(path, workerOptions(options), description);
  return new GroupCommitLog<R>(backend, options, { identity });
}

/** What of the options the worker needs: plain data (a `decode` function cannot cross threads). */
export type SqliteWorkerOptions = Pick<
  SqliteLogOptions<unknown>,
  'create' | 'identity' | 'expect' | 'lockTimeoutMs' | 'unsafeMemory'
>;

function workerOptions(options: SqliteLogOptions<unknown>): SqliteWorkerOptions {
  const { create, identity, expect, lockTimeoutMs, unsafeMemory } = options;
  return { create, identity, expect, lockTimeoutMs, unsafeMemory };
}

/**
 * Opens the database file and sets it up (the steps below, each short enough
 * to review alone), on whichever thread will own the connection.
 */
export async function openSqliteDatabase(
  path: string,
  options: SqliteWorkerOptions,
  sync: 'full' | 'wal-sync' = 'full',
): Promise<{ db: BetterSqlite3.Database; identity: LogIdentity; description: string }> {
  const { memory, description, lockTimeoutMs } = checkOpenArguments(path, options);
  const create = options.create === true;
  const { created, firstCreatedDir } = prepareLocation(path, description, memory, create);
  const db = await connect(path, description, memory, create, lockTimeoutMs);
  try {
    const identity = setUpDatabase(db, description, memory, create, options);
    // The setup's transaction was fsync'd under FULL; from here on the log's
    // own fdatasync of the WAL (WalSync) makes each batch durable.
    if (sync === 'wal-sync') db.pragma('synchronous = NORMAL');
    syncCreatedDirectories(path, created, firstCreatedDir);
    return { db, identity, description };
  } catch (error) {
    db.close();
    throw openError(description, error, memory ? undefined : path);
  }
}

/** Refuses an in-memory path without `unsafeMemory` and a bad `lockTimeoutMs`, before anything is touched. */
function checkOpenArguments(
  path: string,
  options: SqliteWorkerOptions,
): { memory: boolean; description: string; lockTimeoutMs: number } {
  const memory = isMemoryPath(path);
  const description = memory ? 'SQLite log :memory:' : `SQLite log ${resolve(path)}`;
  if (memory && options.unsafeMemory !== true) {
    throw new LogError(
      'notDurable',
      `${description}: an in-memory database does not survive a crash, so it cannot be a durable log; ` +
        'give a file path (or set unsafeMemory: true, for tests only)',
    );
  }
  const lockTimeoutMs = options.lockTimeoutMs ?? 0;
  if (!Number.isSafeInteger(lockTimeoutMs) || lockTimeoutMs < 0) {
    throw new RangeError(`lockTimeoutMs must be a non-negative integer, got ${lockTimeoutMs}`);
  }
  return { memory, description, lockTimeoutMs };
}

/**
 * Without `create`, a missing file is `notFound`; with it, the parent
 * directories are made. Returns what was created, for syncCreatedDirectories.
 */
function prepareLocation(
  path: string,
  description: string,
  memory: boolean,
  create: boolean,
): { created: boolean; firstCreatedDir: string | undefined } {
  let created = false;
  let firstCreatedDir: string | undefined;
  if (!memory && !create && !existsSync(path)) {
    throw new LogError(
      'notFound',
      `${description} does not exist; nothing was created (create it explicitly: \`dtx bench --init\`, ` +
        'or `create: true`)',
    );
  }
  if (!memory && create) {
    try {
      firstCreatedDir = mkdirSync(dirname(resolve(path)), { recursive: true });
    } catch (error) {
      throw new LogError('unavailable', `${description}: cannot create its directory: ${messageOf(error)}`, {
        cause: error,
      });
    }
    created = !existsSync(path);
  }
  return { created, firstCreatedDir };
}

/** Loads the driver (only now, so importing this module does not need it) and opens the connection. */
async function connect(
  path: string,
  description: string,
  memory: boolean,
  create: boolean,
  lockTimeoutMs: number,
): Promise<BetterSqlite3.Database> {
  const { default: Database } = await import('better-sqlite3');
  try {
    // Without `create`, a file removed since the check above must not be recreated.
    return new Database(path, { timeout: lockTimeoutMs, fileMustExist: !memory && !create });
  } catch (error) {
    if (sqliteCode(error) === 'SQLITE_CANTOPEN' && !create) {
      throw new LogError('notFound', `${description} does not exist; nothing was created`, { cause: error });
    }
    throw openError(description, error);
  }
}

/** Sets the durability pragmas, takes the lock, and creates or upgrades the schema; returns the log's identity. */
function setUpDatabase(
  db: BetterSqlite3.Database,
  description: string,
  memory: boolean,
  create: boolean,
  options: SqliteWorkerOptions,
): LogIdentity {
  // Before the first access: EXCLUSIVE mode keeps the file lock for the
  // connection's life (and keeps the WAL index in heap memory, no -shm file).
  db.pragma('locking_mode = EXCLUSIVE');
  const journalMode = db.pragma('journal_mode = WAL', { simple: true });
  if (!memory && journalMode !== 'wal') {
    throw new LogError(
      'unavailable',
      `${description}: could not switch to WAL mode (got ${String(journalMode)})`,
    );
  }
  db.pragma('synchronous = FULL');
  db.pragma('fullfsync = ON'); // macOS: F_FULLFSYNC, a real flush to the platter; ignored elsewhere
  db.pragma('checkpoint_fullfsync = ON');
  if (!memory && db.pragma('synchronous', { simple: true }) !== 2) {
    throw new LogError('unavailable', `${description}: could not set synchronous = FULL`);
  }
  db.exec('BEGIN EXCLUSIVE');
  try {
    const identity = writeSchema(db, description, memory, create, options);
    db.exec('COMMIT');
    return identity;
  } catch (error) {
    if (db.inTransaction) db.exec('ROLLBACK');
    throw error;
  }
}

/** Inside the open's exclusive transaction: checks the schema version, reads or adopts the identity, writes the tables. */
function writeSchema(
  db: BetterSqlite3.Database,
  description: string,
  memory: boolean,
  create: boolean,
  options: SqliteWorkerOptions,
): LogIdentity {
  const version = db.pragma('user_version', { simple: true });
  if (version !== 0 && version !== 1 && version !== schemaVersion) {
    throw new LogError(
      'corrupt',
      `${description} has schema version ${String(version)}; this dtx reads versions 1 to ${schemaVersion}`,
    );
  }
  const stored =
    version === schemaVersion
      ? db.prepare<[], { v: string }>("SELECT v FROM dtx_log_meta WHERE k = 'identity'").get()
      : undefined;
  let identity: LogIdentity;
  if (stored !== undefined) {
    identity = parseIdentity(description, stored.v);
    checkIdentity(description, identity, options);
  } else if (create || memory) {
    // A new file, or one written before logs had an identity: adopt one.
    identity = newIdentity(options, new Date());
  } else {
    throw noIdentity(description);
  }
  db.exec(
    'CREATE TABLE IF NOT EXISTS dtx_log (seq INTEGER PRIMARY KEY, record TEXT NOT NULL, at INTEGER) STRICT',
  );
  if (version === 1) db.exec('ALTER TABLE dtx_log ADD COLUMN at INTEGER');
  db.exec('CREATE TABLE IF NOT EXISTS dtx_log_meta (k TEXT PRIMARY KEY, v TEXT NOT NULL) STRICT');
  const put = db.prepare<[string, string]>('INSERT OR REPLACE INTO dtx_log_meta (k, v) VALUES (?, ?)');
  if (stored === undefined) put.run('identity', JSON.stringify(identity));
  // Who holds the file now: for operators reading it after this process is gone.
  put.run('openedBy', JSON.stringify({ pid: process.pid, host: hostname(), at: new Date().toISOString() }));
  db.pragma(`user_version = ${schemaVersion}`);
  return identity;
}

/** Makes the new file and every directory mkdir created survive power loss, by syncing each parent. */
function syncCreatedDirectories(path: string, created: boolean, firstCreatedDir: string | undefined): void {
  if (created) syncDirectory(dirname(resolve(path)));
  if (firstCreatedDir !== undefined) {
    // Every directory mkdir created must be recorded in its own parent.
    for (let dir = dirname(resolve(path)); ; dir = dirname(dir)) {
      syncDirectory(dirname(dir));
      if (dir === firstCreatedDir || dirname(dir) === dir) break;
    }
  }
}

/**
 * The fdatasync of a WAL-mode log's `-wal` file, off the event loop (libuv's
 * thread pool). In EXCLUSIVE locking mode SQLite keeps that file for the
 * connection's life (a checkpoint rewinds or truncates it, the same inode).
 * Should it ever be removed or replaced under the open log, what SQLite
 * writes no longer reaches the file a sync would flush, so the next sync
 * fails (reason `failed`) instead of syncing another file.
 *
 * One open file description per sync that may be in flight: Linux reports a
 * failed writeback once per description, so two syncs sharing one could see
 * the error told to only one of them, and an earlier batch could resolve
 * although its pages were lost.
 */
export class WalSync {
  readonly #path: string;
  readonly #description: string;
  readonly #ino: number;
  readonly #all: number[] = [];
  readonly #free: number[] = [];

  constructor(dbPath: string, description: string, descriptions = 1) {
    this.#path = `${resolve(dbPath)}-wal`;
    this.#description = description;
    if (!existsSync(this.#path)) {
      throw new LogError('unavailable', `${this.#description}: its write-ahead log ${this.#path} is missing`);
    }
    try {
      for (let i = 0; i < descriptions; i++) this.#all.push(openSync(this.#path, 'r'));
      // The -wal file's directory entry, created by SQLite's first write, must survive power loss too.
      syncDirectory(dirname(this.#path));
      this.#ino = fstatSync(this.#all[0]!).ino;
    } catch (error) {
      this.close();
      throw error;
    }
    this.#free.push(...this.#all);
  }

  /**
   * Resolves once everything written to the WAL before the call is on stable
   * storage. Up to `descriptions` may be in flight, each an fdatasync of its
   * own, which covers what was written before it started.
   */
  async sync(): Promise<void> {
    if (statSync(this.#path, { throwIfNoEntry: false })?.ino !== this.#ino) {
      throw new LogError(
        'failed',
        `${this.#description}: its write-ahead log ${this.#path} was removed or replaced while the log was open, ` +
          'so what SQLite writes no longer reaches it; close the log, reopen it and recover from load()',
      );
    }
    const fd = this.#free.pop();
    if (fd === undefined) throw new Error(`${this.#description}: more syncs in flight than descriptors`);
    try {
      await new Promise<void>((ok, fail) => fdatasync(fd, (error) => (error ? fail(error) : ok())));
    } finally {
      this.#free.push(fd);
    }
  }

  /** Closes the file; the log calls it once no sync is in flight. */
  close(): void {
    for (const fd of this.#all.splice(0)) closeSync(fd);
    this.#free.length = 0;
  }
}

/**
 * The group-commit backend over the open connection: one SQLite transaction
 * per write batch, then `wal.sync()` when the connection commits without
 * syncing (`synchronous = NORMAL`).
 */
export function sqliteBackend(db: BetterSqlite3.Database, description: string, wal?: WalSync): LogBackend {
  const insert = db.prepare<[string, number]>('INSERT INTO dtx_log (record, at) VALUES (?, ?)');
  const deleteAll = db.prepare('DELETE FROM dtx_log');
  const selectAll = db.prepare<[], { seq: number; record: string; at: number | null }>(
    'SELECT seq, record, at FROM dtx_log ORDER BY seq',
  );
  const writeBatch = db.transaction((batch: WriteBatch) => {
    if (batch.replace) deleteAll.run();
    const atMs = Date.now();
    for (const text of batch.texts) insert.run(text, atMs);
  });

  return {
    description,
    // The batch is in the WAL when writeBatch returns; an fdatasync of the WAL covers every batch before it.
    overlapsSyncs: wal !== undefined,
    async write(batch: WriteBatch): Promise<void> {
      writeBatch.exclusive(batch);
      await wal?.sync();
    },
    async read(): Promise<StoredRow[]> {
      return selectAll
        .all()
        .map((row) => ({ seq: String(row.seq), text: row.record, atMs: row.at ?? undefined }));
    },
    async close(): Promise<void> {
      if (db.open) db.close();
      wal?.close();
    },
  };
}
