// Output of `dtx compare`: the measured cost-model table as markdown. The
// chart is drawn by src/render/compare-chart.ts, where the server's dashboard
// can use it too.

import { formatMs as ms } from '../render/compare-chart.ts';
import type { CompareReport } from '../sim/compare.ts';
import type { PaperCostRow } from '../sim/paper-costs.ts';

/** Paxos Commit's counts per commit, the paper's formula next to the measured value, and why they differ. */
export function formatPaperCosts(rows: readonly PaperCostRow[]): string[] {
  if (rows.length === 0) return [];
  const fmt = (x: number) => (Number.isInteger(x) ? String(x) : x.toFixed(2));
  const mark = (ok: boolean) => (ok ? '=' : '≠');
  const lines = [
    `Paxos Commit, paper vs measured: failure-free normal case, per committed transaction, votes to ${rows[0]!.fanout === 'quorum' ? 'F+1' : 'all 2F+1'} acceptors`,
    `(${rows[0]!.paper.source}; measured: what the simulator sent and forced, one transaction at a time over all N RMs,`,
    `e.g. ${rows[0]!.measured.command}).`,
    "Messages count BeginCommit (dtx: the client's commit request), Prepare, phase 2a, phase 2b and Commit between nodes;",
    "forced writes count those before the outcome is known (RMs' prepared, acceptors' state); RMs' committed records are shown apart.",
    '',
    '| placement | N | F | messages: paper | measured | forced writes: paper | measured | (+ after outcome) |',
    '|---|---|---|---|---|---|---|---|',
    ...rows.map(
      (r) =>
        `| ${r.placement} | ${r.rms} | ${r.F} | ${r.paper.messagesFormula} = ${r.paper.messages} | ` +
        `${mark(r.agrees.messages)} ${fmt(r.measured.messages)} | ${r.paper.forcedWritesFormula} = ${r.paper.forcedWrites} | ` +
        `${mark(r.agrees.forcedWrites)} ${fmt(r.measured.forcedWrites)} | ${fmt(r.measured.forcedWritesAfter)} |`,
    ),
    '',
  ];
  const off = rows.filter((r) => !r.matchesDerivation);
  lines.push(
    off.length === 0
      ? 'Where dtx differs from the paper, and why (the measured counts equal this derivation in every row):'
      : `Where dtx differs from the paper, and why — but the measured counts do NOT match this derivation in ${off
          .map((r) => `${r.placement} N=${r.rms} F=${r.F}`)
          .join(', ')}:`,
  );
  const seen = new Set<string>();
  for (const r of rows) {
    for (const d of r.differences) {
      // The reasons repeat across N and F; print each placement's once, without the numbers.
      const key = `${r.placement}: ${d.replace(/paper \d+, dtx \d+: /, '')}`;
      if (seen.has(key)) continue;
      seen.add(key);
      lines.push(`- ${key}`);
    }
  }
  return lines;
}

/** 2PC's read-only transactions: the commit fence against clocks, without and with commit wait. */
function formatReadRows(report: CompareReport): string[] {
  const o = report.options;
  if (report.readRows.length === 0) return [];
  return [
    `Clocks or a single serialisation point: 2PC, append workload, ${o.clockSeeds} seeds of ${o.txns} transactions, concurrency 8;`,
    `read-only transactions read one cut without locks, through the commit fence (snapshot) or at a snapshot timestamp`,
    `from clocks skewed up to ±${o.clockSkewMs} ms (timestamp). Real-time violations: seeds whose history the`,
    'strict-serializable checker finds a cycle through real-time order in.',
    '',
    '| reads | commit latency p50 / p99 | read-only latency p50 / p99 | commit wait p50 | commits held back | real-time violations (seeds) | other anomalies (seeds) |',
    '|---|---|---|---|---|---|---|',
    ...report.readRows.map(
      (r) =>
        `| ${r.reads} | ${ms(r.latencyMs.p50)} / ${ms(r.latencyMs.p99)} | ${ms(r.readOnlyLatencyMs.p50)} / ${ms(r.readOnlyLatencyMs.p99)} | ` +
        `${r.reads === 'timestamp + commit wait' ? ms(r.commitWaitMs.p50) : '-'} | ${r.reads === 'snapshot' ? r.heldBackCommits : '-'} | ` +
        `${r.realtimeViolationSeeds} of ${r.seeds} | ${r.otherAnomalySeeds} |`,
    ),
    '',
  ];
}

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
    `N = ${o.participants} participants, F = ${o.faults} (votes to ${o.fanout === 'quorum' ? 'F+1' : 'all 2F+1'} acceptors), RTT ${o.rttMs} ms, fsync ${o.fsyncMs} ms, ` +
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
    '',
    '',
    ...formatReadRows(report),
    '',
    ...formatPaperCosts(report.paper),
  ];
  return `${lines.join('\n')}\n`;
}
