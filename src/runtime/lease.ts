// Standby takeover on a lease of its own: a coordinator becomes active only
// while it holds a named lease in the shared PostgreSQL log database. Every
// PostgreSQL log already takes its owner's lease when it is opened (and a
// standby can wait for it: `openPostgresLog(..., { lease: { wait: true } })`,
// which is what `dtx bench --lease` does); this helper is for leases beyond
// that one, e.g. electing one active process among several that do not all
// open the log. The log fences its own writes by its owner lease
// (src/runtime/log/postgres.ts), so a stalled former leader that wakes up can
// no longer write a decision.
//
// Timers here are unref'd and stopped by `release()`: holding (or having held)
// a lease never keeps a process alive.

import type { PostgresLog } from './log/postgres.ts';
import { uniqueHolderId } from './log/postgres.ts';

export interface LeaseOptions {
  lease: string;
  /** Who holds it; default a fresh unique id (host, pid and random bits: never shared by two holders). */
  holder?: string;
  /** How long the lease lasts without renewal: how long a standby waits after the leader dies. */
  ttlMs: number;
  /** How often a standby asks for the lease. Default ttlMs / 4. */
  pollMs?: number;
}

export interface Leadership {
  /** The holder id this leadership runs under. */
  holder: string;
  /** Rejects... never; resolves when the lease was lost (renewal refused or failed). */
  lost: Promise<unknown>;
  /** Stops renewing and gives the lease up. */
  release(): Promise<void>;
}

/** A sleep that does not keep the process alive, and that `cancel` ends early. */
function sleep(ms: number, cancel?: { wake?: () => void }): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    timer.unref();
    if (cancel !== undefined)
      cancel.wake = () => {
        clearTimeout(timer);
        resolve();
      };
  });
}

/**
 * Waits until `holder` holds the lease, then keeps renewing it every ttl/3.
 * `onWaiting` is called once if the lease is held by someone else at first.
 */
export async function acquireLeadership(
  log: PostgresLog<unknown>,
  options: LeaseOptions,
  onWaiting?: () => void,
): Promise<Leadership> {
  const holder = options.holder ?? uniqueHolderId();
  const pollMs = options.pollMs ?? Math.max(10, Math.floor(options.ttlMs / 4));
  let waited = false;
  while (!(await log.acquireLease(options.lease, holder, options.ttlMs))) {
    if (!waited) onWaiting?.();
    waited = true;
    await sleep(pollMs);
  }
  let stopped = false;
  const pause: { wake?: () => void } = {};
  let onLost: (why: unknown) => void = () => {};
  const lost = new Promise<unknown>((resolve) => {
    onLost = resolve;
  });
  const renew = async () => {
    while (!stopped) {
      await sleep(Math.max(5, Math.floor(options.ttlMs / 3)), pause);
      if (stopped) return;
      try {
        if (!(await log.renewLease(options.lease, holder, options.ttlMs))) {
          return onLost(new Error(`lease ${options.lease} was taken over`));
        }
      } catch (err) {
        return onLost(err);
      }
    }
  };
  void renew();
  return {
    holder,
    lost,
    async release() {
      stopped = true;
      pause.wake?.();
      await log.releaseLease(options.lease, holder).catch(() => false);
    },
  };
}
