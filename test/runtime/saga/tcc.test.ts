// TCC on the saga runtime, over a SQLite bank with frozen amounts, every
// branch through the barrier: confirm all, cancel all on a refusal, and a try
// that arrives after its cancel (the transaction timed out) is refused while
// the cancel without try is a no-op — balances unchanged.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import Database from 'better-sqlite3';
import { sqliteBarrierDb, withBarrier } from '../../../src/adapters/barrier.ts';
import { refuse } from '../../../src/runtime/saga/orchestrator.ts';
import {
  createTccOrchestrator,
  openTccLog,
  type TccContext,
  type TccDefinition,
} from '../../../src/runtime/tcc/orchestrator.ts';

const dir = mkdtempSync(join(tmpdir(), 'dtx-tcc-'));
const conn = new Database(join(dir, 'bank.sqlite'));
conn.exec('CREATE TABLE accounts (id TEXT PRIMARY KEY, balance INT NOT NULL, frozen INT NOT NULL)');
conn.exec("INSERT INTO accounts VALUES ('alice', 100, 0), ('bob', 0, 0)");
const barrier = sqliteBarrierDb(conn);
after(() => {
  conn.close();
  rmSync(dir, { recursive: true, force: true });
});

const books = () =>
  Object.fromEntries(
    (
      conn.prepare('SELECT id, balance, frozen FROM accounts ORDER BY id').all() as {
        id: string;
        balance: number;
        frozen: number;
      }[]
    ).map((r) => [r.id, [r.balance, r.frozen]]),
  );

const lateTries: unknown[] = [];

/** Moves `amount` (from the input) out of `account` (negative) or into it (positive), frozen until confirm. */
function account(id: string, sign: -1 | 1, delayTryMs = 0) {
  const exec = (sql: string, ctx: TccContext) => (tx: Database.Database) => {
    tx.prepare(sql).run({ amount: (ctx.input as { amount: number }).amount, id });
    return Promise.resolve();
  };
  return {
    name: id,
    try: async (ctx: TccContext) => {
      if (delayTryMs > 0) await new Promise((resolve) => setTimeout(resolve, delayTryMs));
      try {
        await withBarrier(barrier, ctx, async (tx) => {
          const amount = (ctx.input as { amount: number }).amount;
          if (sign < 0) {
            const row = tx.prepare('SELECT balance FROM accounts WHERE id = ?').get(id) as {
              balance: number;
            };
            if (row.balance < amount) refuse(`insufficient funds in ${id}`);
            return exec(
              'UPDATE accounts SET balance = balance - @amount, frozen = frozen + @amount WHERE id = @id',
              ctx,
            )(tx);
          }
          return exec('UPDATE accounts SET frozen = frozen + @amount WHERE id = @id', ctx)(tx);
        });
      } catch (error) {
        if (delayTryMs > 0) lateTries.push(error);
        throw error;
      }
    },
    confirm: async (ctx: TccContext) => {
      await withBarrier(barrier, ctx, (tx) =>
        sign < 0
          ? exec('UPDATE accounts SET frozen = frozen - @amount WHERE id = @id', ctx)(tx)
          : exec(
              'UPDATE accounts SET balance = balance + @amount, frozen = frozen - @amount WHERE id = @id',
              ctx,
            )(tx),
      );
    },
    cancel: async (ctx: TccContext) => {
      await withBarrier(barrier, ctx, (tx) =>
        sign < 0
          ? exec(
              'UPDATE accounts SET balance = balance + @amount, frozen = frozen - @amount WHERE id = @id',
              ctx,
            )(tx)
          : exec('UPDATE accounts SET frozen = frozen - @amount WHERE id = @id', ctx)(tx),
      );
    },
  };
}

const transfer: TccDefinition = { name: 'pay', branches: [account('alice', -1), account('bob', 1)] };

test('TCC: tries freeze, confirms apply; a refused try cancels the others and leaves the books as they were', async () => {
  const log = await openTccLog({ sqlite: join(dir, 'log1.sqlite'), create: true });
  const o = await createTccOrchestrator({ log, timing: { retryBaseMs: 20 } });
  const id = await o.start(transfer, { idempotencyKey: 't1', input: { amount: 30 } });
  assert.deepEqual(await o.result(id), { sagaId: id, outcome: 'completed', reason: null });
  assert.deepEqual(books(), { alice: [70, 0], bob: [30, 0] });
  assert.equal(await o.start(transfer, { idempotencyKey: 't1', input: { amount: 30 } }), id);
  assert.deepEqual(books(), { alice: [70, 0], bob: [30, 0] });

  const id2 = await o.start(transfer, { idempotencyKey: 't2', input: { amount: 500 } });
  const r = await o.result(id2);
  assert.equal(r.outcome, 'compensated');
  assert.match(r.reason ?? '', /alice refused: insufficient funds in alice/);
  assert.deepEqual(books(), { alice: [70, 0], bob: [30, 0] });
  await o.close();
  await log.close();
});

test('TCC: a try that arrives after its cancel is refused; the cancel without try was a no-op; balances unchanged', async () => {
  const log = await openTccLog({ sqlite: join(dir, 'log2.sqlite'), create: true });
  const o = await createTccOrchestrator({ log, timing: { retryBaseMs: 20 } });
  const slow: TccDefinition = {
    name: 'slowpay',
    branches: [account('alice', -1), account('bob', 1, 300)],
    timeoutMs: 100,
  };
  const before = books();
  const id = await o.start(slow, { idempotencyKey: 't3', input: { amount: 10 } });
  const r = await o.result(id);
  assert.equal(r.outcome, 'compensated');
  assert.match(r.reason ?? '', /timed out after 100 ms/);
  // The cancel of bob ran before its try: a recorded no-op.
  const rows = conn
    .prepare("SELECT op, state FROM dtx_barrier WHERE saga_id = ? AND branch_id = 'bob' ORDER BY op")
    .all(id);
  assert.deepEqual(rows, [
    { op: 'cancel', state: 'done' },
    { op: 'try', state: 'blocked' },
  ]);
  // Then the late try arrives and is refused by the barrier.
  await new Promise((resolve) => setTimeout(resolve, 400));
  assert.equal(lateTries.length, 1);
  assert.equal((lateTries[0] as { code?: string }).code, 'DTX_BRANCH_HANGING');
  assert.deepEqual(books(), before);
  await o.close();
  await log.close();
});
