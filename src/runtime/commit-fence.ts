// The commit fence, driven: commit phases enter it shared (the coordinator's
// transactions from their first PREPARE, since a read-only vote releases
// share locks there), the opening of consistent snapshots holds it
// exclusively (the rules are the pure src/protocol/isolation/fence.ts). Two
// places can hold it:
//
// - in this process (`LocalCommitFence`), enough when every coordinator
//   committing to the databases runs here;
// - in a PostgreSQL database shared by every coordinator and every snapshot
//   reader (`PostgresCommitFence`): an advisory lock, taken shared (one
//   session per commit phase) and exclusively (one transaction per opening of
//   snapshots). PostgreSQL queues a shared request behind a waiting exclusive
//   one, as the pure fence does. A coordinator killed mid-phase loses its
//   session and with it its hold: see docs/isolation.md for what that means.
//
// A coordinator always has the local fence; `bothFences` adds the shared one.

import type { Pool, PoolClient, PoolConfig } from 'pg';
import { DtxError } from '../errors.ts';
import {
  emptyFence,
  type FenceInput,
  type FenceKind,
  type FenceState,
  stepFence,
} from '../protocol/isolation/fence.ts';

/** Ends a hold. Idempotent. */
export type FenceRelease = () => void;

export interface CommitFence {
  /** Waits until a commit phase may start (shared). */
  enterCommitPhase(): Promise<FenceRelease>;
  /**
   * Waits, at most `waitMs`, until no commit phase runs, and holds every new
   * one back until the release (exclusive). Rejects with DTX_TIMEOUT when the
   * wait is over (a commit phase that cannot finish: a participant is down).
   */
  holdCommitPhases(waitMs: number): Promise<FenceRelease>;
  close(): Promise<void>;
}

function once(release: () => void): FenceRelease {
  let done = false;
  return () => {
    if (done) return;
    done = true;
    release();
  };
}

function fenceTimeout(waitMs: number, cause?: unknown): DtxError {
  return new DtxError(
    'DTX_TIMEOUT',
    `commit phases still running after ${waitMs} ms: no consistent snapshot can be opened now ` +
      '(a participant may be down, leaving a commit phase unfinished)',
    { retryable: true, ...(cause === undefined ? {} : { cause }) },
  );
}

/** The fence inside this process. */
export class LocalCommitFence implements CommitFence {
  #state: FenceState = emptyFence;
  #nextId = 0;
  readonly #waiters = new Map<number, () => void>();

  enterCommitPhase(): Promise<FenceRelease> {
    return this.#request('commit').granted.then(() =>
      once(() => this.#step({ type: 'release', kind: 'commit' })),
    );
  }

  async holdCommitPhases(waitMs: number): Promise<FenceRelease> {
    const release = once(() => this.#step({ type: 'release', kind: 'snapshot' }));
    const { id, granted } = this.#request('snapshot');
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), waitMs);
    });
    try {
      if ((await Promise.race([granted, timedOut])) === 'granted') return release;
    } finally {
      clearTimeout(timer);
    }
    if (this.#waiters.delete(id)) this.#step({ type: 'cancel', id });
    // Granted in the same instant as the timeout: hand the hold straight back.
    else release();
    throw fenceTimeout(waitMs);
  }

  /** Commit phases running now, and whether snapshots are being opened (for tests and reports). */
  get state(): FenceState {
    return this.#state;
  }

  async close(): Promise<void> {}

  #request(kind: FenceKind): { id: number; granted: Promise<'granted'> } {
    const id = ++this.#nextId;
    const granted = new Promise<'granted'>((resolve) => this.#waiters.set(id, () => resolve('granted')));
    this.#step({ type: 'request', id, kind });
    return { id, granted };
  }

  #step(input: FenceInput): void {
    const { state, granted } = stepFence(this.#state, input);
    this.#state = state;
    for (const id of granted) {
      const wake = this.#waiters.get(id);
      this.#waiters.delete(id);
      wake?.();
    }
  }
}

/** The advisory lock's two keys: 'dtx' and the fence's number, so that it collides with nothing of dtx's own. */
export const commitFenceLockKeyDefault: readonly [number, number] = [0x647478, 1];

export interface PostgresCommitFenceOptions {
  /** The database every coordinator and snapshot reader shares (typically the PostgreSQL log's). */
  connection?: PoolConfig | string;
  /** Or a pool; never ended by the fence. */
  pool?: Pool;
  /** The advisory lock's key pair. Default `commitFenceLockKeyDefault`. */
  key?: readonly [number, number];
}

