// Two-phase commit outcomes on real PostgreSQL clusters: a branch rolled back
// by hand between prepare and commit reaches the caller as a HeuristicError,
// live and at recovery; a COMMIT PREPARED whose reply was lost is recognised
// as our own commit (pg_xact_status of the id learnt at prepare), not as
// someone else's; and a participant that goes down after the commit decision
// no longer makes transaction() wait for ever.

import assert from 'node:assert/strict';
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import {
  createPostgresAdapter,
  type PostgresAdapter,
  type PostgresBranch,
} from '../../src/adapters/postgres.ts';
import { HeuristicError, isDtxError } from '../../src/errors.ts';
import type { TwoPcRecord } from '../../src/protocol/twopc/types.ts';
import {
  type Coordinator,
  type CoordinatorOptions,
  createCoordinator,
} from '../../src/runtime/coordinator.ts';
import { openSqliteLog } from '../../src/runtime/log/sqlite.ts';
import { type PgCluster, startPgCluster } from '../adapters/pg-cluster.ts';
import { replyCuttingProxy } from '../support/proxy.ts';

let cluster: PgCluster;
let down: PgCluster;
const dir = mkdtempSync(join(tmpdir(), 'dtx-h2-pg-'));
const closers: (() => Promise<unknown>)[] = [];
let n = 0;

before(async () => {
  [cluster, down] = await Promise.all([startPgCluster(), startPgCluster()]);
  for (const [c, dbs] of [
    [cluster, ['da', 'db']],
    [down, ['dc']],
  ] as const) {
    const admin = new pg.Client(c.connection);
    await admin.connect();
    for (const db of dbs) await admin.query(`CREATE DATABASE ${db}`);
    await admin.end();
    for (const db of dbs) {
      const client = new pg.Client({ ...c.connection, database: db });
      await client.connect();
      await client.query('CREATE TABLE accounts (id text PRIMARY KEY, balance int NOT NULL)');
      await client.end();
    }
  }
});

after(async () => {
  for (const close of closers.reverse()) await close().catch(() => undefined);
  await Promise.all([cluster?.stop(), down?.stop()]);
  rmSync(dir, { recursive: true, force: true });
});

async function adapter(c: PgCluster, database: string, port = c.port): Promise<PostgresAdapter> {
  const a = await createPostgresAdapter({ connection: { ...c.connection, port, database, max: 4 } });
  closers.push(() => a.close());
  return a;
}

async function coordinator(
  options: Omit<CoordinatorOptions, 'log'>,
): Promise<{ c: Coordinator; logPath: string }> {
  const logPath = join(dir, `log${++n}.sqlite`);
  const log = await openSqliteLog<TwoPcRecord>(logPath, { create: true });
  const c = await createCoordinator({ ...options, log });
  closers.push(async () => {
    await c.close();
    await log.close();
  });
  return { c, logPath };
}

/** Runs SQL as an operator would, from another session (psql), synchronously: usable inside a fault hook. */
function psql(c: PgCluster, database: string, sql: string): void {
  execFileSync(
    'psql',
    ['-h', c.host, '-p', String(c.port), '-U', 'postgres', '-d', database, '-qAt', '-c', sql],
    {
      stdio: 'pipe',
    },
  );
}

/** pg_ctl on a test cluster, as the user the server runs as (see scripts/pg-cluster.sh). */
function pgCtl(c: PgCluster, args: string[]): void {
  const command = ['pg_ctl', '-D', c.dir, ...args];
  if (process.getuid?.() === 0)
    execFileSync('runuser', ['-u', 'postgres', '--', ...command], { stdio: 'ignore' });
  else execFileSync(command[0]!, command.slice(1), { stdio: 'ignore' });
}

function restart(c: PgCluster): void {
  pgCtl(c, ['-l', join(c.dir, 'server.log'), '-w', 'start']);
}

async function balance(a: PostgresAdapter, id: string): Promise<number | undefined> {
  const { rows } = await a.pool.query<{ balance: number }>('SELECT balance FROM accounts WHERE id = $1', [
    id,
  ]);
  return rows[0]?.balance;
}

async function transfer(
  tx: { query: (r: string, sql: string, p?: unknown[]) => Promise<unknown> },
  key: string,
) {
  await tx.query('a', 'INSERT INTO accounts VALUES ($1, 1)', [key]);
  await tx.query('b', 'INSERT INTO accounts VALUES ($1, 1)', [key]);
}

