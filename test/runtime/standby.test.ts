// Standby takeover with the PostgreSQL log: two coordinator processes share
// one log; the active one holds a lease. It is killed with SIGKILL right after
// a commit decision became durable and before any branch was committed; the
// standby takes the lease once it lapses, recovers from the shared log —
// committing the transaction the dead coordinator decided — and carries on.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { runVerify } from '../../src/cli/bench.ts';
import { type PgCluster, startPgCluster } from '../adapters/pg-cluster.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const bin = join(root, 'bin', 'dtx.js');
const logUrl = 'postgres://postgres@127.0.0.1:5432/test';
const lease = `standby-test-${process.pid}`;
const ttlMs = 1500;

let clusters: PgCluster[] = [];
let dbs: string[] = [];

interface Run {
  lines: string[];
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<number>;
}

function bench(args: string[]): Run {
  const child = spawn(
    process.execPath,
    [bin, 'bench', ...dbs.flatMap((d) => ['--db', d]), '--log', logUrl, ...args],
    {
      cwd: root,
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  const lines: string[] = [];
  const waiters: { pattern: RegExp; resolve: (t: number) => void }[] = [];
  let buffer = '';
  child.stderr.on('data', (d) => {
    buffer += String(d);
    let i = buffer.indexOf('\n');
    while (i >= 0) {
      const line = buffer.slice(0, i);
      buffer = buffer.slice(i + 1);
      lines.push(line);
      for (const w of waiters.filter((w) => w.pattern.test(line))) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(Date.now());
      }
      i = buffer.indexOf('\n');
    }
  });
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) =>
    child.on('exit', (code, signal) => done({ code, signal })),
  );
  return {
    lines,
    exit,
    waitFor(pattern, timeoutMs = 30_000) {
      const seen = lines.find((l) => pattern.test(l));
      if (seen !== undefined) return Promise.resolve(Date.now());
      return new Promise((resolvePromise, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`no line matching ${pattern} in: ${lines.join(' | ')}`)),
          timeoutMs,
        );
        waiters.push({
          pattern,
          resolve: (t) => {
            clearTimeout(timer);
            resolvePromise(t);
          },
        });
      });
    },
  };
}

before(async () => {
  clusters = await Promise.all([startPgCluster(), startPgCluster()]);
  dbs = clusters.map((c) => `postgres://postgres@127.0.0.1:${c.port}/postgres`);
  // A clean log for the bench coordinator in the shared database.
  const client = new pg.Client({ connectionString: logUrl });
  await client.connect();
  await client.query("DELETE FROM dtx_log WHERE owner = 'bench'").catch(() => undefined);
  await client.end();
  const init = bench(['--init', '--txns', '1', '--accounts', '100']);
  assert.deepEqual(await init.exit, { code: 0, signal: null }, init.lines.join('\n'));
});

after(async () => {
  await Promise.allSettled(clusters.map((c) => c.stop()));
});

test('the standby takes over after the active coordinator is killed, and commits what it had decided', async () => {
  const active = bench([
    '--lease',
    lease,
    '--lease-ttl-ms',
    String(ttlMs),
    '--duration',
    '60',
    '--concurrency',
    '2',
    '--crash-at',
    'decided',
    '--crash-after',
    '20',
  ]);
  await active.waitFor(/active: holding lease/);
  const standby = bench([
    '--lease',
    lease,
    '--lease-ttl-ms',
    String(ttlMs),
    '--duration',
    '2',
    '--concurrency',
    '2',
  ]);
  await standby.waitFor(/standby: waiting for lease/);
  const died = await active.exit;
  const diedAt = Date.now();
  assert.equal(died.signal, 'SIGKILL', active.lines.join('\n'));
  const tookOverAt = await standby.waitFor(/active: holding lease/, 20_000);
  const takeoverMs = tookOverAt - diedAt;
  // It may not take over before the lease lapses, and should not wait much
  // longer: a lease poll (ttl/4) plus process scheduling on a loaded machine.
  assert.ok(takeoverMs < ttlMs + 5_000, `takeover took ${takeoverMs} ms`);
  await standby.waitFor(/recovered [1-9]\d* commit/, 20_000);
  const done = await standby.exit;
  assert.deepEqual(done, { code: 0, signal: null }, standby.lines.join('\n'));
  const report = await runVerify(dbs, { logs: [logUrl] });
  assert.equal(report.ok, true, JSON.stringify(report));
  console.log(`standby took over ${takeoverMs} ms after the active coordinator died (lease ttl ${ttlMs} ms)`);
});
