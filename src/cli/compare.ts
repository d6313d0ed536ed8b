// Output of `dtx compare`: the measured cost-model table as markdown. The
// chart is drawn by src/render/compare-chart.ts, where the server's dashboard
// can use it too.

import { formatMs as ms } from '../render/compare-chart.ts';
import type { CompareReport } from '../sim/compare.ts';

export function formatCompareTable(report: CompareReport): string {
  const o = report.options;
  const head = [
    'protocol',
    'commit latency p50 (healthy)',
    'in doubt max (coordinator crash)',
    'locks held p50 (healthy)',
    'locks held max (crash)',
    'message delays',
    'messages / commit (of which acks)',
    'forced writes / commit',
    `atomicity violations (${o.swarmSeeds} swarm seeds)`,
  ];
  const rows = report.rows.map((r) => [
    r.protocol,
    ms(r.healthy.latencyMs.p50),
    r.coordinatorFailure.inDoubtMs.max === 0 ? 'never in doubt' : ms(r.coordinatorFailure.inDoubtMs.max),
    ms(r.healthy.lockHeldMs.p50),
    ms(r.coordinatorFailure.lockHeldMs.max),
    String(r.messageDelays),
    `${r.messagesPerCommit.toFixed(1)} (${r.ackMessagesPerCommit.toFixed(1)})`,
    r.forcedWritesPerCommit.toFixed(1),
    r.protocol === 'naive'
      ? `${r.swarm.atomicityViolations} partial commits`
      : String(r.swarm.atomicityViolations),
  ]);
  const lines = [
    `N = ${o.participants} participants, F = ${o.faults}, RTT ${o.rttMs} ms, fsync ${o.fsyncMs} ms, ` +
      `coordinator down ${ms(o.takeoverMs)} (2PC takeover time), seed ${o.seed}`,
    '',
    `| ${head.join(' | ')} |`,
    `|${head.map(() => '---').join('|')}|`,
    ...rows.map((cells) => `| ${cells.join(' | ')} |`),
    '',
    '',
    'Sagas and TCC (booking workload: reserve a seat, charge a wallet, issue a ticket; not atomic, so not in the',
    'table above). Inconsistency window: how long a failed booking kept its seat from others.',
    '',
    '| protocol | booking latency p50 | inconsistency window p50 / max (healthy) | window max (orchestrator down) | messages / saga | forced writes / saga | violations (swarm) |',
    '|---|---|---|---|---|---|---|',
    ...report.sagaRows.map(
      (r) =>
        `| ${r.protocol} | ${ms(r.latencyMs.p50)} | ${ms(r.inconsistencyWindowMs.p50)} / ${ms(r.inconsistencyWindowMs.max)} | ` +
        `${ms(r.inconsistencyWindowOnCrashMs.max)} | ${r.messagesPerSaga.toFixed(1)} | ${r.forcedWritesPerSaga.toFixed(1)} | ` +
        `${r.swarm.violations} (${r.swarm.seeds} seeds) |`,
    ),
    '',
    'Message delays: one-way delays from the client asking to commit to its answer (client hops included),',
    'measured with no fsync cost. Locks held max (crash) includes work started while the coordinator was',
    'down, which waits for the unvoted-abort timeout.',
  ];
  return `${lines.join('\n')}\n`;
}
