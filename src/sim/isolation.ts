// What every simulated world shares about reads and isolation: the read modes
// a run takes (`--reads`), the workloads that read (`--workload bank-audit`,
// `append`), the `isolation` part of a `dtx sim --json` report, and the
// history a run records for `--history FILE` (Jepsen's JSON form, one object
// per line, list-append model: what `dtx check-history` reads).
//
// Kept small on purpose: the worlds decide what a read does in them (the
// commit world: ./resource.ts and ./commit-fence.ts), this module only names
// the shared contract.

import type { Summary } from './stats.ts';

/**
 * - plain: each participant returns its latest committed value, no lock.
 * - locking: shared locks held until the transaction's outcome everywhere
 *   (strict two-phase locking).
 * - snapshot: read-only transactions read one consistent cut (the commit
 *   fence); reads inside read-write transactions are locking reads.
 * - timestamp: read-only transactions read every participant's versions at
 *   a snapshot timestamp from a node's clock (commit timestamps, 2PC only);
 *   reads inside read-write transactions are locking reads.
 * Sagas and TCC take `plain` only: their reads are whatever their branches do.
 */
export const readModes = ['plain', 'locking', 'snapshot', 'timestamp'] as const;
export type ReadMode = (typeof readModes)[number];

/** The workloads that read, in every world that runs them. */
export const isolationWorkloadNames = ['bank-audit', 'append'] as const;
export type IsolationWorkloadName = (typeof isolationWorkloadNames)[number];

export function isIsolationWorkload(name: string | undefined): name is IsolationWorkloadName {
  return (isolationWorkloadNames as readonly string[]).includes(name ?? '');
}

/** `isolation` in a report: present only when the workload reads. */
export interface IsolationReport {
  /** Audits that completed (bank-audit): every account on every participant read in one transaction. */
  audits: number;
  /** Of those, the ones whose total differed from the conserved sum. */
  inconsistentAudits: number;
  /** The history checker's anomaly classes found in the run's history (append), in its order. */
  anomalyTypes: string[];
  /**
   * Timestamp reads only: the history is checked as strict-serializable (real-time
   * order counts), read-only transactions' latency, and how long each commit's
   * acknowledgement waited for the clock (commit wait; empty without it).
   */
  timestamps?: { skewMs: number; commitWait: boolean; readOnlyLatencyMs: Summary; commitWaitMs: Summary };
}

/** One line of a recorded history: an invocation or a completion, list-append micro-ops. */
export interface HistoryOp {
  index: number;
  process: number;
  type: 'invoke' | 'ok' | 'fail' | 'info';
  value: (['append', number, number] | ['r', number, number[] | null])[];
}

/** The history as `--history FILE` writes it: one JSON object per line. */
export function historyText(ops: readonly HistoryOp[]): string {
  let out = '';
  for (const op of ops) out += `${JSON.stringify(op)}\n`;
  return out;
}
