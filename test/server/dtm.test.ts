// The DTM-compatible endpoints of `dtx serve`, tested from DTM's documented
// HTTP contract against real node:http branch services: each branch call is a
// POST to the branch URL with gid, trans_type, branch_id and op as query
// parameters and the payload as the body; 200/SUCCESS is success,
// 409/FAILURE failure, 425/ONGOING "retry later".

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { RunningServer } from '../../src/server/index.ts';
import { type Answer, type BranchService, branchService, call, serve, until } from './helpers.ts';

const dir = mkdtempSync(join(tmpdir(), 'dtx-serve-dtm-'));
let server: RunningServer;
let base: string;
let svc: BranchService;
/** Per gid: the action of this path refuses. */
const refuseAt = new Map<string, string>();

before(async () => {
  svc = await branchService((c) => {
    if (refuseAt.get(c.query.get('gid') ?? '') === c.path && c.op === 'action')
      return { status: 409, body: '{"dtm_result":"FAILURE"}' };
    if (c.path === '/slow' && c.op === 'action') return { status: 425, body: '{"dtm_result":"ONGOING"}' };
    return { status: 200, body: '{"dtm_result":"SUCCESS"}' };
  });
  server = await serve(join(dir, 'store.sqlite'));
  base = server.url;
});
after(async () => {
  await server.close();
  await svc.close();
  rmSync(dir, { recursive: true, force: true });
});

const api = (p: string) => `/api/dtmsvr/${p}`;
const saga = (
  gid: string,
  steps: { action: string; compensate: string }[],
  extra: Record<string, unknown> = {},
) => ({
  gid,
  trans_type: 'saga',
  steps,
  payloads: steps.map((_, i) => JSON.stringify({ amount: 30, step: i })),
  ...extra,
});
const step = (name: string) => ({ action: `${svc.url}/${name}`, compensate: `${svc.url}/${name}-undo` });
const opsOf = (gid: string) =>
  svc.calls
    .filter((c) => c.query.get('gid') === gid)
    .map((c) => `${c.path} ${c.op} ${c.query.get('branch_id')}`);

test('newGid gives a fresh gid with SUCCESS', async () => {
  const a = await call(base, 'GET', api('newGid'));
  const b = await call(base, 'GET', api('newGid'));
  assert.equal(a.status, 200);
  assert.equal(a.json.dtm_result, 'SUCCESS');
  assert.notEqual(a.json.gid, b.json.gid);
});

test('a saga completes: each action once, in order, with DTM query parameters and the payload as body', async () => {
  const gid = 'dtm-saga-ok';
  const r = await call(
    base,
    'POST',
    api('submit'),
    saga(gid, [step('out'), step('in')], { wait_result: true, branch_headers: { 'x-tenant': 't1' } }),
  );
  assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.equal(r.json.dtm_result, 'SUCCESS');
  assert.deepEqual(opsOf(gid), ['/out action 01', '/in action 02']);
  const first = svc.calls.find((c) => c.query.get('gid') === gid)!;
  assert.equal(first.query.get('trans_type'), 'saga');
  assert.equal(first.body, JSON.stringify({ amount: 30, step: 0 }));
  assert.equal(first.headers['x-tenant'], 't1');
  assert.match(first.query.get('dtm') ?? '', /\/api\/dtmsvr$/);
  const q = await call(base, 'GET', `${api('query')}?gid=${gid}`);
  assert.equal(q.json.transaction.status, 'succeed');
  assert.equal(q.json.transaction.trans_type, 'saga');
  assert.deepEqual(
    q.json.branches.map((b: Answer) => `${b.branch_id} ${b.op} ${b.status}`),
    ['01 action succeed', '01 compensate prepared', '02 action succeed', '02 compensate prepared'],
  );
  // Submitting the same saga again is idempotent: nothing runs twice.
  const again = await call(
    base,
    'POST',
    api('submit'),
    saga(gid, [step('out'), step('in')], { branch_headers: { 'x-tenant': 't1' } }),
  );
  assert.equal(again.status, 200);
  assert.equal(svc.count(`${gid}:01:action`), 1);
});

// dtx reads a FAILURE answer as "the action did not apply" (docs/server.md,
// compatibility): the failed step itself is not compensated — DTM calls it
// and its barrier turns it into a no-op, so a barrier-guarded service ends
// the same either way.
test('a saga whose third action fails compensates the steps before it in reverse order', async () => {
  const gid = 'dtm-saga-back';
  refuseAt.set(gid, '/c');
  const r = await call(base, 'POST', api('submit'), saga(gid, [step('a'), step('b'), step('c')]));
  assert.equal(r.status, 200);
  await until(base, gid, (v) => v.state === 'compensated');
  assert.deepEqual(opsOf(gid), [
    '/a action 01',
    '/b action 02',
    '/c action 03',
    '/b-undo compensate 02',
    '/a-undo compensate 01',
  ]);
  const q = await call(base, 'GET', `${api('query')}?gid=${gid}`);
  assert.equal(q.json.transaction.status, 'failed');
  // wait_result on a failed saga is an error for the SDK (a body with FAILURE).
  const w = await call(
    base,
    'POST',
    api('submit'),
    saga(gid, [step('a'), step('b'), step('c')], { wait_result: true }),
  );
  assert.notEqual(w.status, 200);
  assert.match(JSON.stringify(w.json), /FAILURE/);
});

