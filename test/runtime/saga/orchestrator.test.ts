// The saga orchestrator's API with local branch functions: idempotent start,
// status and result, a refusal, a rejected definition, and the PostgreSQL log
// (the server at 127.0.0.1:5432, database `test`) surviving a restart.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import pg from 'pg';
import { isDtxError } from '../../../src/errors.ts';
import {
  type BranchContext,
  createSagaOrchestrator,
  openSagaLog,
  refuse,
  type SagaDefinition,
} from '../../../src/runtime/saga/orchestrator.ts';

const dir = mkdtempSync(join(tmpdir(), 'dtx-saga-api-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const run = `${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;

function tracing(calls: string[], gate?: Promise<void>): SagaDefinition {
  const fn = (what: string) => async (ctx: BranchContext) => {
    calls.push(`${what}:${ctx.op}:${ctx.idempotencyKey}`);
    if (gate !== undefined && what === 'b' && ctx.op === 'action') await gate;
    if (what === 'c' && (ctx.input as { refuse?: boolean } | null)?.refuse) refuse('no stock');
  };
  return {
    name: 'trace',
    steps: ['a', 'b', 'c'].map((s) => ({ name: s, action: fn(s), compensation: fn(s) })),
  };
}

test('start is idempotent per key; status shows progress; result waits or returns at once', async () => {
  const log = await openSagaLog({ sqlite: join(dir, 'api.sqlite'), create: true });
  const o = await createSagaOrchestrator({ log, timing: { retryBaseMs: 20 } });
  const calls: string[] = [];
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  const def = tracing(calls, gate);
  const [id1, id2] = await Promise.all([
    o.start(def, { idempotencyKey: 'k1' }),
    o.start(def, { idempotencyKey: 'k1' }),
  ]);
  assert.equal(id1, id2);
  await new Promise((resolve) => setTimeout(resolve, 30));
  const status = o.status(id1);
  assert.equal(status.state, 'running');
  assert.deepEqual(status.branches, { a: 'done', b: 'running', c: 'idle' });
  assert.equal(await o.result(id1, { wait: false }), null);
  open();
  assert.deepEqual(await o.result(id1), { sagaId: id1, outcome: 'completed', reason: null });
  assert.equal(await o.start(def, { idempotencyKey: 'k1' }), id1);
  assert.deepEqual(
    calls.filter((c) => !c.startsWith('b:action')),
    [`a:action:${id1}:a:action`, `c:action:${id1}:c:action`],
  );
  assert.equal(o.status('nope').state, 'unknown');
  await o.close();
  await log.close();
});

test('a refused local action compensates in reverse; a bad definition is rejected with a typed error', async () => {
  const log = await openSagaLog({ sqlite: join(dir, 'refuse.sqlite'), create: true });
  const o = await createSagaOrchestrator({ log, timing: { retryBaseMs: 20 } });
  const calls: string[] = [];
  const id = await o.start(tracing(calls), { idempotencyKey: 'k2', input: { refuse: true } });
  const r = await o.result(id);
  assert.equal(r.outcome, 'compensated');
  assert.equal(r.reason, 'c refused: no stock');
  assert.deepEqual(
    calls.map((c) => c.split(':').slice(0, 2).join(':')),
    ['a:action', 'b:action', 'c:action', 'b:compensation', 'a:compensation'],
  );
  const bad: SagaDefinition = {
    name: 'bad',
    steps: [
      { name: 'x', action: async () => undefined, compensation: null },
      { name: 'y', action: async () => undefined, compensation: async () => undefined },
    ],
  };
  await assert.rejects(o.start(bad, { idempotencyKey: 'k3' }), (e) => isDtxError(e, 'DTX_INVALID_ARGUMENT'));
  await o.close();
  await log.close();
});

test('on a PostgreSQL log, a restarted orchestrator knows finished sagas and runs nothing again', async () => {
  const url = 'postgres://postgres@127.0.0.1:5432/test';
  const table = `dtx_sagalog_${run}`;
  const calls: string[] = [];
  const log = await openSagaLog({ postgres: url, owner: 'saga-test', table, create: true });
  const o = await createSagaOrchestrator({ log, timing: { retryBaseMs: 20 } });
  const id = await o.start(tracing(calls), { idempotencyKey: 'pg-1' });
  assert.equal((await o.result(id)).outcome, 'completed');
  await o.close();
  await log.close();
  const log2 = await openSagaLog({ postgres: url, owner: 'saga-test', table });
  const o2 = await createSagaOrchestrator({ log: log2, definitions: [tracing(calls)] });
  assert.equal(o2.status(id).state, 'completed');
  assert.equal(await o2.start(tracing(calls), { idempotencyKey: 'pg-1' }), id);
  assert.equal(calls.length, 3);
  await o2.close();
  await log2.close();
  const client = new pg.Client(url);
  await client.connect();
  await client.query(`DROP TABLE IF EXISTS ${table}, ${table}_lease`);
  await client.end();
});
