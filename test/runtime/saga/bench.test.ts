// `dtx bench --protocol saga|tcc` on two SQLite databases, with the
// orchestrator process killed with SIGKILL at random moments: after every
// kill, `dtx recover --protocol ...` (run in this process: the CLI calls the
// same function) ends every unfinished transfer, and `dtx verify` finds the
// books balanced, no transfer half-done and no TCC hold left.
// DTX_SAGA_KILLS sets the total number of kills (default 50, split between
// saga and TCC).

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { runVerify } from '../../../src/cli/bench.ts';
import { runSagaRecover, type SagaBenchProtocol } from '../../../src/cli/bench-saga.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const bin = join(root, 'bin', 'dtx.js');
const kills = Number(process.env.DTX_SAGA_KILLS ?? 50);
const work = mkdtempSync(join(tmpdir(), 'dtx-saga-bench-'));
after(() => rmSync(work, { recursive: true, force: true }));

function dtx(args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', cwd: root, timeout: 60_000 });
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

function setup(
  protocol: SagaBenchProtocol,
  dbs = [
    `sqlite:${join(work, `${protocol}-debit.sqlite`)}`,
    `sqlite:${join(work, `${protocol}-credit.sqlite`)}`,
  ],
  log = join(work, `${protocol}-log`),
) {
  const args = [
    'bench',
    '--protocol',
    protocol,
    ...dbs.flatMap((d) => ['--db', d]),
    '--log',
    log,
    // Many refusals, so that kills also land in compensations and cancels.
    '--refuse-share',
    '0.3',
    // Frequent log checkpoints, so that kills also land around them.
    '--checkpoint-every',
    '25',
  ];
  return { dbs, log, args };
}

/** Starts a 30 s bench, waits for 'transfers started', SIGKILLs it 0–600 ms later. */
async function benchAndKill(args: string[]): Promise<void> {
  const child = spawn(process.execPath, [bin, ...args, '--duration', '30', '--concurrency', '8'], {
    cwd: root,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  const exited = new Promise<NodeJS.Signals | number | null>((done) =>
    child.on('exit', (code, signal) => done(signal ?? code)),
  );
  await new Promise<void>((started, failed) => {
    child.stderr.on('data', (d) => {
      stderr += d;
      if (stderr.includes('transfers started')) started();
    });
    child.on('exit', () => failed(new Error(`bench exited before starting transfers:\n${stderr}`)));
  });
  await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 600)));
  process.kill(child.pid!, 'SIGKILL');
  assert.equal(await exited, 'SIGKILL', stderr);
}

async function killRounds(protocol: SagaBenchProtocol, rounds: number, where: ReturnType<typeof setup>) {
  const { dbs, log, args } = where;
  const init = dtx([...args, '--init', '--accounts', '50', '--txns', '20', '--json']);
  assert.equal(init.code, 0, init.stderr);
  const first = JSON.parse(init.stdout) as { committed: number; compensated: number; stuck: number };
  assert.equal(first.committed + first.compensated, 20);
  assert.equal(first.stuck, 0);

  let resumed = 0;
  let compensated = 0;
  let committedBefore = -1;
  for (let i = 0; i < rounds; i++) {
    await benchAndKill(args);
    const r = await runSagaRecover({ dbs, log, protocol });
    assert.deepEqual(r.stuck, [], `round ${i}: stuck transfers`);
    resumed += r.completed.length + r.compensated.length;
    compensated += r.compensated.length;
    const v = await runVerify(dbs);
    assert.equal(v.ok, true, `round ${i}: verify not ok after recover: ${JSON.stringify(v)}`);
    assert.equal(v.total, v.expectedTotal);
    assert.equal(v.partialTransfers, 0);
    assert.equal(v.holdsLeft, 0);
    assert.ok(v.committedTransfers >= committedBefore, 'committed transfers never disappear');
    committedBefore = v.committedTransfers;
    // A second recovery finds nothing left to do.
    const again = await runSagaRecover({ dbs, log, protocol });
    assert.equal(again.completed.length + again.compensated.length + again.stuck.length, 0);
  }
  if (rounds >= 10) {
    // The kills caught transfers in flight, and some of them ended backward.
    assert.ok(resumed > 0, 'no kill left a transfer unfinished');
    assert.ok(compensated > 0, 'no resumed transfer was compensated');
  }
  // A bench after the kills still runs, starting from a clean state.
  const last = dtx([...args, '--txns', '30', '--json']);
  assert.equal(last.code, 0, last.stderr);
  const v = await runVerify(dbs);
  assert.equal(v.ok, true, JSON.stringify(v));
  return `${protocol}: ${rounds} kills; recovery completed ${resumed - compensated} and compensated ${compensated} transfer(s); ${v.committedTransfers} transfers on both databases`;
}

for (const protocol of ['saga', 'tcc'] as const) {
  const rounds = protocol === 'saga' ? Math.ceil(kills / 2) : Math.floor(kills / 2);
  test(`${protocol}: orchestrator SIGKILLed ${rounds} times mid-bench; recover then verify is ok every time`, async (t) => {
    t.diagnostic(await killRounds(protocol, rounds, setup(protocol)));
  });
}

const pgServer = 'postgres://postgres@127.0.0.1:5432';
const pgKills = Number(process.env.DTX_SAGA_PG_KILLS ?? 4);

test(`PostgreSQL debit, SQLite credit: saga (postgres:// log) and TCC (SQLite log), ${pgKills} kills each`, async (t) => {
  const { default: pg } = await import('pg');
  const admin = new pg.Client({ connectionString: `${pgServer}/test`, connectionTimeoutMillis: 2000 });
  try {
    await admin.connect();
  } catch {
    t.skip(`no PostgreSQL server at ${pgServer}`);
    return;
  }
  // A database of its own: the bench's schema name (dtx_bench) is fixed.
  const name = `dtx_saga_bench_${process.pid}`;
  await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await admin.query(`CREATE DATABASE ${name}`);
  try {
    const url = `${pgServer}/${name}`;
    for (const protocol of ['saga', 'tcc'] as const) {
      const dbs = [url, `sqlite:${join(work, `pg-${protocol}-credit.sqlite`)}`];
      const log = protocol === 'saga' ? url : join(work, `pg-${protocol}-log`);
      t.diagnostic(await killRounds(protocol, pgKills, setup(protocol, dbs, log)));
    }
  } finally {
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.end();
  }
});

test('saga bench refuses a third --db with a clear error', () => {
  const r = dtx([
    'bench',
    '--protocol',
    'saga',
    ...['a', 'b', 'c'].flatMap((n) => ['--db', `sqlite:${join(work, `three-${n}.sqlite`)}`]),
    '--txns',
    '1',
  ]);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /--protocol saga transfers between two databases: give two --db URLs/);
});
