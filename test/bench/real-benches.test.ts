// `npm run bench:2pc` and `npm run bench:saga` in quick mode: they start their
// own PostgreSQL clusters, run every row against them (and MariaDB when the
// machine has it) and print every row with a figure. Speed is not checked
// here (the machine may be busy); that every row ran and committed is.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { dirname, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

interface Report {
  rows: {
    topology: string;
    concurrency: number;
    variant: string;
    committed: number;
    tps: number;
    cpuMsPerTxn: number;
  }[];
  skipped: string[];
  paxosVsTwoPc?: { topology: string; concurrency: number; ratio: number }[];
  paxosCosts?: {
    topology: string;
    row: string;
    costs: {
      shape: { rms: number };
      committed: number;
      measured: { byKind: Record<string, number>; forcedWrites: number; overNetwork: number };
    };
  }[];
}

function runBench(script: string): Promise<Report> {
  return new Promise((done, fail) => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', script, '--quick', '--concurrency', '1,8', '--json'],
      // The test's own MariaDB database; a machine without MariaDB reports the topology skipped.
      {
        cwd: root,
        env: {
          ...process.env,
          DTX_BENCH_MARIADB_URL:
            process.env.DTX_BENCH_MARIADB_URL ?? 'mysql://root@127.0.0.1:3306/dtx_test_bench_real',
        },
      },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', fail);
    child.on('close', (code) => {
      if (code !== 0) fail(new Error(`${script} exited ${code}: ${stderr}`));
      else done(JSON.parse(stdout) as Report);
    });
  });
}

function checkRows(report: Report, variants: string[]): void {
  const topologies = ['pg', ...(report.skipped.length === 0 ? ['pg+mariadb'] : [])];
  for (const topology of topologies) {
    for (const concurrency of [1, 8]) {
      const got = report.rows.filter((r) => r.topology === topology && r.concurrency === concurrency);
      assert.deepEqual(
        got.map((r) => r.variant),
        variants,
        `${topology} at concurrency ${concurrency}`,
      );
      for (const r of got) {
        assert.ok(r.committed > 0, `${topology} c=${concurrency} ${r.variant} committed nothing`);
        assert.ok(r.tps > 0 && r.cpuMsPerTxn > 0, `${topology} c=${concurrency} ${r.variant} has no figures`);
      }
    }
  }
}

test('bench:2pc runs and reports every row', { timeout: 300_000 }, async () => {
  const report = await runBench('bench/twopc.ts');
  checkRows(report, [
    'hand-written',
    "dtx acknowledge 'committed'",
    "dtx acknowledge 'durable'",
    'naive',
    'dtx paxos-commit (F=1)',
    'dtx paxos-commit (F=1, one acceptor in the leader)',
  ]);
  // Paxos Commit against dtx 2PC at each topology and concurrency, and its costs counted on the run.
  const topologies = report.skipped.length === 0 ? 2 : 1;
  // Two Paxos Commit rows (three acceptor processes; one acceptor in the leader), at two concurrencies.
  assert.equal(report.paxosVsTwoPc?.length, 4 * topologies);
  for (const r of report.paxosVsTwoPc ?? []) assert.ok(r.ratio > 0, JSON.stringify(r));
  assert.equal(report.paxosCosts?.length, 2 * topologies);
  for (const topology of ['pg', 'pg+mariadb'].slice(0, topologies)) {
    const network = (row: string) =>
      report.paxosCosts!.find((c) => c.topology === topology && c.row === row)!.costs.measured.overNetwork;
    // The hosted acceptor's votes and phase 2b stay in the leader's process.
    assert.ok(
      network('dtx paxos-commit (F=1, one acceptor in the leader)') < network('dtx paxos-commit (F=1)'),
      topology,
    );
  }
  for (const { topology, costs } of report.paxosCosts ?? []) {
    assert.ok(costs.committed > 0, topology);
    // Every committed transfer prepared and committed on each database (three
    // on pg, two on pg+mariadb) and voted to F+1 = 2 acceptors from each.
    const rms = topology === 'pg' ? 3 : 2;
    const m = JSON.stringify(costs.measured);
    assert.equal(costs.shape.rms, rms, topology);
    assert.ok(costs.measured.byKind.prepare! >= rms, `${topology} ${m}`);
    assert.ok(costs.measured.byKind.phase2a! >= 2 * rms, `${topology} ${m}`);
    assert.ok(costs.measured.forcedWrites >= 3 * rms, `${topology} ${m}`);
  }
});

test('bench:saga runs and reports every row', { timeout: 300_000 }, async () => {
  checkRows(await runBench('bench/saga.ts'), [
    'direct local txns',
    'dtx saga (barrier)',
    'dtx TCC (barrier)',
  ]);
});
