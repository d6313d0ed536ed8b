// Issue 9, leadership loss: a coordinator (a `dtx bench --lease` process on a
// postgres:// log) is paused with SIGSTOP until its lease lapses; a standby
// takes the log over; then the paused one is resumed, a zombie. Before, the
// zombie went on preparing branches after the new leader's one-time recovery
// sweep, and they stayed prepared, locking rows the new leader then failed
// on. Now the zombie stops at once (its callers get DTX_LEADERSHIP_LOST and it
// rolls back its undecided work) and the new leader's periodic sweep rolls back
// whatever of the zombie is left prepared past a grace period: within a
// bounded time nothing of the zombie is prepared, and the books balance.

import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { runVerify } from '../../src/cli/bench.ts';
import { type PgCluster, startPgCluster } from '../adapters/pg-cluster.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const bin = join(root, 'bin', 'dtx.js');
const ttlMs = 1000;
const graceMs = 1500;
const sweepMs = 300;

let cluster: PgCluster;
let base = '';
let dbs: string[] = [];
let logUrl = '';

before(async () => {
  cluster = await startPgCluster();
  base = `postgres://postgres@127.0.0.1:${cluster.port}`;
  const admin = new pg.Client({ connectionString: `${base}/postgres` });
  await admin.connect();
  for (const db of ['debit', 'credit']) await admin.query(`CREATE DATABASE ${db}`);
  await admin.end();
  dbs = [`${base}/debit`, `${base}/credit`];
  logUrl = `${base}/postgres`;
});

after(async () => {
  await cluster.stop();
});