test('concurrent saga branches follow custom_data orders', async () => {
  const gid = 'dtm-saga-conc';
  // 0 and 1 start together; 2 waits for both.
  const custom = JSON.stringify({ concurrent: true, orders: { '2': [0, 1] } });
  const r = await call(
    base,
    'POST',
    api('submit'),
    saga(gid, [step('p'), step('q'), step('r')], { custom_data: custom, wait_result: true }),
  );
  assert.equal(r.status, 200, JSON.stringify(r.json));
  // Branch calls are at least once: under load a slow answer can be asked
  // again by the retry timer (20 ms in these tests). What the order graph
  // decides is which calls there are and that r comes only after p and q.
  const ops = opsOf(gid);
  assert.deepEqual(
    [...new Set(ops)].sort(),
    ['/p action 01', '/q action 02', '/r action 03'],
    JSON.stringify(ops),
  );
  const firstR = ops.indexOf('/r action 03');
  assert.ok(
    ops.slice(firstR).every((o) => o === '/r action 03'),
    `r must start after both p and q answered: ${JSON.stringify(ops)}`,
  );
});

test('concurrent saga: a failure compensates in reverse of orders', async () => {
  const gid = 'dtm-saga-conc-back';
  refuseAt.set(gid, '/z');
  const custom = JSON.stringify({ concurrent: true, orders: { '1': [0], '2': [1] } });
  await call(
    base,
    'POST',
    api('submit'),
    saga(gid, [step('x'), step('y'), step('z')], { custom_data: custom }),
  );
  await until(base, gid, (v) => v.state === 'compensated');
  assert.deepEqual(opsOf(gid).slice(3), ['/y-undo compensate 02', '/x-undo compensate 01']);
});

const tccBranch = (gid: string, id: string, name: string) => ({
  gid,
  trans_type: 'tcc',
  branch_id: id,
  data: JSON.stringify({ branch: name }),
  try: `${svc.url}/${name}-try`,
  confirm: `${svc.url}/${name}-confirm`,
  cancel: `${svc.url}/${name}-cancel`,
});

test('a TCC confirms every registered branch on submit (the caller calls try)', async () => {
  const gid = 'dtm-tcc-ok';
  assert.equal((await call(base, 'POST', api('prepare'), { gid, trans_type: 'tcc' })).status, 200);
  assert.equal((await call(base, 'POST', api('registerBranch'), tccBranch(gid, '01', 'debit'))).status, 200);
  assert.equal(
    (await call(base, 'POST', api('registerTccBranch'), tccBranch(gid, '02', 'credit'))).status,
    200,
  );
  const q0 = await call(base, 'GET', `${api('query')}?gid=${gid}`);
  assert.equal(q0.json.transaction.status, 'prepared');
  const s = await call(base, 'POST', api('submit'), { gid, trans_type: 'tcc', wait_result: true });
  assert.equal(s.status, 200, JSON.stringify(s.json));
  assert.deepEqual(opsOf(gid).sort(), ['/credit-confirm confirm 02', '/debit-confirm confirm 01']);
  assert.equal(
    svc.calls.find((c) => c.path === '/debit-confirm' && c.query.get('gid') === gid)!.body,
    JSON.stringify({ branch: 'debit' }),
  );
  assert.equal((await call(base, 'GET', `${api('query')}?gid=${gid}`)).json.transaction.status, 'succeed');
  // submit again: idempotent; abort after submit: refused with FAILURE, nothing called.
  assert.equal((await call(base, 'POST', api('submit'), { gid, trans_type: 'tcc' })).status, 200);
  const ab = await call(base, 'POST', api('abort'), { gid, trans_type: 'tcc' });
  assert.equal(ab.status, 409);
  assert.equal(ab.json.dtm_result, 'FAILURE');
  assert.equal(ab.json.code, 'DTX_INVALID_STATE');
  assert.equal(opsOf(gid).length, 2);
});

test('a TCC cancels every registered branch on abort', async () => {
  const gid = 'dtm-tcc-abort';
  await call(base, 'POST', api('prepare'), { gid, trans_type: 'tcc' });
  await call(base, 'POST', api('registerBranch'), tccBranch(gid, '01', 'debit'));
  await call(base, 'POST', api('registerBranch'), tccBranch(gid, '02', 'credit'));
  assert.equal((await call(base, 'POST', api('abort'), { gid, trans_type: 'tcc' })).status, 200);
  await until(base, gid, (v) => v.state === 'compensated');
  assert.deepEqual(opsOf(gid).sort(), ['/credit-cancel cancel 02', '/debit-cancel cancel 01']);
  assert.equal((await call(base, 'GET', `${api('query')}?gid=${gid}`)).json.transaction.status, 'failed');
  const sub = await call(base, 'POST', api('submit'), { gid, trans_type: 'tcc' });
  assert.equal(sub.status, 409);
  assert.match(JSON.stringify(sub.json), /FAILURE/);
  const reg = await call(base, 'POST', api('registerBranch'), tccBranch(gid, '03', 'late'));
  assert.equal(reg.status, 409);
  assert.equal(opsOf(gid).length, 2);
});

