// What a saga or TCC coordinator's log must keep. Recovery (coordinatorRole's
// replay, ./run.ts) rebuilds a run from every record of a
// transaction that has not ended (its `begin`, the core's own progress
// records, a `stuck`), and needs of an ended one only its `end`: that keeps
// the id refused to a repeated BEGIN and the outcome answerable. So a
// checkpoint keeps every record of the open transactions and the `end` of the
// newest `retainFinished` ended ones, in log order; the other records go.
//
// An id can run more than once: once its `end` has been forgotten (past the
// retention), a BEGIN with it starts a new run. Only an id's last run counts:
// it starts at the id's last `begin`, and it has ended if an `end` follows.
//
// Shared by the runtime (src/runtime/branch/orchestrator.ts takes it
// every so many appends) and the tests, which check that recovering from the
// compacted log gives what recovering from the whole log gives.

import type { TxnId } from '../common/types.ts';

export function compactSagaLog<R extends { type: string; txn: TxnId }>(
  log: readonly R[],
  retainFinished: number,
): R[] {
  // Each id's last `begin` and last `end`.
  const beginAt = new Map<TxnId, number>();
  const endAt = new Map<TxnId, number>();
  for (let i = 0; i < log.length; i++) {
    const r = log[i]!;
    if (r.type === 'begin') beginAt.set(r.txn, i);
    else if (r.type === 'end') endAt.set(r.txn, i);
  }
  // Ended: an `end` after the last run's `begin` (or with no `begin` left).
  for (const [txn, end] of endAt) if ((beginAt.get(txn) ?? -1) > end) endAt.delete(txn);
  let dropEndsBefore = -1;
  if (endAt.size > retainFinished) {
    const positions = [...endAt.values()].sort((a, b) => a - b);
    dropEndsBefore =
      retainFinished === 0 ? Number.POSITIVE_INFINITY : positions[positions.length - retainFinished]!;
  }
  const keep: R[] = [];
  for (let i = 0; i < log.length; i++) {
    const r = log[i]!;
    const end = endAt.get(r.txn);
    if (end !== undefined) {
      if (i === end && end >= dropEndsBefore) keep.push(r);
    } else if (i >= (beginAt.get(r.txn) ?? -1)) keep.push(r); // the open run, from its begin on
  }
  return keep;
}
