// The rule that keeps locking reads out of distributed deadlocks.
//
// No single database sees a cycle that runs through two of them (a reader
// waits on database B for a writer that waits on database A for the reader),
// so no database's deadlock detector can break it, and without a rule only a
// lock timeout would. dtx's rule is an order over resources (the order in
// which the coordinator's `resources` are given): a transaction whose lock
// waits go to resources in that order, never back to an earlier one, cannot
// close a cycle across databases, since every edge of a cycle would have to
// lead to a later resource and a cycle must come back. Cycles inside one
// database are that database's to detect (PostgreSQL's and InnoDB's detectors).
//
// A locking read that would go against the order is not refused: it is made
// no-wait (PostgreSQL `NOWAIT`, MariaDB `NOWAIT`). A request that never waits
// cannot be an edge of a cycle; if its rows are locked it fails at once with
// DTX_LOCK_CONFLICT (retryable), and `transaction({ retries })` runs it again.
// Pure: the coordinator asks, the adapters do.

/** Whether a lock request on the resource ranked `rank` may wait, given the highest rank the transaction has sent a statement to. */
export function mayWaitFor(rank: number, highestRankUsed: number | undefined): boolean {
  return highestRankUsed === undefined || rank >= highestRankUsed;
}
