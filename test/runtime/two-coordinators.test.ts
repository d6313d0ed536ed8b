// Issue 9, acceptance for identity: two coordinators with different ids (each
// log generated its own) run transfers on the same two PostgreSQL clusters and
// MariaDB database. One is SIGKILLed mid-load and `dtx recover`ed while the
// other keeps running. The survivor loses nothing: every transfer it reported
// committed is on every database, it has no other, and nothing is left half
// done or prepared; its aborts are exactly the ones it reported (the other's
// recovery rolled back none of its branches).

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { runVerify } from '../../src/cli/bench.ts';
import { openSqliteLog } from '../../src/runtime/log/sqlite.ts';
import { type PgCluster, startPgCluster } from '../adapters/pg-cluster.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const bin = join(root, 'bin', 'dtx.js');
const work = mkdtempSync(join(tmpdir(), 'dtx-two-'));
const database = `dtx_h1_two_${process.pid}`;

let clusters: PgCluster[] = [];
let dbs: string[] = [];
let admin: mysql.Connection;

before(async () => {
  clusters = await Promise.all([startPgCluster(), startPgCluster()]);
  admin = await mysql.createConnection({ host: '127.0.0.1', port: 3306, user: 'root' });
  await admin.query(`CREATE DATABASE IF NOT EXISTS ${database}`);
  dbs = [
    ...clusters.map((c) => `postgres://postgres@127.0.0.1:${c.port}/postgres`),
    `mysql://root@127.0.0.1:3306/${database}`,
  ];
});

after(async () => {
  await admin.query(`DROP DATABASE IF EXISTS ${database}`).catch(() => undefined);
  await admin.end();
  await Promise.allSettled(clusters.map((c) => c.stop()));
  rmSync(work, { recursive: true, force: true });
});

const dbArgs = () => dbs.flatMap((d) => ['--db', d]);

function dtx(args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', cwd: root, timeout: 120_000 });
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

async function transfersOf(id: string): Promise<number[]> {
  const counts: number[] = [];
  for (const url of dbs.slice(0, 2)) {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    const r = await c.query('SELECT count(*)::int AS n FROM dtx_bench.transfers WHERE txn LIKE $1', [
      `${id}.%`,
    ]);
    counts.push(r.rows[0].n as number);
    await c.end();
  }
  const [rows] = await admin.query(
    `SELECT count(*) AS n FROM ${database}.dtx_bench_transfers WHERE txn LIKE ?`,
    [`${id}.%`],
  );
  counts.push(Number((rows as { n: number }[])[0]!.n));
  return counts;
}

test('two coordinators share the databases; one is SIGKILLed and recovered under the other’s load; the survivor loses nothing', async () => {
  const logA = join(work, 'a.sqlite');
  const logB = join(work, 'b.sqlite');
  const init = dtx(['bench', ...dbArgs(), '--log', logA, '--init', '--txns', '5', '--accounts', '500']);
  assert.equal(init.code, 0, init.stderr);
  // B's log, created explicitly (--init would reset the shared tables).
  const created = await openSqliteLog(logB, { create: true, identity: { protocol: '2pc' } });
  const idB = created.identity!.coordinatorId;
  await created.close();
  const probe = await openSqliteLog(logA);
  const idA = probe.identity!.coordinatorId;
  await probe.close();
  assert.notEqual(idA, idB);

  const survivor = spawn(
    process.execPath,
    [bin, 'bench', ...dbArgs(), '--log', logB, '--duration', '8', '--concurrency', '4', '--json'],
    { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  let err = '';
  survivor.stdout.on('data', (d) => (out += d));
  survivor.stderr.on('data', (d) => (err += d));
  const survivorExit = new Promise<number | null>((done) => survivor.on('exit', (code) => done(code)));

  // A runs alongside and is killed at random moments; each time it is recovered while B runs.
  let recoveredBranches = 0;
  for (let round = 0; round < 3; round++) {
    const victim = spawn(
      process.execPath,
      [bin, 'bench', ...dbArgs(), '--log', logA, '--duration', '30', '--concurrency', '4'],
      { cwd: root, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let victimErr = '';
    const killed = new Promise((done) => victim.on('exit', (_c, signal) => done(signal)));
    await new Promise<void>((started, failed) => {
      victim.stderr.on('data', (d) => {
        victimErr += d;
        if (victimErr.includes('transfers started')) started();
      });
      victim.on('exit', () => failed(new Error(victimErr)));
    });
    await new Promise((r) => setTimeout(r, 300 + Math.floor(Math.random() * 700)));
    victim.kill('SIGKILL');
    assert.equal(await killed, 'SIGKILL');
    const recovered = dtx(['recover', ...dbArgs(), '--log', logA, '--json']);
    assert.equal(recovered.code, 0, recovered.stderr);
    const r = JSON.parse(recovered.stdout) as { recommitted: string[]; rolledBack: string[] };
    for (const gid of r.rolledBack) assert.ok(gid.startsWith(`dtx_${idA}.`), gid);
    for (const txn of r.recommitted) assert.ok(txn.startsWith(`${idA}.`), txn);
    recoveredBranches += r.rolledBack.length + r.recommitted.length;
  }

  assert.equal(await survivorExit, 0, err);
  const report = JSON.parse(out) as { committed: number; aborted: number; txns: number };
  assert.ok(report.committed > 0, out);
  assert.equal(report.committed + report.aborted, report.txns);
  // Every transfer B reported committed is on all three databases, and no other of B's.
  assert.deepEqual(await transfersOf(idB), [report.committed, report.committed, report.committed]);
  const v = await runVerify(dbs, { logs: [logA, logB] });
  assert.equal(v.ok, true, JSON.stringify(v));
  assert.equal(v.preparedLeft, 0);
  assert.ok(recoveredBranches >= 0);
});
