// Two-phase commit across services: `dtx serve` as the coordinator, and two
// participant services built on `dtx/participant` — one over a throwaway
// PostgreSQL cluster (max_prepared_transactions > 0), one over the machine's
// MariaDB (a database of its own, dropped afterwards). Each service is a real
// node:http server with a business endpoint (`/work`, which writes a row in
// the branch's held-open transaction) and the participant endpoints.
//
// Checked: the commit path (both rows there), a participant voting no (a
// deferred unique constraint fails PREPARE TRANSACTION: nothing anywhere), a
// real `dtx serve` process SIGKILLed once the commit decision is durable and
// before any COMMIT was carried out (the restarted server finishes the
// commit, after the PostgreSQL participant itself restarted too), and killed
// before the decision with both branches prepared (the restarted server rolls
// both back: pg_prepared_xacts and XA RECOVER are empty), and bad input.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { createMariaDbAdapter, type MariaDbAdapter } from '../../src/adapters/mariadb.ts';
import { createPostgresAdapter, type PostgresAdapter } from '../../src/adapters/postgres.ts';
import { createParticipant } from '../../src/participant/index.ts';
import type { RunningServer } from '../../src/server/index.ts';
import { mariaAdmin, runId } from '../adapters/helpers.ts';
import { type PgCluster, startPgCluster } from '../adapters/pg-cluster.ts';
import { type Answer, call, kill, serve, startServe } from './helpers.ts';
import { type Hook, type ParticipantService, participantService } from './participants.ts';

const run = runId()
  .replace(/[^A-Za-z0-9]/g, '')
  .slice(-10);
const mariaDb = `dtx_w3_tpc_${run}`;
const dir = mkdtempSync(join(tmpdir(), 'dtx-serve-2pc-'));

let cluster: PgCluster;
let pgAdapter: PostgresAdapter;
let mariaAdapter: MariaDbAdapter;
let pgAdmin: pg.Client;
let maria: mysql.Connection;
let pgSvc: ParticipantService;
let mariaSvc: ParticipantService;
const mariaConnection = {
  host: '127.0.0.1',
  port: 3306,
  user: 'root',
  database: mariaDb,
  connectionLimit: 8,
};

async function pgRows(gid: string): Promise<string[]> {
  const r = await pgAdmin.query('SELECT id FROM stock_moves WHERE gid = $1 ORDER BY id', [gid]);
  return r.rows.map((x: { id: string }) => x.id);
}
async function mariaRows(gid: string): Promise<string[]> {
  const [rows] = await maria.query('SELECT id FROM payments WHERE gid = ? ORDER BY id', [gid]);
  return (rows as { id: string }[]).map((x) => x.id);
}
async function pgPrepared(gid: string): Promise<string[]> {
  const r = await pgAdmin.query('SELECT gid FROM pg_prepared_xacts WHERE gid LIKE $1', [`dtxp.${gid}.%`]);
  return r.rows.map((x: { gid: string }) => x.gid);
}
async function xaRecover(gid: string): Promise<string[]> {
  const [rows] = await maria.query('XA RECOVER');
  return (rows as { data: Buffer | string }[])
    .map((x) => String(x.data))
    .filter((d) => d.startsWith(`dtxp.${gid}.`));
}

/** The caller's side: begin, have both services work, register both branches. */
async function prepareWork(url: string, gid: string, pgId = `${gid}-s`): Promise<void> {
  const begin = await call(url, 'POST', '/v1/2pc', { id: gid });
  assert.equal(begin.status, 201, JSON.stringify(begin.json));
  for (const [svc, id] of [
    [pgSvc, pgId],
    [mariaSvc, `${gid}-p`],
  ] as const) {
    const w = await fetch(`${svc.url.replace(/\/tpc$/, '')}/work`, {
      method: 'POST',
      body: JSON.stringify({ gid, id, amount: 30 }),
    });
    assert.equal(w.status, 200, await w.text());
  }
  for (const [branch, svc] of [
    ['stock', pgSvc],
    ['pay', mariaSvc],
  ] as const) {
    const r = await call(url, 'POST', `/v1/2pc/${gid}/branches`, { branch, url: svc.url });
    assert.equal(r.status, 200, JSON.stringify(r.json));
  }
}

