// Human-readable output of the dtx command (what --json replaces).

import type { SagaReport } from '../sim/branch/run.ts';
import type { OutboxReport } from '../sim/outbox/run.ts';
import type { SimReport } from '../sim/run.ts';
import type { Summary } from '../sim/stats.ts';
import type { HeuristicView } from './bench.ts';

const ms = (s: Summary) => `p50 ${s.p50} ms, p99 ${s.p99} ms, max ${s.max} ms`;

export function formatSimReport(r: SimReport): string {
  const lines = [
    `${r.protocol} on ${r.workload}, seed ${r.seed}: ${r.txns} transactions`,
    `  committed ${r.committed}, aborted ${r.aborted}, partial ${r.partial}, undecided ${r.undecided}`,
    `  commit latency   ${ms(r.latencyMs)}`,
    `  locks held       ${ms(r.lockHeldMs)}`,
    `  in doubt         ${ms(r.inDoubtMs)}`,
    `  waited for locks ${ms(r.lockWaitMs)}`,
    `  queued behind locks ${r.queuedBehindLocks}; per commit: ${r.messagesPerCommit} messages, ${r.forcedWritesPerCommit} forced writes`,
    `  conserved total: ${r.conserved ? 'yes' : 'NO'}; crashes ${r.crashes}; simulated ${r.simulatedMs} ms in ${r.wallMs} ms`,
  ];
  const clocks = r.isolation?.timestamps;
  if (r.isolation !== undefined && clocks !== undefined) {
    lines.push(
      `  timestamp reads, clock skew ±${clocks.skewMs} ms, ${clocks.commitWait ? 'commit wait' : 'no commit wait'}: read-only ${ms(clocks.readOnlyLatencyMs)}`,
      ...(clocks.commitWait ? [`  commit wait      ${ms(clocks.commitWaitMs)}`] : []),
      `  ${r.isolation.inconsistentAudits} of ${r.isolation.audits} audits inconsistent; strict-serializable history checker: ` +
        (r.isolation.anomalyTypes.length === 0 ? 'no anomalies' : r.isolation.anomalyTypes.join(', ')),
    );
  }
  return withViolations(lines, r);
}

/** The saga and TCC report (the branch world), in the shape of the commit protocols' summary. */
export function formatSagaReport(r: SagaReport): string {
  const lines = [
    `${r.protocol} on ${r.workload}, seed ${r.seed}: ${r.txns} transactions, ${r.begun} begun`,
    `  completed ${r.completed}, compensated ${r.compensated}, stuck ${r.stuck}, rejected ${r.rejected}, unfinished ${r.unfinished}`,
    `  completion latency   ${ms(r.latencyMs)}`,
    ...(r.workload === 'booking'
      ? [
          `  inconsistency window ${ms(r.inconsistencyWindowMs)} (${r.inconsistencyWindows} compensated bookings)`,
        ]
      : []),
    `  per saga: ${r.messagesPerSaga} messages, ${r.forcedWritesPerSaga} forced writes; duplicate calls ${r.duplicateCalls}, null compensations ${r.nullCompensations}, hanging calls refused ${r.hangingRefused}`,
    `  conserved total: ${r.conserved ? 'yes' : 'NO'}; crashes ${r.crashes}; simulated ${r.simulatedMs} ms in ${r.wallMs} ms`,
  ];
  const i = r.isolation;
  if (i !== undefined) {
    lines.push(
      `  ${i.reads} reads${i.countermeasure === null ? '' : `, countermeasure ${i.countermeasure}`}: ` +
        `${i.inconsistentAudits} of ${i.audits} audits inconsistent (${i.auditsRetried} retried), ` +
        `dirty reads ${i.dirtyReads}, lost updates ${i.lostUpdates}`,
      `  history checker: ${i.anomalyTypes.length === 0 ? 'no anomalies' : i.anomalyTypes.join(', ')}`,
    );
  }
  return withViolations(lines, r);
}

export function formatOutboxReport(r: OutboxReport): string {
  const lines = [
    `${r.protocol}, seed ${r.seed}: ${r.txns} producer transactions, ${r.committed} committed, ${r.rolledBack} rolled back`,
    `  outbox rows ${r.produced}, stored by the broker ${r.published}, applied once ${r.applied}, undelivered ${r.undelivered}`,
    `  duplicates dropped: ${r.duplicatesSuppressedByDedup} by the broker's window, ${r.duplicatesSuppressedByInbox} by the inbox; redeliveries ${r.redeliveries}`,
    `  commit to effect ${ms(r.latencyMs)}`,
    `  crashes ${r.crashes}; simulated ${r.simulatedMs} ms in ${r.wallMs} ms`,
  ];
  return withViolations(lines, r);
}

/** Every world ends its summary the same way: the checkers' verdict, the first ten violations. */
function withViolations(
  lines: string[],
  r: { violationCount: number; violations: readonly { checker: string; txn: string; detail: string }[] },
): string {
  if (r.violationCount > 0) {
    lines.push(`  VIOLATIONS: ${r.violationCount}`);
    for (const v of r.violations.slice(0, 10)) lines.push(`    ${v.checker} ${v.txn}: ${v.detail}`);
  } else {
    lines.push('  checkers: no violations');
  }
  return `${lines.join('\n')}\n`;
}

/** A one-line progress bar on stderr, redrawn in place; only used when stderr is a terminal. */
export function progressBar(total: number) {
  let last = -1;
  return {
    update(done: number) {
      const pct = Math.floor((100 * done) / total);
      if (pct === last) return;
      last = pct;
      const width = 30;
      const filled = Math.round((width * done) / total);
      process.stderr.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total}`);
    },
    done() {
      process.stderr.write('\n');
    },
  };
}

/** One line per branch that contradicts its transaction's decision, then where to read on. */
export function printHeuristics(heuristics: readonly HeuristicView[]): void {
  for (const h of heuristics) {
    process.stdout.write(
      `  HEURISTIC ${h.txn ?? '?'} ${h.resource ?? '?'} ${h.gid}: decided ${h.decision}, found ${h.found}\n`,
    );
  }
  if (heuristics.length > 0) {
    process.stdout.write(
      `${heuristics.length} heuristic outcome(s): reconcile these branches by hand (docs/operations.md, "Heuristic outcomes")\n`,
    );
  }
}
