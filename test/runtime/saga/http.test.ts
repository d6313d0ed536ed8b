// The HTTP branch protocol against a real node:http server on 127.0.0.1 whose
// handlers write a SQLite bank through the barrier: retries of 202, a 409
// refusal that compensates in reverse, a duplicate delivery, timeouts and the
// status table.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import Database from 'better-sqlite3';
import { type BarrierOp, sqliteBarrierDb, withBarrier } from '../../../src/adapters/barrier.ts';
import { callHttpBranch, classifyStatus } from '../../../src/adapters/http-branch.ts';
import { isDtxError } from '../../../src/errors.ts';
import type { SagaRecord } from '../../../src/protocol/saga/types.ts';
import type { DurableLog } from '../../../src/runtime/log/types.ts';
import {
  createSagaOrchestrator,
  openSagaLog,
  type SagaOrchestrator,
} from '../../../src/runtime/saga/orchestrator.ts';

const dir = mkdtempSync(join(tmpdir(), 'dtx-saga-http-'));
const conn = new Database(join(dir, 'bank.sqlite'));
conn.exec('CREATE TABLE stock (id TEXT PRIMARY KEY, n INT NOT NULL)');
conn.exec("INSERT INTO stock VALUES ('seats', 10), ('paid', 0)");
const barrier = sqliteBarrierDb(conn);
const stock = () =>
  Object.fromEntries(
    (conn.prepare('SELECT id, n FROM stock ORDER BY id').all() as { id: string; n: number }[]).map((r) => [
      r.id,
      r.n,
    ]),
  );

/** Every request the server saw: path, op, headers. */
const seen: {
  path: string;
  op: string;
  headers: IncomingMessage['headers'];
  body: Record<string, unknown>;
}[] = [];
const flakyCount = new Map<string, number>();
let server: Server;
let base = '';
let log: DurableLog<SagaRecord>;
let o: SagaOrchestrator;

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  let text = '';
  for await (const chunk of req) text += chunk;
  return JSON.parse(text) as Record<string, unknown>;
}

/** A branch writing `delta` to `row` through the barrier; answers 200 with the barrier's result. */
async function barrierWrite(body: Record<string, unknown>, row: string, delta: number) {
  const r = await withBarrier(
    barrier,
    { sagaId: body.sagaId as string, branchId: body.branchId as string, op: body.op as BarrierOp },
    async (tx) => {
      tx.prepare('UPDATE stock SET n = n + ? WHERE id = ?').run(delta, row);
      return { row, delta };
    },
  );
  return { status: 200, json: { ...r } };
}

