// The crash matrix: `dtx bench` transfers across two throwaway PostgreSQL
// clusters (debit, credit) and the machine's MariaDB (audit), with the
// coordinator process killed with SIGKILL at every crash point of two-phase
// commit, a PostgreSQL participant killed with SIGKILL after it prepared, and
// the coordinator killed at random moments. After every kill, `dtx recover`
// runs and `dtx verify` must find the books balanced and nothing left prepared.
// Naive commit under the same kill breaks them, and the test expects that.

import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { runRecover, runVerify } from '../../src/cli/bench.ts';
import { mariaAdmin as maria } from '../adapters/helpers.ts';
import { type PgCluster, startPgCluster } from '../adapters/pg-cluster.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const bin = join(root, 'bin', 'dtx.js');
const randomKills = Number(process.env.DTX_RANDOM_KILLS ?? 50);
const work = mkdtempSync(join(tmpdir(), 'dtx-crash-'));
const logPath = join(work, 'coordinator.sqlite');

let clusters: PgCluster[] = [];
let dbArgs: string[] = [];

function pgUrl(c: PgCluster): string {
  return `postgres://postgres@127.0.0.1:${c.port}/postgres`;
}

function dtx(args: string[], timeoutMs = 120_000) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', cwd: root, timeout: timeoutMs });
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

const dbUrls = () => dbArgs.filter((_, i) => i % 2 === 1);

/** `dtx recover` then `dtx verify`, run in this process (the CLI commands call exactly these). */
async function recoverAndVerify(what: string) {
  const recovered = await runRecover({ dbs: dbUrls(), log: logPath });
  const report = await runVerify(dbUrls(), { logs: [logPath] });
  assert.equal(report.ok, true, `${what}: verify not ok: ${JSON.stringify(report)}`);
  assert.equal(report.total, report.expectedTotal);
  assert.equal(report.preparedLeft, 0);
  assert.equal(report.partialTransfers, 0);
  assert.equal(report.auditRows, report.committedTransfers);
  return { recovered, verify: report };
}

/** This run's own MariaDB database: bench's tables live in the database its URL names. */
const mariaDatabase = `dtx_crash_${process.pid}`;

before(async () => {
  await maria(`CREATE DATABASE IF NOT EXISTS ${mariaDatabase}`);
  clusters = await Promise.all([startPgCluster(), startPgCluster()]);
  dbArgs = [
    '--db',
    pgUrl(clusters[0]!),
    '--db',
    pgUrl(clusters[1]!),
    '--db',
    `mysql://root@127.0.0.1:3306/${mariaDatabase}`,
  ];
  const init = dtx(['bench', ...dbArgs, '--init', '--txns', '20', '--log', logPath, '--accounts', '200']);
  assert.equal(init.code, 0, init.stderr);
});

after(async () => {
  await Promise.allSettled(clusters.map((c) => c.stop()));
  await maria(`DROP DATABASE IF EXISTS ${mariaDatabase}`).catch(() => undefined);
  rmSync(work, { recursive: true, force: true });
});

for (const point of ['prepared-some', 'prepared-all', 'decided', 'between-commits'] as const) {
  test(`2pc: coordinator killed at ${point}; recovery balances the books`, async () => {
    const run = dtx([
      'bench',
      ...dbArgs,
      '--log',
      logPath,
      '--txns',
      '40',
      '--concurrency',
      '4',
      '--crash-at',
      point,
      '--crash-after',
      '5',
    ]);
    assert.equal(
      run.signal,
      'SIGKILL',
      `the coordinator was not killed at ${point}: ${run.code} ${run.stderr}`,
    );
    const { recovered } = await recoverAndVerify(point);
    // The transfer the kill hit (the first to reach the point from the 5th
    // on; ids end in the ordinal, base 36): presumed abort before its
    // decision was durable, commit after. Other transfers in flight at the
    // kill may be in either state.
    const m = /crash point \S+ of transfer (\d+)/.exec(run.stderr);
    assert.ok(m !== null, run.stderr);
    const ordinal = Number(m[1]);
    assert.ok(ordinal >= 5);
    const hit = (txn: string) => txn.endsWith(`.${ordinal.toString(36)}`);
    const what = JSON.stringify(recovered);
    if (point === 'decided' || point === 'between-commits') {
      assert.ok(recovered.recommitted.some(hit), what);
      assert.ok(!recovered.rolledBack.some((gid) => hit(gid.replace(/_db\d$/, ''))), what);
    } else {
      assert.ok(!recovered.recommitted.some(hit), what);
      assert.ok(
        recovered.rolledBack.some((gid) => hit(gid.replace(/_db\d$/, ''))),
        what,
      );
    }
  });
}