function bench(args: string[]): {
  child: ChildProcess;
  stderr: () => string;
  stdout: () => string;
  exit: Promise<number | null>;
} {
  const child = spawn(
    process.execPath,
    [bin, 'bench', ...dbs.flatMap((d) => ['--db', d]), '--log', logUrl, ...args],
    { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let err = '';
  let out = '';
  child.stderr!.on('data', (d) => (err += d));
  child.stdout!.on('data', (d) => (out += d));
  const exit = new Promise<number | null>((done) => child.on('exit', (code) => done(code)));
  return { child, stderr: () => err, stdout: () => out, exit };
}

async function until(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs = 30_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function preparedGids(): Promise<string[]> {
  const gids: string[] = [];
  for (const url of dbs) {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    const r = await c.query<{ gid: string }>("SELECT gid FROM pg_prepared_xacts WHERE gid LIKE 'dtx_%'");
    gids.push(...r.rows.map((row) => row.gid));
    await c.end();
  }
  return gids;
}

test('a coordinator that lost its lease stops at once; the new leader sweeps what it left; nothing of it stays prepared', async () => {
  const init = spawnSync(
    process.execPath,
    [
      bin,
      'bench',
      ...dbs.flatMap((d) => ['--db', d]),
      '--log',
      logUrl,
      '--init',
      '--txns',
      '5',
      '--accounts',
      '20',
    ],
    { cwd: root, encoding: 'utf8' },
  );
  assert.equal(init.status, 0, init.stderr);
  const lease = ['--lease', 'zombie-test', '--lease-ttl-ms', String(ttlMs)];
  const sweep = ['--orphan-grace-ms', String(graceMs), '--orphan-sweep-ms', String(sweepMs)];
  const zombie = bench([...lease, ...sweep, '--duration', '60', '--concurrency', '8']);
  await until('the first coordinator to start', () => zombie.stderr().includes('transfers started'));
  await new Promise((r) => setTimeout(r, 300));
  zombie.child.kill('SIGSTOP');
  try {
    // Paused past its lease: a standby takes the log over and recovers.
    const leader = bench([...lease, ...sweep, '--duration', '6', '--concurrency', '2', '--json']);
    await until('the standby to take over', () => leader.stderr().includes('transfers started'));
    const leaderOut = leader.stdout;
    zombie.child.kill('SIGCONT');
    const resumedAt = Date.now();
    const zombieCode = await zombie.exit;
    assert.equal(zombieCode, 1, zombie.stderr());
    // Its first caller to fail ends the bench: one whose transaction was
    // undecided (rolled back), or decided, or caught in a log write that the
    // server ended while the process was paused (left to the new owner).
    assert.match(zombie.stderr(), /error: DTX_(LEADERSHIP_LOST|OUTCOME_UNKNOWN): /);
    // Bounded: well within the leader's run, the zombie's leftovers are gone
    // (the zombie rolled back its undecided work; the sweep took the rest).
    const zombieIncarnations = new Set<string>();
    await until(
      "the zombie's prepared branches to be gone",
      async () => {
        const left = await preparedGids();
        for (const gid of left) if (Date.now() - resumedAt < 200) zombieIncarnations.add(gid.split('.')[1]!);
        return left.every((gid) => !zombieIncarnations.has(gid.split('.')[1]!));
      },
      graceMs + 10 * sweepMs + 2000,
    );
    assert.equal(await leader.exit, 0, leader.stderr());
    assert.deepEqual(await preparedGids(), []);
    const report = JSON.parse(leaderOut()) as { committed: number };
    assert.ok(report.committed > 0, leaderOut());
    const v = await runVerify(dbs, { logs: [logUrl] });
    assert.equal(v.ok, true, JSON.stringify(v));
  } finally {
    zombie.child.kill('SIGCONT');
    zombie.child.kill('SIGKILL');
  }
});

test('lease lost mid-transaction: the caller gets the retryable DTX_LEADERSHIP_LOST, its work is rolled back, new ones are refused', async () => {
  const { createCoordinator } = await import('../../src/runtime/coordinator.ts');
  const { openPostgresLog } = await import('../../src/runtime/log/postgres.ts');
  const { createPostgresAdapter } = await import('../../src/adapters/postgres.ts');
  const { isDtxError } = await import('../../src/errors.ts');
  const log = await openPostgresLog<never>(logUrl, {
    owner: 'lease-lost',
    create: true,
    lease: { ttlMs: 600 },
  });
  const adapters = await Promise.all(
    dbs.map((url) => createPostgresAdapter({ connection: { connectionString: url } })),
  );
  const coordinator = await createCoordinator({
    log: log as never,
    resources: { d1: adapters[0]!, d2: adapters[1]! },
  });
  let release: () => void = () => {};
  const gate = new Promise<void>((r) => {
    release = r;
  });
  const running = coordinator.transaction(async (tx) => {
    await tx.query('d1', 'UPDATE dtx_bench.accounts SET balance = balance - 1 WHERE id = 0');
    await gate;
    await tx.query('d2', 'UPDATE dtx_bench.accounts SET balance = balance + 1 WHERE id = 0');
  });
  // Another coordinator takes the log over.
  const admin = new pg.Client({ connectionString: logUrl });
  await admin.connect();
  await admin.query("UPDATE dtx_log_lease SET holder = 'the-new-owner' WHERE name = 'dtx-log:lease-lost'");
  await admin.end();
  await (log as unknown as { lost: Promise<unknown> }).lost;
  release();
  await assert.rejects(running, (err: unknown) => {
    assert.ok(isDtxError(err));
    assert.equal(err.code, 'DTX_LEADERSHIP_LOST');
    assert.equal(err.retryable, true);
    return true;
  });
  await assert.rejects(
    coordinator.transaction(async () => undefined),
    (err: unknown) => isDtxError(err) && err.code === 'DTX_LEADERSHIP_LOST',
  );
  assert.deepEqual(await preparedGids(), []);
  const v = await runVerify(dbs, { logs: [logUrl] });
  assert.equal(v.ok, true, JSON.stringify(v));
  await coordinator.close();
  await log.close();
  await Promise.all(adapters.map((a) => a.close()));
});
