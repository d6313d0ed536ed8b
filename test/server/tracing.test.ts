// A caller's W3C `traceparent` as the parent of its transaction's span in
// `dtx serve` (docs/server.md, "Tracing"), with the real OpenTelemetry SDK
// (a tracer provider with an in-memory exporter, the W3C propagator) and
// real node:http branch services that record the `traceparent` they get.
//
// Checked for each request that begins a transaction — a saga, a TCC begin,
// a 2PC begin, DTM's msg prepare and saga submit: the transaction's span is
// the caller's span's child, its branch calls' spans are the transaction
// span's children, and each branch receives a `traceparent` of the caller's
// trace. A TCC submitted under another trace still continues its begin's.
// No header, or a malformed one: a new trace. After a restart, the resumed
// saga's and 2PC transaction's spans are children of the caller's span again.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { type RunningServer, startServer } from '../../src/server/index.ts';
import { registerTestTracing } from '../support/otel-sdk.ts';
import { type BranchService, branchService, call, until } from './helpers.ts';

const tracing = registerTestTracing();
const exporter = tracing.exporter;

const dir = mkdtempSync(join(tmpdir(), 'dtx-serve-trace-'));
const store = { sqlite: join(dir, 'store.sqlite') };
/** Paths the branch service answers 503 to until the test heals them. */
const down = new Set<string>();
let svc: BranchService;
let server: RunningServer;

const start = () =>
  startServer({
    listen: '127.0.0.1:0',
    store,
    timing: { retryBaseMs: 20, retryCapMs: 200 },
    httpTimeoutMs: 2000,
  });

before(async () => {
  svc = await branchService((c) => {
    if (down.has(c.path)) return { status: 503, body: 'down' };
    if (c.path.endsWith('/prepare')) return { status: 200, body: '{"vote":"yes"}' };
    return { status: 200, body: '{"dtm_result":"SUCCESS"}' };
  });
  server = await start();
});

after(async () => {
  await server.close();
  await svc.close();
  tracing.disable();
  rmSync(dir, { recursive: true, force: true });
});

/** A caller's span: its trace id, span id and `traceparent` header. */
function caller(): { traceId: string; spanId: string; traceparent: string } {
  const traceId = randomBytes(16).toString('hex');
  const spanId = randomBytes(8).toString('hex');
  return { traceId, spanId, traceparent: `00-${traceId}-${spanId}-01` };
}

