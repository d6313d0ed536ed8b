// Reads in the commit world (docs/isolation.md, "Isolation in the
// simulator"): plain reads show the window between one participant's commit
// and the next, as inconsistent audits and history anomalies; locking reads
// and snapshot reads through the commit fence show neither, under the
// swarm's faults; and the checkers can tell, because a snapshot opened
// without the fence is caught.

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { checkHistoryText } from '../../src/history/check.ts';
import { historyText } from '../../src/sim/isolation.ts';
import { makeProtocol } from '../../src/sim/protocols.ts';
import { commitRequestProblem, runSim, type SimRequest } from '../../src/sim/run.ts';
import { runSwarm, simCommand } from '../../src/sim/swarm.ts';
import { dtxFromSource } from '../support/dtx-source.ts';

const audit = (req: Partial<SimRequest>): SimRequest => ({
  protocol: '2pc',
  workload: 'bank-audit',
  txns: 2000,
  seed: 1,
  ...req,
});

test('plain reads: 2PC and naive commit audits see money in flight; the rate is in the report', () => {
  for (const protocol of ['2pc', 'naive'] as const) {
    const { report } = runSim(audit({ protocol, reads: 'plain' }));
    const iso = report.isolation!;
    assert.ok(iso.audits > 100, `${protocol}: only ${iso.audits} audits`);
    assert.ok(iso.inconsistentAudits > 0, `${protocol}: no audit saw a transfer half-committed`);
    assert.equal(report.violationCount, 0, 'plain reads promise nothing: no violation');
  }
});

test('plain reads: the append history has anomalies the checker names', () => {
  const { report, history } = runSim({
    protocol: '2pc',
    workload: 'append',
    txns: 2000,
    seed: 1,
    reads: 'plain',
  });
  const types = report.isolation!.anomalyTypes;
  assert.ok(types.includes('G-single') || types.includes('G2-item'), types.join(','));
  // The history the run checked is the one --history writes: check-history reads it the same.
  const fromFile = checkHistoryText(historyText(history!), 'h', {
    model: 'list-append',
    consistency: 'serializable',
  });
  assert.deepEqual(fromFile.anomalyTypes, types);
});

test('locking and snapshot reads: no wrong audit, no anomaly, for 2PC and Paxos Commit', () => {
  for (const protocol of ['2pc', 'paxos-commit'] as const) {
    for (const reads of ['locking', 'snapshot'] as const) {
      const bank = runSim(audit({ protocol, reads, loss: 0.02, crashRate: 0.01 })).report;
      assert.ok(bank.isolation!.audits > 50, `${protocol} ${reads}: ${bank.isolation!.audits} audits`);
      assert.equal(bank.isolation!.inconsistentAudits, 0, `${protocol} ${reads}`);
      assert.equal(bank.violationCount, 0, JSON.stringify(bank.violations.slice(0, 2)));
      const append = runSim({ protocol, workload: 'append', txns: 1500, seed: 2, reads, loss: 0.02 }).report;
      assert.deepEqual(append.isolation!.anomalyTypes, [], `${protocol} ${reads}`);
      assert.ok(append.committed > 250, `${protocol} ${reads}: ${append.committed} committed`);
    }
  }
});

test('swarm: 2PC and Paxos Commit with locking and snapshot reads, 150 seeds each, every fault', () => {
  for (const protocol of ['2pc', 'paxos-commit'] as const) {
    for (const workload of ['bank-audit', 'append'] as const) {
      for (const reads of ['locking', 'snapshot'] as const) {
        const s = runSwarm({ protocol, seeds: 150, from: 1, workload, reads });
        assert.equal(s.failure, null, s.failure?.command);
        assert.equal(s.isolation!.inconsistentAudits, 0);
        assert.equal(s.isolation!.seedsWithAnomalies, 0);
        if (workload === 'bank-audit') assert.ok(s.isolation!.audits > 200, `${s.isolation!.audits} audits`);
      }
    }
  }
});