test('an operator rolls back one prepared branch between prepare and commit: transaction() rejects with HeuristicError', async () => {
  const a = await adapter(cluster, 'da');
  const b = await adapter(cluster, 'db');
  const seen: HeuristicError[] = [];
  let txnId = '';
  const { c } = await coordinator({
    resources: { a, b },
    onHeuristic: (e) => seen.push(e),
    faults: {
      point(point) {
        // The operator's ROLLBACK PREPARED, from another session, after both voted YES.
        if (point === 'prepared:all') psql(cluster, 'db', `ROLLBACK PREPARED '${c.gidFor(txnId, 'b')}'`);
      },
    },
  });
  const err = await c
    .transaction(async (tx) => {
      txnId = tx.id;
      await transfer(tx, 'manual');
    })
    .then(
      () => assert.fail('resolved as committed although a branch was rolled back by hand'),
      (e: unknown) => e,
    );
  assert.ok(err instanceof HeuristicError, String(err));
  assert.equal(err.code, 'DTX_HEURISTIC');
  assert.equal(err.decision, 'commit');
  assert.equal(err.txn, txnId);
  // PostgreSQL answers for the transaction id learnt at prepare: rolled back, not merely "gone".
  assert.deepEqual(
    err.branches.map((x) => [x.resource, x.gid, x.found]),
    [['b', c.gidFor(txnId, 'b'), 'rolledBack']],
  );
  assert.match(err.message, /b \(dtx_.*_b\): rolledBack/);
  assert.equal(seen.length, 1);
  assert.equal(c.heuristics.length, 1);
  assert.equal(await balance(a, 'manual'), 1);
  assert.equal(await balance(b, 'manual'), undefined);
});

test('a COMMIT PREPARED applied but whose reply was lost is not reported as resolved by someone else', async () => {
  const proxy = await replyCuttingProxy(cluster, { inReply: 'COMMIT PREPARED\0' });
  closers.push(() => proxy.close());
  const a = await adapter(cluster, 'da');
  const b = await adapter(cluster, 'db', proxy.port);
  const { c } = await coordinator({
    resources: { a, b },
    timing: { commitResendMs: 50 },
    onWarning: () => undefined,
    faults: {
      point(point) {
        if (point === 'prepared:all') proxy.arm();
      },
    },
  });
  await c.transaction(async (tx) => transfer(tx, 'lostreply'));
  assert.equal(proxy.cuts(), 1, 'the reply to COMMIT PREPARED was cut');
  assert.deepEqual(c.heuristics, []);
  assert.equal(await balance(b, 'lostreply'), 1);
  assert.deepEqual(await b.listPrepared('dtx_'), []);
});

test('recovery reports a branch rolled back by hand after the decision, and not one it had committed itself', async () => {
  const a = await adapter(cluster, 'da');
  const b = await adapter(cluster, 'db');
  // What a coordinator c1 killed during phase two leaves: the commit record
  // durable (with each branch's transaction id), a's branch already committed
  // by it, b's still prepared — until an operator rolls b back by hand.
  const txn = `c1.crash${Date.now().toString(36)}.1`;
  const evidence: Record<string, string> = {};
  for (const [name, adapterOf] of [
    ['a', a],
    ['b', b],
  ] as const) {
    const branch: PostgresBranch = await adapterOf.begin(`dtx_${txn}_${name}`);
    await branch.query('INSERT INTO accounts VALUES ($1, 1)', ['recovered']);
    assert.equal(await branch.prepare(), 'yes');
    assert.ok(branch.evidence !== undefined, 'a branch that wrote learns its transaction id');
    evidence[name] = branch.evidence;
  }
  const logPath = join(dir, `log${++n}.sqlite`);
  const log = await openSqliteLog<TwoPcRecord>(logPath, { create: true });
  await log.append([{ type: 'commit', txn, participants: ['a', 'b'], client: 'app', evidence }], true);
  assert.equal(await a.commitPrepared(`dtx_${txn}_a`), 'done');
  psql(cluster, 'db', `ROLLBACK PREPARED 'dtx_${txn}_b'`);
  const c = await createCoordinator({ log, resources: { a, b } });
  closers.push(async () => {
    await c.close();
    await log.close();
  });
  const report = c.recovery;
  assert.deepEqual(report.recommitted, [txn]);
  assert.deepEqual(
    report.heuristics.map((h) => h.branches.map((x) => [x.resource, x.found])),
    [[['b', 'rolledBack']]],
  );
  assert.equal(report.heuristics[0]!.txn, txn);
});

