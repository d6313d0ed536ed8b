// Takeover of a dead server's 2PC transactions (docs/server.md, "Several
// servers"): two `dtx serve` processes on one throwaway PostgreSQL store, two
// participant services built on `dtx/participant` over two databases of a
// throwaway PostgreSQL cluster (max_prepared_transactions > 0). Every
// transaction is run through server s0, which is SIGKILLed while it holds:
//
// - `done`: committed and acknowledged before the kill;
// - `decided`: the commit decision durable and answered to the caller
//   (outcome committed), every COMMIT held unanswered and not carried out;
// - `undecided`: both branches prepared in PostgreSQL, the pay branch's vote
//   held unanswered, so no decision;
// - `registering`: begun, the stock branch worked and registered, the caller
//   about to do the pay branch.
//
// s1 must take s0's 2PC log over once its lease lapses and finish each as a
// restart of s0 would: COMMIT to every yes voter of a decided transaction,
// ROLLBACK to every registered branch of the others. The COMMITs of two
// decided transactions' pay branch stay held after the kill, so they are
// still open at s1 when s0 restarts under its id: s1 hands the log back and
// s0 finishes them. Checked: every transaction committed on both branches or
// rolled back on both, as its caller was told; pg_prepared_xacts empty; each
// `tpc-end` once, in s0's log; the registering caller is refused (409) once
// s1 has taken over; requests at s1 for s0's gids while s0 runs are 421
// naming s0.
//
// Fencing (a second test): s0 is paused (SIGSTOP) with both branches of a
// transaction prepared and the last YES vote on its way; s1 takes over and
// rolls both back; then the vote reaches s0 and s0 resumes. s0 must not
// decide commit: its `tpc-commit` write is fenced (s1 took the lease), no
// COMMIT leaves it, and it exits (DTX_LOG_FENCED).

import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { request } from 'node:http';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { createPostgresAdapter, type PostgresAdapter } from '../../src/adapters/postgres.ts';
import { createParticipant, type ParticipantAnswer } from '../../src/participant/index.ts';
import { runId } from '../adapters/helpers.ts';
import { type PgCluster, startPgCluster } from '../adapters/pg-cluster.ts';
import { type Answer, call, kill, startServe } from './helpers.ts';
import { type ParticipantService, participantService } from './participants.ts';

const run = runId()
  .replace(/[^A-Za-z0-9]/g, '')
  .slice(-10);
const leaseTtlMs = 4000;
const perGroup = 4;
/** Decided transactions whose pay COMMIT stays held until s0 is back. */
const heldToRestart = 2;
const groups = ['done', 'decided', 'undecided', 'registering'] as const;
type Group = (typeof groups)[number];

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const gidOf = (group: Group, i: number) => `tk-${group}-${i}-${run}`;

let cluster: PgCluster;
const adapters: PostgresAdapter[] = [];
const dbs = new Map<'stock' | 'pay', pg.Client>();
let stock: ParticipantService;
let pay: ParticipantService;
let admin: pg.Client;

before(async () => {
  admin = new pg.Client({ connectionString: 'postgres://postgres@127.0.0.1:5432/postgres' });
  await admin.connect();
  cluster = await startPgCluster();
  // Two participant services, each over a database of its own in the cluster.
  const made: ParticipantService[] = [];
  for (const [name, table] of [
    ['stock', 'stock_moves'],
    ['pay', 'payments'],
  ] as const) {
    const c0 = new pg.Client(cluster.connection);
    await c0.connect();
    await c0.query(`CREATE DATABASE tk_${name}`);
    await c0.end();
    const connection = { ...cluster.connection, database: `tk_${name}` };
    const db = new pg.Client(connection);
    await db.connect();
    await db.query(`CREATE TABLE ${table} (id text PRIMARY KEY, gid text NOT NULL, amount int NOT NULL)`);
    dbs.set(name, db);
    const adapter = await createPostgresAdapter({ connection: { ...connection, max: 8 } });
    adapters.push(adapter);
    made.push(
      await participantService(createParticipant({ adapter }), name, (b, gid, id, amount) =>
        b.query(`INSERT INTO ${table} (id, gid, amount) VALUES ($1, $2, $3)`, [id, gid, amount]),
      ),
    );
  }
  [stock, pay] = made as [ParticipantService, ParticipantService];
});

