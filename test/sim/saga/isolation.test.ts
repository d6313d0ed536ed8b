// Reads in the branch world: the bank-audit workload (transfers between banks
// as sagas or TCC transactions, auditors reading every account). Plain sagas
// must show the anomalies sagas are known for — the test cannot tell a
// countermeasure works unless the anomaly shows without it — and each
// countermeasure must remove the one it targets, under every fault the swarm
// draws. The history the run records must be one `dtx check-history` reads.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkHistoryText } from '../../../src/history/check.ts';
import type { Countermeasure } from '../../../src/sim/branch/bank-audit.ts';
import { countermeasureViolations } from '../../../src/sim/branch/isolation.ts';
import { runSagaSim } from '../../../src/sim/branch/run.ts';
import { runSagaSwarm, type SagaSwarmSummary } from '../../../src/sim/branch/swarm.ts';
import { runSim } from '../../../src/sim/run.ts';

const seeds = 60;

function swarm(protocol: 'saga' | 'tcc', countermeasure?: Countermeasure): SagaSwarmSummary {
  return runSagaSwarm({
    protocol,
    seeds,
    from: 1,
    workload: 'bank-audit',
    ...(countermeasure !== undefined ? { countermeasure } : {}),
  });
}

const plain = swarm('saga', 'none');
const locked = swarm('saga', 'semantic-lock');
const commutative = swarm('saga', 'commutative');
const tcc = swarm('tcc');

test('plain sagas: inconsistent audits, dirty reads of compensated steps and lost updates, counted', () => {
  assert.equal(plain.failure, null, plain.failure?.command);
  const i = plain.isolation!;
  assert.ok(i.audits > 1000, String(i.audits));
  assert.ok(i.inconsistentAudits > i.audits / 20, JSON.stringify(i));
  assert.ok(i.dirtyReads > 50, JSON.stringify(i));
  assert.ok(i.lostUpdates > 0, JSON.stringify(i));
  // The checker names them from the history alone: an audit that read a
  // compensated saga's step (G1a), a transfer seen at one bank only (G-single).
  assert.ok((i.seedsWithAnomaly.G1a ?? 0) > seeds / 4, JSON.stringify(i.seedsWithAnomaly));
  assert.ok((i.seedsWithAnomaly['G-single'] ?? 0) > seeds / 4, JSON.stringify(i.seedsWithAnomaly));
});

test('the semantic lock removes dirty reads and lost updates; audits that meet a flag are retried', () => {
  // A dirty read or a lost update under the lock would be a `countermeasure` violation: the swarm stops on it.
  assert.equal(locked.failure, null, locked.failure?.command);
  const i = locked.isolation!;
  assert.equal(i.dirtyReads, 0);
  assert.equal(i.lostUpdates, 0);
  assert.equal(i.seedsWithAnomaly.G1a, undefined, JSON.stringify(i.seedsWithAnomaly));
  assert.ok(i.auditsRetried > 0, JSON.stringify(i));
  assert.ok(i.audits > 300, JSON.stringify(i));
  // It is not a snapshot: far fewer audits are inconsistent than without it.
  assert.ok(i.inconsistentAudits * 10 < plain.isolation!.inconsistentAudits, JSON.stringify(i));
});

test('commutative updates remove lost updates, not dirty reads', () => {
  assert.equal(commutative.failure, null, commutative.failure?.command);
  const i = commutative.isolation!;
  assert.equal(i.lostUpdates, 0);
  assert.ok(i.dirtyReads > 50, JSON.stringify(i));
});

test('TCC: dirty reads of cancelled tries and reads between try and confirm (G1b); no lost update', () => {
  assert.equal(tcc.failure, null, tcc.failure?.command);
  const i = tcc.isolation!;
  assert.equal(i.countermeasure, null);
  assert.ok(i.dirtyReads > 20, JSON.stringify(i));
  assert.equal(i.lostUpdates, 0);
  assert.ok(i.inconsistentAudits > 0, JSON.stringify(i));
  assert.ok((i.seedsWithAnomaly.G1b ?? 0) > 0, JSON.stringify(i.seedsWithAnomaly));
});

test('the recorded history is what dtx check-history reads, and finds what the run reported', () => {
  const run = runSagaSim({ protocol: 'saga', workload: 'bank-audit', txns: 150, seed: 3 });
  const text = run.world.isolation!.historyText();
  const checked = checkHistoryText(text, 'run', { model: 'list-append', consistency: 'serializable' });
  assert.deepEqual(checked.anomalyTypes, run.report.isolation!.anomalyTypes);
  assert.ok(checked.anomalyTypes.includes('G1a'), checked.anomalyTypes.join());
  const lockedRun = runSagaSim({
    protocol: 'saga',
    workload: 'bank-audit',
    txns: 150,
    seed: 3,
    countermeasure: 'semantic-lock',
  });
  assert.equal(lockedRun.report.isolation!.dirtyReads, 0);
  assert.equal(lockedRun.report.violationCount, 0, JSON.stringify(lockedRun.report.violations));
});

test('lost updates move the conserved total by what they erased, and the conservation check follows it', () => {
  // Without a countermeasure an undo image put back erases other transfers:
  // the money changes, and by exactly the measured drift (else a violation).
  let moved = 0;
  for (let seed = 1; seed <= 20; seed++) {
    const r = runSim({ protocol: 'saga', workload: 'bank-audit', txns: 150, seed }).report;
    assert.equal(r.violationCount, 0, JSON.stringify(r.violations));
    if (r.isolation!.lostUpdates > 0 && !r.conserved) moved++;
  }
  assert.ok(moved > 0);
});

test('the countermeasure check can fail', () => {
  const flagged: string[] = [];
  const flag = (_c: 'countermeasure', _t: string, detail: string) => flagged.push(detail);
  const report = {
    reads: 'plain' as const,
    audits: 10,
    inconsistentAudits: 0,
    auditsRetried: 0,
    anomalyTypes: [],
    dirtyReads: 2,
    lostUpdates: 1,
  };
  countermeasureViolations({ ...report, countermeasure: 'semantic-lock' }, flag);
  countermeasureViolations({ ...report, countermeasure: 'commutative' }, flag);
  countermeasureViolations({ ...report, countermeasure: 'none' }, flag);
  assert.deepEqual(flagged, [
    '2 dirty read(s) under the semantic lock',
    '1 lost update(s) under semantic-lock',
    '1 lost update(s) under commutative',
  ]);
});

test('bad requests are refused with a reason', () => {
  const base = { workload: 'bank-audit' as const, txns: 10, seed: 1 };
  assert.throws(() => runSim({ ...base, protocol: 'saga', reads: 'locking' }), /plain reads only/);
  assert.throws(() => runSim({ ...base, protocol: 'tcc', countermeasure: 'commutative' }), /for sagas/);
  assert.throws(
    () => runSim({ protocol: 'saga', workload: 'booking', txns: 10, seed: 1, countermeasure: 'commutative' }),
    /bank-audit workload/,
  );
  // The booking workload reports no isolation: its output is unchanged.
  assert.equal(
    runSim({ protocol: 'saga', workload: 'booking', txns: 10, seed: 1 }).report.isolation,
    undefined,
  );
});
