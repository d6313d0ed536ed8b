// `dtx serve`'s two-phase commits in the operator's views and actions
// (docs/server.md, "Operator actions on 2PC transactions"): an in-process
// server on a SQLite store and a participant that is a real node:http
// service, told per transaction how to answer PREPARE, COMMIT and ROLLBACK.
//
// Checked: 2PC transactions in `GET /v1/transactions` (filters, paging) and
// `GET /v1/transactions/:id` (every record with its time, the phase); each
// operator action where the library's rules allow it, and each refusal — a
// 409 DTX_INVALID_STATE (or a 400 for a malformed request) after which the
// view, the records and the participant's calls are exactly as before. Then,
// on a PostgreSQL store whose 2PC table a test transaction holds locked: a
// transaction whose every participant voted yes while its decision cannot be
// written shows `all voted yes, undecided` (not committed), and no operator
// action may cut in before the decision is durable.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { type RunningServer, startServer } from '../../src/server/index.ts';
import { runId } from '../adapters/helpers.ts';
import { type Answer, type BranchService, branchService, call } from './helpers.ts';

const dir = mkdtempSync(join(tmpdir(), 'dtx-serve-2pc-op-'));

/** How the participant answers one transaction's calls; changed by the tests as they go. */
interface Plan {
  prepare: 'yes' | 'no' | 'unavailable';
  commit: 'ok' | 'unavailable';
  rollback: 'ok' | 'unavailable';
}
const plans = new Map<string, Plan>();
const plan = (gid: string, p: Partial<Plan> = {}) =>
  plans.set(gid, { prepare: 'yes', commit: 'ok', rollback: 'ok', ...p }).get(gid)!;

let participant: BranchService;
let sagaService: BranchService;
let server: RunningServer;

before(async () => {
  participant = await branchService((c) => {
    const gid = (JSON.parse(c.body) as { sagaId: string }).sagaId;
    const p = plans.get(gid) ?? plan(gid);
    const op = c.path.split('/').at(-1) as 'prepare' | 'commit' | 'rollback';
    const how = p[op];
    if (how === 'unavailable') return { status: 503, body: 'down' };
    if (op === 'prepare')
      return how === 'no' ? { status: 409, body: '{}' } : { status: 200, body: '{"vote":"yes"}' };
    return { status: 200, body: '{}' };
  });
  sagaService = await branchService(() => ({ status: 200, body: '{}' }));
  server = await start();
});

const start = () =>
  startServer({
    listen: '127.0.0.1:0',
    store: { sqlite: join(dir, 'store.sqlite') },
    // Long backoffs (2.5 s to 5 s between attempts): "retry now" must not wait for them.
    timing: { retryBaseMs: 5000, retryCapMs: 5000 },
    httpTimeoutMs: 2000,
  });

after(async () => {
  await server.close();
  await participant.close();
  await sagaService.close();
  rmSync(dir, { recursive: true, force: true });
});

const get = (path: string) => call(server.url, 'GET', path);
const post = (path: string, body: unknown = {}) => call(server.url, 'POST', path, body);
const callsOf = (gid: string) =>
  participant.calls.filter((c) => c.key.startsWith(`${gid}:`)).map((c) => c.key);

/** Begins `gid` with one branch `a` at the participant; `commit` also asks to commit it (not waiting for phase two). */
async function begin(gid: string, p: Partial<Plan> = {}, commit = false): Promise<void> {
  plan(gid, p);
  assert.equal(
    (await post('/v1/2pc', { id: gid, timeoutMs: 600_000, prepareTimeoutMs: 60_000 })).status,
    201,
  );
  const b = await post(`/v1/2pc/${gid}/branches`, { branch: 'a', url: `${participant.url}/p` });
  assert.equal(b.status, 200, JSON.stringify(b.json));
  if (commit) {
    const r = await post(`/v1/2pc/${gid}/commit`);
    assert.ok(r.status === 200 || r.status === 202, JSON.stringify(r.json));
  }
}

