// The native API v1 of `dtx serve` against real node:http branch services
// (dtx's HTTP branch protocol: one Idempotency-Key per call), plus the
// security rules and the bad inputs that must each be a 4xx problem with a
// stable code that changes nothing.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { type RunningServer, startServer } from '../../src/server/index.ts';
import { type Answer, type BranchService, branchService, call, serve, until } from './helpers.ts';

const dir = mkdtempSync(join(tmpdir(), 'dtx-serve-native-'));
const token = 'test-token-0123456789abcdef';
const auth = { authorization: `Bearer ${token}` };
let server: RunningServer;
let base: string;
let svc: BranchService;

before(async () => {
  svc = await branchService((c) =>
    c.path === '/refuse' && c.op === 'action'
      ? { status: 409, body: '{"reason":"sold out"}' }
      : { status: 200 },
  );
  server = await serve(join(dir, 'store.sqlite'), token);
  base = server.url;
});
after(async () => {
  await server.close();
  await svc.close();
  rmSync(dir, { recursive: true, force: true });
});

const post = (path: string, body: unknown, headers: Record<string, string> = auth) =>
  call(base, 'POST', path, body, headers);
const get = (path: string) => call(base, 'GET', path, undefined, auth);
const sagaBody = (id: string, names: string[], extra: Record<string, unknown> = {}) => ({
  id,
  steps: names.map((n) => ({
    name: n,
    action: { url: `${svc.url}/${n}` },
    compensation: { url: `${svc.url}/${n}-undo` },
    payload: { n },
  })),
  ...extra,
});
const keysOf = (id: string) => svc.calls.filter((c) => c.key.startsWith(`${id}:`)).map((c) => c.key);

test('a saga completes; wait answers with the end; the same id and body again runs nothing', async () => {
  const r = await post('/v1/sagas', sagaBody('n-ok', ['debit', 'credit'], { wait: { timeoutMs: 10_000 } }));
  assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.equal(r.json.state, 'completed');
  assert.deepEqual(keysOf('n-ok'), ['n-ok:debit:action', 'n-ok:credit:action']);
  assert.deepEqual(JSON.parse(svc.calls.find((c) => c.key === 'n-ok:debit:action')!.body).payload, {
    n: 'debit',
  });
  const again = await post('/v1/sagas', sagaBody('n-ok', ['debit', 'credit']));
  assert.equal(again.status, 200);
  assert.equal(svc.count('n-ok:debit:action'), 1);
  const shown = await get('/v1/transactions/n-ok');
  assert.equal(shown.json.type, 'saga');
  assert.ok(shown.json.records.length >= 4);
  for (const rec of shown.json.records) assert.match(rec.at, /^\d{4}-\d\d-\d\dT/);
});

test('same id with a different body is 409 DTX_DUPLICATE_GID and changes nothing', async () => {
  const r = await post('/v1/sagas', sagaBody('n-ok', ['debit', 'other']));
  assert.equal(r.status, 409);
  assert.equal(r.json.code, 'DTX_DUPLICATE_GID');
  assert.equal(keysOf('n-ok').length, 2);
});

test('a refused action compensates the steps before it, newest first, with the reason', async () => {
  await post('/v1/sagas', sagaBody('n-back', ['a', 'b', 'refuse']));
  const v = await until(base, 'n-back', (x) => x.state === 'compensated', 20_000, auth);
  assert.match(v.reason, /sold out/);
  assert.deepEqual(keysOf('n-back'), [
    'n-back:a:action',
    'n-back:b:action',
    'n-back:refuse:action',
    'n-back:b:compensation',
    'n-back:a:compensation',
  ]);
});

test('TCC through the native API: begin, register, submit confirms; abort cancels', async () => {
  assert.equal((await post('/v1/tcc', { id: 'n-tcc' })).status, 201);
  const reg = await post('/v1/tcc/n-tcc/branches', {
    branch: 'hold',
    confirm: `${svc.url}/c`,
    cancel: `${svc.url}/x`,
    payload: { amount: 5 },
  });
  assert.equal(reg.status, 200, JSON.stringify(reg.json));
  const s = await post('/v1/tcc/n-tcc/submit', { wait: { timeoutMs: 10_000 } });
  assert.equal(s.json.state, 'completed');
  assert.deepEqual(keysOf('n-tcc'), ['n-tcc:hold:confirm']);
  await post('/v1/tcc', { id: 'n-tcc2' });
  await post('/v1/tcc/n-tcc2/branches', { branch: 'hold', confirm: `${svc.url}/c`, cancel: `${svc.url}/x` });
  await post('/v1/tcc/n-tcc2/abort', { reason: 'changed my mind' });
  await until(base, 'n-tcc2', (x) => x.state === 'compensated', 20_000, auth);
  assert.deepEqual(keysOf('n-tcc2'), ['n-tcc2:hold:cancel']);
});