test('a participant down after the commit decision: transaction() ends in bounded time with DTX_DECIDED_NOT_APPLIED, and the commit lands once it is back', async () => {
  const a = await adapter(cluster, 'da');
  const d = await adapter(down, 'dc');
  const warnings: string[] = [];
  let armed = true;
  const { c } = await coordinator({
    resources: { a, b: d },
    timing: { commitResendMs: 100 },
    commitBackoffMaxMs: 400,
    onWarning: (w) => warnings.push(w),
    faults: {
      point(point) {
        // Just before the first COMMIT leaves: the decision is durable; b's server dies.
        if (armed && point === 'committing:0') {
          armed = false;
          pgCtl(down, ['-m', 'immediate', '-w', 'stop']);
        }
      },
    },
  });
  // With a deadline.
  let started = Date.now();
  const err = await c
    .transaction(async (tx) => transfer(tx, 'down1'), { timeoutMs: 1500 })
    .then(
      () => assert.fail('cannot be committed everywhere while b is down'),
      (e: unknown) => e,
    );
  assert.ok(isDtxError(err, 'DTX_DECIDED_NOT_APPLIED'), String(err));
  assert.ok(Date.now() - started < 5_000, `took ${Date.now() - started} ms`);
  assert.equal(await balance(a, 'down1'), 1, 'the decision is commit: a is committed');
  // Without one: the bounded wait for phase two (commitWaitMs) ends it.
  armed = true;
  started = Date.now();
  // b is back for the second transaction's prepare; the hook stops it again before its commit.
  restart(down);
  const err2 = await c
    .transaction(async (tx) => transfer(tx, 'down2'), { commitWaitMs: 1000 })
    .then(
      () => assert.fail('cannot be committed everywhere while b is down'),
      (e: unknown) => e,
    );
  assert.ok(isDtxError(err2, 'DTX_DECIDED_NOT_APPLIED'), String(err2));
  assert.ok(Date.now() - started < 5_000, `took ${Date.now() - started} ms`);
  // One warning per branch that keeps failing, not one per resend.
  assert.equal(warnings.filter((w) => /COMMIT of/.test(w)).length, 2, warnings.join('\n'));
  // b comes back: the coordinator's own resends commit both transactions there.
  restart(down);
  const until = Date.now() + 10_000;
  while (
    (await balance(d, 'down1').catch(() => undefined)) !== 1 ||
    (await balance(d, 'down2').catch(() => undefined)) !== 1
  ) {
    assert.ok(Date.now() < until, 'the coordinator did not commit b once it was back');
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.deepEqual(await d.listPrepared('dtx_'), []);
  // The databases show the commit a moment before the coordinator has taken
  // the last acknowledgement in: give it that moment, bounded.
  for (let i = 0; i < 50 && (await c.list({ state: 'in-doubt' })).length > 0; i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.deepEqual(await c.list({ state: 'in-doubt' }), []);
});

test('dtx recover prints the heuristics it finds, lists them in its JSON, and exits 1', async () => {
  const a = await adapter(cluster, 'da');
  const b = await adapter(cluster, 'db');
  /** A bench coordinator killed during phase two: db1 committed, db2 then rolled back by hand. */
  const crashed = async (tag: string): Promise<{ txn: string; logPath: string }> => {
    const txn = `bench.${tag}${Date.now().toString(36)}.1`;
    const evidence: Record<string, string> = {};
    for (const [name, adapterOf] of [
      ['db1', a],
      ['db2', b],
    ] as const) {
      const branch = await adapterOf.begin(`dtx_${txn}_${name}`);
      await branch.query('INSERT INTO accounts VALUES ($1, 1)', [txn]);
      await branch.prepare();
      evidence[name] = branch.evidence ?? '';
    }
    const logPath = join(dir, `log${++n}.sqlite`);
    const log = await openSqliteLog<TwoPcRecord>(logPath, { create: true });
    await log.append([{ type: 'commit', txn, participants: ['db1', 'db2'], client: 'app', evidence }], true);
    await log.close();
    await a.commitPrepared(`dtx_${txn}_db1`);
    psql(cluster, 'db', `ROLLBACK PREPARED 'dtx_${txn}_db2'`);
    return { txn, logPath };
  };
  const url = (db: string) => `postgres://postgres@${cluster.host}:${cluster.port}/${db}`;
  const bin = fileURLToPath(new URL('../../bin/dtx.js', import.meta.url));
  const recover = (logPath: string, json: boolean) =>
    new Promise<{ code: number | null; stdout: string }>((resolve) => {
      const args = [
        bin,
        'recover',
        '--db',
        url('da'),
        '--db',
        url('db'),
        '--log',
        logPath,
        ...(json ? ['--json'] : []),
      ];
      execFile(process.execPath, args, (error, stdout) =>
        resolve({ code: error === null ? 0 : ((error as { code?: number }).code ?? null), stdout }),
      );
    });
  const one = await crashed('json');
  const json = await recover(one.logPath, true);
  assert.equal(json.code, 1, json.stdout);
  const out = JSON.parse(json.stdout) as {
    recommitted: string[];
    heuristics: { resource: string; found: string }[];
  };
  assert.deepEqual(out.recommitted, [one.txn]);
  assert.deepEqual(
    out.heuristics.map((h) => [h.resource, h.found]),
    [['db2', 'rolledBack']],
  );
  const two = await crashed('text');
  const text = await recover(two.logPath, false);
  assert.equal(text.code, 1, text.stdout);
  assert.match(text.stdout, /HEURISTIC .* db2 dtx_.*_db2: decided commit, found rolledBack/);
  assert.match(text.stdout, /1 heuristic outcome\(s\)/);
});

test('SIGKILLed after the decision; one branch committed, the other rolled back by hand: dtx recover reports only the contradiction, and exits 1', async () => {
  const admin = new pg.Client(cluster.connection);
  await admin.connect();
  for (const db of ['kill1', 'kill2']) await admin.query(`CREATE DATABASE ${db}`);
  await admin.end();
  const url = (db: string) => `postgres://postgres@${cluster.host}:${cluster.port}/${db}`;
  const bin = fileURLToPath(new URL('../../bin/dtx.js', import.meta.url));
  const logPath = join(dir, 'killed.sqlite');
  const dbArgs = ['--db', url('kill1'), '--db', url('kill2')];
  const dtx = (args: string[]) =>
    spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 60_000 });
  const init = dtx(['bench', ...dbArgs, '--init', '--txns', '5', '--log', logPath, '--accounts', '50']);
  assert.equal(init.status, 0, init.stderr);
  const run = dtx([
    'bench',
    ...dbArgs,
    '--log',
    logPath,
    '--txns',
    '20',
    '--concurrency',
    '1',
    '--crash-at',
    'decided',
    '--crash-after',
    '3',
  ]);
  assert.equal(run.signal, 'SIGKILL', run.stderr);
  // Killed once the commit record was durable, before any COMMIT left: both branches are prepared.
  const a = await adapter(cluster, 'kill1');
  const b = await adapter(cluster, 'kill2');
  const left = [
    ...(await a.listPrepared('dtx_')).map((p) => ['kill1', p.gid] as const),
    ...(await b.listPrepared('dtx_')).map((p) => ['kill2', p.gid] as const),
  ];
  assert.equal(left.length, 2, JSON.stringify(left));
  // Agrees with the decision (as a COMMIT that landed just before the kill would): never reported.
  psql(cluster, left[0]![0], `COMMIT PREPARED '${left[0]![1]}'`);
  // Contradicts it: reported.
  const [database, gid] = left[1]!;
  psql(cluster, database, `ROLLBACK PREPARED '${gid}'`);
  const recovered = await new Promise<{ code: number | null; stdout: string }>((resolve) => {
    execFile(process.execPath, [bin, 'recover', ...dbArgs, '--log', logPath, '--json'], (error, stdout) =>
      resolve({ code: error === null ? 0 : ((error as { code?: number }).code ?? null), stdout }),
    );
  });
  assert.equal(recovered.code, 1, recovered.stdout);
  const out = JSON.parse(recovered.stdout) as {
    recommitted: string[];
    heuristics: { gid: string; found: string; decision: string }[];
  };
  // The branch already committed is recognised (pg_xact_status of the id in the commit record), not reported.
  assert.deepEqual(
    out.heuristics.map((h) => [h.gid, h.decision, h.found]),
    [[gid, 'commit', 'rolledBack']],
  );
  assert.ok(
    out.recommitted.some((txn) => gid.startsWith(`dtx_${txn}_`)),
    recovered.stdout,
  );
});