/** Polls the one-transaction view until `done`. */
async function until(gid: string, done: (v: Answer) => boolean, ms = 10_000): Promise<Answer> {
  const deadline = Date.now() + ms;
  for (;;) {
    const r = await get(`/v1/transactions/${gid}`);
    if (r.status === 200 && done(r.json)) return r.json;
    assert.ok(Date.now() < deadline, `${gid} did not get there: ${JSON.stringify(r.json).slice(0, 600)}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** Until the participant has been called `key` at least `n` times. */
async function calledAtLeast(key: string, n: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (participant.count(key) < n) {
    assert.ok(Date.now() < deadline, `${key} was not called ${n} times`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * Asserts that `act` is refused with `status` and `code` and changes nothing:
 * the view (records included) and the participant's calls are the same
 * before and after (and 300 ms later: no call it set off). `retried`: the op
 * a failing phase two is retrying on its own backoff meanwhile, not counted.
 */
async function refused(
  gid: string,
  act: () => Promise<{ status: number; json: Answer; type: string }>,
  status: number,
  code: string,
  retried?: 'commit' | 'rollback',
) {
  const made = () => callsOf(gid).filter((k) => retried === undefined || !k.endsWith(`:${retried}`));
  const before = (await get(`/v1/transactions/${gid}`)).json;
  const callsBefore = made();
  const r = await act();
  assert.equal(r.status, status, JSON.stringify(r.json));
  assert.equal(r.json.code, code);
  assert.match(r.type, /problem\+json/);
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.deepEqual((await get(`/v1/transactions/${gid}`)).json, before);
  assert.deepEqual(made(), callsBefore);
}

/** Until `key` was called and its answer handled: the loop is waiting out its backoff. */
async function waitingAfter(key: string): Promise<void> {
  await calledAtLeast(key, 1);
  await new Promise((resolve) => setTimeout(resolve, 150));
}

const force = (reason: string, outcome?: string) => ({
  ...(outcome === undefined ? {} : { outcome }),
  force: true,
  reason,
});

describe('2PC transactions in the views', () => {
  test('GET /v1/transactions lists them with sagas, by state and type, a page at a time', async () => {
    await begin('l-open');
    await begin('l-done', {}, true);
    await begin('l-no', { prepare: 'no' }, true);
    const saga = await post('/v1/sagas', {
      id: 'l-saga',
      steps: [{ name: 's', action: { url: `${sagaService.url}/a` }, compensation: null }],
      wait: { timeoutMs: 10_000 },
    });
    assert.equal(saga.json.state, 'completed');
    await until('l-done', (v) => v.state === 'committed');
    await until('l-no', (v) => v.state === 'aborted');

    const all = (await get('/v1/transactions?limit=500')).json.transactions as Answer[];
    const ids = all.map((t) => t.id);
    for (const id of ['l-open', 'l-done', 'l-no', 'l-saga']) assert.ok(ids.includes(id), id);
    // Newest first, across types.
    assert.deepEqual(
      all.map((t) => t.startedAt),
      [...all.map((t) => t.startedAt)].sort().reverse(),
    );
    const done = all.find((t) => t.id === 'l-done');
    assert.equal(done.type, '2pc');
    assert.equal(done.state, 'committed');
    assert.equal(done.outcome, 'committed');
    assert.equal(done.phase.key, 'acknowledged');
    assert.equal(done.phase.committed, true);
    assert.equal(done.records, undefined);
    assert.equal(all.find((t) => t.id === 'l-open').phase.key, 'open');
    assert.equal(all.find((t) => t.id === 'l-saga').phase.key, 'completed');

    const twoPc = (await get('/v1/transactions?type=2pc&limit=500')).json.transactions as Answer[];
    assert.ok(twoPc.every((t) => t.type === '2pc'));
    assert.ok(!twoPc.some((t) => t.id === 'l-saga'));
    const sagas = (await get('/v1/transactions?type=saga&limit=500')).json.transactions as Answer[];
    assert.ok(!sagas.some((t) => t.type === '2pc'));
    assert.deepEqual(
      ((await get('/v1/transactions?state=aborted')).json.transactions as Answer[]).map((t) => t.id),
      ['l-no'],
    );
    const open = (await get('/v1/transactions?state=open&type=2pc')).json.transactions as Answer[];
    assert.ok(open.some((t) => t.id === 'l-open'));
    assert.ok(open.every((t) => t.state === 'open'));

    // One at a time through the cursor: every 2PC transaction once, in the listing's order.
    const paged: string[] = [];
    let cursor = '';
    for (let i = 0; i < 100; i++) {
      const r = await get(`/v1/transactions?type=2pc&limit=1${cursor === '' ? '' : `&cursor=${cursor}`}`);
      assert.equal(r.status, 200);
      paged.push(...r.json.transactions.map((t: Answer) => t.id));
      if (r.json.next === null) break;
      cursor = r.json.next;
    }
    assert.deepEqual(
      paged,
      twoPc.map((t) => t.id),
    );
    // A state no transaction type has is a 400 naming the field.
    const bad = await get('/v1/transactions?state=decided');
    assert.equal(bad.status, 400);
    assert.equal(bad.json.code, 'DTX_BAD_MESSAGE');
  });

  test('GET /v1/transactions/:id shows a 2PC transaction with every record and its time', async () => {
    const v = (await get('/v1/transactions/l-done')).json;
    assert.equal(v.type, '2pc');
    assert.equal(v.state, 'committed');
    assert.equal(v.phase.key, 'acknowledged');
    assert.deepEqual(
      v.records.map((r: Answer) => r.record.type),
      ['tpc-begin', 'tpc-branch', 'tpc-commit', 'tpc-end'],
    );
    for (const r of v.records) assert.ok(!Number.isNaN(Date.parse(r.at)), JSON.stringify(r));
    assert.deepEqual(v.branches, [
      { branch: 'a', url: `${participant.url}/p`, vote: 'yes', status: 'committed' },
    ]);
    // The same view as the 2PC API's, plus the phase.
    const { phase: _p, ...rest } = v;
    assert.deepEqual(rest, (await get('/v1/2pc/l-done')).json);
    const aborted = (await get('/v1/transactions/l-no')).json;
    assert.equal(aborted.phase.key, 'aborted');
    assert.match(aborted.reason, /voted no/);
  });
});

describe('operator actions on 2PC transactions', () => {
  test('retry sends the pending COMMIT now, not at its next backoff', async () => {
    await begin('r-commit', { commit: 'unavailable' }, true);
    await waitingAfter('r-commit:a:commit');
    plans.get('r-commit')!.commit = 'ok';
    const started = Date.now();
    const r = await post('/v1/transactions/r-commit/retry');
    assert.equal(r.status, 200, JSON.stringify(r.json));
    await until('r-commit', (v) => v.state === 'committed');
    // The backoff after the failed COMMIT is at least 2.5 s.
    const tookMs = Date.now() - started;
    assert.ok(tookMs < 2000, `the retry took ${tookMs} ms`);
    assert.equal(participant.count('r-commit:a:commit'), 2);
  });

  test('retry sends the pending ROLLBACK now', async () => {
    await begin('r-roll', { prepare: 'unavailable', rollback: 'unavailable' });
    assert.equal((await post('/v1/2pc/r-roll/abort', { reason: 'changed my mind' })).status, 202);
    await waitingAfter('r-roll:a:rollback');
    plans.get('r-roll')!.rollback = 'ok';
    const started = Date.now();
    assert.equal((await post('/v1/transactions/r-roll/retry')).status, 200);
    await until('r-roll', (v) => v.state === 'aborted');
    assert.ok(Date.now() - started < 2000);
  });

  test('retry is refused on an open transaction, an ended one, and an unknown one', async () => {
    await begin('r-open');
    await refused('r-open', () => post('/v1/transactions/r-open/retry'), 409, 'DTX_INVALID_STATE');
    await refused('l-done', () => post('/v1/transactions/l-done/retry'), 409, 'DTX_INVALID_STATE');
    const unknown = await post('/v1/transactions/r-nope/retry');
    assert.equal(unknown.status, 404);
    assert.equal(unknown.json.code, 'DTX_NOT_FOUND');
  });

  test('resolve committed ends a decided commit whose COMMIT is unanswered; it records why and stops calling', async () => {
    await begin('c-hand', { commit: 'unavailable' }, true);
    await calledAtLeast('c-hand:a:commit', 1);
    assert.equal((await get('/v1/transactions/c-hand')).json.phase.key, 'decided');
    // Refused first: a durable commit cannot be resolved as aborted.
    await refused(
      'c-hand',
      () => post('/v1/transactions/c-hand/resolve', force('it failed', 'aborted')),
      409,
      'DTX_INVALID_STATE',
      'commit',
    );
    // Malformed: no force, no reason, an outcome of another type.
    for (const [action, body, code] of [
      ['resolve', { outcome: 'committed', reason: 'x' }, 'DTX_BAD_MESSAGE'],
      ['resolve', { outcome: 'committed', force: true }, 'DTX_BAD_MESSAGE'],
      ['resolve', { outcome: 'committed', force: true, reason: '' }, 'DTX_BAD_MESSAGE'],
      ['resolve', force('x', 'completed'), 'DTX_INVALID_ARGUMENT'],
      ['abandon', { force: true }, 'DTX_BAD_MESSAGE'],
    ] as const) {
      await refused('c-hand', () => post(`/v1/transactions/c-hand/${action}`, body), 400, code, 'commit');
    }

    const calls = participant.count('c-hand:a:commit');
    const r = await post(
      '/v1/transactions/c-hand/resolve',
      force('COMMIT PREPARED run by hand on db1', 'committed'),
    );
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.equal(r.json.state, 'resolved');
    assert.equal(r.json.outcome, 'committed');
    assert.deepEqual(r.json.operator, { action: 'resolve', reason: 'COMMIT PREPARED run by hand on db1' });
    assert.equal(r.json.phase.key, 'resolved');
    const end = r.json.records.at(-1).record;
    assert.equal(end.type, 'tpc-end');
    assert.equal(end.outcome, 'committed');
    assert.deepEqual(end.operator, { action: 'resolve', reason: 'COMMIT PREPARED run by hand on db1' });
    // Its backoff was woken: a loop that did not stop would have called COMMIT at once.
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(participant.count('c-hand:a:commit'), calls);
    // Ended: every action is refused now, and the caller's abort too.
    await refused(
      'c-hand',
      () => post('/v1/transactions/c-hand/resolve', force('again', 'committed')),
      409,
      'DTX_INVALID_STATE',
    );
    await refused(
      'c-hand',
      () => post('/v1/transactions/c-hand/abandon', force('again')),
      409,
      'DTX_INVALID_STATE',
    );
    await refused('c-hand', () => post('/v1/2pc/c-hand/abort', {}), 409, 'DTX_INVALID_STATE');
  });

  test('resolve committed is refused without a durable commit: open, and decided abort', async () => {
    await begin('c-open');
    await refused(
      'c-open',
      () => post('/v1/transactions/c-open/resolve', force('x', 'committed')),
      409,
      'DTX_INVALID_STATE',
    );
    await begin('c-aborting', { prepare: 'unavailable', rollback: 'unavailable' });
    await post('/v1/2pc/c-aborting/abort', {});
    await calledAtLeast('c-aborting:a:rollback', 1);
    await refused(
      'c-aborting',
      () => post('/v1/transactions/c-aborting/resolve', force('x', 'committed')),
      409,
      'DTX_INVALID_STATE',
      'rollback',
    );
  });

  test('resolve aborted of an open transaction decides abort (forced, with the reason) and still rolls its branch back', async () => {
    await begin('a-open');
    const r = await post('/v1/transactions/a-open/resolve', force('the caller is gone', 'aborted'));
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.equal(r.json.outcome, 'aborted');
    const abort = r.json.records.find((x: Answer) => x.record.type === 'tpc-abort').record;
    assert.deepEqual(abort.operator, { action: 'resolve', reason: 'the caller is gone' });
    const v = await until('a-open', (x) => x.state === 'resolved');
    assert.equal(v.outcome, 'aborted');
    assert.equal(v.phase.committed, false);
    assert.deepEqual(callsOf('a-open'), ['a-open:a:rollback']);
    assert.equal(v.records.at(-1).record.operator.action, 'resolve');
    // Decided abort: the caller's commit is refused now.
    await refused('a-open', () => post('/v1/2pc/a-open/commit', {}), 409, 'DTX_INVALID_STATE');
  });

  test('resolve aborted while votes are being collected stops phase one and rolls back', async () => {
    await begin('a-prep', { prepare: 'unavailable' });
    const commit = post('/v1/2pc/a-prep/commit', {});
    await calledAtLeast('a-prep:a:prepare', 1);
    assert.equal((await get('/v1/transactions/a-prep')).json.phase.key, 'preparing');
    const r = await post('/v1/transactions/a-prep/resolve', force('the service is gone for good', 'aborted'));
    assert.equal(r.status, 200, JSON.stringify(r.json));
    // The caller's commit request answers the decision.
    const c = await commit;
    assert.equal(c.json.outcome, 'aborted');
    await until('a-prep', (x) => x.state === 'resolved');
    const prepares = participant.count('a-prep:a:prepare');
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(participant.count('a-prep:a:prepare'), prepares);
    assert.equal(participant.count('a-prep:a:rollback'), 1);
    assert.equal(participant.count('a-prep:a:commit'), 0);
  });

  test('resolve aborted of a transaction already aborting ends it now (its branches rolled back by hand)', async () => {
    await begin('a-roll', { prepare: 'unavailable', rollback: 'unavailable' });
    await post('/v1/2pc/a-roll/abort', {});
    await calledAtLeast('a-roll:a:rollback', 1);
    const calls = participant.count('a-roll:a:rollback');
    const r = await post('/v1/transactions/a-roll/resolve', force('ROLLBACK PREPARED by hand', 'aborted'));
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.equal(r.json.state, 'resolved');
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(participant.count('a-roll:a:rollback'), calls);
  });

  test('abandon of an open transaction decides abort and calls nothing', async () => {
    await begin('x-open');
    const r = await post('/v1/transactions/x-open/abandon', force('left to the DBA'));
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.equal(r.json.state, 'abandoned');
    assert.equal(r.json.outcome, 'aborted');
    assert.equal(r.json.phase.key, 'abandoned');
    assert.deepEqual(r.json.records.at(-1).record.operator, { action: 'abandon', reason: 'left to the DBA' });
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.deepEqual(callsOf('x-open'), []);
    await refused('x-open', () => post('/v1/2pc/x-open/commit', {}), 409, 'DTX_INVALID_STATE');
  });

  test('abandon of a decided commit keeps the commit and stops calling', async () => {
    await begin('x-commit', { commit: 'unavailable' }, true);
    await calledAtLeast('x-commit:a:commit', 1);
    const calls = participant.count('x-commit:a:commit');
    const r = await post('/v1/transactions/x-commit/abandon', force('participant decommissioned'));
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.equal(r.json.state, 'abandoned');
    assert.equal(r.json.outcome, 'committed');
    // The branch is left as it stood: prepared, for the operator to commit.
    assert.equal(r.json.branches[0].status, 'prepared');
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(participant.count('x-commit:a:commit'), calls);
    await refused('x-commit', () => post('/v1/2pc/x-commit/abort', {}), 409, 'DTX_INVALID_STATE');
    await refused('x-commit', () => post('/v1/transactions/x-commit/retry'), 409, 'DTX_INVALID_STATE');
  });

  test("after a restart, the operators' decisions and ends are read back from the log", async () => {
    // Decided abort by an operator, its ROLLBACK not yet acknowledged when the server stops.
    await begin('p-roll', { rollback: 'unavailable' });
    assert.equal(
      (await post('/v1/transactions/p-roll/resolve', force('caller gone', 'aborted'))).status,
      200,
    );
    await calledAtLeast('p-roll:a:rollback', 1);
    await server.close();
    server = await start();
    const abandoned = (await get('/v1/transactions/x-open')).json;
    assert.deepEqual(
      [abandoned.state, abandoned.outcome, abandoned.operator],
      ['abandoned', 'aborted', { action: 'abandon', reason: 'left to the DBA' }],
    );
    const resolved = (await get('/v1/transactions/c-hand')).json;
    assert.deepEqual(
      [resolved.state, resolved.outcome, resolved.phase.key],
      ['resolved', 'committed', 'resolved'],
    );
    // The restart sends the ROLLBACK again and ends it as the operator resolved it.
    const pending = (await get('/v1/transactions/p-roll')).json;
    assert.deepEqual([pending.state, pending.outcome], ['aborting', 'aborted']);
    assert.deepEqual(pending.operator, { action: 'resolve', reason: 'caller gone' });
    plans.get('p-roll')!.rollback = 'ok';
    assert.equal((await post('/v1/transactions/p-roll/retry')).status, 200);
    const v = await until('p-roll', (x) => x.state === 'resolved');
    assert.equal(v.outcome, 'aborted');
    assert.equal(participant.count('p-roll:a:commit'), 0);
    // A commit asked now answers the outcome (after a restart the server no longer knows who asked the abort).
    const late = await post('/v1/2pc/p-roll/commit', {});
    assert.equal(late.json.outcome, 'aborted');
    assert.equal(participant.count('p-roll:a:commit'), 0);
  });

  test('every action is in the OpenAPI document with the 2PC outcomes and states', async () => {
    const doc = (await get('/openapi.json')).json;
    const resolve = doc.paths['/v1/transactions/{id}/resolve'].post;
    assert.match(JSON.stringify(resolve), /committed/);
    assert.match(JSON.stringify(doc.paths['/v1/transactions'].get), /"2pc"/);
  });
});

describe('a 2PC transaction whose votes are all yes but whose decision is not yet durable', () => {
  const db = `dtx_w1_tpc_${runId()
    .replace(/[^A-Za-z0-9]/g, '')
    .slice(-10)}`.toLowerCase();
  const admin = new pg.Client({ connectionString: 'postgres://postgres@127.0.0.1:5432/postgres' });
  let pgServer: RunningServer;

  before(async () => {
    await admin.connect();
    await admin.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
    await admin.query(`CREATE DATABASE ${db}`);
    pgServer = await startServer({
      listen: '127.0.0.1:0',
      store: { postgres: `postgres://postgres@127.0.0.1:5432/${db}` },
      serverId: 'w1',
      timing: { retryBaseMs: 20, retryCapMs: 200 },
      httpTimeoutMs: 2000,
    });
  });

  after(async () => {
    await pgServer?.close();
    await admin.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`).catch(() => undefined);
    await admin.end();
  });

  test('is shown as "all voted yes, undecided", not committed, and no operator action cuts in', async () => {
    const pgGet = (path: string) => call(pgServer.url, 'GET', path);
    const pgPost = (path: string, body: unknown = {}) => call(pgServer.url, 'POST', path, body);
    plan('d-1');
    assert.equal((await pgPost('/v1/2pc', { id: 'd-1' })).status, 201);
    await pgPost('/v1/2pc/d-1/branches', { branch: 'a', url: `${participant.url}/p` });
    await pgPost('/v1/2pc/d-1/branches', { branch: 'b', url: `${participant.url}/p` });
    // The decision is the next record of the 2PC log: hold its table so that it cannot be written.
    const holder = new pg.Client({ connectionString: `postgres://postgres@127.0.0.1:5432/${db}` });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('LOCK TABLE dtx_serve_twopc IN EXCLUSIVE MODE');
      const commit = pgPost('/v1/2pc/d-1/commit', {});
      const deadline = Date.now() + 10_000;
      let v: Answer;
      for (;;) {
        v = (await pgGet('/v1/transactions/d-1')).json;
        if (v.branches.every((b: Answer) => b.vote === 'yes')) break;
        assert.ok(Date.now() < deadline, JSON.stringify(v));
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      // Let the decision's write reach the lock.
      await new Promise((resolve) => setTimeout(resolve, 300));
      v = (await pgGet('/v1/transactions/d-1')).json;
      assert.equal(v.state, 'preparing');
      assert.equal(v.outcome, null);
      assert.equal(v.phase.key, 'all-voted-yes');
      assert.equal(v.phase.committed, false);
      assert.doesNotMatch(v.phase.label, /commit/);
      assert.ok(!v.records.some((r: Answer) => r.record.type === 'tpc-commit'), 'no decision record yet');
      const listed = (await pgGet('/v1/transactions?type=2pc')).json.transactions.find(
        (t: Answer) => t.id === 'd-1',
      );
      assert.equal(listed.phase.key, 'all-voted-yes');
      const o = (await pgGet('/v1/overview')).json;
      assert.ok(o.attention.some((x: Answer) => x.id === 'd-1' && x.phase.committed === false));
      assert.equal(participant.count('d-1:a:commit'), 0);
      // No operator action may decide while the commit decision is being written: each is refused, nothing changes.
      for (const [path, body] of [
        ['resolve', force('x', 'aborted')],
        ['abandon', force('x')],
        ['resolve', force('x', 'committed')],
      ] as const) {
        const r = await pgPost(`/v1/transactions/d-1/${path}`, body);
        assert.equal(r.status, 409, JSON.stringify(r.json));
        assert.equal(r.json.code, 'DTX_INVALID_STATE');
      }
      assert.equal((await pgGet('/v1/transactions/d-1')).json.phase.key, 'all-voted-yes');
      await holder.query('COMMIT');
      const decided = await commit;
      assert.equal(decided.json.outcome, 'committed');
      const deadline2 = Date.now() + 10_000;
      for (;;) {
        v = (await pgGet('/v1/transactions/d-1')).json;
        if (v.state === 'committed') break;
        assert.ok(Date.now() < deadline2, JSON.stringify(v));
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      assert.equal(v.phase.key, 'acknowledged');
      assert.equal(participant.count('d-1:a:commit'), 1);
      assert.equal(participant.count('d-1:b:commit'), 1);
    } finally {
      await holder.query('ROLLBACK').catch(() => undefined);
      await holder.end();
    }
  });
});
