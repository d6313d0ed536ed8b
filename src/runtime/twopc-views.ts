// The operator's view of two-phase commit transactions computed from log
// records alone: what `dtx txn list --log` shows when no coordinator runs,
// and what a live coordinator's `show()` falls back to for a transaction it
// no longer holds in memory.
//
// Owns: the mapping from a 2PC coordinator log to TxnDetail. Pure: no I/O,
// no clock; record times come in with the records (null where the log store
// keeps none).
//
// Presumed abort writes nothing for an abort, so an aborted transaction has
// no records and appears nowhere here; a decided one is `in-doubt` until its
// `end`, then `committed` — or `resolved`/`abandoned` when an operator ended
// it (the `end` record then carries the reason).

import type { TwoPcRecord } from '../protocol/twopc/types.ts';
import type { TimedRecord } from './log/timed.ts';
import type { TxnDetail, TxnState } from './operator.ts';

/** A 2PC log record with its append time (null when the store keeps none). */
export type TimedTwoPcRecord = TimedRecord<TwoPcRecord>;

/** One view per transaction the records mention, in order of first record. */
export function twoPcTxnViews(records: readonly TimedTwoPcRecord[]): TxnDetail[] {
  const views = new Map<string, TxnDetail>();
  for (const { at, record } of records) {
    let view = views.get(record.txn);
    if (view === undefined) {
      view = {
        id: record.txn,
        protocol: '2pc',
        state: 'running',
        startedAt: at === null ? null : at.toISOString(),
        reason: null,
        branches: {},
        records: [],
      };
      views.set(record.txn, view);
    }
    view.records.push({ at: at === null ? null : at.toISOString(), record });
    switch (record.type) {
      case 'commit':
        view.state = 'in-doubt';
        view.branches = Object.fromEntries(record.participants.map((p) => [p, 'prepared']));
        break;
      case 'end': {
        const ended: TxnState = record.operator ?? 'committed';
        // An operator's end without a commit record aborted an undecided transaction.
        view.state = ended;
        view.reason = record.reason ?? null;
        const branchState = record.operator === undefined ? 'committed' : 'unknown';
        for (const p of Object.keys(view.branches)) view.branches[p] = branchState;
        break;
      }
      case 'prepared':
      case 'committed':
      case 'aborted':
        // Participant records: a coordinator's log never holds them.
        break;
    }
  }
  return [...views.values()];
}
