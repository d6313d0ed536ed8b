// Observability of the library runtime: OpenTelemetry spans (a real SDK
// tracer provider with an in-memory exporter, the async-hooks context
// manager and the W3C propagator), the `traceparent` a real node:http branch
// service receives, the observer hooks and the logger option (warnings go to
// the logger, not to process.emitWarning). Participants and logs are real
// SQLite files.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { trace } from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { createSqliteAdapter, type SqliteAdapter, type SqliteBranch } from '../../src/adapters/sqlite.ts';
import { createCoordinator, openCoordinatorLog } from '../../src/runtime/coordinator.ts';
import type { BranchCalled, LogFlushed, Logger, Observer, TxnEnded } from '../../src/runtime/observe.ts';
import { createSagaOrchestrator, openSagaLog } from '../../src/runtime/saga/orchestrator.ts';
import { createTccOrchestrator, openTccLog } from '../../src/runtime/tcc/orchestrator.ts';
import { registerTestTracing } from '../support/otel-sdk.ts';

const tracing = registerTestTracing();
const exporter = tracing.exporter;

const dir = mkdtempSync(join(tmpdir(), 'dtx-observe-'));
const seen: { path: string; headers: IncomingHttpHeaders }[] = [];
let server: Server;
let base = '';

before(async () => {
  server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      seen.push({ path: req.url ?? '', headers: req.headers });
      res.writeHead(req.url === '/refuse' ? 409 : 200, { 'content-type': 'application/json' });
      res.end(req.url === '/refuse' ? '{"reason":"no stock"}' : '{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  tracing.disable();
  rmSync(dir, { recursive: true, force: true });
});

function spansOf(traceId: string): ReadableSpan[] {
  return exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId);
}

function parentOf(span: ReadableSpan): string | undefined {
  return span.parentSpanContext?.spanId;
}

/** An observer that keeps every event. */
function recorder(): Observer & {
  ended: TxnEnded[];
  calls: BranchCalled[];
  flushes: LogFlushed[];
  begun: string[];
} {
  const r = {
    begun: [] as string[],
    ended: [] as TxnEnded[],
    calls: [] as BranchCalled[],
    flushes: [] as LogFlushed[],
    transactionBegun: (e: { id: string }) => r.begun.push(e.id),
    transactionEnded: (e: TxnEnded) => r.ended.push(e),
    branchCalled: (e: BranchCalled) => r.calls.push(e),
    logFlushed: (e: LogFlushed) => r.flushes.push(e),
  };
  return r;
}

test('a saga is one span with a child per branch call, and its HTTP branches get its traceparent', async () => {
  const log = await openSagaLog({ sqlite: join(dir, 'saga.sqlite'), create: true });
  const observed = recorder();
  const o = await createSagaOrchestrator({ log, observer: observed, timing: { retryBaseMs: 5 } });
  let localSpanId: string | undefined;
  const def = {
    name: 'order',
    steps: [
      {
        name: 'reserve',
        action: async () => {
          // A local branch runs with its call's span active: its own spans are children.
          localSpanId = trace.getActiveSpan()?.spanContext().spanId;
        },
        compensation: async () => undefined,
      },
      { name: 'pay', action: { url: `${base}/pay` }, compensation: { url: `${base}/refund` } },
      { name: 'ship', action: { url: `${base}/ship` }, compensation: null },
    ],
  };
  const tracer = trace.getTracer('test');
  const { id, callerSpanId, traceId } = await tracer.startActiveSpan('caller', async (caller) => {
    const sagaId = await o.start(def, { idempotencyKey: 'k1', input: { n: 1 } });
    caller.end();
    return { id: sagaId, callerSpanId: caller.spanContext().spanId, traceId: caller.spanContext().traceId };
  });
  assert.equal((await o.result(id, { timeoutMs: 10_000 })).outcome, 'completed');

  const spans = spansOf(traceId);
  const saga = spans.find((s) => s.name === 'dtx.saga');
  assert.ok(saga, `no dtx.saga span among ${spans.map((s) => s.name).join(', ')}`);
  assert.equal(parentOf(saga), callerSpanId, 'the saga span is a child of the span active at start()');
  assert.equal(saga.attributes['dtx.transaction.id'], id);
  assert.equal(saga.attributes['dtx.transaction.type'], 'saga');
  assert.equal(saga.attributes['dtx.transaction.outcome'], 'completed');
  const actions = spans.filter((s) => s.name === 'dtx.branch.action');
  assert.deepEqual(actions.map((s) => s.attributes['dtx.branch.id']).sort(), ['pay', 'reserve', 'ship']);
  for (const a of actions) {
    assert.equal(parentOf(a), saga.spanContext().spanId);
    assert.equal(a.attributes['dtx.branch.status'], 'success');
  }
  const reserve = actions.find((s) => s.attributes['dtx.branch.id'] === 'reserve')!;
  assert.equal(localSpanId, reserve.spanContext().spanId);

  // Each HTTP call carried the traceparent of its own branch span, in the saga's trace.
  for (const path of ['/pay', '/ship']) {
    const call = seen.find((c) => c.path === path && c.headers['dtx-saga-id'] === id);
    assert.ok(call, `no call to ${path}`);
    const span = actions.find((s) => s.attributes['dtx.branch.id'] === path.slice(1))!;
    assert.equal(call.headers.traceparent, `00-${traceId}-${span.spanContext().spanId}-01`);
  }

  // The observer heard the same run.
  assert.deepEqual(observed.begun, [id]);
  assert.equal(observed.ended.length, 1);
  assert.equal(observed.ended[0]!.outcome, 'completed');
  assert.ok(observed.ended[0]!.durationMs! >= 0);
  assert.deepEqual(observed.calls.map((c) => `${c.branch}:${c.op}:${c.status}`).sort(), [
    'pay:action:success',
    'reserve:action:success',
    'ship:action:success',
  ]);

  // A repeated start is the same saga: no second span, no second begin.
  await o.start(def, { idempotencyKey: 'k1', input: { n: 1 } });
  assert.equal(observed.begun.length, 1);
  await o.close();
  await log.close();
});