after(async () => {
  for (const svc of [stock, pay]) {
    await svc?.participant.close().catch(() => undefined);
    await svc?.close();
  }
  for (const a of adapters) await a.close().catch(() => undefined);
  for (const db of dbs.values()) await db.end().catch(() => undefined);
  await cluster?.stop();
  await admin?.end();
});

/** Rows of `gid` in each service's database. */
async function rows(gid: string): Promise<{ stock: number | null; pay: number | null }> {
  return {
    stock: (await dbs.get('stock')!.query('SELECT id FROM stock_moves WHERE gid = $1', [gid])).rowCount,
    pay: (await dbs.get('pay')!.query('SELECT id FROM payments WHERE gid = $1', [gid])).rowCount,
  };
}

/** The database gids prepared in either service's database. */
async function prepared(): Promise<string[]> {
  const out: string[] = [];
  for (const db of dbs.values()) {
    out.push(...(await db.query('SELECT gid FROM pg_prepared_xacts')).rows.map((r) => r.gid as string));
  }
  return out;
}

async function work(svc: ParticipantService, gid: string, id: string): Promise<void> {
  const r = await fetch(`${svc.url.replace(/\/tpc$/, '')}/work`, {
    method: 'POST',
    body: JSON.stringify({ gid, id, amount: 10 }),
  });
  assert.equal(r.status, 200, await r.text());
}

function register(url: string, gid: string, branch: string, svc: ParticipantService) {
  return call(url, 'POST', `/v1/2pc/${gid}/branches`, { branch, url: svc.url });
}

/** Begins `gid` at `url`, has both services work and registers both. */
async function beginBoth(url: string, gid: string, requestTimeoutMs: number): Promise<void> {
  const r = await call(url, 'POST', '/v1/2pc', { id: gid, requestTimeoutMs, prepareTimeoutMs: 60_000 });
  assert.equal(r.status, 201, JSON.stringify(r.json));
  await work(stock, gid, `${gid}-s`);
  await work(pay, gid, `${gid}-p`);
  assert.equal((await register(url, gid, 'stock', stock)).status, 200);
  assert.equal((await register(url, gid, 'pay', pay)).status, 200);
}

/** A throwaway store database on the machine's PostgreSQL, and the `dtx serve` processes on it. */
async function withStore(
  name: string,
  body: (ctx: {
    start: (id: string) => Promise<{ child: ChildProcess; url: string }>;
    log: pg.Client;
  }) => Promise<void>,
): Promise<void> {
  const storeDb = `dtx_tpc_${name}_${run}`.toLowerCase();
  const store = `postgres://postgres@127.0.0.1:5432/${storeDb}`;
  await admin.query(`DROP DATABASE IF EXISTS ${storeDb} WITH (FORCE)`);
  await admin.query(`CREATE DATABASE ${storeDb}`);
  const children: ChildProcess[] = [];
  const log = new pg.Client({ connectionString: store });
  await log.connect();
  try {
    await body({
      start: async (id) => {
        const args = ['--store', store, '--server-id', id, '--lease-ttl-ms', String(leaseTtlMs)];
        const s = await startServe(args);
        children.push(s.child);
        return s;
      },
      log,
    });
  } finally {
    // A paused server must run again to be stopped.
    for (const c of children) c.kill('SIGCONT');
    for (const c of children) await kill(c, 'SIGTERM').catch(() => undefined);
    await log.end();
    for (const svc of [stock, pay]) svc.hook = undefined;
    await admin.query(`DROP DATABASE IF EXISTS ${storeDb} WITH (FORCE)`).catch(() => undefined);
  }
}

/**
 * POSTs on a connection of its own, closed after the answer: a keep-alive
 * connection would hold a stopping server's close until its keep-alive
 * timeout (72 s).
 */