test('2pc: a PostgreSQL participant killed with SIGKILL after it prepared; its prepared branches survive and get resolved', async () => {
  const victim = clusters[1]!;
  const bench = spawn(
    process.execPath,
    [bin, 'bench', ...dbArgs, '--log', logPath, '--duration', '6', '--concurrency', '4'],
    {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let stderr = '';
  bench.stderr.on('data', (d) => (stderr += String(d)));
  const exited = new Promise<number | null>((done) => bench.on('exit', (code) => done(code)));
  // Wait until a branch on the victim is prepared, then kill its postmaster.
  const deadline = Date.now() + 20_000;
  let killedWithPrepared = false;
  while (Date.now() < deadline) {
    const out = execFileSync(
      'psql',
      [
        '-h',
        '127.0.0.1',
        '-p',
        String(victim.port),
        '-U',
        'postgres',
        '-At',
        '-c',
        "select count(*) from pg_prepared_xacts where gid like 'dtx_%'",
      ],
      { encoding: 'utf8' },
    );
    if (Number(out.trim()) > 0) {
      const pid = Number(readFileSync(join(victim.dir, 'postmaster.pid'), 'utf8').split('\n')[0]);
      process.kill(pid, 'SIGKILL');
      killedWithPrepared = true;
      break;
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  assert.ok(killedWithPrepared, 'never saw a prepared branch on the participant');
  // Restart it from the same data directory: prepared transactions come back
  // from its WAL. The killed postmaster's backends notice its death and exit on
  // their own; until they have, a new postmaster refuses to start.
  const restartBy = Date.now() + 30_000;
  for (;;) {
    await new Promise((r) => setTimeout(r, 500));
    try {
      execFileSync(
        'runuser',
        [
          '-u',
          'postgres',
          '--',
          '/usr/lib/postgresql/15/bin/pg_ctl',
          '-D',
          victim.dir,
          '-l',
          join(victim.dir, 'server.log'),
          '-w',
          '-t',
          '60',
          'start',
        ],
        { stdio: 'ignore' },
      );
      break;
    } catch (err) {
      if (Date.now() > restartBy) throw err;
    }
  }
  const code = await exited;
  assert.equal(code, 0, `bench failed after the participant came back: ${stderr.slice(-3000)}`);
  // The CLI path once, end to end.
  const rec = dtx(['recover', ...dbArgs, '--log', logPath, '--json']);
  assert.equal(rec.code, 0, rec.stderr);
  const ver = dtx(['verify', ...dbArgs, '--log', logPath, '--json']);
  assert.equal(ver.code, 0, ver.stdout + ver.stderr);
  assert.equal(JSON.parse(ver.stdout).ok, true);
});

test(`2pc: coordinator killed with SIGKILL at ${randomKills} random moments; every time the books balance`, async () => {
  let seed = 12345;
  const rand = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  let recommitted = 0;
  let rolledBack = 0;
  for (let i = 0; i < randomKills; i++) {
    // Kill at a random moment after the transfers have started (the process
    // announces that on stderr), anywhere in the next 600 ms.
    const killAfterMs = Math.floor(rand() * 600);
    const child = spawn(
      process.execPath,
      [bin, 'bench', ...dbArgs, '--log', logPath, '--duration', '30', '--concurrency', '8'],
      {
        cwd: root,
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    let stderr = '';
    let timer: ReturnType<typeof setTimeout> | undefined;
    child.stderr.on('data', (d) => {
      stderr += String(d);
      if (timer === undefined && stderr.includes('transfers started'))
        timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
    });
    const signal = await new Promise<NodeJS.Signals | null>((done) =>
      child.on('exit', (_code, sig) => done(sig)),
    );
    clearTimeout(timer);
    assert.equal(signal, 'SIGKILL', `bench ${i} ended on its own: ${stderr.slice(-2000)}`);
    const { recovered } = await recoverAndVerify(`random kill ${i} after ${killAfterMs} ms`);
    recommitted += recovered.recommitted.length;
    rolledBack += recovered.rolledBack.length;
  }
  // The kills must land mid-flight, or this test proves nothing.
  assert.ok(recommitted + rolledBack > 0, 'no kill ever left anything in doubt');
  console.log(
    `random kills: ${randomKills}, transactions recommitted ${recommitted}, branches rolled back ${rolledBack}`,
  );
});

test('naive: the same kill between the per-database commits breaks the books (expected)', () => {
  const run = dtx([
    'bench',
    ...dbArgs,
    '--protocol',
    'naive',
    '--txns',
    '40',
    '--concurrency',
    '4',
    '--crash-at',
    'between-commits',
    '--crash-after',
    '5',
  ]);
  assert.equal(run.signal, 'SIGKILL', run.stderr);
  dtx(['recover', ...dbArgs, '--log', logPath]);
  const ver = dtx(['verify', ...dbArgs, '--json']);
  const report = JSON.parse(ver.stdout);
  assert.equal(ver.code, 1);
  assert.equal(report.ok, false);
  assert.ok(report.partialTransfers > 0 || report.total !== report.expectedTotal, JSON.stringify(report));
  // Leave no prepared naive branch behind on the shared MariaDB: re-initializing rolls them back.
  const reinit = dtx(['bench', ...dbArgs, '--init', '--txns', '1', '--log', logPath, '--accounts', '10']);
  assert.equal(reinit.code, 0, reinit.stderr);
});
