// Records with the time they were appended, for the operator's views
// (`show`, `dtx txn`): a store that keeps times (every store dtx ships) gives
// them through `history()`; any other DurableLog gives its records with no
// time, rather than a made-up one.

import type { DurableLog } from './types.ts';

export interface TimedRecord<R> {
  at: Date | null;
  record: R;
}

/** Every record since the last checkpoint, in append order, with its append time when the store keeps one. */
export async function timedRecords<R>(log: DurableLog<R>): Promise<TimedRecord<R>[]> {
  if (log.history !== undefined) return log.history();
  return (await log.load()).map((record) => ({ at: null, record }));
}