/** The fence shared through a PostgreSQL advisory lock. */
export class PostgresCommitFence implements CommitFence {
  readonly #pool: Pool;
  readonly #ownsPool: boolean;
  readonly #key: readonly [number, number];

  /** @internal Use `createPostgresCommitFence`. */
  constructor(pool: Pool, ownsPool: boolean, key: readonly [number, number]) {
    this.#pool = pool;
    this.#ownsPool = ownsPool;
    this.#key = key;
  }

  async enterCommitPhase(): Promise<FenceRelease> {
    const client = await this.#connect();
    try {
      await client.query('SELECT pg_advisory_lock_shared($1, $2)', [...this.#key]);
    } catch (error) {
      client.release(true);
      throw fenceUnavailable('taking the commit fence (shared)', error);
    }
    return once(() => {
      // Unlocked before the session goes back to the pool; a failure drops the
      // session, which releases the lock all the same.
      client.query('SELECT pg_advisory_unlock_shared($1, $2)', [...this.#key]).then(
        () => client.release(),
        () => client.release(true),
      );
    });
  }

  async holdCommitPhases(waitMs: number): Promise<FenceRelease> {
    const client = await this.#connect();
    try {
      // lock_timeout bounds the wait for the advisory lock; the lock is the
      // transaction's, so COMMIT (or the session's end) releases it.
      await client.query(`BEGIN; SET LOCAL lock_timeout = ${Math.max(1, Math.floor(waitMs))}`);
      await client.query('SELECT pg_advisory_xact_lock($1, $2)', [...this.#key]);
    } catch (error) {
      client.release(true);
      if ((error as { code?: unknown }).code === '55P03') throw fenceTimeout(waitMs, error);
      throw fenceUnavailable('taking the commit fence (exclusive)', error);
    }
    return once(() => {
      client.query('COMMIT').then(
        () => client.release(),
        () => client.release(true),
      );
    });
  }

  async close(): Promise<void> {
    if (this.#ownsPool) await this.#pool.end();
  }

  async #connect(): Promise<PoolClient> {
    try {
      return await this.#pool.connect();
    } catch (error) {
      throw fenceUnavailable('connecting to the commit fence database', error);
    }
  }
}

function fenceUnavailable(what: string, cause: unknown): DtxError {
  return new DtxError('DTX_RESOURCE_UNAVAILABLE', `${what} failed: ${String(cause)}`, { cause });
}

export async function createPostgresCommitFence(
  options: PostgresCommitFenceOptions,
): Promise<PostgresCommitFence> {
  const key = options.key ?? commitFenceLockKeyDefault;
  if (!key.every((k) => Number.isSafeInteger(k) && k >= -(2 ** 31) && k < 2 ** 31)) {
    throw new DtxError('DTX_INVALID_ARGUMENT', `fence key must be two 32-bit integers, got ${String(key)}`);
  }
  if (options.pool !== undefined) return new PostgresCommitFence(options.pool, false, key);
  if (options.connection === undefined) {
    throw new DtxError('DTX_INVALID_ARGUMENT', 'createPostgresCommitFence needs `pool` or `connection`');
  }
  const { Pool: PgPool } = await import('pg');
  const pool = new PgPool(
    typeof options.connection === 'string' ? { connectionString: options.connection } : options.connection,
  );
  pool.on('error', () => undefined);
  return new PostgresCommitFence(pool, true, key);
}

/** Holds `inner` (this process's) first, then `outer` (shared with other processes); releases in reverse. */
export function bothFences(inner: CommitFence, outer: CommitFence): CommitFence {
  const nested = async (
    first: () => Promise<FenceRelease>,
    second: () => Promise<FenceRelease>,
  ): Promise<FenceRelease> => {
    const releaseInner = await first();
    try {
      const releaseOuter = await second();
      return once(() => {
        releaseOuter();
        releaseInner();
      });
    } catch (error) {
      releaseInner();
      throw error;
    }
  };
  return {
    enterCommitPhase: () =>
      nested(
        () => inner.enterCommitPhase(),
        () => outer.enterCommitPhase(),
      ),
    holdCommitPhases: (waitMs) =>
      nested(
        () => inner.holdCommitPhases(waitMs),
        () => outer.holdCommitPhases(waitMs),
      ),
    close: async () => {
      await inner.close();
      await outer.close();
    },
  };
}
