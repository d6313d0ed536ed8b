// Property test over every route of `dtx serve`: random paths, ids, query
// strings and bodies (arbitrary JSON, and valid bodies with one field
// replaced by an arbitrary value) never get a 5xx, and the server keeps
// answering. Every error answer is a problem document with a code.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import fc from 'fast-check';
import type { RunningServer } from '../../src/server/index.ts';
import { call, serve } from './helpers.ts';

const dir = mkdtempSync(join(tmpdir(), 'dtx-serve-fuzz-'));
const token = 'fuzz-token-0123456789abcdef';
let server: RunningServer;
before(async () => {
  server = await serve(join(dir, 'store.sqlite'), token);
});
after(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

const dead = 'http://127.0.0.1:9/x';
const samples: Record<string, unknown> = {
  'POST /v1/sagas': { id: 'f1', steps: [{ name: 'a', action: { url: dead }, compensation: { url: dead } }] },
  'POST /v1/tcc': { id: 'f2', timeoutMs: 60_000 },
  'POST /v1/tcc/:id/branches': { branch: 'b', confirm: dead, cancel: dead, payload: 1 },
  'POST /v1/tcc/:id/submit': { wait: { timeoutMs: 0 } },
  'POST /v1/tcc/:id/abort': { reason: 'r' },
  'POST /v1/transactions/:id/retry': {},
  'POST /v1/transactions/:id/resolve': { outcome: 'completed', force: true, reason: 'r' },
  'POST /v1/transactions/:id/abandon': { force: true, reason: 'r' },
  'POST /v1/2pc': { id: 'f5', timeoutMs: 60_000, prepareTimeoutMs: 50, requestTimeoutMs: 50 },
  'POST /v1/2pc/:id/branches': { branch: 'b', url: dead },
  'POST /v1/2pc/:id/commit': { wait: { timeoutMs: 0 } },
  'POST /v1/2pc/:id/abort': { reason: 'r' },
  'GET /v1/2pc/:id': undefined,
  'POST /api/dtmsvr/prepare': { gid: 'f3', trans_type: 'tcc', timeout_to_fail: 60 },
  'POST /api/dtmsvr/submit': {
    gid: 'f4',
    trans_type: 'saga',
    steps: [{ action: dead, compensate: dead }],
    payloads: ['{}'],
    custom_data: '{"concurrent":true,"orders":{}}',
  },
  'POST /api/dtmsvr/abort': { gid: 'f3', trans_type: 'tcc' },
  'POST /api/dtmsvr/registerBranch': {
    gid: 'f3',
    trans_type: 'tcc',
    branch_id: '01',
    confirm: dead,
    cancel: dead,
    data: '',
  },
  'POST /api/dtmsvr/registerTccBranch': {
    gid: 'f3',
    trans_type: 'tcc',
    branch_id: '02',
    confirm: dead,
    cancel: dead,
  },
  'POST /api/dtmsvr/registerXaBranch': {},
  'GET /v1/transactions/:id': undefined,
  'GET /v1/transactions': undefined,
  'GET /api/dtmsvr/newGid': undefined,
  'GET /api/dtmsvr/query': undefined,
  'GET /api/dtmsvr/all': undefined,
  'GET /metrics': undefined,
};
const routes = Object.keys(samples);
const ids = fc.oneof(fc.constantFrom('f1', 'f2', 'f3', 'f4', 'f5', 'nope'), fc.string({ maxLength: 60 }));

/** A valid sample with one top-level field replaced (or removed) by something arbitrary. */
function mutated(sample: unknown): fc.Arbitrary<unknown> {
  if (typeof sample !== 'object' || sample === null) return fc.jsonValue();
  const keys = Object.keys(sample);
  if (keys.length === 0) return fc.jsonValue();
  return fc
    .tuple(fc.constantFrom(...keys), fc.option(fc.jsonValue(), { nil: undefined }))
    .map(([k, v]) => ({ ...sample, [k]: v }));
}

const request = fc.constantFrom(...routes).chain((route) =>
  fc.record({
    route: fc.constant(route),
    id: ids,
    query: fc.dictionary(
      fc.constantFrom('gid', 'limit', 'cursor', 'position', 'state', 'type', 'x'),
      // Arbitrary text, and text that passes the schemas' patterns (to reach the handlers).
      fc.oneof(
        fc.string({ maxLength: 30 }),
        fc.stringMatching(/^[A-Za-z0-9_-]{1,30}$/),
        fc.constantFrom('saga', 'tcc', 'running', 'f1', '0', '1', '999'),
      ),
      { maxKeys: 3 },
    ),
    body: fc.oneof(
      mutated(samples[route]),
      fc.jsonValue(),
      fc.string({ maxLength: 200 }),
      fc.constant(undefined),
    ),
    authorized: fc.boolean(),
  }),
);

test('no route answers 5xx to anything, and the server keeps answering', async () => {
  await fc.assert(
    fc.asyncProperty(request, async ({ route, id, query, body, authorized }) => {
      const [method, path] = route.split(' ') as [string, string];
      const qs = new URLSearchParams(query).toString();
      const url = `${path.replace(':id', encodeURIComponent(id))}${qs === '' ? '' : `?${qs}`}`;
      const headers: Record<string, string> = authorized ? { authorization: `Bearer ${token}` } : {};
      const sent =
        method === 'POST' ? (typeof body === 'string' ? body : JSON.stringify(body ?? null)) : undefined;
      const r = await call(server.url, method, url, sent, headers);
      assert.ok(
        r.status < 500,
        `${method} ${url} ${String(sent).slice(0, 200)} → ${r.status} ${JSON.stringify(r.json).slice(0, 300)}`,
      );
      if (r.status >= 400) assert.equal(typeof r.json.code, 'string');
    }),
    { numRuns: 400 },
  );
  assert.equal((await call(server.url, 'GET', '/health')).status, 200);
});
