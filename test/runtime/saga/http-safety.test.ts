// HTTP branches are safe to point at real services (issue 9, item 8): a real
// node:http server on 127.0.0.1 sees that redirects are not followed, that a
// response body is read only up to its limit, that per-branch headers (an
// auth token, a traceparent) arrive and never reach the log, that only
// http:/https: URLs and sane timeouts are accepted, and that after a restart
// a saga's calls go to the URL registered in code now — never to a URL read
// back from the log.

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { callHttpBranch } from '../../../src/adapters/http-branch.ts';
import {
  createSagaOrchestrator,
  openSagaLog,
  type SagaDefinition,
  type StuckAlert,
} from '../../../src/runtime/saga/orchestrator.ts';

const dir = mkdtempSync(join(tmpdir(), 'dtx-saga-http-safety-'));
const seen: { path: string; headers: IncomingHttpHeaders }[] = [];
let server: Server;
let base = '';

before(async () => {
  server = createServer((req, res) => {
    const path = req.url ?? '';
    seen.push({ path, headers: req.headers });
    req.resume();
    req.on('end', () => {
      if (path === '/redirect') {
        res.writeHead(302, { location: `${base}/target` }).end();
      } else if (path === '/big') {
        res.writeHead(200, { 'content-type': 'text/plain' });
        // 100 KiB in chunks: the client must stop reading at its limit.
        for (let i = 0; i < 100; i++) res.write('x'.repeat(1024));
        res.end();
      } else if (path === '/pending') {
        res.writeHead(202, { 'content-type': 'application/json' }).end('{"reason":"not yet"}');
      } else {
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(async () => {
  await new Promise((resolve) => server.close(resolve));
  rmSync(dir, { recursive: true, force: true });
});

const call = { sagaId: 's1', branchId: 'b', op: 'action' as const, payload: null };
const code = (c: string, pattern?: RegExp) => (e: unknown) =>
  (e as { code?: string }).code === c && (pattern === undefined || pattern.test((e as Error).message));

test('a redirect is not followed: the attempt fails with the reason and is retried like a transient answer', async () => {
  seen.length = 0;
  const a = await callHttpBranch(`${base}/redirect`, call);
  assert.equal(a.result, 'ongoing');
  assert.equal(a.status, 302);
  assert.match(a.reason, /HTTP 302 redirect to http:\/\/127\.0\.0\.1:\d+\/target not followed/);
  assert.deepEqual(
    seen.map((s) => s.path),
    ['/redirect'],
  );
});

test('through the orchestrator, a redirecting action is retried and then compensated, the redirect named in the reason', async () => {
  seen.length = 0;
  const log = await openSagaLog({ sqlite: join(dir, 'redirect.sqlite'), create: true });
  const o = await createSagaOrchestrator({
    log,
    // Attempts far enough apart that each one's answer arrives before the
    // next is due, even on a busy machine (else the reason is "no answer").
    timing: { retryBaseMs: 200, retryCapMs: 400, actionAttemptsMax: 3 },
  });
  const id = await o.start(
    {
      name: 'redirect',
      steps: [{ name: 'a', action: { url: `${base}/redirect` }, compensation: { url: `${base}/ok/undo` } }],
    },
    { idempotencyKey: 'k' },
  );
  const r = await o.result(id, { timeoutMs: 5000 });
  assert.equal(r.outcome, 'compensated');
  assert.match(
    r.reason ?? '',
    /a gave no result in 3 attempts \(last answer: HTTP 302 redirect to .* not followed/,
  );
  const paths = seen.map((s) => s.path);
  assert.ok(!paths.includes('/target'), 'the redirect target was never called');
  // (A retry due while the previous attempt is still out is skipped, so at most 3.)
  const tries = paths.filter((p) => p === '/redirect').length;
  assert.ok(tries >= 1 && tries <= 3, `${tries} calls`);
  await o.close();
  await log.close();
});

test('a response body is read up to its limit (64 KiB by default); beyond it the attempt fails', async () => {
  const a = await callHttpBranch(`${base}/big`, call);
  assert.equal(a.result, 'ongoing');
  assert.equal(a.body, undefined);
  assert.match(a.reason, /response body over 65536 bytes/);
  const b = await callHttpBranch(`${base}/big`, { ...call, maxBodyBytes: 200 * 1024 });
  assert.equal(b.result, 'success');
  assert.equal((b.body as string).length, 100 * 1024);
});

test('timeouts, URLs and headers are validated with DTX_INVALID_ARGUMENT', async () => {
  for (const timeoutMs of [0, -5, 1.5, 600_001, Number.NaN]) {
    await assert.rejects(
      callHttpBranch(`${base}/ok`, { ...call, timeoutMs }),
      code('DTX_INVALID_ARGUMENT', /timeoutMs/),
    );
  }
  await assert.rejects(
    callHttpBranch('file:///etc/passwd', call),
    code('DTX_INVALID_ARGUMENT', /only http: and https:/),
  );
  await assert.rejects(
    callHttpBranch(`${base}/ok`, { ...call, headers: { 'bad name': 'x' } }),
    code('DTX_INVALID_ARGUMENT', /bad header name/),
  );
  const log = await openSagaLog({ sqlite: join(dir, 'define.sqlite'), create: true });
  await assert.rejects(
    createSagaOrchestrator({ log, httpTimeoutMs: 0 }),
    code('DTX_INVALID_ARGUMENT', /httpTimeoutMs/),
  );
  const o = await createSagaOrchestrator({ log });
  const step = (url: string, extra: object = {}) => ({
    name: 'a',
    action: { url, ...extra },
    compensation: { url, ...extra },
  });
  for (const url of ['file:///etc/passwd', 'ftp://127.0.0.1/x', 'javascript:alert(1)', 'not a url']) {
    assert.throws(() => o.define({ name: 'bad', steps: [step(url)] }), code('DTX_INVALID_ARGUMENT'), url);
  }
  assert.throws(
    () => o.define({ name: 'bad', steps: [step(`${base}/ok`, { timeoutMs: 10 ** 9 })] }),
    code('DTX_INVALID_ARGUMENT', /timeoutMs/),
  );
  assert.throws(
    () => o.define({ name: 'bad', steps: [step(`${base}/ok`, { headers: { a: 'x\r\ny: z' } })] }),
    code('DTX_INVALID_ARGUMENT', /header a/),
  );
  assert.throws(
    () => o.define({ name: 'bad', version: 0, steps: [step(`${base}/ok`)] }),
    code('DTX_INVALID_ARGUMENT'),
  );
  await o.close();
  await log.close();
});

test('per-branch headers (static or per call) are sent, and neither they nor the URL reach the log', async () => {
  seen.length = 0;
  const path = join(dir, 'headers.sqlite');
  const log = await openSagaLog({ sqlite: path, create: true });
  const o = await createSagaOrchestrator({ log });
  const token = 'Bearer s3cr3t-token-value';
  const def: SagaDefinition = {
    name: 'headers',
    steps: [
      {
        name: 'a',
        action: { url: `${base}/ok/a`, headers: { authorization: token } },
        compensation: { url: `${base}/ok/a-undo` },
      },
      {
        name: 'b',
        action: {
          url: `${base}/ok/b`,
          headers: (c) => ({
            traceparent: `00-${'1'.repeat(32)}-${'2'.repeat(16)}-01`,
            'x-attempt': String(c.attempt),
          }),
        },
        compensation: { url: `${base}/ok/b-undo` },
      },
    ],
  };
  const id = await o.start(def, { idempotencyKey: 'k' });
  assert.equal((await o.result(id)).outcome, 'completed');
  const a = seen.find((s) => s.path === '/ok/a')!;
  const b = seen.find((s) => s.path === '/ok/b')!;
  assert.equal(a.headers.authorization, token);
  assert.equal(b.headers.traceparent, `00-${'1'.repeat(32)}-${'2'.repeat(16)}-01`);
  assert.equal(b.headers['x-attempt'], '1');
  // The protocol's own headers cannot be overridden by a branch's.
  assert.equal(a.headers['idempotency-key'], `${id}:a:action`);
  await o.close();
  await log.close();
  const stored = readFileSync(path).toString('latin1');
  assert.ok(!stored.includes('s3cr3t'), 'the token is not in the log');
  assert.ok(!stored.includes('127.0.0.1'), 'no URL is in the log');
  assert.ok(stored.includes('headers@1/a/action'), 'the log names the definition, its version and the op');
});

test('after a restart, calls go to the URL registered now; an unregistered version or a URL from the log is never called', async () => {
  seen.length = 0;
  const path = join(dir, 'moved.sqlite');
  const def = (url: string): SagaDefinition => ({
    name: 'moved',
    version: 2,
    recovery: 'forward',
    steps: [{ name: 'a', action: { url }, compensation: { url } }],
  });
  const timing = { retryBaseMs: 5, retryCapMs: 10 };
  const log = await openSagaLog({ sqlite: path, create: true });
  const o = await createSagaOrchestrator({ log, timing });
  // The old endpoint answers 202 for ever: the saga is still going forward when it stops.
  const id = await o.start(def(`${base}/pending`), { idempotencyKey: 'k' });
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.ok(seen.some((s) => s.path === '/pending'));
  await o.close();
  await log.close();
  // Let a call still in flight from the closed orchestrator land first.
  await new Promise((resolve) => setTimeout(resolve, 50));

  // Restarted without version 2 registered: retried with a clear reason, alerted, nothing called.
  seen.length = 0;
  const alerts: StuckAlert[] = [];
  const log2 = await openSagaLog({ sqlite: path, create: true });
  const o2 = await createSagaOrchestrator({
    log: log2,
    timing: { ...timing, stuckAfterAttempts: 3 },
    definitions: [{ ...def(`${base}/ok/v1`), version: 1 }],
    onStuck: (a) => alerts.push(a),
  });
  const until = Date.now() + 5000;
  while (alerts.length === 0 && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 5));
  assert.match(
    alerts[0]?.reason ?? '',
    /definition moved version 2 \(branch a, action\) is not registered in this process/,
  );
  assert.deepEqual(
    seen.map((s) => s.path),
    [],
  );
  await o2.close();
  await log2.close();

  // Restarted with version 2 registered at a new URL: the call goes there.
  const log3 = await openSagaLog({ sqlite: path, create: true });
  const o3 = await createSagaOrchestrator({ log: log3, timing, definitions: [def(`${base}/ok/new`)] });
  assert.equal((await o3.result(id, { timeoutMs: 5000 })).outcome, 'completed');
  assert.deepEqual([...new Set(seen.map((s) => s.path))], ['/ok/new']);
  await o3.close();
  await log3.close();
});

test('a run whose log names its endpoint by URL (written before versions) is not sent there', async () => {
  seen.length = 0;
  const path = join(dir, 'legacy.sqlite');
  const log = await openSagaLog({ sqlite: path, create: true });
  const url = `${base}/ok/from-the-log`;
  await log.append(
    [
      {
        type: 'begin',
        txn: 'legacy.1',
        client: 'app',
        def: {
          steps: [{ branch: 'a', service: 'http', action: url, compensation: url, payload: 'null' }],
          recovery: 'forward',
        },
        entropy: 1,
      },
      { type: 'start', txn: 'legacy.1', branch: 'a', op: 'action' },
    ],
    true,
  );
  const alerts: StuckAlert[] = [];
  const o = await createSagaOrchestrator({
    log,
    timing: { retryBaseMs: 2, retryCapMs: 5, stuckAfterAttempts: 3 },
    onStuck: (a) => alerts.push(a),
  });
  const until = Date.now() + 5000;
  while (alerts.length === 0 && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 5));
  assert.match(alerts[0]?.reason ?? '', /names an endpoint by URL/);
  assert.deepEqual(
    seen.map((s) => s.path),
    [],
  );
  await o.close();
  await log.close();
});