test('swarm: with plain reads the same seeds count wrong audits, and that is no failure', () => {
  const s = runSwarm({ protocol: '2pc', seeds: 150, from: 1, workload: 'bank-audit', reads: 'plain' });
  assert.equal(s.failure, null, s.failure?.command);
  assert.ok(s.isolation!.inconsistentAudits > 0);
  assert.ok(s.isolation!.inconsistentShare > 0 && s.isolation!.inconsistentShare < 1);
});

test('a snapshot opened without the commit fence is caught by the swarm', () => {
  // The fence admits every commit phase at once: nothing tells it a commit starts.
  const unfenced = { ...makeProtocol('2pc'), commitTells: [] };
  const s = runSwarm({ protocol: unfenced, seeds: 200, from: 1, workload: 'bank-audit', reads: 'snapshot' });
  assert.ok(s.failure !== null, 'the unfenced snapshot was not caught');
  assert.ok(s.failure.report.violations.some((v) => v.checker === 'isolation'));
  assert.match(s.failure.command, /--workload bank-audit .*--reads snapshot/);
});

test('the reproduce line carries the workload and the read mode, and leaves bank runs as they were', () => {
  const req: SimRequest = { protocol: '2pc', workload: 'append', txns: 10, seed: 3, reads: 'locking' };
  assert.equal(
    simCommand(req),
    'dtx sim --protocol 2pc --workload append --txns 10 --seed 3 --reads locking',
  );
  const bank = runSim({ protocol: '2pc', workload: 'bank', txns: 50, seed: 1 }).report;
  assert.equal('isolation' in bank, false, 'a workload without reads reports no isolation');
});

test('bad combinations are refused with a reason', () => {
  assert.match(commitRequestProblem({ ...audit({}), workload: 'bank', reads: 'locking' })!, /--reads is for/);
  assert.match(
    commitRequestProblem(
      audit({ reads: 'snapshot', protocol: 'paxos-commit', protocolOptions: { faster: true } }),
    )!,
    /cannot fence Faster Paxos Commit/,
  );
  assert.match(commitRequestProblem(audit({ readOnlyShare: 0.1 }))!, /--read-only-share is for the bank/);
});

const dtx = dtxFromSource;

test('dtx sim --history writes what dtx check-history reads, with the verdict the report gave', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dtx-history-'));
  try {
    const file = join(dir, 'h.jsonl');
    const sim = dtx(
      'sim',
      '--protocol',
      '2pc',
      '--workload',
      'append',
      '--txns',
      '400',
      '--reads',
      'plain',
      '--history',
      file,
      '--json',
    );
    assert.equal(sim.code, 0, sim.stderr);
    const report = JSON.parse(sim.stdout);
    assert.ok(readFileSync(file, 'utf8').split('\n').length > 400);
    const check = dtx('check-history', file, '--json');
    assert.deepEqual(JSON.parse(check.stdout).anomalyTypes, report.isolation.anomalyTypes);
    assert.equal(check.code, report.isolation.anomalyTypes.length > 0 ? 1 : 0);
    const bank = dtx('sim', '--protocol', '2pc', '--workload', 'bank', '--txns', '10', '--history', file);
    assert.equal(bank.code, 2);
    assert.match(bank.stderr, /--history is for the append workload/);
    const saga = dtx(
      'swarm',
      '--protocol',
      'saga',
      '--workload',
      'bank-audit',
      '--seeds',
      '1',
      '--reads',
      'locking',
    );
    assert.equal(saga.code, 2);
    assert.match(saga.stderr, /saga offers plain reads only/);
    const outbox = dtx('swarm', '--protocol', 'outbox', '--seeds', '1', '--reads', 'plain');
    assert.equal(outbox.code, 2);
    assert.match(outbox.stderr, /do not apply to outbox/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
