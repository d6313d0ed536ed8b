// Isolation across processes and products: MariaDB as a participant next to
// PostgreSQL; `dtx verify --live` auditing from its own process, fenced by the
// PostgreSQL advisory lock the bench's coordinator shares (`--fence`); and a
// coordinator killed with SIGKILL during an audited run: `dtx recover`, then
// `dtx verify`, find the books whole, and audits after recovery are consistent.

import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { AuditReads } from '../../src/cli/audit.ts';
import { runBench, runRecover, runVerify } from '../../src/cli/bench.ts';
import { mariaAdmin as maria } from '../adapters/helpers.ts';
import { type PgCluster, startPgCluster } from '../adapters/pg-cluster.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const bin = join(root, 'bin', 'dtx.js');
const work = mkdtempSync(join(tmpdir(), 'dtx-isolation-proc-'));
/** This run's own MariaDB database (XA is server-wide; the log's generated id keeps the gids apart). */
const mariaDatabase = `dtx_iso_${process.pid}`;
let clusters: PgCluster[] = [];
const pgUrl = (c: PgCluster) => `postgres://postgres@127.0.0.1:${c.port}/postgres`;

before(async () => {
  await maria(`CREATE DATABASE IF NOT EXISTS ${mariaDatabase}`);
  clusters = await Promise.all([startPgCluster(), startPgCluster()]);
});

after(async () => {
  await maria(`DROP DATABASE IF EXISTS ${mariaDatabase}`).catch(() => undefined);
  await Promise.allSettled(clusters.map((c) => c.stop()));
  rmSync(work, { recursive: true, force: true });
});

/** `dtx ARGS` from the sources, in its own process. */
function dtx(args: string[]): {
  child: ChildProcess;
  done: Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }>;
} {
  const child = spawn(process.execPath, [bin, ...args], {
    cwd: root,
    env: { ...process.env, DTX_FROM_SOURCE: '1' },
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  const done = new Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }>(
    (r) => child.on('exit', (code, signal) => r({ code, signal, stdout, stderr })),
  );
  return { child, done };
}

/** Resolves once the bench child says its transfers started. */
function started(child: ChildProcess): Promise<void> {
  return new Promise((resolve, reject) => {
    const onData = (d: Buffer) => {
      if (String(d).includes('transfers started')) resolve();
    };
    child.stderr!.on('data', onData);
    child.on('exit', () => reject(new Error('bench ended before its transfers started')));
  });
}

test('MariaDB as a participant: plain reads see money in flight, locking and snapshot reads never do', async () => {
  const dbs = [pgUrl(clusters[0]!), `mysql://root@127.0.0.1:3306/${mariaDatabase}`];
  const log = join(work, 'maria.sqlite');
  await runBench({ dbs, log, protocol: '2pc', accounts: 200, concurrency: 4, txns: 8, init: true });
  const seen: Record<string, unknown> = {};
  for (const reads of ['plain', 'locking', 'snapshot'] as AuditReads[]) {
    const report = await runBench({
      dbs,
      log,
      protocol: '2pc',
      accounts: 200,
      concurrency: 8,
      durationS: 2.5,
      init: false,
      auditors: 2,
      reads,
    });
    const audit = report.audit!;
    seen[reads] = { tps: report.tps, audits: audit.audits, inconsistent: audit.inconsistentAudits };
    assert.ok(audit.audits > 0, `${reads}: no audit completed: ${JSON.stringify(audit)}`);
    if (reads === 'plain')
      assert.ok(audit.inconsistentAudits > 0, `plain: no wrong total in ${audit.audits} audits`);
    else assert.equal(audit.inconsistentAudits, 0, `${reads}: wrong totals ${audit.wrongTotals.join(', ')}`);
    assert.equal(audit.failedAudits, 0, `${reads}: ${audit.firstFailure}`);
  }
  process.stderr.write(`isolation with MariaDB: ${JSON.stringify(seen)}\n`);
  const verify = await runVerify(dbs, { logs: [log] });
  assert.equal(verify.ok, true, JSON.stringify(verify));
});

test('dtx verify --live audits from its own process, fenced by the advisory lock the coordinator shares', async () => {
  const dbs = [pgUrl(clusters[0]!), pgUrl(clusters[1]!)];
  const dbArgs = dbs.flatMap((d) => ['--db', d]);
  const log = join(work, 'live.sqlite');
  const fence = pgUrl(clusters[1]!);
  await runBench({ dbs, log, protocol: '2pc', accounts: 200, concurrency: 4, txns: 8, init: true });
  const live = async (withFence: boolean) => {
    // The bench runs until the audit is over (its start and the verifier's
    // take seconds on a loaded machine), then is killed; recovery finishes it.
    const bench = dtx([
      'bench',
      ...dbArgs,
      '--log',
      log,
      '--duration',
      '60',
      ...(withFence ? ['--fence', fence] : []),
    ]);
    await started(bench.child);
    const verify = await dtx(['verify', ...dbArgs, '--live', '--fence', fence, '--duration', '2', '--json'])
      .done;
    bench.child.kill('SIGKILL');
    await bench.done;
    await runRecover({ dbs, log });
    assert.equal((await runVerify(dbs, { logs: [log] })).ok, true);
    return { code: verify.code, report: JSON.parse(verify.stdout) };
  };
  // Without the bench in the fence, the live audit sees what plain reads see: it can tell.
  const unfenced = await live(false);
  assert.equal(unfenced.code, 1);
  assert.ok(unfenced.report.inconsistentAudits > 0, JSON.stringify(unfenced.report));
  const fenced = await live(true);
  assert.equal(fenced.code, 0, JSON.stringify(fenced.report));
  assert.ok(fenced.report.audits > 0);
  assert.equal(fenced.report.inconsistentAudits, 0);
  process.stderr.write(
    `verify --live: unfenced ${unfenced.report.inconsistentAudits}/${unfenced.report.audits} wrong, ` +
      `fenced ${fenced.report.inconsistentAudits}/${fenced.report.audits}\n`,
  );
});

test('kill -9 of the coordinator during an audited run loses nothing, and audits after recovery are consistent', async () => {
  const dbs = [pgUrl(clusters[0]!), pgUrl(clusters[1]!)];
  const dbArgs = dbs.flatMap((d) => ['--db', d]);
  const log = join(work, 'crash.sqlite');
  await runBench({ dbs, log, protocol: '2pc', accounts: 200, concurrency: 4, txns: 8, init: true });
  const bench = await dtx([
    'bench',
    ...dbArgs,
    '--log',
    log,
    '--duration',
    '20',
    '--auditors',
    '2',
    '--reads',
    'snapshot',
    '--crash-at',
    'between-commits',
    '--crash-after',
    '40',
  ]).done;
  assert.equal(bench.signal, 'SIGKILL', bench.stderr);
  const recovered = await runRecover({ dbs, log });
  assert.ok(recovered.recommitted.length + recovered.rolledBack.length > 0, JSON.stringify(recovered));
  const verify = await runVerify(dbs, { logs: [log] });
  assert.equal(verify.ok, true, JSON.stringify(verify));
  const after = await runBench({
    dbs,
    log,
    protocol: '2pc',
    accounts: 200,
    concurrency: 8,
    durationS: 2,
    init: false,
    auditors: 2,
    reads: 'snapshot',
  });
  assert.ok(after.audit!.audits > 0);
  assert.equal(after.audit!.inconsistentAudits, 0, after.audit!.wrongTotals.join(', '));
  assert.equal((await runVerify(dbs, { logs: [log] })).ok, true);
});
