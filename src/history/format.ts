// The checker's human-readable report (what --json replaces): a one-line
// verdict, then per anomaly type how many were found and the first few
// witnesses, each transaction with its micro-ops and each edge with the key
// and value that justify it.

import {
  type CheckResult,
  type CycleWitness,
  isCycleWitness,
  type MicroOp,
  nameOf,
  showValue,
  type TxnView,
  type Witness,
} from './types.ts';

/** Witnesses printed per type; --json has them all. */
const witnessesShownMax = 3;

function showOps(ops: readonly MicroOp[]): string {
  return ops.map(([f, k, v]) => `${f} ${JSON.stringify(k)} ${showValue(v)}`).join(', ');
}

function showTxn(t: TxnView): string {
  return `${nameOf(t)} (${t.type}, process ${JSON.stringify(t.process)}): ${showOps(t.value)}`;
}

function cycleLines(w: CycleWitness): string[] {
  const lines = w.txns.map((t) => `    ${showTxn(t)}`);
  for (const s of w.steps) lines.push(`    T${s.from} -${s.rel}-> T${s.to}: ${s.why}`);
  return lines;
}

function witnessLines(w: Witness): string[] {
  if (isCycleWitness(w)) return cycleLines(w);
  const lines = [`    ${showTxn(w.txn)}`, `      ${w.why}`];
  if (w.other !== undefined) lines.push(`      other: ${showTxn(w.other)}`);
  return lines;
}

export function formatCheckResult(result: CheckResult, source: string, txns: number): string {
  if (result.valid) return `valid: ${source}, ${txns} transactions, no anomaly found\n`;
  const lines = [`NOT valid: ${source}, ${txns} transactions, anomalies: ${result.anomalyTypes.join(', ')}`];
  for (const type of result.anomalyTypes) {
    const witnesses = result.anomalies[type]!;
    lines.push(`${type}: ${witnesses.length} found`);
    witnesses.slice(0, witnessesShownMax).forEach((w, i) => {
      lines.push(`  #${i + 1}`, ...witnessLines(w));
    });
    if (witnesses.length > witnessesShownMax)
      lines.push(`  ... ${witnesses.length - witnessesShownMax} more (--json lists them all)`);
  }
  return `${lines.join('\n')}\n`;
}