test('a compensated saga: the refused call and the saga span carry the failure; a caller traceparent wins', async () => {
  const log = await openSagaLog({ sqlite: join(dir, 'saga2.sqlite'), create: true });
  const observed = recorder();
  const o = await createSagaOrchestrator({ log, observer: observed, timing: { retryBaseMs: 5 } });
  const own = '00-0123456789abcdef0123456789abcdef-0123456789abcdef-01';
  const def = {
    name: 'order2',
    steps: [
      {
        name: 'pay',
        action: { url: `${base}/pay2`, headers: { traceparent: own } },
        compensation: { url: `${base}/refund2` },
      },
      { name: 'ship', action: { url: `${base}/refuse` }, compensation: { url: `${base}/unship` } },
    ],
  };
  const id = await o.start(def, { idempotencyKey: 'k2' });
  assert.equal((await o.result(id, { timeoutMs: 10_000 })).outcome, 'compensated');
  const saga = exporter
    .getFinishedSpans()
    .find((s) => s.name === 'dtx.saga' && s.attributes['dtx.transaction.id'] === id)!;
  assert.equal(saga.attributes['dtx.transaction.outcome'], 'compensated');
  assert.equal(saga.status.code, 2, 'a compensated saga is an error span');
  const spans = spansOf(saga.spanContext().traceId);
  const refused = spans.find(
    (s) => s.name === 'dtx.branch.action' && s.attributes['dtx.branch.id'] === 'ship',
  )!;
  assert.equal(refused.attributes['dtx.branch.status'], 'failure');
  assert.equal(refused.status.message, 'no stock');
  const refund = spans.find((s) => s.name === 'dtx.branch.compensation')!;
  assert.equal(refund.attributes['dtx.branch.id'], 'pay');
  assert.equal(parentOf(refund), saga.spanContext().spanId);
  // The branch set its own traceparent: dtx does not replace it.
  assert.equal(seen.find((c) => c.path === '/pay2')!.headers.traceparent, own);
  assert.notEqual(seen.find((c) => c.path === '/refund2')!.headers.traceparent, undefined);
  assert.deepEqual(
    observed.ended.map((e) => [e.outcome, e.reason]),
    [['compensated', saga.status.message]],
  );
  await o.close();
  await log.close();
});

test('a TCC transaction is a dtx.tcc span with try and confirm children', async () => {
  const log = await openTccLog({ sqlite: join(dir, 'tcc.sqlite'), create: true });
  const o = await createTccOrchestrator({ log, timing: { retryBaseMs: 5 } });
  const noop = async () => undefined;
  const id = await o.start(
    { name: 'hold', branches: [{ name: 'seat', try: noop, confirm: noop, cancel: noop }] },
    { idempotencyKey: 't1' },
  );
  assert.equal((await o.result(id, { timeoutMs: 10_000 })).outcome, 'completed');
  const tcc = exporter
    .getFinishedSpans()
    .find((s) => s.name === 'dtx.tcc' && s.attributes['dtx.transaction.id'] === id)!;
  assert.ok(tcc);
  const children = spansOf(tcc.spanContext().traceId).filter((s) => parentOf(s) === tcc.spanContext().spanId);
  assert.deepEqual(children.map((s) => s.name).sort(), ['dtx.branch.confirm', 'dtx.branch.try']);
  await o.close();
  await log.close();
});