test('PostgreSQL fateOf: committed and rolled back from the transaction id; ambiguous without usable evidence', async () => {
  const a = await adapter(cluster, 'da');
  const outcomes: Record<string, string | undefined> = {};
  for (const end of ['commit', 'rollback'] as const) {
    const gid = `dtx_fate${end}${Date.now().toString(36)}`;
    const branch = await a.begin(gid);
    await branch.query('INSERT INTO accounts VALUES ($1, 1)', [gid]);
    assert.equal(await branch.prepare(), 'yes');
    assert.match(branch.evidence ?? '', /^[0-9]+$/);
    if (end === 'commit') await a.commitPrepared(gid);
    else await a.rollbackPrepared(gid);
    outcomes[end] = await a.fateOf(gid, branch.evidence);
  }
  assert.deepEqual(outcomes, { commit: 'committed', rollback: 'rolledBack' });
  assert.equal(await a.fateOf('dtx_none', undefined), 'unknown');
  assert.equal(await a.fateOf('dtx_none', 'not-a-number'), 'unknown');
  // An id this cluster has not reached yet (another cluster's, or one restored from elsewhere).
  assert.equal(await a.fateOf('dtx_none', '99999999999'), 'unknown');
  // A read-only branch gives no evidence: it never prepares.
  const readOnly = await a.begin(`dtx_fatero${Date.now().toString(36)}`);
  await readOnly.query('SELECT 1');
  assert.equal(await readOnly.prepare(), 'readOnly');
  assert.equal(readOnly.evidence, undefined);
});

