// The operator's view of a saga or TCC log: pure functions from the log's
// records (each with the time it was written, when the store keeps one) to
// the `TxnDetail` of every transaction they mention, so that an orchestrator's
// `list()`/`show()` and `dtx txn list --log` (reading a log offline, with no
// orchestrator running) answer the same way.
//
// Owns nothing: no I/O, no clock. Only a transaction's last run counts (an id
// can run again once its `end` has been forgotten; see
// src/protocol/branch/log.ts): a `begin` starts its view afresh.

import type { SagaRecord } from '../../protocol/saga/types.ts';
import type { TccRecord } from '../../protocol/tcc/types.ts';
import type { TimedRecord } from '../log/timed.ts';
import type { TxnDetail, TxnState } from '../operator.ts';

export type { TimedRecord };

/** The state an `end` record shows. */
function endState(r: Extract<SagaRecord, { type: 'end' }>): TxnState {
  if (r.operator?.action === 'resolve') return 'resolved';
  if (r.operator?.action === 'abandon' || r.outcome === 'abandoned') return 'abandoned';
  return r.outcome;
}

function endReason(r: Extract<SagaRecord, { type: 'end' }>): string | null {
  if (r.operator !== undefined)
    return `${r.operator.action === 'resolve' ? 'resolved' : 'abandoned'} by an operator (${r.outcome}): ${r.operator.reason}`;
  return r.outcome === 'completed' ? null : r.reason;
}

/** Builds the views, calling `own` for a record that is not `begin`, `stuck` or `end`. */
function views<R extends { type: string; txn: string }>(
  protocol: 'saga' | 'tcc',
  records: readonly TimedRecord<R>[],
  branchesOf: (begin: R) => string[],
  initialBranch: string,
  own: (view: TxnDetail, r: R) => void,
): TxnDetail[] {
  const byId = new Map<string, TxnDetail>();
  for (const { at, record } of records) {
    const r = record as R & Partial<SagaRecord>;
    let view = byId.get(r.txn);
    if (r.type === 'begin' || view === undefined) {
      // A new run (or the remains of one whose `begin` was compacted away).
      byId.delete(r.txn);
      view = {
        id: r.txn,
        protocol,
        state: 'running',
        startedAt: at === null ? null : at.toISOString(),
        reason: null,
        branches: {},
        records: [],
      };
      if (r.type === 'begin') for (const b of branchesOf(record)) view.branches[b] = initialBranch;
      byId.set(r.txn, view);
    }
    view.records.push({ at: at === null ? null : at.toISOString(), record });
    const common = record as unknown as SagaRecord;
    if (common.type === 'stuck') {
      view.state = 'stuck';
      view.reason = common.reason;
    } else if (common.type === 'end') {
      view.state = endState(common);
      view.reason = endReason(common);
    } else if (common.type !== 'begin') {
      own(view, record);
    }
  }
  return [...byId.values()];
}

/** Every saga a saga log mentions, as an operator sees it. */
export function sagaTxnViews(records: readonly TimedRecord<SagaRecord>[]): TxnDetail[] {
  return views(
    'saga',
    records,
    (r) => (r.type === 'begin' ? r.def.steps.map((s) => s.branch) : []),
    'idle',
    (view, r) => {
      // An alert leaves the saga listed as stuck until it ends.
      const stuck = view.state === 'stuck';
      switch (r.type) {
        case 'start':
          view.branches[r.branch] = r.op === 'action' ? 'running' : 'compensating';
          if (r.op === 'compensate' && !stuck) view.state = 'compensating';
          break;
        case 'result':
          view.branches[r.branch] =
            r.op === 'compensate' ? 'compensated' : r.result === 'success' ? 'done' : 'refused';
          break;
        case 'rollback':
          if (!stuck) view.state = 'compensating';
          view.reason = r.reason;
          break;
        default:
          break;
      }
    },
  );
}

/** Every TCC transaction a TCC log mentions, as an operator sees it. */
export function tccTxnViews(records: readonly TimedRecord<TccRecord>[]): TxnDetail[] {
  return views(
    'tcc',
    records,
    (r) => (r.type === 'begin' ? r.def.branches.map((b) => b.branch) : []),
    'trying',
    (view, r) => {
      const stuck = view.state === 'stuck';
      switch (r.type) {
        case 'tried':
          view.branches[r.branch] = r.result === 'success' ? 'tried' : 'refused';
          break;
        case 'decision':
          if (r.decision === 'cancel') {
            if (!stuck) view.state = 'compensating';
            view.reason = r.reason;
          }
          for (const [b, s] of Object.entries(view.branches)) {
            if (s !== 'refused') view.branches[b] = r.decision === 'confirm' ? 'confirming' : 'cancelling';
          }
          break;
        case 'settled':
          view.branches[r.branch] = view.branches[r.branch] === 'confirming' ? 'confirmed' : 'cancelled';
          break;
        default:
          break;
      }
    },
  );
}