test('a TCC left prepared past timeout_to_fail cancels its branches', async () => {
  const gid = 'dtm-tcc-timeout';
  await call(base, 'POST', api('prepare'), { gid, trans_type: 'tcc', timeout_to_fail: 1 });
  await call(base, 'POST', api('registerBranch'), tccBranch(gid, '01', 'hold'));
  await until(base, gid, (v) => v.state === 'compensated', 15_000);
  assert.deepEqual(opsOf(gid), ['/hold-cancel cancel 01']);
});

test('msg: prepare then submit runs every action once', async () => {
  const gid = 'dtm-msg-ok';
  const body = {
    gid,
    trans_type: 'msg',
    steps: [{ action: `${svc.url}/notify` }, { action: `${svc.url}/ship` }],
    payloads: ['{"n":1}', '{"n":2}'],
    query_prepared: `${svc.url}/qp-never`,
  };
  assert.equal((await call(base, 'POST', api('prepare'), body)).status, 200);
  assert.equal((await call(base, 'POST', api('submit'), { ...body, wait_result: true })).status, 200);
  assert.deepEqual(opsOf(gid), ['/notify action 01', '/ship action 02']);
  assert.equal(svc.calls.filter((c) => c.path === '/qp-never').length, 0);
});

test('msg: a prepared message is checked with query_prepared: ONGOING asks again, SUCCESS submits', async () => {
  const gid = 'dtm-msg-check';
  let asked = 0;
  const qp = await branchService((c) => {
    assert.equal(c.query.get('gid'), gid);
    asked++;
    return asked === 1
      ? { status: 425, body: '{"dtm_result":"ONGOING"}' }
      : { status: 200, body: '{"dtm_result":"SUCCESS"}' };
  });
  try {
    const body = {
      gid,
      trans_type: 'msg',
      steps: [{ action: `${svc.url}/deliver` }],
      payloads: ['{}'],
      query_prepared: `${qp.url}/check`,
      timeout_to_fail: 1,
    };
    await call(base, 'POST', api('prepare'), body);
    await until(base, gid, (v) => v.state === 'completed', 20_000);
    assert.equal(asked, 2);
    assert.deepEqual(opsOf(gid), ['/deliver action 01']);
  } finally {
    await qp.close();
  }
});

test('msg: query_prepared FAILURE aborts the message without calling its steps', async () => {
  const gid = 'dtm-msg-fail';
  const qp = await branchService(() => ({ status: 409, body: '{"dtm_result":"FAILURE"}' }));
  try {
    await call(base, 'POST', api('prepare'), {
      gid,
      trans_type: 'msg',
      steps: [{ action: `${svc.url}/never` }],
      payloads: ['{}'],
      query_prepared: `${qp.url}/check`,
      timeout_to_fail: 1,
    });
    await until(base, gid, (v) => v.dtmStatus === 'failed', 15_000);
    assert.deepEqual(opsOf(gid), []);
  } finally {
    await qp.close();
  }
});

test('all lists transactions newest first, with paging', async () => {
  const a = await call(base, 'GET', `${api('all')}?limit=2`);
  assert.equal(a.status, 200);
  assert.equal(a.json.transactions.length, 2);
  assert.ok(a.json.next_position !== '');
  const b = await call(base, 'GET', `${api('all')}?limit=2&position=${a.json.next_position}`);
  assert.equal(b.json.transactions.length, 2);
  const ids = [...a.json.transactions, ...b.json.transactions].map((t: Answer) => t.gid);
  assert.equal(new Set(ids).size, 4);
});

test('unsupported modes answer a clear error with a code', async () => {
  for (const t of ['xa', 'workflow']) {
    const r = await call(base, 'POST', api('submit'), { gid: `u-${t}`, trans_type: t });
    assert.equal(r.status, 400);
    assert.equal(r.json.code, 'DTX_UNSUPPORTED');
    assert.equal(r.json.dtm_result, 'FAILURE');
  }
  const g = await call(base, 'POST', api('submit'), {
    gid: 'u-grpc',
    trans_type: 'saga',
    protocol: 'grpc',
    steps: [step('a')],
    payloads: [''],
  });
  assert.equal(g.json.code, 'DTX_UNSUPPORTED');
  assert.equal((await call(base, 'POST', api('registerXaBranch'), {})).json.code, 'DTX_UNSUPPORTED');
  assert.equal(opsOf('u-grpc').length, 0);
});