test('dtx bench prints a heuristic its start-up recovery finds, and exits 1', async () => {
  const admin = new pg.Client(cluster.connection);
  await admin.connect();
  for (const db of ['bh1', 'bh2']) await admin.query(`CREATE DATABASE ${db}`);
  await admin.end();
  const url = (db: string) => `postgres://postgres@${cluster.host}:${cluster.port}/${db}`;
  const bin = fileURLToPath(new URL('../../bin/dtx.js', import.meta.url));
  const logPath = join(dir, 'bench-heuristic.sqlite');
  const dbArgs = ['--db', url('bh1'), '--db', url('bh2')];
  const dtx = (args: string[]) =>
    spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 60_000 });
  const init = dtx(['bench', ...dbArgs, '--init', '--txns', '2', '--log', logPath, '--accounts', '20']);
  assert.equal(init.status, 0, init.stderr);
  // What a killed bench coordinator left: a decided transfer whose db2 branch an operator then rolled back.
  const a = await adapter(cluster, 'bh1');
  const b = await adapter(cluster, 'bh2');
  const txn = `bench.left${Date.now().toString(36)}.1`;
  const evidence: Record<string, string> = {};
  for (const [name, adapterOf] of [
    ['db1', a],
    ['db2', b],
  ] as const) {
    await adapterOf.pool.query('CREATE TABLE IF NOT EXISTS scratch (txn text)');
    const branch = await adapterOf.begin(`dtx_${txn}_${name}`);
    await branch.query('INSERT INTO scratch VALUES ($1)', [txn]);
    await branch.prepare();
    evidence[name] = branch.evidence ?? '';
  }
  const log = await openSqliteLog<TwoPcRecord>(logPath, { create: true });
  await log.append([{ type: 'commit', txn, participants: ['db1', 'db2'], client: 'app', evidence }], true);
  await log.close();
  psql(cluster, 'bh2', `ROLLBACK PREPARED 'dtx_${txn}_db2'`);
  const run = dtx(['bench', ...dbArgs, '--log', logPath, '--txns', '3']);
  assert.equal(run.status, 1, run.stdout + run.stderr);
  assert.match(
    run.stdout,
    new RegExp(`HEURISTIC ${txn.replaceAll('.', '\\.')} db2 dtx_\\S+_db2: decided commit, found rolledBack`),
  );
  assert.match(run.stdout, /1 heuristic outcome\(s\)/);
});
