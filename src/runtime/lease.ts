// Standby takeover: a coordinator becomes active only while it holds a lease in
// the shared PostgreSQL log database. A standby waits for the lease; when the
// active coordinator dies (or stalls) and its lease lapses, the standby takes
// it, recovers from the same log — re-driving every commit the dead one had
// decided — and carries on. The log fences writes by lease holder
// (src/runtime/log/postgres.ts), so a stalled former leader that wakes up can
// no longer write a decision.

import type { PostgresLog } from './log/postgres.ts';

export interface LeaseOptions {
  lease: string;
  holder: string;
  /** How long the lease lasts without renewal: how long a standby waits after the leader dies. */
  ttlMs: number;
  /** How often a standby asks for the lease. Default ttlMs / 4. */
  pollMs?: number;
}

export interface Leadership {
  /** Rejects... never; resolves when the lease was lost (renewal refused or failed). */
  lost: Promise<unknown>;
  /** Stops renewing and gives the lease up. */
  release(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Waits until `holder` holds the lease, then keeps renewing it every ttl/3.
 * `onWaiting` is called once if the lease is held by someone else at first.
 */
export async function acquireLeadership(
  log: PostgresLog<unknown>,
  options: LeaseOptions,
  onWaiting?: () => void,
): Promise<Leadership> {
  const pollMs = options.pollMs ?? Math.max(10, Math.floor(options.ttlMs / 4));
  let waited = false;
  while (!(await log.acquireLease(options.lease, options.holder, options.ttlMs))) {
    if (!waited) onWaiting?.();
    waited = true;
    await sleep(pollMs);
  }
  let stopped = false;
  let onLost: (why: unknown) => void = () => {};
  const lost = new Promise<unknown>((resolve) => {
    onLost = resolve;
  });
  const renew = async () => {
    while (!stopped) {
      await sleep(Math.max(5, Math.floor(options.ttlMs / 3)));
      if (stopped) return;
      try {
        if (!(await log.renewLease(options.lease, options.holder, options.ttlMs))) {
          return onLost(new Error(`lease ${options.lease} was taken over`));
        }
      } catch (err) {
        return onLost(err);
      }
    }
  };
  void renew();
  return {
    lost,
    async release() {
      stopped = true;
      await log.releaseLease(options.lease, options.holder).catch(() => false);
    },
  };
}
