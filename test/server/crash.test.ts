// `dtx serve` as a real process, SIGKILLed while sagas are in flight and
// restarted on the same store: every saga ends exactly once, completed or
// compensated, and every business effect is applied once. The branch
// service applies an effect only on the first call of its Idempotency-Key
// (what the barrier does), and counts the repeats the restart causes.
// Also: the same flow on PostgreSQL (`--store postgres://`, its own database).

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { branchService, call, kill, startServe, until } from './helpers.ts';

const dir = mkdtempSync(join(tmpdir(), 'dtx-serve-crash-'));
after(() => rmSync(dir, { recursive: true, force: true }));
/** Runs `count` sagas of three steps (every third refused at its last step), kills the server mid-way, restarts, checks. */
async function crashAndFinish(store: string, count: number): Promise<void> {
  const applied = new Map<string, number>();
  // Every last step is held until the server has been killed: the kill lands
  // while every saga has a call out, whatever the machine's load.
  let openGate: () => void = () => undefined;
  const gate = new Promise<void>((resolve) => (openGate = resolve));
  let held = 0;
  const svc = await branchService(async (c, nth) => {
    const saga = c.key.split(':')[0]!;
    if (c.path === '/s3' && c.op === 'action') {
      held++;
      await gate;
      if (Number(saga.split('-').at(-1)) % 3 === 0) return { status: 409, body: '{"reason":"refused"}' };
    }
    if (nth === 1) applied.set(c.key, (applied.get(c.key) ?? 0) + 1);
    return { status: 200 };
  });
  try {
    let { child, url } = await startServe(['--store', store]);
    const ids = Array.from({ length: count }, (_, i) => `crash-${i}`);
    for (const id of ids) {
      const r = await call(url, 'POST', '/v1/sagas', {
        id,
        steps: ['s1', 's2', 's3'].map((s) => ({
          name: s,
          action: { url: `${svc.url}/${s}` },
          compensation: { url: `${svc.url}/${s}-undo` },
        })),
      });
      assert.equal(r.status, 202, JSON.stringify(r.json));
    }
    const deadline = Date.now() + 60_000;
    while (held < count && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    assert.equal(held, count, 'every saga reached its last step');
    await kill(child, 'SIGKILL');
    openGate();
    ({ child, url } = await startServe(['--store', store]));
    try {
      for (const id of ids)
        await until(url, id, (v) => ['completed', 'compensated'].includes(v.state), 60_000);
      for (const [i, id] of ids.entries()) {
        const v = (await call(url, 'GET', `/v1/transactions/${id}`)).json;
        const refused = i % 3 === 0;
        assert.equal(v.state, refused ? 'compensated' : 'completed', id);
        for (const s of ['s1', 's2']) {
          assert.equal(applied.get(`${id}:${s}:action`), 1, `${id} ${s} action applied once`);
          assert.equal(
            applied.get(`${id}:${s}:compensation`),
            refused ? 1 : undefined,
            `${id} ${s} compensation`,
          );
        }
        assert.equal(applied.get(`${id}:s3:action`), refused ? undefined : 1);
      }
      // The held calls were sent again by the restarted server.
      assert.ok(svc.calls.filter((c) => c.path === '/s3').length >= 2 * count);
    } finally {
      await kill(child, 'SIGTERM');
    }
  } finally {
    await svc.close();
  }
}

test('dtx serve SIGKILLed mid-saga and restarted on the same SQLite store finishes every saga once', async () => {
  await crashAndFinish(`sqlite:${join(dir, 'store.sqlite')}`, 12);
});

test('dtx serve on PostgreSQL (--store postgres://, its own database) survives a SIGKILL too', async () => {
  const pg = await import('pg');
  const admin = new pg.default.Client({ connectionString: 'postgres://postgres@127.0.0.1:5432/postgres' });
  await admin.connect();
  const db = 'dtx_serve_test';
  try {
    await admin.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
    await admin.query(`CREATE DATABASE ${db}`);
    await crashAndFinish(`postgres://postgres@127.0.0.1:5432/${db}`, 6);
  } finally {
    await admin.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`).catch(() => undefined);
    await admin.end();
  }
});