async function untilState(url: string, gid: string, state: string, ms = 60_000): Promise<Answer> {
  const deadline = Date.now() + ms;
  for (;;) {
    const r = await call(url, 'GET', `/v1/2pc/${gid}`);
    if (r.status === 200 && r.json.state === state) return r.json;
    if (Date.now() > deadline)
      throw new Error(`${gid} never ${state}: ${JSON.stringify(r.json).slice(0, 800)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function newPgParticipant(): Promise<void> {
  pgAdapter = await createPostgresAdapter({ connection: { ...cluster.connection, max: 8 } });
  pgSvc.participant = createParticipant({ adapter: pgAdapter });
}

before(async () => {
  cluster = await startPgCluster();
  pgAdmin = new pg.Client(cluster.connection);
  await pgAdmin.connect();
  // Deferred: a duplicate id passes the business call and fails at PREPARE TRANSACTION (a NO vote).
  await pgAdmin.query(
    'CREATE TABLE stock_moves (id text NOT NULL, gid text NOT NULL, qty int NOT NULL, ' +
      'CONSTRAINT stock_moves_id UNIQUE (id) DEFERRABLE INITIALLY DEFERRED)',
  );
  await mariaAdmin(`CREATE DATABASE ${mariaDb}`);
  maria = await mysql.createConnection(mariaConnection);
  await maria.query(
    'CREATE TABLE payments (id varchar(80) PRIMARY KEY, gid varchar(80) NOT NULL, amount int NOT NULL) ENGINE=InnoDB',
  );
  pgAdapter = await createPostgresAdapter({ connection: { ...cluster.connection, max: 8 } });
  mariaAdapter = await createMariaDbAdapter({ connection: mariaConnection });
  pgSvc = await participantService(createParticipant({ adapter: pgAdapter }), 'stock', (b, gid, id, amount) =>
    b.query('INSERT INTO stock_moves (id, gid, qty) VALUES ($1, $2, $3)', [id, gid, amount]),
  );
  mariaSvc = await participantService(
    createParticipant({ adapter: mariaAdapter }),
    'pay',
    (b, gid, id, amount) =>
      b.query('INSERT INTO payments (id, gid, amount) VALUES (?, ?, ?)', [id, gid, amount]),
  );
});

after(async () => {
  await pgSvc?.participant.close();
  await mariaSvc?.participant.close();
  await pgSvc?.close();
  await mariaSvc?.close();
  await pgAdapter?.close();
  await mariaAdapter?.close();
  // A failed run may leave this run's XA branches prepared: they would block DROP DATABASE.
  if (maria !== undefined) {
    const [rows] = await maria.query('XA RECOVER');
    for (const { data } of rows as { data: Buffer | string }[]) {
      const xid = String(data);
      if (/^dtxp\.[A-Za-z0-9_.:-]+$/.test(xid) && xid.includes(`-${run}.`)) {
        await maria.query(`XA ROLLBACK '${xid}'`).catch(() => undefined);
      }
    }
  }
  await pgAdmin?.end().catch(() => undefined);
  await maria?.end().catch(() => undefined);
  await mariaAdmin(`DROP DATABASE IF EXISTS ${mariaDb}`).catch(() => undefined);
  await cluster?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('2PC across services, server in-process', () => {
  let server: RunningServer;
  before(async () => {
    server = await serve(join(dir, 'inproc.sqlite'));
  });
  after(async () => {
    await server.close();
  });

  test('commit: both services prepare, the decision is logged, both rows are committed', async () => {
    const gid = `c-${run}`;
    await prepareWork(server.url, gid);
    // Held open, not yet visible.
    assert.deepEqual(await pgRows(gid), []);
    assert.deepEqual(await mariaRows(gid), []);
    const r = await call(server.url, 'POST', `/v1/2pc/${gid}/commit`, { wait: { timeoutMs: 20_000 } });
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.equal(r.json.state, 'committed');
    assert.equal(r.json.outcome, 'committed');
    assert.deepEqual(
      r.json.branches.map((b: Answer) => [b.branch, b.vote, b.status]),
      [
        ['stock', 'yes', 'committed'],
        ['pay', 'yes', 'committed'],
      ],
    );
    assert.deepEqual(
      r.json.records.map((x: Answer) => x.record.type),
      ['tpc-begin', 'tpc-branch', 'tpc-branch', 'tpc-commit', 'tpc-end'],
    );
    assert.deepEqual(await pgRows(gid), [`${gid}-s`]);
    assert.deepEqual(await mariaRows(gid), [`${gid}-p`]);
    assert.deepEqual(await pgPrepared(gid), []);
    assert.deepEqual(await xaRecover(gid), []);
    // A repeated commit answers the same; a repeated begin with the same body too.
    const again = await call(server.url, 'POST', `/v1/2pc/${gid}/commit`, {});
    assert.equal(again.status, 200);
    assert.equal(again.json.outcome, 'committed');
    assert.equal((await call(server.url, 'POST', '/v1/2pc', { id: gid })).status, 200);
  });

  test('a participant voting no (PREPARE TRANSACTION fails a deferred constraint): nothing anywhere', async () => {
    const gid = `n-${run}`;
    await pgAdmin.query('INSERT INTO stock_moves (id, gid, qty) VALUES ($1, $2, 1)', [`dup-${run}`, 'other']);
    await prepareWork(server.url, gid, `dup-${run}`);
    const r = await call(server.url, 'POST', `/v1/2pc/${gid}/commit`, { wait: { timeoutMs: 20_000 } });
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.equal(r.json.outcome, 'aborted');
    assert.equal(r.json.state, 'aborted');
    assert.match(r.json.reason, /stock voted no/);
    const stock = r.json.branches.find((b: Answer) => b.branch === 'stock');
    assert.equal(stock.vote, 'no');
    assert.deepEqual(await pgRows(gid), []);
    assert.deepEqual(await mariaRows(gid), []);
    assert.deepEqual(await pgPrepared(gid), []);
    assert.deepEqual(await xaRecover(gid), []);
    // The MariaDB branch was rolled back, whether or not it had prepared; commit is no longer possible to undo.
    assert.equal((await call(server.url, 'POST', `/v1/2pc/${gid}/abort`, {})).status, 200);
  });

  test('abort by request rolls back the held-open work; commit afterwards is refused', async () => {
    const gid = `a-${run}`;
    await prepareWork(server.url, gid);
    const r = await call(server.url, 'POST', `/v1/2pc/${gid}/abort`, { reason: 'changed my mind' });
    assert.ok(r.status === 200 || r.status === 202, JSON.stringify(r.json));
    const v = await untilState(server.url, gid, 'aborted');
    assert.equal(v.reason, 'changed my mind');
    const c = await call(server.url, 'POST', `/v1/2pc/${gid}/commit`, {});
    assert.equal(c.status, 409);
    assert.equal(c.json.code, 'DTX_INVALID_STATE');
    assert.deepEqual(await pgRows(gid), []);
    assert.deepEqual(await mariaRows(gid), []);
    // The participants hold nothing more: work under the gid starts a fresh branch, PREPARE of the old one votes no.
    const vote = await pgSvc.participant.answer('prepare', { sagaId: gid, branchId: 'stock' });
    assert.equal(vote.status, 409);
    assert.equal(vote.body.vote, 'no');
  });

  test('bad input: 4xx problem documents with stable codes, nothing stored', async () => {
    const u = server.url;
    const cases: [string, string, unknown, number, string][] = [
      ['POST', '/v1/2pc', { id: 'bad gid!' }, 400, 'DTX_BAD_MESSAGE'],
      ['POST', '/v1/2pc', { id: '-starts-with-dash' }, 400, 'DTX_BAD_MESSAGE'],
      ['POST', '/v1/2pc', { id: 'x'.repeat(49) }, 400, 'DTX_BAD_MESSAGE'],
      ['POST', '/v1/2pc', { id: `ok-${run}`, unknown: 1 }, 400, 'DTX_BAD_MESSAGE'],
      ['POST', '/v1/2pc/bad%20gid/commit', {}, 400, 'DTX_BAD_MESSAGE'],
      ['POST', `/v1/2pc/nope-${run}/commit`, {}, 404, 'DTX_NOT_FOUND'],
      ['POST', `/v1/2pc/nope-${run}/abort`, {}, 404, 'DTX_NOT_FOUND'],
      ['GET', `/v1/2pc/nope-${run}`, undefined, 404, 'DTX_NOT_FOUND'],
      [
        'POST',
        `/v1/2pc/nope-${run}/branches`,
        { branch: 'b', url: 'http://127.0.0.1:1/x' },
        404,
        'DTX_NOT_FOUND',
      ],
    ];
    for (const [method, path, body, status, code] of cases) {
      const r = await call(u, method, path, body);
      assert.equal(r.status, status, `${method} ${path}: ${JSON.stringify(r.json)}`);
      assert.equal(r.json.code, code, path);
      assert.match(r.type, /application\/problem\+json/);
    }
    const gid = `bad-${run}`;
    assert.equal((await call(u, 'POST', '/v1/2pc', { id: gid })).status, 201);
    const branchCases: [unknown, number, string][] = [
      [{ branch: 'b', url: 'file:///etc/passwd' }, 400, 'DTX_BAD_MESSAGE'],
      [{ branch: 'b', url: 'ftp://127.0.0.1/x' }, 400, 'DTX_BAD_MESSAGE'],
      [{ branch: 'b', url: 'http://127.0.0.1:1/x?a=1' }, 400, 'DTX_INVALID_ARGUMENT'],
      [{ branch: 'b', url: 'http://[::1' }, 400, 'DTX_INVALID_ARGUMENT'],
      [{ branch: 'has.dot', url: 'http://127.0.0.1:1/x' }, 400, 'DTX_BAD_MESSAGE'],
      [{ branch: 'b' }, 400, 'DTX_BAD_MESSAGE'],
    ];
    for (const [body, status, code] of branchCases) {
      const r = await call(u, 'POST', `/v1/2pc/${gid}/branches`, body);
      assert.equal(r.status, status, `${JSON.stringify(body)}: ${JSON.stringify(r.json)}`);
      assert.equal(r.json.code, code, JSON.stringify(body));
    }
    assert.deepEqual((await call(u, 'GET', `/v1/2pc/${gid}`)).json.branches, []);
    // The same branch with another URL; the same id with another body; a gid a saga uses.
    assert.equal(
      (await call(u, 'POST', `/v1/2pc/${gid}/branches`, { branch: 'b', url: 'http://127.0.0.1:1/x' })).status,
      200,
    );
    const other = await call(u, 'POST', `/v1/2pc/${gid}/branches`, {
      branch: 'b',
      url: 'http://127.0.0.1:1/y',
    });
    assert.equal(other.status, 409);
    assert.equal(other.json.code, 'DTX_DUPLICATE_GID');
    const again = await call(u, 'POST', '/v1/2pc', { id: gid, timeoutMs: 5000 });
    assert.equal(again.status, 409);
    assert.equal(again.json.code, 'DTX_DUPLICATE_GID');
    const sagaId = `saga-${run}`;
    const saga = await call(u, 'POST', '/v1/sagas', {
      id: sagaId,
      steps: [{ name: 's', action: { url: 'http://127.0.0.1:1/a' }, compensation: null }],
    });
    assert.ok(saga.status === 200 || saga.status === 202);
    const clash = await call(u, 'POST', '/v1/2pc', { id: sagaId });
    assert.equal(clash.status, 409);
    assert.equal(clash.json.code, 'DTX_DUPLICATE_GID');
    // And the other way: a saga or a TCC under a 2PC gid.
    for (const [path, body] of [
      [
        '/v1/sagas',
        { id: gid, steps: [{ name: 's', action: { url: 'http://127.0.0.1:1/a' }, compensation: null }] },
      ],
      ['/v1/tcc', { id: gid }],
    ] as const) {
      const r = await call(u, 'POST', path, body);
      assert.equal(r.status, 409, `${path}: ${JSON.stringify(r.json)}`);
      assert.equal(r.json.code, 'DTX_DUPLICATE_GID');
    }
    // Nothing was begun under the gid: the transactions' view shows the 2PC transaction, no saga or TCC.
    const seen = await call(u, 'GET', `/v1/transactions/${gid}`);
    assert.equal(seen.status, 200);
    assert.equal(seen.json.type, '2pc');
    assert.deepEqual(
      seen.json.records.map((x: Answer) => x.record.type),
      ['tpc-begin', 'tpc-branch'],
    );
    // Abort it (its one branch is unreachable: the rollback is retried in the background), then register: refused.
    await call(u, 'POST', `/v1/2pc/${gid}/abort`, {});
    const late = await call(u, 'POST', `/v1/2pc/${gid}/branches`, {
      branch: 'c',
      url: 'http://127.0.0.1:1/z',
    });
    assert.equal(late.status, 409);
    assert.equal(late.json.code, 'DTX_INVALID_STATE');
  });

  test("the participant's own endpoints refuse bad calls with problem documents", async () => {
    const post = (path: string, body: string) =>
      fetch(`${pgSvc.url}/${path}`, { method: 'POST', body }).then(async (r) => ({
        status: r.status,
        json: (await r.json()) as Answer,
      }));
    const bad: [string, string, number, string][] = [
      [
        'prepare',
        JSON.stringify({ sagaId: "x'; DROP TABLE t; --", branchId: 'stock' }),
        400,
        'DTX_INVALID_GID',
      ],
      ['prepare', JSON.stringify({ sagaId: 'ok', branchId: 'a.b' }), 400, 'DTX_INVALID_ARGUMENT'],
      ['prepare', 'not json', 400, 'DTX_BAD_MESSAGE'],
      ['explode', JSON.stringify({ sagaId: 'ok', branchId: 'stock' }), 404, 'DTX_NOT_FOUND'],
      ['commit', JSON.stringify({ sagaId: 'ok', branchId: 'stock', op: 'rollback' }), 400, 'DTX_BAD_MESSAGE'],
      // An unknown branch: PREPARE votes no; COMMIT and ROLLBACK of it have nothing to do.
      ['prepare', JSON.stringify({ sagaId: `unknown-${run}`, branchId: 'stock' }), 409, 'DTX_NOT_FOUND'],
    ];
    for (const [path, body, status, code] of bad) {
      const r = await post(path, body);
      assert.equal(r.status, status, `${path} ${body}: ${JSON.stringify(r.json)}`);
      assert.equal(r.json.code, code, `${path} ${body}`);
    }
    assert.equal(
      (await post('rollback', JSON.stringify({ sagaId: `unknown-${run}`, branchId: 'stock' }))).status,
      200,
    );
    assert.throws(() => createParticipant({ adapter: pgAdapter, gidPrefix: "x'" }), /gidPrefix/);
  });
});

describe('2PC across services, `dtx serve` SIGKILLed', () => {
  test('killed once the commit decision is durable, before any COMMIT was carried out: the restart commits', async () => {
    const store = `sqlite:${join(dir, 'kill-commit.sqlite')}`;
    let { child, url } = await startServe(['--store', store]);
    const gid = `k1-${run}`;
    const held = new Set<string>();
    let sawCommit: () => void = () => undefined;
    const bothHeld = new Promise<void>((resolve) => (sawCommit = resolve));
    // Every COMMIT is held unanswered and not carried out while this server lives.
    const hold =
      (name: string): Hook =>
      async (op, g, runCall) => {
        if (op !== 'commit' || g !== gid) return runCall();
        held.add(name);
        if (held.size === 2) sawCommit();
        return 'hang';
      };
    pgSvc.hook = hold('stock');
    mariaSvc.hook = hold('pay');
    try {
      await prepareWork(url, gid);
      const commit = call(url, 'POST', `/v1/2pc/${gid}/commit`, {}).catch(() => null);
      await bothHeld;
      // A COMMIT leaves only after the forced decision: it is durable now. Nothing is committed yet.
      assert.deepEqual(await pgRows(gid), []);
      assert.deepEqual(await mariaRows(gid), []);
      assert.equal((await pgPrepared(gid)).length, 1);
      assert.equal((await xaRecover(gid)).length, 1);
      await kill(child, 'SIGKILL');
      await commit;
      pgSvc.hook = undefined;
      mariaSvc.hook = undefined;
      // The PostgreSQL participant restarts too: a fresh process finds its prepared branch and commits it by gid.
      await pgSvc.participant.close();
      await pgAdapter.close();
      await newPgParticipant();
      assert.deepEqual(
        (await pgSvc.participant.listPrepared()).filter((p) => p.gid === gid).map((p) => p.branch),
        ['stock'],
      );
      ({ child, url } = await startServe(['--store', store]));
      const v = await untilState(url, gid, 'committed');
      assert.equal(v.outcome, 'committed');
      assert.deepEqual(await pgRows(gid), [`${gid}-s`]);
      assert.deepEqual(await mariaRows(gid), [`${gid}-p`]);
      assert.deepEqual(await pgPrepared(gid), []);
      assert.deepEqual(await xaRecover(gid), []);
    } finally {
      pgSvc.hook = undefined;
      mariaSvc.hook = undefined;
      await kill(child, 'SIGTERM');
    }
  });

  test('killed before the decision with both branches prepared: the restart rolls both back', async () => {
    const store = `sqlite:${join(dir, 'kill-prepare.sqlite')}`;
    let { child, url } = await startServe(['--store', store]);
    const gid = `k2-${run}`;
    let preparedHeld: () => void = () => undefined;
    const mariaPrepared = new Promise<void>((resolve) => (preparedHeld = resolve));
    let stockPrepared = false;
    // PostgreSQL votes normally; MariaDB prepares (XA PREPARE runs) but its YES never reaches the server.
    pgSvc.hook = async (op, g, runCall) => {
      const a = await runCall();
      if (op === 'prepare' && g === gid) stockPrepared = true;
      return a;
    };
    mariaSvc.hook = async (op, g, runCall) => {
      if (op !== 'prepare' || g !== gid) return runCall();
      const a = await runCall();
      assert.equal(a.status, 200);
      preparedHeld();
      return 'hang';
    };
    try {
      await prepareWork(url, gid);
      const commit = call(url, 'POST', `/v1/2pc/${gid}/commit`, {}).catch(() => null);
      await mariaPrepared;
      const deadline = Date.now() + 30_000;
      while (!stockPrepared && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.deepEqual(await pgPrepared(gid), [`dtxp.${gid}.stock`]);
      assert.deepEqual(await xaRecover(gid), [`dtxp.${gid}.pay`]);
      await kill(child, 'SIGKILL');
      await commit;
      pgSvc.hook = undefined;
      mariaSvc.hook = undefined;
      ({ child, url } = await startServe(['--store', store]));
      const v = await untilState(url, gid, 'aborted');
      assert.equal(v.outcome, 'aborted');
      assert.match(v.reason, /restarted before a decision/);
      assert.deepEqual(await pgPrepared(gid), []);
      assert.deepEqual(await xaRecover(gid), []);
      assert.deepEqual(await pgRows(gid), []);
      assert.deepEqual(await mariaRows(gid), []);
    } finally {
      pgSvc.hook = undefined;
      mariaSvc.hook = undefined;
      await kill(child, 'SIGTERM');
    }
  });
});
