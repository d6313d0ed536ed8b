// The embedded durable log: one SQLite file per coordinator, over
// better-sqlite3. This is the default store of the runtime — nothing to run,
// and a forced append is one fsync of the write-ahead log.
//
// Durability: WAL journal mode with `synchronous = FULL`, so every committed
// transaction is fsync'd before the call returns (better-sqlite3 builds default
// WAL to NORMAL, which is why it is set and checked explicitly). A write batch
// is one transaction; see ./group-commit.ts for how concurrent appends share
// one. Records are JSON text in one table, `dtx_log(seq, record)`.
//
// One process at a time: the connection runs in EXCLUSIVE locking mode and
// takes the write lock when it opens (`BEGIN EXCLUSIVE`), then keeps it until
// `close()`. A second opener — another process or another connection in this
// one — waits up to `lockTimeoutMs` and then fails with a `LogError` of reason
// `locked`. The lock is an OS file lock, so it dies with its process (even on
// SIGKILL) and the next opener takes over and recovers from the WAL.
//
// better-sqlite3 is synchronous: a write blocks the event loop for the
// duration of its fsync. Group commit keeps that to one fsync per batch.
// The driver is loaded when a log is opened, so importing this module does not
// require it to be installed.

import { closeSync, existsSync, fsyncSync, mkdirSync, openSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type BetterSqlite3 from 'better-sqlite3';
import { LogError } from './errors.ts';
import { GroupCommitLog, type LogBackend, type StoredRow, type WriteBatch } from './group-commit.ts';
import type { DurableLog, LogOptions } from './types.ts';

export interface SqliteLogOptions<R> extends LogOptions<R> {
  /**
   * Allows `:memory:` (and `''`, a private temporary database). Nothing
   * survives the process, so this is for tests only; without it such a path
   * is refused with a `LogError` of reason `notDurable`.
   */
  unsafeMemory?: boolean;
  /** How long opening waits for another connection's lock on the file before failing with reason `locked`. Default 0. */
  lockTimeoutMs?: number;
}

/** Bumped when the table layout changes; stored in `PRAGMA user_version`. */
const schemaVersion = 1;

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

function openError(description: string, error: unknown): LogError {
  if (error instanceof LogError) return error;
  const code = sqliteCode(error);
  if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) {
    return new LogError(
      'locked',
      `${description} is in use by another process or connection (SQLite holds it locked until that one ` +
        'closes it or exits)',
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
 * Opens (creating it and its parent directories when missing) the SQLite log
 * at `path` and takes its lock for this process until `close()`.
 */
export async function openSqliteLog<R>(
  path: string,
  options: SqliteLogOptions<R> = {},
): Promise<DurableLog<R>> {
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

  let created = false;
  let firstCreatedDir: string | undefined;
  if (!memory) {
    try {
      firstCreatedDir = mkdirSync(dirname(resolve(path)), { recursive: true });
    } catch (error) {
      throw new LogError('unavailable', `${description}: cannot create its directory: ${messageOf(error)}`, {
        cause: error,
      });
    }
    created = !existsSync(path);
  }

  const { default: Database } = await import('better-sqlite3');
  let db: BetterSqlite3.Database;
  try {
    db = new Database(path, { timeout: lockTimeoutMs });
  } catch (error) {
    throw openError(description, error);
  }
  try {
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
      const version = db.pragma('user_version', { simple: true });
      if (version !== 0 && version !== schemaVersion) {
        throw new LogError(
          'corrupt',
          `${description} has schema version ${String(version)}; this dtx reads version ${schemaVersion}`,
        );
      }
      db.exec('CREATE TABLE IF NOT EXISTS dtx_log (seq INTEGER PRIMARY KEY, record TEXT NOT NULL) STRICT');
      db.pragma(`user_version = ${schemaVersion}`);
      db.exec('COMMIT');
    } catch (error) {
      if (db.inTransaction) db.exec('ROLLBACK');
      throw error;
    }
    if (created) syncDirectory(dirname(resolve(path)));
    if (firstCreatedDir !== undefined) {
      // Every directory mkdir created must be recorded in its own parent.
      for (let dir = dirname(resolve(path)); ; dir = dirname(dir)) {
        syncDirectory(dirname(dir));
        if (dir === firstCreatedDir || dirname(dir) === dir) break;
      }
    }
  } catch (error) {
    db.close();
    throw openError(description, error);
  }

  const insert = db.prepare<[string]>('INSERT INTO dtx_log (record) VALUES (?)');
  const deleteAll = db.prepare('DELETE FROM dtx_log');
  const selectAll = db.prepare<[], { seq: number; record: string }>(
    'SELECT seq, record FROM dtx_log ORDER BY seq',
  );
  const writeBatch = db.transaction((batch: WriteBatch) => {
    if (batch.replace) deleteAll.run();
    for (const text of batch.texts) insert.run(text);
  });

  const backend: LogBackend = {
    description,
    async write(batch: WriteBatch): Promise<void> {
      writeBatch.exclusive(batch);
    },
    async read(): Promise<StoredRow[]> {
      return selectAll.all().map((row) => ({ seq: String(row.seq), text: row.record }));
    },
    async close(): Promise<void> {
      if (db.open) db.close();
    },
  };
  return new GroupCommitLog<R>(backend, options);
}