function postClosing(url: string, body: unknown): Promise<{ status: number; json: Answer }> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { method: 'POST', agent: false, headers: { 'content-type': 'application/json' } },
      (res) => {
        let text = '';
        res.on('data', (d) => (text += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(text) }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

/** The `tpc-end` records of s0's log: gid and outcome. */
async function ends(log: pg.Client): Promise<{ txn: string; outcome: string }[]> {
  const r = await log.query<{ txn: string; outcome: string }>(
    `SELECT record->>'txn' AS txn, record->>'outcome' AS outcome FROM dtx_serve_twopc
       WHERE owner = 'dtx-serve:s0' AND record->>'type' = 'tpc-end'`,
  );
  return r.rows;
}

describe('2PC takeover across dtx serve processes', () => {
  test('a SIGKILLed server’s 2PC transactions are finished by the survivor (presumed abort) and handed back on restart', async () => {
    await withStore('takeover', async ({ start, log }) => {
      const startedAt = Date.now();
      let s0 = await start('s0');
      const s1 = (await start('s1')).url;

      // What the participants do while s0 lives: hold the decided ones' COMMITs (not carried out) and
      // the undecided ones' pay vote (carried out: the branch is prepared in PostgreSQL).
      let s0Alive = true;
      let releaseHeld = false;
      const decided = new Set(Array.from({ length: perGroup }, (_, i) => gidOf('decided', i)));
      const undecided = new Set(Array.from({ length: perGroup }, (_, i) => gidOf('undecided', i)));
      const held = new Set([...decided].slice(0, heldToRestart));
      const preparedOnce = new Map<string, Promise<unknown>>();
      for (const svc of [stock, pay]) {
        svc.hook = async (op, gid, runCall) => {
          if (op === 'commit' && decided.has(gid) && s0Alive) return 'hang';
          if (op === 'commit' && svc === pay && held.has(gid) && !releaseHeld) return 'hang';
          if (op === 'prepare' && svc === pay && undecided.has(gid) && s0Alive) {
            // Carried out once: a PREPARE sent again (its call timed out) hangs too.
            if (!preparedOnce.has(gid)) preparedOnce.set(gid, runCall());
            await preparedOnce.get(gid);
            return 'hang';
          }
          return runCall();
        };
      }

      /** What each caller was told: the outcome in the last answer it got. */
      const told = new Map<string, 'committed' | 'aborted'>();
      const expected = new Map<string, 'committed' | 'aborted'>();
      const cutOff: Promise<void>[] = [];
      for (let i = 0; i < perGroup; i++) {
        // Participant calls time out after 1 s: a held call is sent again, and s1's end soon when it lets go.
        const done = gidOf('done', i);
        await beginBoth(s0.url, done, 1000);
        const r = await call(s0.url, 'POST', `/v1/2pc/${done}/commit`, { wait: { timeoutMs: 20_000 } });
        assert.equal(r.status, 200, JSON.stringify(r.json));
        told.set(done, r.json.outcome);
        expected.set(done, 'committed');

        const dec = gidOf('decided', i);
        await beginBoth(s0.url, dec, 1000);
        // Answered once the decision is durable (202: phase two goes on).
        const d = await call(s0.url, 'POST', `/v1/2pc/${dec}/commit`, {});
        assert.equal(d.status, 202, JSON.stringify(d.json));
        told.set(dec, d.json.outcome);
        expected.set(dec, 'committed');

        const und = gidOf('undecided', i);
        await beginBoth(s0.url, und, 1000);
        expected.set(und, 'aborted');
        // The answer waits for the held vote: the kill cuts it off (the caller is told nothing).
        cutOff.push(
          call(s0.url, 'POST', `/v1/2pc/${und}/commit`, {}).then(
            (a) => void told.set(und, a.json.outcome),
            () => undefined,
          ),
        );

        const reg = gidOf('registering', i);
        const b = await call(s0.url, 'POST', '/v1/2pc', { id: reg, requestTimeoutMs: 1000 });
        assert.equal(b.status, 201, JSON.stringify(b.json));
        await work(stock, reg, `${reg}-s`);
        assert.equal((await register(s0.url, reg, 'stock', stock)).status, 200);
        expected.set(reg, 'aborted');
      }
      assert.deepEqual(
        [...told.values()].filter((o) => o !== 'committed'),
        [],
        'the done and decided callers were told committed',
      );
      // Every undecided transaction has both branches prepared in PostgreSQL, and no decision.
      const deadline = Date.now() + 20_000;
      while ((await prepared()).filter((g) => g.includes('tk-undecided-')).length < 2 * perGroup) {
        assert.ok(Date.now() < deadline, `not all prepared: ${JSON.stringify(await prepared())}`);
        await sleep(50);
      }
      // A request for s0's gid at s1 while s0 runs: 421 naming s0; a 2PC gid cannot begin a saga either.
      const wrong = await call(s1, 'POST', `/v1/2pc/${gidOf('registering', 0)}/commit`, {});
      assert.equal(wrong.status, 421, JSON.stringify(wrong.json));
      assert.match(wrong.json.detail, /run by server s0: send this request there/);
      const saga = await call(s1, 'POST', '/v1/sagas', {
        id: gidOf('done', 0),
        steps: [{ name: 'x', action: { url: `${stock.url}/x` }, compensation: null }],
      });
      assert.equal(saga.status, 409, JSON.stringify(saga.json));
      assert.equal(saga.json.code, 'DTX_DUPLICATE_GID');

      // At the kill: every decided one has its durable decision and no end; no undecided one has a decision.
      const typesOf = async (gid: string) =>
        (
          await log.query<{ type: string }>(
            `SELECT record->>'type' AS type FROM dtx_serve_twopc WHERE record->>'txn' = $1 ORDER BY seq`,
            [gid],
          )
        ).rows.map((r) => r.type);
      for (const gid of decided) {
        assert.deepEqual(await typesOf(gid), ['tpc-begin', 'tpc-branch', 'tpc-branch', 'tpc-commit'], gid);
      }
      for (const gid of undecided) {
        assert.deepEqual(await typesOf(gid), ['tpc-begin', 'tpc-branch', 'tpc-branch'], gid);
      }
      const killedAt = Date.now();
      await kill(s0.child, 'SIGKILL');
      s0Alive = false;
      await Promise.all(cutOff);

      // The registering caller carries on at s1: 421 until s1 has taken s0 over, then refused (aborted).
      for (let i = 0; i < perGroup; i++) {
        const reg = gidOf('registering', i);
        const until = Date.now() + 20_000;
        for (;;) {
          const r = await register(s1, reg, 'pay', pay);
          if (r.status !== 421) {
            assert.equal(r.status, 409, JSON.stringify(r.json));
            assert.equal(r.json.code, 'DTX_INVALID_STATE');
            break;
          }
          assert.ok(Date.now() < until, `${reg}: never taken over: ${JSON.stringify(r.json)}`);
          await sleep(100);
        }
      }
      // The undecided callers ask again at s1: aborted (no decision was durable).
      for (const und of undecided) {
        const r = await call(s1, 'POST', `/v1/2pc/${und}/commit`, { wait: { timeoutMs: 20_000 } });
        assert.equal(r.status, 200, JSON.stringify(r.json));
        assert.equal(r.json.outcome, 'aborted');
        assert.match(r.json.reason, /stopped before a decision; taken over/);
        told.set(und, 'aborted');
      }

      // Everything but the held ones ends at s1 while s0 is down: their `tpc-end`s are in s0's log.
      const endDeadline = Date.now() + 30_000;
      while ((await ends(log)).length < expected.size - held.size) {
        assert.ok(Date.now() < endDeadline, `not ended at s1: ${(await ends(log)).length}`);
        await sleep(100);
      }
      const takenOverAt = Date.now();
      assert.deepEqual(
        (await ends(log)).filter((e) => held.has(e.txn)),
        [],
        'the held ones are still open at s1',
      );

      // s0 restarts under its id: s1 hands its logs back though the held ones are open; s0 finishes them.
      s0 = await start('s0');
      releaseHeld = true;
      for (const gid of held) {
        const r = await call(s0.url, 'POST', `/v1/2pc/${gid}/commit`, { wait: { timeoutMs: 20_000 } });
        assert.equal(r.status, 200, JSON.stringify(r.json));
        assert.equal(r.json.state, 'committed');
      }
      // Their `tpc-end` is written lazily, after the answer.
      const lastDeadline = Date.now() + 10_000;
      while ((await ends(log)).length < expected.size) {
        assert.ok(Date.now() < lastDeadline, `not ended: ${(await ends(log)).length}`);
        await sleep(50);
      }
      const endedAt = Date.now();

      // Each transaction: one `tpc-end`, with the outcome expected and told; its rows as the outcome says.
      const byTxn = new Map<string, string[]>();
      for (const e of await ends(log)) byTxn.set(e.txn, [...(byTxn.get(e.txn) ?? []), e.outcome]);
      for (const [gid, outcome] of expected) {
        assert.deepEqual(byTxn.get(gid), [outcome], `${gid}: one tpc-end, ${outcome}`);
        if (told.has(gid)) assert.equal(told.get(gid), outcome, `${gid}: as its caller was told`);
        const n = outcome === 'committed' ? 1 : 0;
        assert.deepEqual(await rows(gid), { stock: n, pay: n }, `${gid} rows`);
      }
      assert.deepEqual(await prepared(), [], 'nothing left prepared in PostgreSQL');
      // Every 2PC gid claimed once, for s0.
      const claims = await log.query<{ owner: string; type: string; n: string }>(
        'SELECT owner, type, count(*)::text AS n FROM dtx_serve_gid GROUP BY 1, 2',
      );
      assert.deepEqual(claims.rows, [{ owner: 'dtx-serve:s0', type: '2pc', n: String(expected.size) }]);
      console.log(
        `twopc takeover: ${expected.size} 2PC transactions (${perGroup} each done, decided, undecided, ` +
          `registering); the survivor ended all but the ${held.size} held ones ` +
          `${((takenOverAt - killedAt) / 1000).toFixed(1)} s after the kill (lease ttl ${leaseTtlMs} ms); ` +
          `the restarted server ended those ${((endedAt - takenOverAt) / 1000).toFixed(1)} s later; ` +
          `${((endedAt - startedAt) / 1000).toFixed(1)} s in all`,
      );
    });
  });

  test('a paused server whose 2PC log was taken over decides nothing when it resumes (fenced)', async () => {
    await withStore('fence', async ({ start, log }) => {
      const s0 = await start('s0');
      const s1 = (await start('s1')).url;
      const gid = `tk-fence-${run}`;
      // pay's PREPARE is carried out (prepared in PostgreSQL) and its YES held until s0 is paused and
      // taken over: the vote s0 was waiting for reaches it only once s1 has rolled everything back.
      let sendVote: () => void = () => undefined;
      const voteHeld = new Promise<void>((resolve) => (sendVote = resolve));
      const commitsSeen: string[] = [];
      // A PREPARE sent again (a connection that broke under load) is answered with the first vote.
      let vote: Promise<ParticipantAnswer> | undefined;
      pay.hook = async (op, g, runCall) => {
        if (op === 'commit') commitsSeen.push(g);
        if (op === 'prepare' && g === gid) {
          vote ??= runCall();
          const answer = await vote;
          await voteHeld;
          return answer;
        }
        return runCall();
      };
      stock.hook = async (op, g, runCall) => {
        if (op === 'commit') commitsSeen.push(g);
        return runCall();
      };
      // Long call timeouts: s0 waits for this very answer, it does not ask again.
      await beginBoth(s0.url, gid, 60_000);
      const caller = postClosing(`${s0.url}/v1/2pc/${gid}/commit`, {}).catch(() => null);
      const deadline = Date.now() + 20_000;
      while ((await prepared()).filter((g) => g.includes(gid)).length < 2) {
        assert.ok(Date.now() < deadline, 'both branches prepared');
        await sleep(50);
      }
      const exited = new Promise<number | null>((resolve) => s0.child.once('exit', (code) => resolve(code)));
      s0.child.kill('SIGSTOP');

      // s1 takes s0's logs over (its leases lapsed) and rolls both branches back.
      const until = Date.now() + 20_000;
      for (;;) {
        const r = await call(s1, 'POST', `/v1/2pc/${gid}/commit`, { wait: { timeoutMs: 20_000 } });
        if (r.status !== 421) {
          assert.equal(r.status, 200, JSON.stringify(r.json));
          assert.equal(r.json.outcome, 'aborted');
          break;
        }
        assert.ok(Date.now() < until, `never taken over: ${JSON.stringify(r.json)}`);
        await sleep(100);
      }
      assert.deepEqual(await prepared(), []);

      // The YES reaches s0, which resumes: every vote is yes, but its commit decision is fenced.
      sendVote();
      await sleep(200);
      s0.child.kill('SIGCONT');
      const code = await Promise.race([exited, sleep(20_000).then(() => 'still running' as const)]);
      assert.notEqual(code, 'still running', 's0 exits once it finds its logs taken over');
      assert.notEqual(code, 0);
      // The caller waiting for the decision is told s0 decided nothing (or its connection dies).
      const answer = await caller;
      if (answer !== null) {
        assert.equal(answer.status, 503, JSON.stringify(answer.json));
        assert.match(answer.json.detail, /another server took over this server's 2PC log/);
      }
      const records = await log.query<{ type: string }>(
        `SELECT record->>'type' AS type FROM dtx_serve_twopc WHERE record->>'txn' = $1 ORDER BY seq`,
        [gid],
      );
      assert.ok(!records.rows.some((r) => r.type === 'tpc-commit'), JSON.stringify(records.rows));
      assert.deepEqual(
        (await ends(log)).filter((e) => e.txn === gid),
        [{ txn: gid, outcome: 'aborted' }],
      );
      assert.deepEqual(commitsSeen, [], 'no COMMIT was sent');
      assert.deepEqual(await rows(gid), { stock: 0, pay: 0 });
      assert.deepEqual(await prepared(), []);
    });
  });
});