test('listing filters by type and state and pages with a cursor', async () => {
  const all = await get('/v1/transactions?type=saga&limit=1');
  assert.equal(all.status, 200);
  assert.equal(all.json.transactions.length, 1);
  assert.ok(all.json.next);
  const next = await get(`/v1/transactions?type=saga&limit=1&cursor=${all.json.next}`);
  assert.notEqual(next.json.transactions[0].id, all.json.transactions[0].id);
  const comp = await get('/v1/transactions?state=compensated');
  assert.ok(comp.json.transactions.every((t: Answer) => t.state === 'compensated'));
  assert.ok(comp.json.transactions.some((t: Answer) => t.id === 'n-back'));
});

test('operator actions: abandon needs force and a reason; refused on an ended saga', async () => {
  const noForce = await post('/v1/transactions/n-ok/abandon', { reason: 'x' });
  assert.equal(noForce.status, 400);
  const ended = await post('/v1/transactions/n-ok/abandon', { force: true, reason: 'x' });
  assert.equal(ended.status, 409);
  assert.equal(ended.json.code, 'DTX_INVALID_STATE');
  assert.equal((await post('/v1/transactions/nope/retry', {})).json.code, 'DTX_NOT_FOUND');
});

test('openapi.json documents every route from the schemas; /health needs no token', async () => {
  const h = await call(base, 'GET', '/health');
  assert.equal(h.status, 200);
  const doc = await get('/openapi.json');
  assert.equal(doc.json.openapi, '3.1.0');
  assert.ok(doc.json.paths['/v1/sagas'].post.requestBody.content['application/json'].schema.properties.steps);
  assert.ok(doc.json.paths['/api/dtmsvr/submit'].post);
  assert.ok(doc.json.paths['/v1/transactions/{id}'].get);
});

