// Three `dtx serve` processes active on one PostgreSQL store (docs/server.md,
// "Several servers"): 1,000 three-step sagas submitted round-robin across
// them, one server SIGKILLed mid-load. Every saga must end exactly once,
// completed or compensated as its branches answered, none lost: the killed
// server's open sagas are taken over by a survivor (its owner lease lapsed),
// which resends the calls that were out. The branch service applies an effect
// only on the first call of its Idempotency-Key (what the barrier does) and
// counts every call, so the test sees both the effects and the repeats.
//
// Every fourth saga is refused at its last step (a step that cannot be
// undone), so it compensates the two before it. The last step of sagas 300
// to 399 is held until the kill, so the killed server certainly has sagas
// with a call out when it dies.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { requestHash } from '../../src/server/engine.ts';
import { type RunningServer, startServer } from '../../src/server/index.ts';
import { type Answer, branchService, call, fastTiming, kill, startServe } from './helpers.ts';

const sagaCount = 1000;
const killAfter = 400;
const held = { from: 300, to: 400 };
const leaseTtlMs = 5000;
const submitters = 16;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const indexOf = (gid: string) => Number(gid.split('-').at(-1));
const refused = (i: number) => i % 4 === 0;

test('three dtx serve servers on one PostgreSQL store: 1,000 sagas, one server SIGKILLed, each ends exactly once', async () => {
  const pg = await import('pg');
  const admin = new pg.default.Client({ connectionString: 'postgres://postgres@127.0.0.1:5432/postgres' });
  await admin.connect();
  const db = 'dtx_w4_multi';
  const store = `postgres://postgres@127.0.0.1:5432/${db}`;
  await admin.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
  await admin.query(`CREATE DATABASE ${db}`);

  const applied = new Map<string, number>();
  const heldKeys = new Set<string>();
  let openGate: () => void = () => undefined;
  const gate = new Promise<void>((resolve) => (openGate = resolve));
  const svc = await branchService(async (c, nth) => {
    const i = indexOf(c.key.split(':')[0]!);
    if (c.path === '/s3' && c.op === 'action') {
      if (i >= held.from && i < held.to) {
        heldKeys.add(c.key);
        await gate;
      }
      if (refused(i)) return { status: 409, body: '{"reason":"refused"}' };
    }
    if (nth === 1) applied.set(c.key, (applied.get(c.key) ?? 0) + 1);
    return { status: 200 };
  });
  const servers: { child: import('node:child_process').ChildProcess; url: string; id: string }[] = [];
  const startedAt = Date.now();
  try {
    for (const id of ['s0', 's1', 's2']) {
      const args = ['--store', store, '--server-id', id, '--lease-ttl-ms', String(leaseTtlMs)];
      servers.push({ ...(await startServe(args)), id });
    }
    const victim = servers[1]!;
    let dead = false;
    const gids = Array.from({ length: sagaCount }, (_, i) => `multi-${i}`);
    const body = (gid: string) => ({
      id: gid,
      // s3 cannot be undone (compensation null, so it comes last): its action is retried until it
      // answers, never given up, so a held call cannot turn its saga back however long the hold lasts.
      steps: ['s1', 's2', 's3'].map((s) => ({
        name: s,
        action: { url: `${svc.url}/${s}` },
        compensation: s === 's3' ? null : { url: `${svc.url}/${s}-undo` },
      })),
      // Longer than a held call waits for the kill: a held call is sent again only by the takeover.
      requestTimeoutMs: 120_000,
    });

    // Submit round-robin; a refused connection (the dead server) or a 421
    // (a gid whose server is down, not yet taken over) is tried on the next
    // server after a pause, as a client behind a load balancer would.
    let accepted = 0;
    let failovers = 0;
    const submit = async (i: number) => {
      const deadline = Date.now() + 60_000;
      for (let k = i; ; k++) {
        const s = servers[k % servers.length]!;
        try {
          const r = await call(s.url, 'POST', '/v1/sagas', body(gids[i]!));
          if (r.status === 200 || r.status === 202) {
            accepted++;
            return;
          }
          assert.ok([421, 503].includes(r.status), `${gids[i]}: ${r.status} ${JSON.stringify(r.json)}`);
        } catch (error) {
          if (!(s === victim && dead)) throw error;
        }
        failovers++;
        assert.ok(Date.now() < deadline, `${gids[i]} was never accepted`);
        await sleep(100);
      }
    };
    const run = async (from: number, to: number) => {
      let next = from;
      await Promise.all(
        Array.from({ length: submitters }, async () => {
          while (next < to) await submit(next++);
        }),
      );
    };
    await run(0, killAfter);
    const heldDeadline = Date.now() + 60_000;
    while (heldKeys.size < held.to - held.from && Date.now() < heldDeadline) await sleep(20);
    assert.equal(heldKeys.size, held.to - held.from, 'every held saga reached its last step');
    dead = true;
    await kill(victim.child, 'SIGKILL');
    const killedAt = Date.now();
    openGate();
    await run(killAfter, sagaCount);
    assert.equal(accepted, sagaCount);

    // Every saga ends on the survivors, and both answer its final state:
    // polled at one, then asked at the other.
    const survivors = servers.filter((s) => s !== victim);
    const final = new Map<string, number>();
    const pollDeadline = Date.now() + 60_000;
    let pending = [...gids];
    while (pending.length > 0) {
      assert.ok(Date.now() < pollDeadline, `not ended: ${pending.slice(0, 5).join(' ')} (${pending.length})`);
      const next: string[] = [];
      for (let at = 0; at < pending.length; at += 50) {
        await Promise.all(
          pending.slice(at, at + 50).map(async (gid, n) => {
            const r = await call(survivors[n % 2]!.url, 'GET', `/v1/transactions/${gid}`);
            if (r.status === 200 && ['completed', 'compensated'].includes(r.json.state))
              final.set(gid, n % 2);
            else next.push(gid);
          }),
        );
      }
      pending = next;
      if (pending.length > 0) await sleep(200);
    }
    const endedAt = Date.now();
    const answers: Answer[] = [];
    for (let at = 0; at < gids.length; at += 50) {
      await Promise.all(
        gids.slice(at, at + 50).map(async (gid) => {
          const s = survivors[1 - final.get(gid)!]!;
          const r = await call(s.url, 'GET', `/v1/transactions/${gid}`);
          assert.equal(r.status, 200, `${s.id} ${gid}`);
          assert.equal(r.json.state, refused(indexOf(gid)) ? 'compensated' : 'completed', `${s.id} ${gid}`);
          answers.push(r.json);
        }),
      );
    }
    assert.equal(answers.length, sagaCount);

    // Effects: each exactly once, and exactly the ones each outcome calls for.
    for (const [i, gid] of gids.entries()) {
      const no = refused(i);
      for (const s of ['s1', 's2']) {
        assert.equal(applied.get(`${gid}:${s}:action`), 1, `${gid} ${s} action`);
        assert.equal(applied.get(`${gid}:${s}:compensation`), no ? 1 : undefined, `${gid} ${s} compensation`);
      }
      assert.equal(applied.get(`${gid}:s3:action`), no ? undefined : 1, `${gid} s3 action`);
      assert.equal(applied.get(`${gid}:s3:compensation`), undefined, `${gid} s3 compensation`);
    }
    assert.equal(svc.calls.filter((c) => !/^multi-\d+:/.test(c.key)).length, 0);

    // In the store: one claim, one begin and one end per gid, each in the log of the server that claimed it.
    const client = new pg.default.Client({ connectionString: store });
    await client.connect();
    try {
      const claims = await client.query<{ owner: string; n: string }>(
        'SELECT owner, count(*)::text AS n FROM dtx_serve_gid GROUP BY owner ORDER BY owner',
      );
      assert.deepEqual(
        claims.rows.map((r) => r.owner),
        ['dtx-serve:s0', 'dtx-serve:s1', 'dtx-serve:s2'],
      );
      assert.equal(
        claims.rows.reduce((n, r) => n + Number(r.n), 0),
        sagaCount,
      );
      const runs = await client.query<{ txn: string; begins: string; ends: string; elsewhere: string }>(
        `SELECT s.record->>'txn' AS txn, count(*) FILTER (WHERE s.record->>'type' = 'begin')::text AS begins,
           count(*) FILTER (WHERE s.record->>'type' = 'end')::text AS ends,
           count(*) FILTER (WHERE s.owner <> g.owner)::text AS elsewhere
         FROM dtx_serve_saga s JOIN dtx_serve_gid g ON g.gid = s.record->>'txn' GROUP BY 1`,
      );
      assert.equal(runs.rows.length, sagaCount);
      for (const r of runs.rows) {
        assert.equal(r.begins, '1', `${r.txn} begun once`);
        assert.equal(r.ends, '1', `${r.txn} ended once`);
        assert.equal(r.elsewhere, '0', `${r.txn} only in its owner's log`);
      }
      // The killed server's sagas held at their last step were taken over: their held call was sent again.
      const victimHeld = await client.query<{ gid: string }>(
        `SELECT gid FROM dtx_serve_gid WHERE owner = 'dtx-serve:s1' AND split_part(gid, '-', 2)::int >= $1
           AND split_part(gid, '-', 2)::int < $2`,
        [held.from, held.to],
      );
      assert.ok(victimHeld.rows.length > 0);
      for (const { gid } of victimHeld.rows) assert.ok(svc.count(`${gid}:s3:action`) >= 2, `${gid} resent`);
      const s1Leases = await client.query(
        `SELECT holder FROM dtx_serve_saga_lease WHERE name = 'dtx-log:dtx-serve:s1' AND holder LIKE 's1/%'`,
      );
      assert.equal(s1Leases.rowCount, 0, "the killed server's lease passed on");
      // Calls beyond the first of their key (a refusal is a first call too).
      const ownerOf = new Map(
        (await client.query<{ gid: string; owner: string }>('SELECT gid, owner FROM dtx_serve_gid')).rows.map(
          (r) => [r.gid, r.owner.slice('dtx-serve:'.length)],
        ),
      );
      const seen = new Set<string>();
      const repeatsBy = new Map<string, number>();
      for (const c of svc.calls) {
        if (!seen.has(c.key)) {
          seen.add(c.key);
          continue;
        }
        const what = ownerOf.get(c.key.split(':')[0]!) === 's1' ? 'killed' : 'other';
        repeatsBy.set(what, (repeatsBy.get(what) ?? 0) + 1);
      }
      const repeats = `${repeatsBy.get('killed') ?? 0} for the killed server's sagas, ${repeatsBy.get('other') ?? 0} for the others'`;
      console.log(
        `multi: ${sagaCount} sagas on 3 servers, ${victimHeld.rows.length} of the killed server's held ones taken over; ` +
          `all ended ${((endedAt - killedAt) / 1000).toFixed(1)} s after the kill, ` +
          `${((endedAt - startedAt) / 1000).toFixed(1)} s in all; ${failovers} submissions failed over, ` +
          `repeated branch calls: ${repeats}`,
      );
    } finally {
      await client.end();
    }
  } finally {
    openGate();
    for (const s of servers) await kill(s.child, 'SIGTERM').catch(() => undefined);
    await svc.close();
    await admin.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`).catch(() => undefined);
    await admin.end();
  }
});

test("several servers: a gid is one transaction across servers; another server's gid is answered from the store or refused with 421 naming its server; a stopped server's prepared TCC is taken over, and its logs handed back on restart", async () => {
  const pg = await import('pg');
  const admin = new pg.default.Client({ connectionString: 'postgres://postgres@127.0.0.1:5432/postgres' });
  await admin.connect();
  const db = 'dtx_w4_routes';
  const store = { postgres: `postgres://postgres@127.0.0.1:5432/${db}` };
  await admin.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
  await admin.query(`CREATE DATABASE ${db}`);
  const svc = await branchService(() => ({ status: 200 }));
  const open = (serverId: string) =>
    startServer({
      listen: '127.0.0.1:0',
      store,
      serverId,
      leaseTtlMs: 1500,
      timing: fastTiming,
      httpTimeoutMs: 2000,
    });
  let a: RunningServer | undefined;
  let b: RunningServer | undefined;
  try {
    await assert.rejects(open('not an id'), { code: 'DTX_INVALID_ARGUMENT' });
    await assert.rejects(startServer({ listen: '127.0.0.1:0', store, serverId: 'x', leaseTtlMs: 10 }), {
      code: 'DTX_INVALID_ARGUMENT',
    });
    a = await open('a');
    b = await open('b');
    // A second live server under b's id: refused once b's lease is seen renewed, nothing touched.
    await assert.rejects(open('b'), { code: 'DTX_LOG_BUSY' });
    const saga = {
      id: 'r-saga',
      steps: [{ name: 'x', action: { url: `${svc.url}/x` }, compensation: { url: `${svc.url}/x-undo` } }],
      wait: { timeoutMs: 10_000 },
    };
    const first = await call(a.url, 'POST', '/v1/sagas', saga);
    assert.equal(first.status, 200, JSON.stringify(first.json));
    assert.equal(first.json.state, 'completed');
    // The same request at the other server: the same saga, read from the store, run once.
    const again = await call(b.url, 'POST', '/v1/sagas', saga);
    assert.equal(again.status, 200, JSON.stringify(again.json));
    assert.equal(again.json.state, 'completed');
    assert.equal(again.json.type, 'saga');
    assert.equal(svc.count('r-saga:x:action'), 1);
    const other = await call(b.url, 'POST', '/v1/sagas', {
      ...saga,
      steps: [{ ...saga.steps[0], name: 'y' }],
    });
    assert.equal(other.status, 409);
    assert.equal(other.json.code, 'DTX_DUPLICATE_GID');
    const q = await call(b.url, 'GET', '/api/dtmsvr/query?gid=r-saga');
    assert.equal(q.json.transaction.status, 'succeed');

    // A claim whose server died before its `begin` (made here by hand): the gid's server begins it on the
    // caller's retry; another server cannot answer for it meanwhile.
    const client = new pg.default.Client({ connectionString: store.postgres });
    await client.connect();
    const orphan = { ...saga, id: 'r-orphan' };
    const { wait: _wait, ...identity } = orphan;
    try {
      await client.query(
        `INSERT INTO dtx_serve_gid (gid, owner, type, hash) VALUES ('r-orphan', 'dtx-serve:a', 'saga', $1)`,
        [requestHash(identity)],
      );
    } finally {
      await client.end();
    }
    const early = await call(b.url, 'POST', '/v1/sagas', orphan);
    assert.equal(early.status, 421, JSON.stringify(early.json));
    const begun = await call(a.url, 'POST', '/v1/sagas', orphan);
    assert.equal(begun.status, 200, JSON.stringify(begun.json));
    assert.equal(begun.json.state, 'completed');
    assert.equal(svc.count('r-orphan:x:action'), 1);

    // A TCC prepared at a: its branches and decision belong to a.
    assert.equal((await call(a.url, 'POST', '/v1/tcc', { id: 'r-tcc', timeoutMs: 60_000 })).status, 201);
    const branch = { branch: 'hold', confirm: `${svc.url}/c`, cancel: `${svc.url}/u` };
    const misdirected = await call(b.url, 'POST', '/v1/tcc/r-tcc/branches', branch);
    assert.equal(misdirected.status, 421, JSON.stringify(misdirected.json));
    assert.equal(misdirected.json.code, 'DTX_NOT_OWNER');
    assert.match(misdirected.json.detail, /server a\b/);
    assert.equal((await call(a.url, 'POST', '/v1/tcc/r-tcc/branches', branch)).status, 200);
    assert.equal((await call(b.url, 'GET', '/v1/transactions/r-tcc')).json.state, 'prepared');
    // r-keep stays prepared throughout: whoever runs a's logs has something open there.
    assert.equal((await call(a.url, 'POST', '/v1/tcc', { id: 'r-keep', timeoutMs: 120_000 })).status, 201);

    // a stops with r-tcc still prepared: b takes a's logs over and can submit it.
    await a.close();
    a = undefined;
    const deadline = Date.now() + 20_000;
    let submitted: Awaited<ReturnType<typeof call>>;
    for (;;) {
      submitted = await call(b.url, 'POST', '/v1/tcc/r-tcc/submit', { wait: { timeoutMs: 10_000 } });
      if (submitted.status !== 421 || Date.now() > deadline) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.equal(submitted.status, 200, JSON.stringify(submitted.json));
    assert.equal(submitted.json.state, 'completed');
    assert.equal(svc.count('r-tcc:hold:confirm'), 1);

    // a restarts under its id and asks for its logs back: b gives them up though r-keep is open there.
    const back = open('a');
    const bound = new Promise<never>((_, reject) =>
      setTimeout(() => reject(new Error('a did not get its logs back')), 20_000).unref(),
    );
    a = await Promise.race([back, bound]);
    assert.equal((await call(a.url, 'GET', '/v1/transactions/r-tcc')).json.state, 'completed');
    assert.equal((await call(a.url, 'POST', '/v1/tcc/r-keep/branches', branch)).status, 200);
    const kept = await call(a.url, 'POST', '/v1/tcc/r-keep/submit', { wait: { timeoutMs: 10_000 } });
    assert.equal(kept.json.state, 'completed', JSON.stringify(kept.json));
    assert.equal(svc.count('r-keep:hold:confirm'), 1);
    const fromB = await call(b.url, 'POST', '/v1/tcc/r-keep/abort', {});
    assert.equal(fromB.status, 421);
    assert.match(fromB.json.detail, /run by server a\b/);
    const retried = await call(a.url, 'POST', '/v1/transactions/r-saga/retry');
    assert.notEqual(retried.status, 421, JSON.stringify(retried.json));
  } finally {
    await a?.close();
    await b?.close();
    await svc.close();
    await admin.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`).catch(() => undefined);
    await admin.end();
  }
});
