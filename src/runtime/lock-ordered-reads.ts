// One transaction's locking reads (`tx.read`) under the lock-order rule of
// src/protocol/isolation/lock-order.ts: the 2PC coordinator (./coordinator.ts)
// and Paxos Commit's (./paxos-commit/coordinator.ts) both keep it here, so
// that the two protocols give their callbacks the same reads.
//
// Owns which resources the transaction has sent a statement to (the highest
// rank) and the reads in flight that may wait. Opening the branch is the
// coordinator's; the read itself is the adapter's (`lockingRead`).

import { DtxError } from '../errors.ts';
import { mayWaitFor } from '../protocol/isolation/lock-order.ts';

/** What a branch needs for a locking read (a SQL branch has it). */
export interface LockingReadBranch {
  lockingRead?(
    sql: string,
    params: readonly unknown[],
    options: { wait: boolean },
  ): Promise<{ rows: unknown[]; rowCount: number }>;
}

export class LockOrderedReads {
  /** The highest rank any statement of this transaction went to. */
  private highestRank: number | undefined;
  /** Locking reads in flight that may wait: a later one waits for them, so waits happen in rank order. */
  private waitingReads: Promise<unknown> = Promise.resolve();

  /** `ranks`: each resource's place in the lock order (the same for every transaction of a coordinator). */
  constructor(private readonly ranks: ReadonlyMap<string, number>) {}

  /** Records that the transaction sent a statement to `resource`. */
  noteUse(resource: string): void {
    const rank = this.ranks.get(resource);
    if (rank !== undefined && (this.highestRank === undefined || rank > this.highestRank))
      this.highestRank = rank;
  }

  /**
   * Runs `sql` as a locking read in the transaction's branch on `resource`
   * (`open` opens it, once): it may wait for locks only if no statement of
   * the transaction went to a later resource; otherwise it is no-wait and
   * fails at once with DTX_LOCK_CONFLICT on locked rows.
   */
  async read<Row>(
    resource: string,
    sql: string,
    params: readonly unknown[],
    open: (resource: string) => Promise<LockingReadBranch>,
  ): Promise<{ rows: Row[]; rowCount: number }> {
    const rank = this.ranks.get(resource);
    if (rank === undefined) {
      throw new DtxError('DTX_INVALID_ARGUMENT', `no resource named ${JSON.stringify(resource)}`);
    }
    // Decided when the read is asked for, in the order the caller asks.
    const wait = mayWaitFor(rank, this.highestRank);
    this.noteUse(resource);
    const before = this.waitingReads;
    const reading = (async () => {
      const branch = await open(resource);
      if (branch.lockingRead === undefined) {
        throw new DtxError(
          'DTX_INVALID_ARGUMENT',
          `resource ${resource} has no locking reads (not a SQL resource); use tx.branch()`,
        );
      }
      // A read that may wait starts once the earlier ones were granted, so
      // that this transaction never waits on two resources at once.
      if (wait) await before.catch(() => undefined);
      return branch.lockingRead(sql, params, { wait });
    })();
    if (wait) this.waitingReads = reading.catch(() => undefined);
    return (await reading) as { rows: Row[]; rowCount: number };
  }
}
