// The operator's view of a coordinator or orchestrator: the same small set of
// questions and actions for 2PC, sagas and TCC, so that `dtx txn` (and later
// the server) can list, inspect, retry and — with an explicit reason — resolve
// or abandon a transaction whatever its protocol.
//
// Every action an operator takes is recorded in the log (who asked is the
// caller's business; why is the `reason`), so the history of a transaction
// always explains how it ended. Nothing here guesses: an action that would
// contradict a durable decision is refused.

/** Where a transaction is, as an operator sees it. */
export type TxnState =
  /** 2PC: work or prepare phase, no decision yet. Saga/TCC: going forward. */
  | 'running'
  /** 2PC: the commit decision is durable and some branch is not yet committed. */
  | 'in-doubt'
  /** Saga: compensating. TCC: cancelling. */
  | 'compensating'
  /** Saga/TCC: a branch call keeps failing past its alert threshold; still retried. */
  | 'stuck'
  | 'committed'
  | 'aborted'
  | 'completed'
  | 'compensated'
  /** Ended by an operator's `resolve` or `abandon`; see the records for the reason. */
  | 'resolved'
  | 'abandoned';

export const txnStates: readonly TxnState[] = [
  'running',
  'in-doubt',
  'compensating',
  'stuck',
  'committed',
  'aborted',
  'completed',
  'compensated',
  'resolved',
  'abandoned',
];

export interface TxnSummary {
  id: string;
  protocol: '2pc' | 'saga' | 'tcc';
  state: TxnState;
  /** When its first record was written (ISO 8601), when known. */
  startedAt: string | null;
  /** Why it is compensating, stuck, resolved or abandoned; null otherwise. */
  reason: string | null;
  /** Per branch (2PC: resource; saga/TCC: branch id), a short state. */
  branches: Record<string, string>;
}

export interface TxnRecordView {
  /** When the record was written (ISO 8601), when the log store keeps times. */
  at: string | null;
  record: unknown;
}

export interface TxnDetail extends TxnSummary {
  /** Every record the log holds for this transaction, in order. */
  records: TxnRecordView[];
}

/** What `resolve` and `abandon` need: an explicit force and a reason, recorded in the log. */
export interface OperatorActionOptions {
  force: true;
  reason: string;
}

/** The operator surface every coordinator and orchestrator offers. */
export interface TxnOperator {
  list(filter?: { state?: TxnState }): Promise<TxnSummary[]>;
  show(id: string): Promise<TxnDetail>;
  /** Retry now what is waiting for its next attempt (phase two, a stuck branch call). */
  retry(id: string): Promise<void>;
}