/** Each bad request: its status and code, and that no branch was called and nothing was stored. */
test('bad input: each is a 4xx problem with a code, and changes nothing', async () => {
  const callsBefore = svc.calls.length;
  const listBefore = (await get('/v1/transactions?limit=500')).json.transactions.length;
  const cases: [string, () => ReturnType<typeof call>, number, string][] = [
    [
      'unknown trans_type',
      () => post('/api/dtmsvr/submit', { gid: 'b1', trans_type: 'bogus' }),
      400,
      'DTX_INVALID_ARGUMENT',
    ],
    [
      'missing gid',
      () => post('/api/dtmsvr/submit', { trans_type: 'saga', steps: [] }),
      400,
      'DTX_BAD_MESSAGE',
    ],
    ['missing id (native)', () => post('/v1/sagas', { steps: [] }), 400, 'DTX_BAD_MESSAGE'],
    [
      'bad gid characters',
      () => post('/v1/sagas', { ...sagaBody('x', ['a']), id: 'bad gid!' }),
      400,
      'DTX_BAD_MESSAGE',
    ],
    [
      'duplicate gid, other body',
      () => post('/v1/sagas', sagaBody('n-back', ['zzz'])),
      409,
      'DTX_DUPLICATE_GID',
    ],
    ['empty steps (native)', () => post('/v1/sagas', { id: 'b2', steps: [] }), 400, 'DTX_BAD_MESSAGE'],
    [
      'empty steps (DTM saga)',
      () => post('/api/dtmsvr/submit', { gid: 'b3', trans_type: 'saga', steps: [], payloads: [] }),
      400,
      'DTX_INVALID_ARGUMENT',
    ],
    [
      'file: URL (native)',
      () =>
        post('/v1/sagas', {
          id: 'b4',
          steps: [{ name: 'a', action: { url: 'file:///etc/passwd' }, compensation: null }],
        }),
      400,
      'DTX_BAD_MESSAGE',
    ],
    [
      'ftp: URL (DTM)',
      () =>
        post('/api/dtmsvr/submit', {
          gid: 'b5',
          trans_type: 'saga',
          steps: [{ action: 'ftp://x/y', compensate: 'http://x/z' }],
          payloads: [''],
        }),
      400,
      'DTX_INVALID_ARGUMENT',
    ],
    [
      'unknown field',
      () => post('/v1/sagas', { ...sagaBody('b6', ['a']), extra: 1 }),
      400,
      'DTX_BAD_MESSAGE',
    ],
    ['malformed JSON', () => post('/v1/sagas', '{"id": "b7", '), 400, 'DTX_BAD_MESSAGE'],
    [
      'body over the limit',
      () =>
        post('/v1/sagas', {
          id: 'b8',
          steps: [
            { name: 'a', action: { url: 'http://x/' }, compensation: null, payload: 'x'.repeat(1_100_000) },
          ],
        }),
      413,
      'DTX_INVALID_ARGUMENT',
    ],
    [
      'wrong token',
      () => post('/v1/sagas', sagaBody('b9', ['a']), { authorization: 'Bearer wrong-token-wrong-token!!' }),
      401,
      'DTX_UNAUTHORIZED',
    ],
    ['no token', () => post('/v1/sagas', sagaBody('b10', ['a']), {}), 401, 'DTX_UNAUTHORIZED'],
    [
      'submit after abort',
      () => post('/api/dtmsvr/submit', { gid: 'n-tcc2', trans_type: 'tcc' }),
      409,
      'DTX_INVALID_STATE',
    ],
    [
      'abort after submit',
      () => post('/api/dtmsvr/abort', { gid: 'n-tcc', trans_type: 'tcc' }),
      409,
      'DTX_INVALID_STATE',
    ],
    [
      'register on a finished transaction',
      () =>
        post('/v1/tcc/n-tcc/branches', { branch: 'late', confirm: `${svc.url}/c`, cancel: `${svc.url}/x` }),
      409,
      'DTX_INVALID_STATE',
    ],
    [
      'register on an unknown transaction',
      () =>
        post('/api/dtmsvr/registerBranch', {
          gid: 'nope',
          trans_type: 'tcc',
          branch_id: '01',
          confirm: `${svc.url}/c`,
          cancel: `${svc.url}/x`,
        }),
      404,
      'DTX_NOT_FOUND',
    ],
    [
      'order graph naming no step',
      () =>
        post('/v1/sagas', {
          id: 'b11',
          steps: [{ name: 'a', action: { url: 'http://x/' }, compensation: null, after: ['ghost'] }],
        }),
      400,
      'DTX_INVALID_ARGUMENT',
    ],
    [
      'a saga gid submitted as tcc',
      () => post('/api/dtmsvr/submit', { gid: 'n-ok', trans_type: 'tcc' }),
      409,
      'DTX_DUPLICATE_GID',
    ],
    ['unknown route', () => get('/v1/nothing'), 404, 'DTX_NOT_FOUND'],
  ];
  for (const [name, run, status, code] of cases) {
    const r = await run();
    assert.equal(r.status, status, `${name}: ${JSON.stringify(r.json).slice(0, 300)}`);
    assert.equal(r.json.code, code, name);
    assert.match(r.type, /application\/problem\+json/, name);
  }
  // The 400 for a schema violation names the field.
  const named = await post('/v1/sagas', {
    id: 'b12',
    steps: [{ name: 'a', action: { url: 'gopher://x' }, compensation: null }],
  });
  assert.match(named.json.detail, /steps\/0\/action\/url/);
  assert.equal(svc.calls.length, callsBefore);
  assert.equal((await get('/v1/transactions?limit=500')).json.transactions.length, listBefore);
});

test('a non-loopback --listen without a token is refused before anything opens', async () => {
  await assert.rejects(
    startServer({ listen: '0.0.0.0:0', store: { sqlite: join(dir, 'never.sqlite') } }),
    (e: Answer) => e.code === 'DTX_INVALID_ARGUMENT' && /loopback/.test(e.message),
  );
});

test('a branch that redirects is not followed: the action is retried, then the saga compensates', async () => {
  const target = await branchService(() => ({ status: 200 }));
  const redirecting = await branchService(() => ({ status: 302, body: '' }));
  try {
    const r = await post('/v1/sagas', {
      id: 'n-redirect',
      steps: [
        { name: 'ok', action: { url: `${target.url}/a` }, compensation: { url: `${target.url}/a-undo` } },
        {
          name: 'moved',
          action: { url: `${redirecting.url}/b` },
          compensation: { url: `${target.url}/b-undo` },
        },
      ],
      retry: { actionAttemptsMax: 2 },
    });
    assert.equal(r.status, 202);
    await until(base, 'n-redirect', (x) => x.state === 'compensated', 30_000, auth);
    // The core counts attempts as it schedules them; the redirect was called and never followed.
    assert.ok(redirecting.calls.length >= 1);
    const v = (await get('/v1/transactions/n-redirect')).json;
    assert.match(v.reason, /no answer after 2 attempts/);
    assert.equal(target.calls.filter((c) => c.path === '/a-undo').length, 1);
    assert.equal(target.calls.filter((c) => c.path === '/b-undo').length, 0);
  } finally {
    await target.close();
    await redirecting.close();
  }
});