/** The finished span `name` of transaction `id` (waiting for it to end); `recovered` picks a resumed run's. */
async function spanOf(name: string, id: string, recovered = false): Promise<ReadableSpan> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const s = exporter
      .getFinishedSpans()
      .find(
        (x) =>
          x.name === name &&
          x.attributes['dtx.transaction.id'] === id &&
          (x.attributes['dtx.recovered'] === true) === recovered,
      );
    if (s !== undefined) return s;
    assert.ok(Date.now() < deadline, `no span ${name} of ${id}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const childrenOf = (parent: ReadableSpan) =>
  exporter.getFinishedSpans().filter((s) => s.parentSpanContext?.spanId === parent.spanContext().spanId);

/** Checks `span` is the caller's child and its branch calls' spans are its children, seen by the branches. */
function continuesTrace(span: ReadableSpan, from: ReturnType<typeof caller>, branchPath: RegExp): void {
  assert.equal(span.spanContext().traceId, from.traceId);
  assert.equal(span.parentSpanContext?.spanId, from.spanId);
  const calls = childrenOf(span).filter((s) => s.name.startsWith('dtx.branch.'));
  assert.ok(calls.length > 0, `no branch call span under ${span.name}`);
  for (const c of calls) assert.equal(c.spanContext().traceId, from.traceId);
  const seen = svc.calls.filter((c) => branchPath.test(c.path));
  assert.ok(seen.length > 0);
  for (const c of seen) {
    const [, traceId, spanId] = String(c.headers.traceparent).split('-');
    assert.equal(traceId, from.traceId, `${c.path} got ${c.headers.traceparent}`);
    assert.ok(
      calls.some((s) => s.spanContext().spanId === spanId),
      'its parent is a branch call span',
    );
  }
}

test('a saga submitted with a traceparent: its span is the caller span’s child, and so on into the branches', async () => {
  const from = caller();
  const r = await call(
    server.url,
    'POST',
    '/v1/sagas',
    {
      id: 'tr-saga',
      steps: [
        {
          name: 'a',
          action: { url: `${svc.url}/tr-saga/a` },
          compensation: { url: `${svc.url}/tr-saga/ua` },
        },
        { name: 'b', action: { url: `${svc.url}/tr-saga/b` }, compensation: null },
      ],
      wait: { timeoutMs: 10_000 },
    },
    { traceparent: from.traceparent },
  );
  assert.equal(r.json.state, 'completed');
  continuesTrace(await spanOf('dtx.saga', 'tr-saga'), from, /^\/tr-saga\//);
});

test('a TCC begun with a traceparent continues it, even when submitted under another trace', async () => {
  const from = caller();
  const other = caller();
  const headers = { traceparent: from.traceparent };
  assert.equal((await call(server.url, 'POST', '/v1/tcc', { id: 'tr-tcc' }, headers)).status, 201);
  await call(server.url, 'POST', '/v1/tcc/tr-tcc/branches', {
    branch: 'seat',
    confirm: `${svc.url}/tr-tcc/confirm`,
    cancel: `${svc.url}/tr-tcc/cancel`,
  });
  const r = await call(
    server.url,
    'POST',
    '/v1/tcc/tr-tcc/submit',
    { wait: { timeoutMs: 10_000 } },
    { traceparent: other.traceparent },
  );
  assert.equal(r.json.state, 'completed');
  continuesTrace(await spanOf('dtx.saga', 'tr-tcc'), from, /^\/tr-tcc\//);
});

test('a 2PC transaction begun with a traceparent: dtx.2pc is its child, PREPARE and COMMIT its grandchildren', async () => {
  const from = caller();
  const headers = { traceparent: from.traceparent, tracestate: 'vendor=1' };
  assert.equal((await call(server.url, 'POST', '/v1/2pc', { id: 'tr-2pc' }, headers)).status, 201);
  await call(server.url, 'POST', '/v1/2pc/tr-2pc/branches', { branch: 'a', url: `${svc.url}/tr-2pc/a` });
  await call(server.url, 'POST', '/v1/2pc/tr-2pc/branches', { branch: 'b', url: `${svc.url}/tr-2pc/b` });
  const r = await call(server.url, 'POST', '/v1/2pc/tr-2pc/commit', { wait: { timeoutMs: 10_000 } });
  assert.equal(r.json.state, 'committed');
  const span = await spanOf('dtx.2pc', 'tr-2pc');
  continuesTrace(span, from, /^\/tr-2pc\//);
  assert.equal(span.attributes['dtx.transaction.outcome'], 'committed');
  assert.deepEqual(
    childrenOf(span)
      .map((s) => s.name)
      .sort(),
    ['dtx.branch.commit', 'dtx.branch.commit', 'dtx.branch.prepare', 'dtx.branch.prepare'],
  );
  // The caller's tracestate goes along.
  assert.ok(
    svc.calls.filter((c) => c.path.startsWith('/tr-2pc/')).every((c) => c.headers.tracestate === 'vendor=1'),
  );
});

test("DTM's msg prepare and saga submit carry the caller's trace the same way", async () => {
  const fromMsg = caller();
  const msg = {
    gid: 'tr-msg',
    trans_type: 'msg',
    steps: [{ action: `${svc.url}/tr-msg/a` }],
    payloads: ['{}'],
  };
  const prepared = await call(server.url, 'POST', '/api/dtmsvr/prepare', msg, {
    traceparent: fromMsg.traceparent,
  });
  assert.equal(prepared.status, 200, JSON.stringify(prepared.json));
  assert.equal((await call(server.url, 'POST', '/api/dtmsvr/submit', msg)).status, 200);
  continuesTrace(await spanOf('dtx.saga', 'tr-msg'), fromMsg, /^\/tr-msg\//);

  const fromSaga = caller();
  const saga = {
    gid: 'tr-dtm-saga',
    trans_type: 'saga',
    steps: [{ action: `${svc.url}/tr-dtm-saga/a`, compensate: `${svc.url}/tr-dtm-saga/ua` }],
    payloads: ['{}'],
    wait_result: true,
  };
  const r = await call(server.url, 'POST', '/api/dtmsvr/submit', saga, { traceparent: fromSaga.traceparent });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  continuesTrace(await spanOf('dtx.saga', 'tr-dtm-saga'), fromSaga, /^\/tr-dtm-saga\//);
});

test('without a traceparent, or with a malformed one, a transaction starts a new trace', async () => {
  const step = (id: string) => ({
    id,
    steps: [{ name: 'a', action: { url: `${svc.url}/${id}/a` }, compensation: null }],
    wait: { timeoutMs: 10_000 },
  });
  await call(server.url, 'POST', '/v1/sagas', step('tr-none'));
  await call(server.url, 'POST', '/v1/sagas', step('tr-bad'), { traceparent: '00-zz-not-a-span' });
  for (const id of ['tr-none', 'tr-bad']) {
    const span = await spanOf('dtx.saga', id);
    assert.equal(span.parentSpanContext, undefined, id);
  }
});

test('after a restart, the resumed saga and 2PC transaction continue the trace of the request that began them', async () => {
  const fromSaga = caller();
  const from2pc = caller();
  down.add('/tr-rs/a');
  down.add('/tr-r2/a/commit');
  await call(
    server.url,
    'POST',
    '/v1/sagas',
    {
      id: 'tr-rs',
      steps: [{ name: 'a', action: { url: `${svc.url}/tr-rs/a` }, compensation: null }],
      retry: { actionAttemptsMax: 1000 },
    },
    { traceparent: fromSaga.traceparent },
  );
  await call(server.url, 'POST', '/v1/2pc', { id: 'tr-r2' }, { traceparent: from2pc.traceparent });
  await call(server.url, 'POST', '/v1/2pc/tr-r2/branches', { branch: 'a', url: `${svc.url}/tr-r2/a` });
  const decided = await call(server.url, 'POST', '/v1/2pc/tr-r2/commit', {});
  assert.equal(decided.json.outcome, 'committed');
  // Both are retrying a failing call when the server stops.
  const deadline = Date.now() + 10_000;
  while (svc.count('tr-rs:a:action') < 2 || svc.count('tr-r2:a:commit') < 2) {
    assert.ok(Date.now() < deadline);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  await server.close();
  server = await start();
  down.clear();
  await until(server.url, 'tr-rs', (v) => v.state === 'completed');
  await until(server.url, 'tr-r2', (v) => v.state === 'committed');
  for (const [name, id, from] of [
    ['dtx.saga', 'tr-rs', fromSaga],
    ['dtx.2pc', 'tr-r2', from2pc],
  ] as const) {
    const span = await spanOf(name, id, true);
    assert.equal(span.spanContext().traceId, from.traceId, id);
    assert.equal(span.parentSpanContext?.spanId, from.spanId, id);
  }
});
