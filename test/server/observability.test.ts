// `dtx serve`'s metrics and logs: an in-process server on an ephemeral port
// with real node:http branch services runs sagas (some compensated), a TCC
// that is aborted and a saga whose compensation keeps failing, and
// `GET /metrics` must show exactly those counts, the in-doubt and stuck
// gauges must follow the engine's state, and every log line must be JSON
// naming its transaction. Then the same through a real `dtx serve` process.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type RunningServer, startServer } from '../../src/server/index.ts';
import { createServerLogger } from '../../src/server/logging.ts';
import { type BranchService, branchService, call, until } from './helpers.ts';

const dir = mkdtempSync(join(tmpdir(), 'dtx-serve-observe-'));
const token = 'observe-token-0123456789';
const auth = { authorization: `Bearer ${token}` };
const lines: string[] = [];
let server: RunningServer;
let svc: BranchService;

before(async () => {
  svc = await branchService((c) => {
    if (c.path === '/refuse') return { status: 409, body: '{"reason":"out of stock"}' };
    if (c.path === '/broken') return { status: 500, body: 'down' };
    return { status: 200, body: '{}' };
  });
  server = await startServer({
    listen: '127.0.0.1:0',
    store: { sqlite: join(dir, 'store.sqlite') },
    token,
    timing: { retryBaseMs: 20, retryCapMs: 100, stuckAfterAttempts: 3 },
    httpTimeoutMs: 2000,
    logger: createServerLogger('debug', { write: (line: string) => void lines.push(line) }),
  });
});

after(async () => {
  await server.close();
  await svc.close();
  rmSync(dir, { recursive: true, force: true });
});

