// Consistent snapshot reads across databases: the commit fence
// (./commit-fence.ts) is held exclusively while one snapshot session is
// opened on every database at once, and released as soon as they are open.
// No commit phase runs in that instant, so no database's snapshot can hold a
// transaction that another's lacks; the reads then take as long as they like,
// lock nothing and hold no writer back. docs/isolation.md.

import { performance } from 'node:perf_hooks';
import type { ResourceAdapter, SnapshotSession, SqlResult, SqlRow } from '../adapters/types.ts';
import { DtxError } from '../errors.ts';
import type { CommitFence } from './commit-fence.ts';

/** How long opening snapshots waits for running commit phases by default (a down participant can keep one open). */
export const snapshotWaitMsDefault = 5_000;

export interface SnapshotOptions {
  /** The resources to open a snapshot on. Default: all. */
  resources?: readonly string[];
  /** Longest wait for the commit phases under way, in ms (then DTX_TIMEOUT, retryable). Default 5,000. */
  waitMs?: number;
}

/** What a snapshot callback gets: reads on each resource, all at one consistent cut. */
export interface SnapshotReads {
  query<Row extends SqlRow = SqlRow>(
    resource: string,
    sql: string,
    params?: readonly unknown[],
  ): Promise<SqlResult<Row>>;
  /** How long this snapshot waited for the commit phases under way, in ms. */
  readonly waitedMs: number;
  /** How long it held new commit phases back (while its sessions opened), in ms. */
  readonly heldMs: number;
}

/**
 * Opens a snapshot on each of `resources` under `fence` and runs `work` on
 * them; the sessions end when `work` settles. Rejects with
 * DTX_INVALID_ARGUMENT for an unknown resource or one without snapshots.
 */
export async function withSnapshot<T>(
  adapters: Readonly<Record<string, ResourceAdapter>>,
  fence: CommitFence,
  work: (reads: SnapshotReads) => Promise<T>,
  options: SnapshotOptions = {},
): Promise<T> {
  const names = options.resources ?? Object.keys(adapters);
  const waitMs = options.waitMs ?? snapshotWaitMsDefault;
  if (!Number.isSafeInteger(waitMs) || waitMs <= 0) {
    throw new DtxError('DTX_INVALID_ARGUMENT', `waitMs must be a positive integer, got ${String(waitMs)}`);
  }
  const openers = names.map((name) => {
    const adapter = adapters[name];
    if (adapter === undefined) {
      throw new DtxError('DTX_INVALID_ARGUMENT', `no resource named ${JSON.stringify(name)}`);
    }
    const open = adapter.openSnapshot?.bind(adapter);
    if (open === undefined) {
      throw new DtxError('DTX_INVALID_ARGUMENT', `resource ${name} (${adapter.kind}) cannot open snapshots`);
    }
    return open;
  });
  const asked = performance.now();
  const release = await fence.holdCommitPhases(waitMs);
  const held = performance.now();
  let opened: PromiseSettledResult<SnapshotSession>[];
  try {
    opened = await Promise.allSettled(openers.map((open) => open()));
  } finally {
    release();
  }
  const heldMs = performance.now() - held;
  const sessions = new Map<string, SnapshotSession>();
  for (const [i, result] of opened.entries()) {
    if (result.status === 'fulfilled') sessions.set(names[i]!, result.value);
  }
  try {
    const failed = opened.find((r) => r.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
    return await work({
      query: (resource, sql, params) => {
        const session = sessions.get(resource);
        if (session === undefined) {
          return Promise.reject(
            new DtxError('DTX_INVALID_ARGUMENT', `no snapshot open on ${JSON.stringify(resource)}`),
          );
        }
        return session.query(sql, params);
      },
      waitedMs: held - asked,
      heldMs,
    });
  } finally {
    await Promise.allSettled([...sessions.values()].map((s) => s.close()));
  }
}