before(async () => {
  server = createServer((req, res) => {
    void (async () => {
      const body = await readJson(req);
      const path = req.url ?? '';
      seen.push({ path, op: body.op as string, headers: req.headers, body });
      let answer: { status: number; json: unknown };
      try {
        if (path === '/seats') answer = await barrierWrite(body, 'seats', body.op === 'action' ? -1 : 1);
        else if (path === '/pay') answer = await barrierWrite(body, 'paid', body.op === 'action' ? 5 : -5);
        else if (path === '/flaky') {
          const key = req.headers['idempotency-key'] as string;
          const n = (flakyCount.get(key) ?? 0) + 1;
          flakyCount.set(key, n);
          answer =
            n <= 2 ? { status: 202, json: { reason: 'still working' } } : await barrierWrite(body, 'paid', 1);
        } else if (path === '/refuse') answer = { status: 409, json: { reason: 'sold out' } };
        else if (path === '/slow')
          return; // never answers
        else answer = { status: 404, json: { reason: 'no such branch' } };
      } catch (error) {
        answer = isDtxError(error, 'DTX_BRANCH_HANGING')
          ? { status: 409, json: { reason: error.message } }
          : { status: 500, json: { reason: String(error) } };
      }
      res.writeHead(answer.status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(answer.json));
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  log = await openSagaLog({ sqlite: join(dir, 'log.sqlite'), create: true });
  o = await createSagaOrchestrator({ log, timing: { retryBaseMs: 20, jitter: 0 }, httpTimeoutMs: 2000 });
});

after(async () => {
  await o.close();
  await log.close();
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  conn.close();
  rmSync(dir, { recursive: true, force: true });
});

test('the status table of the protocol', () => {
  assert.equal(classifyStatus(200), 'success');
  assert.equal(classifyStatus(409), 'failure');
  // A redirect is not followed and not a refusal: a failed attempt, retried.
  for (const s of [202, 425, 503, 500, 502, 504, 301, 302, 307, 308]) {
    assert.equal(classifyStatus(s), 'ongoing', String(s));
  }
  for (const s of [400, 401, 404, 422, 201, 204]) assert.equal(classifyStatus(s), 'failure', String(s));
});

test('a branch that answers 202 twice then 200 is retried until it succeeds; headers and body follow the protocol', async () => {
  const def = {
    name: 'book',
    steps: [
      { name: 'seat', action: { url: `${base}/seats` }, compensation: { url: `${base}/seats` } },
      { name: 'flaky', action: { url: `${base}/flaky` }, compensation: { url: `${base}/pay` } },
    ],
  };
  const sagaId = await o.start(def, { idempotencyKey: 'http-1', input: { seat: '12A' } });
  assert.deepEqual(await o.result(sagaId), { sagaId, outcome: 'completed', reason: null });
  const flaky = seen.filter((s) => s.path === '/flaky' && s.body.sagaId === sagaId);
  assert.equal(flaky.length, 3);
  const h = flaky[0]!.headers;
  assert.equal(h['dtx-saga-id'], sagaId);
  assert.equal(h['dtx-branch-id'], 'flaky');
  assert.equal(h['dtx-op'], 'action');
  assert.equal(h['idempotency-key'], `${sagaId}:flaky:action`);
  assert.deepEqual(flaky[0]!.body, { sagaId, branchId: 'flaky', op: 'action', payload: { seat: '12A' } });
  assert.deepEqual(stock(), { paid: 1, seats: 9 });
});

test('a 409 refusal compensates the earlier steps in reverse order and records the reason', async () => {
  const before = stock();
  const from = seen.length;
  const def = {
    name: 'order',
    steps: [
      { name: 'seat', action: { url: `${base}/seats` }, compensation: { url: `${base}/seats` } },
      { name: 'pay', action: { url: `${base}/pay` }, compensation: { url: `${base}/pay` } },
      { name: 'ship', action: { url: `${base}/refuse` }, compensation: { url: `${base}/refuse` } },
    ],
  };
  const sagaId = await o.start(def, { idempotencyKey: 'http-2' });
  const r = await o.result(sagaId);
  assert.equal(r.outcome, 'compensated');
  assert.equal(r.reason, 'ship refused: sold out');
  assert.equal(o.status(sagaId).reason, 'ship refused: sold out');
  const calls = seen.slice(from).map((s) => `${s.path}:${s.op}`);
  assert.deepEqual(calls, [
    '/seats:action',
    '/pay:action',
    '/refuse:action',
    '/pay:compensation',
    '/seats:compensation',
  ]);
  assert.deepEqual(stock(), before);
});

test('a duplicate delivery is answered from the barrier: 200 with the first result, written once', async () => {
  const before = stock();
  const call = { sagaId: 'dup-1', branchId: 'seat', op: 'action' as const, payload: null };
  const first = await callHttpBranch(`${base}/seats`, call);
  const again = await callHttpBranch(`${base}/seats`, call);
  assert.equal(first.result, 'success');
  assert.equal(again.result, 'success');
  assert.deepEqual((first.body as { status: string }).status, 'executed');
  assert.deepEqual(again.body, { status: 'duplicate', result: { row: 'seats', delta: -1 } });
  assert.equal(stock().seats, before.seats! - 1);
  // A compensation then undoes it once; a late action after it is refused (409) and writes nothing.
  await callHttpBranch(`${base}/seats`, { ...call, op: 'compensation' });
  const late = await callHttpBranch(`${base}/seats`, { ...call, sagaId: 'dup-2' });
  assert.equal(late.result, 'success');
  await callHttpBranch(`${base}/seats`, { ...call, sagaId: 'dup-3', op: 'compensation' });
  const hanging = await callHttpBranch(`${base}/seats`, { ...call, sagaId: 'dup-3' });
  assert.equal(hanging.result, 'failure');
  assert.equal(hanging.status, 409);
  assert.match(hanging.reason, /arrived after its compensation/);
  assert.equal(stock().seats, before.seats! - 1);
});

test('no answer within the call timeout, a refused connection and other 4xx map as the protocol says', async () => {
  const slow = await callHttpBranch(`${base}/slow`, {
    sagaId: 't',
    branchId: 'b',
    op: 'action',
    payload: null,
    timeoutMs: 100,
  });
  assert.equal(slow.result, 'ongoing');
  assert.equal(slow.status, 0);
  assert.match(slow.reason, /no answer within 100 ms/);
  const missing = await callHttpBranch(`${base}/nope`, {
    sagaId: 't',
    branchId: 'b',
    op: 'action',
    payload: 1,
  });
  assert.equal(missing.result, 'failure');
  assert.equal(missing.reason, 'no such branch');
  const refused = await callHttpBranch('http://127.0.0.1:1/x', {
    sagaId: 't',
    branchId: 'b',
    op: 'action',
    payload: 1,
  });
  assert.equal(refused.result, 'ongoing');
  assert.equal(refused.status, 0);
});