/** One sample of the exposition text: `name{labels} value`, labels matched exactly. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (m === null || m[1] !== name) continue;
    const got: Record<string, string> = {};
    for (const [, k, v] of (m[2] ?? '').matchAll(/([a-zA-Z_]+)="([^"]*)"/g)) got[k!] = v!;
    if (JSON.stringify(Object.entries(got).sort()) === JSON.stringify(Object.entries(labels).sort()))
      return Number(m[3]);
  }
  return undefined;
}

async function metrics(): Promise<string> {
  const r = await fetch(`${server.url}/metrics`, { headers: auth });
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  return r.text();
}

function saga(id: string, lastAction: string, debitCompensation = '/refund') {
  return {
    id,
    steps: [
      {
        name: 'debit',
        action: { url: `${svc.url}/debit` },
        compensation: { url: `${svc.url}${debitCompensation}` },
      },
      {
        name: 'ship',
        action: { url: `${svc.url}${lastAction}` },
        compensation: { url: `${svc.url}/unship` },
      },
    ],
    wait: { timeoutMs: 20_000 },
  };
}

const logged = () => lines.map((l) => JSON.parse(l) as Record<string, unknown>);

test('GET /metrics needs the token and is in the OpenAPI document', async () => {
  assert.equal((await call(server.url, 'GET', '/metrics')).status, 401);
  const doc = await call(server.url, 'GET', '/openapi.json', undefined, auth);
  assert.ok(doc.json.paths['/metrics'].get);
});

test('after five sagas, two compensated, /metrics shows exactly those counts', async () => {
  const before = await metrics();
  assert.equal(sample(before, 'dtx_transactions_running'), 0);
  for (const [id, last] of [
    ['s1', '/ship'],
    ['s2', '/ship'],
    ['s3', '/ship'],
    ['s4', '/refuse'],
    ['s5', '/refuse'],
  ] as const) {
    const r = await call(server.url, 'POST', '/v1/sagas', saga(id, last), auth);
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.equal(r.json.state, last === '/ship' ? 'completed' : 'compensated');
  }
  const text = await metrics();
  assert.equal(sample(text, 'dtx_transactions_started_total', { type: 'saga' }), 5);
  assert.equal(sample(text, 'dtx_transactions_ended_total', { type: 'saga', outcome: 'completed' }), 3);
  assert.equal(sample(text, 'dtx_transactions_ended_total', { type: 'saga', outcome: 'compensated' }), 2);
  assert.equal(
    sample(text, 'dtx_transaction_duration_seconds_count', { type: 'saga', outcome: 'completed' }),
    3,
  );
  // Actions: two per completed saga, debit per compensated one; ship refused twice; debit refunded twice.
  assert.equal(sample(text, 'dtx_branch_calls_total', { type: 'saga', op: 'action', status: 'success' }), 8);
  assert.equal(sample(text, 'dtx_branch_calls_total', { type: 'saga', op: 'action', status: 'failure' }), 2);
  assert.equal(
    sample(text, 'dtx_branch_calls_total', { type: 'saga', op: 'compensation', status: 'success' }),
    2,
  );
  assert.equal(sample(text, 'dtx_branch_call_duration_seconds_count', { type: 'saga', op: 'action' }), 10);
  assert.equal(sample(text, 'dtx_transactions_running'), 0);
  assert.equal(sample(text, 'dtx_transactions_stuck'), 0);
  // Every saga's begin was forced: the saga log flushed, each flush with its batch size.
  const flushes = sample(text, 'dtx_log_flushes_total', { log: 'saga' })!;
  assert.ok(flushes >= 1);
  assert.equal(sample(text, 'dtx_log_flush_records_count', { log: 'saga' }), flushes);
  assert.ok(sample(text, 'dtx_log_flush_records_sum', { log: 'saga' })! >= 5);
  assert.equal(svc.calls.filter((c) => c.path === '/refund').length, 2);

  // The log: JSON lines naming each transaction.
  const entries = logged();
  assert.ok(entries.some((e) => e.msg === 'transaction started' && e.txn === 's1' && e.type === 'saga'));
  const ended = entries.find((e) => e.msg === 'transaction ended' && e.txn === 's4')!;
  assert.equal(ended.outcome, 'compensated');
  assert.equal(ended.level, 30);
  assert.equal(typeof ended.durationMs, 'number');
  const refused = entries.find((e) => e.msg === 'branch refused' && e.txn === 's5')!;
  assert.deepEqual([refused.branch, refused.op, refused.reason], ['ship', 'action', 'out of stock']);
  assert.ok(entries.some((e) => e.msg === 'request' && e.url === '/v1/sagas' && e.statusCode === 200));
  assert.ok(
    entries.some((e) =>
      /^dtx serve listening on http:\/\/127\.0\.0\.1:\d+ \(store sqlite:/.test(String(e.msg)),
    ),
  );
  // Never a header value: the bearer token appears nowhere.
  assert.ok(!lines.some((l) => l.includes(token)));
});

test('a prepared TCC is in doubt until aborted; its cancels count as a compensated TCC', async () => {
  assert.equal(
    (await call(server.url, 'POST', '/v1/tcc', { id: 't1', timeoutMs: 60_000 }, auth)).status,
    201,
  );
  const r = await call(
    server.url,
    'POST',
    '/v1/tcc/t1/branches',
    { branch: 'seat', confirm: `${svc.url}/confirm`, cancel: `${svc.url}/cancel` },
    auth,
  );
  assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.equal(sample(await metrics(), 'dtx_transactions_in_doubt'), 1);
  const aborted = await call(server.url, 'POST', '/v1/tcc/t1/abort', { reason: 'changed' }, auth);
  assert.ok(aborted.status === 200 || aborted.status === 202, JSON.stringify(aborted.json));
  await until(server.url, 't1', (v) => v.state === 'compensated', 20_000, auth);
  const text = await metrics();
  assert.equal(sample(text, 'dtx_transactions_in_doubt'), 0);
  assert.equal(sample(text, 'dtx_transactions_started_total', { type: 'tcc' }), 1);
  assert.equal(sample(text, 'dtx_transactions_ended_total', { type: 'tcc', outcome: 'compensated' }), 1);
  assert.equal(sample(text, 'dtx_branch_calls_total', { type: 'tcc', op: 'cancel', status: 'success' }), 1);
  assert.equal(sample(text, 'dtx_log_flushes_total', { log: 'server' })! >= 3, true);
});

test('a saga whose compensation keeps failing shows in the stuck gauge, and is logged at warn', async () => {
  const r = await call(
    server.url,
    'POST',
    '/v1/sagas',
    { ...saga('st1', '/refuse', '/broken'), wait: { timeoutMs: 0 } },
    auth,
  );
  assert.ok(r.status === 202 || r.status === 200, JSON.stringify(r.json));
  await until(server.url, 'st1', (v) => v.state === 'stuck', 20_000, auth);
  const text = await metrics();
  assert.equal(sample(text, 'dtx_transactions_stuck'), 1);
  assert.equal(sample(text, 'dtx_transactions_running'), 0);
  assert.equal(sample(text, 'dtx_stuck_alerts_total', { type: 'saga' }), 1);
  // Not ended: the counts of ended sagas are those of the test before.
  assert.equal(sample(text, 'dtx_transactions_ended_total', { type: 'saga', outcome: 'compensated' }), 2);
  assert.ok(
    sample(text, 'dtx_branch_calls_total', { type: 'saga', op: 'compensation', status: 'retry' })! >= 3,
  );
  const stuck = logged().find((e) => e.txn === 'st1' && e.msg === 'transaction stuck: still retrying')!;
  assert.equal(stuck.level, 40);
  assert.equal(stuck.type, 'saga');
});

test('a real dtx serve process logs JSON lines on stdout and serves /metrics; a bad --log-level is refused', async () => {
  const bin = fileURLToPath(new URL('../../bin/dtx.js', import.meta.url));
  const env = { ...process.env, DTX_FROM_SOURCE: '1' };
  const bad = spawn(process.execPath, [bin, 'serve', '--log-level', 'loud'], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let badErr = '';
  bad.stderr.on('data', (d) => (badErr += d));
  const badCode = await new Promise((resolve) => bad.once('exit', resolve));
  assert.equal(badCode, 2);
  assert.match(
    badErr,
    /DTX_INVALID_ARGUMENT: --log-level must be one of fatal, error, warn, info, debug, trace, silent/,
  );

  const child = spawn(
    process.execPath,
    [bin, 'serve', '--listen', '127.0.0.1:0', '--store', `sqlite:${join(dir, 'proc.sqlite')}`],
    { env, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  const exited = new Promise((resolve) => child.once('exit', resolve));
  try {
    const url = await new Promise<string>((resolve, reject) => {
      child.stdout.on('data', (d) => {
        out += d;
        const m = /listening on (http:\/\/[0-9.:]+)/.exec(out);
        if (m !== null) resolve(m[1]!);
      });
      child.once('exit', (code) => reject(new Error(`dtx serve exited ${code}: ${err}`)));
    });
    const r = await call(url, 'POST', '/v1/sagas', saga('p1', '/refuse'));
    assert.equal(r.json.state, 'compensated');
    const text = await (await fetch(`${url}/metrics`)).text();
    assert.equal(sample(text, 'dtx_transactions_ended_total', { type: 'saga', outcome: 'compensated' }), 1);
  } finally {
    child.kill('SIGTERM');
    await exited;
  }
  const entries = out
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.ok(
    entries.some((e) => e.msg === 'transaction ended' && e.txn === 'p1' && e.outcome === 'compensated'),
  );
  assert.ok(entries.every((e) => typeof e.time === 'string' && e.service === 'dtx-serve'));
  // At the default level (info), no request lines (debug).
  assert.ok(!entries.some((e) => e.msg === 'request'));
  assert.equal(entries.at(-1)!.msg, 'dtx serve stopped');
});