/** `adapter`, whose first COMMIT PREPARED fails before reaching the database. */
function failingFirstCommit(adapter: SqliteAdapter): SqliteAdapter {
  let failures = 0;
  return new Proxy(adapter, {
    get(target, key) {
      if (key === 'commitPrepared') {
        return async (gid: string) => {
          if (failures++ === 0) throw new Error('connection reset');
          return target.commitPrepared(gid);
        };
      }
      const value = Reflect.get(target, key, target) as unknown;
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

async function twoPcSetup(name: string): Promise<{ a: SqliteAdapter; b: SqliteAdapter }> {
  const a = await createSqliteAdapter({ create: true, path: join(dir, `${name}-a.sqlite`) });
  const b = await createSqliteAdapter({ create: true, path: join(dir, `${name}-b.sqlite`) });
  return { a, b };
}

test('2PC: a dtx.2pc span per transaction, prepare and commit per branch; the observer and the log flushes', async () => {
  const { a, b } = await twoPcSetup('tx');
  const observed = recorder();
  const log = await openCoordinatorLog({
    sqlite: join(dir, 'coord.sqlite'),
    create: true,
    observer: observed,
  });
  const c = await createCoordinator({ log, resources: { a, b }, observer: observed });
  const id = await c.transaction(async (tx) => {
    (await tx.branch<SqliteBranch>('a')).put('x', 1);
    (await tx.branch<SqliteBranch>('b')).put('y', 2);
    return tx.id;
  });
  const twoPc = exporter
    .getFinishedSpans()
    .find((s) => s.name === 'dtx.2pc' && s.attributes['dtx.transaction.id'] === id)!;
  assert.ok(twoPc);
  assert.equal(twoPc.attributes['dtx.transaction.outcome'], 'committed');
  const children = spansOf(twoPc.spanContext().traceId).filter(
    (s) => parentOf(s) === twoPc.spanContext().spanId,
  );
  assert.deepEqual(children.map((s) => `${s.name} ${s.attributes['dtx.branch.id']}`).sort(), [
    'dtx.branch.commit a',
    'dtx.branch.commit b',
    'dtx.branch.prepare a',
    'dtx.branch.prepare b',
  ]);
  assert.deepEqual(observed.begun, [id]);
  assert.deepEqual(
    observed.ended.map((e) => [e.type, e.id, e.outcome]),
    [['2pc', id, 'committed']],
  );
  assert.deepEqual(observed.calls.map((e) => `${e.op} ${e.branch} ${e.status}`).sort(), [
    'commit a success',
    'commit b success',
    'prepare a success',
    'prepare b success',
  ]);
  // The commit record was forced: at least one flush carried it.
  assert.ok(observed.flushes.some((f) => f.records >= 1));
  assert.equal(
    observed.flushes.reduce((sum, f) => sum + f.records, 0),
    log.stats.records,
    'the flushes carry every appended record',
  );

  // A transaction whose work throws aborts: its span says so.
  await assert.rejects(
    c.transaction(async (tx) => {
      (await tx.branch<SqliteBranch>('a')).put('x', 2);
      throw new Error('changed my mind');
    }),
  );
  const aborted = observed.ended.at(-1)!;
  assert.equal(aborted.outcome, 'aborted');
  assert.equal(aborted.reason, 'changed my mind');
  await c.close();
  await log.close();
  await a.close();
  await b.close();
});

/**
 * One transfer on a coordinator whose first COMMIT on b fails (its
 * connection, as far as dtx can tell): dtx warns once and retries. Returns
 * the process warnings emitted meanwhile.
 */
async function transferWithFailingCommit(name: string, logger?: Logger): Promise<Error[]> {
  const { a, b } = await twoPcSetup(name);
  const warnings: Error[] = [];
  const onWarning = (w: Error) => warnings.push(w);
  process.on('warning', onWarning);
  const log = await openCoordinatorLog({ sqlite: join(dir, `coord-${name}.sqlite`), create: true });
  const c = await createCoordinator({
    log,
    resources: { a, b: failingFirstCommit(b) },
    timing: { commitResendMs: 20 },
    ...(logger === undefined ? {} : { logger }),
  });
  try {
    await c.transaction(async (tx) => {
      (await tx.branch<SqliteBranch>('a')).put('x', 1);
      (await tx.branch<SqliteBranch>('b')).put('y', 2);
    });
    assert.equal(b.read('y'), 2, 'the retried COMMIT applied');
    // Let a tick pass: emitWarning delivers on the next one.
    await new Promise((resolve) => setImmediate(resolve));
    return warnings;
  } finally {
    process.off('warning', onWarning);
    await c.close();
    await log.close();
    await a.close();
    await b.close();
  }
}

test('2PC warnings go to the logger, not to process.emitWarning', async () => {
  const lines: { level: string; obj: object; msg: string }[] = [];
  const at =
    (level: string) =>
    (obj: object, msg: string): void => {
      lines.push({ level, obj, msg });
    };
  const logger: Logger = { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
  const warnings = await transferWithFailingCommit('warn', logger);
  assert.deepEqual(warnings, []);
  const warned = lines.filter((l) => l.level === 'warn');
  assert.equal(warned.length, 1);
  assert.match(warned[0]!.msg, /COMMIT of .* on b failed \(Error: connection reset\)/);
  const retried = lines.find((l) => l.level === 'debug' && l.msg === 'branch call did not succeed');
  const fields = retried?.obj as Record<string, unknown>;
  assert.deepEqual(
    [fields.type, fields.branch, fields.op, fields.status, fields.reason],
    ['2pc', 'b', 'commit', 'retry', 'Error: connection reset'],
  );
});

test('without a logger, the same warning is a process warning, as before', async () => {
  const warnings = await transferWithFailingCommit('nolog');
  assert.equal(warnings.length, 1);
  assert.match(warnings[0]!.message, /COMMIT of .* on b failed/);
});
