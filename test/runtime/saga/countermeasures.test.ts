// The saga countermeasures (src/runtime/saga/countermeasures.ts,
// src/adapters/semantic-lock.ts) on real SQLite, PostgreSQL and MariaDB: the
// semantic lock's flag is set with the step's write and cleared by its
// compensation or by the saga's last step; other sagas and readers get a
// retryable SemanticLockError while it is set; it survives a SIGKILL of the
// orchestrator and the recovered saga clears it. Commutative updates lose
// nothing when a compensation runs after another saga's write.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import mysql from 'mysql2/promise';
import { type BarrierDb, mariadbBarrierDb } from '../../../src/adapters/barrier.ts';
import { SemanticLockError, semanticLocks } from '../../../src/adapters/semantic-lock.ts';
import { isDtxError } from '../../../src/errors.ts';
import {
  commutativeUpdate,
  lockedStep,
  releaseLocksStep,
} from '../../../src/runtime/saga/countermeasures.ts';
import {
  type BranchContext,
  createSagaOrchestrator,
  openSagaLog,
} from '../../../src/runtime/saga/orchestrator.ts';
import { runUntilCrashPoint } from '../../support/kill-at.ts';
import { type Bank, dropPgBank, lockedTransfer, openBank } from './countermeasures.fixture.ts';

const run = `${Date.now().toString(36)}${randomBytes(2).toString('hex')}`;
const dir = mkdtempSync(join(tmpdir(), 'dtx-countermeasures-'));
const fixture = fileURLToPath(new URL('./countermeasures.fixture.ts', import.meta.url));
after(() => rmSync(dir, { recursive: true, force: true }));

const ctx = (sagaId: string, branchId: string, op: 'action' | 'compensation'): BranchContext => ({
  sagaId,
  branchId,
  op,
  idempotencyKey: `${sagaId}:${branchId}:${op}`,
  attempt: 1,
  input: undefined,
});

const isLockError = (e: unknown) =>
  e instanceof SemanticLockError && isDtxError(e) && e.code === 'DTX_LOCK_CONFLICT' && e.retryable;

async function mariadbBank(): Promise<Bank & { drop(): Promise<void> }> {
  const database = `dtx_w2_cm_${run}`;
  const admin = await mysql.createConnection({ host: '127.0.0.1', port: 3306, user: 'root' });
  await admin.query(`CREATE DATABASE ${database}`);
  await admin.end();
  const pool = mysql.createPool({
    host: '127.0.0.1',
    port: 3306,
    user: 'root',
    database,
    connectionLimit: 4,
  });
  await pool.query('CREATE TABLE accounts (id VARCHAR(16) PRIMARY KEY, balance INT NOT NULL) ENGINE=InnoDB');
  await pool.query("INSERT INTO accounts VALUES ('alice', 100), ('bob', 0)");
  const barrier = mariadbBarrierDb(pool) as BarrierDb<unknown>;
  return {
    barrier,
    locks: semanticLocks(barrier),
    async add(tx, account, delta) {
      await (tx as mysql.PoolConnection).query('UPDATE accounts SET balance = balance + ? WHERE id = ?', [
        delta,
        account,
      ]);
    },
    async balance(account) {
      const [rows] = await pool.query('SELECT balance FROM accounts WHERE id = ?', [account]);
      return (rows as { balance: number }[])[0]!.balance;
    },
    async close() {
      await pool.end();
    },
    async drop() {
      const c = await mysql.createConnection({ host: '127.0.0.1', port: 3306, user: 'root' });
      await c.query(`DROP DATABASE IF EXISTS ${database}`);
      await c.end();
    },
  };
}

const banks: [string, () => Promise<Bank & { drop(): Promise<void> }>][] = [
  [
    'sqlite',
    async () => ({
      ...(await openBank('sqlite', join(dir, `bank-${randomBytes(3).toString('hex')}.sqlite`))),
      drop: async () => undefined,
    }),
  ],
  [
    'postgres',
    async () => {
      const name = `${run}${randomBytes(2).toString('hex')}`;
      return { ...(await openBank('postgres', name)), drop: () => dropPgBank(name) };
    },
  ],
  ['mariadb', mariadbBank],
];

for (const [name, open] of banks) {
  describe(`semantic lock on ${name}`, () => {
    test('the flag is set with the write, refuses other sagas and readers, and goes with the compensation or the last step', async () => {
      const bank = await open();
      try {
        const debit = (resource: string) =>
          lockedStep(
            bank.barrier,
            bank.locks,
            resource,
            (tx) => bank.add(tx, 'alice', -30),
            (tx) => bank.add(tx, 'alice', 30),
          );
        const step = debit('account:alice');
        await step.action(ctx('sagaA', 'debit', 'action'));
        assert.equal(await bank.balance('alice'), 70);
        // A reader that respects the lock does not see the pending debit.
        await assert.rejects(
          bank.locks.read(['account:alice', 'account:bob'], async () => 'read'),
          (e) => isLockError(e) && (e as SemanticLockError).holderSagaId === 'sagaA',
        );
        assert.equal(await bank.locks.read(['account:bob'], async () => 'read'), 'read');
        // Another saga's step on the same resource: refused, retryably, and nothing it wrote stays.
        await assert.rejects(step.action(ctx('sagaB', 'debit', 'action')), isLockError);
        assert.equal(await bank.balance('alice'), 70);
        // The same call again (a retry) is the barrier's duplicate: no second debit, no error.
        await step.action(ctx('sagaA', 'debit', 'action'));
        assert.equal(await bank.balance('alice'), 70);
        // Compensation: the debit undone and the flag gone, in one local transaction.
        await step.compensation(ctx('sagaA', 'debit', 'compensation'));
        assert.equal(await bank.balance('alice'), 100);
        assert.equal(await bank.locks.read(['account:alice'], async () => 'free'), 'free');
        // Completion: sagaB now takes it; its last step clears it.
        await step.action(ctx('sagaB', 'debit', 'action'));
        await assert.rejects(
          bank.locks.read(['account:alice'], async () => 0),
          isLockError,
        );
        await releaseLocksStep(bank.barrier, bank.locks)(ctx('sagaB', 'unlock', 'action'));
        assert.equal(await bank.locks.read(['account:alice'], async () => 'free'), 'free');
        assert.equal(await bank.balance('alice'), 70);
        // Bad input is refused before any SQL.
        await assert.rejects(
          debit('x'.repeat(200)).action(ctx('sagaC', 'debit', 'action')),
          (e) => isDtxError(e) && e.code === 'DTX_INVALID_ARGUMENT',
        );
        assert.throws(
          () => semanticLocks(bank.barrier, { table: 'locks; DROP TABLE accounts' }),
          /must match/,
        );
      } finally {
        await bank.close();
        await bank.drop();
      }
    });

    test('commutative updates: a compensation after another saga wrote the row loses nothing', async () => {
      const bank = await open();
      try {
        const table = name === 'postgres' ? `dtx_w2_acc_${await pgSuffix(bank)}` : 'accounts';
        const update = (delta: number, min?: number) =>
          commutativeUpdate(bank.barrier, {
            table,
            keyColumn: 'id',
            column: 'balance',
            key: 'alice',
            delta,
            ...(min !== undefined ? { min } : {}),
          });
        const debit = update(-30, 0);
        await debit.action(ctx('sagaA', 'debit', 'action'));
        await update(50).action(ctx('sagaB', 'deposit', 'action'));
        await debit.compensation(ctx('sagaA', 'debit', 'compensation'));
        // An undo image (the 100 alice had before sagaA) would have erased sagaB's 50.
        assert.equal(await bank.balance('alice'), 150);
        // The bound is checked in the same statement: an overdraft is refused and writes nothing.
        await assert.rejects(
          update(-200, 0).action(ctx('sagaC', 'debit', 'action')),
          (e) => isDtxError(e) && e.code === 'DTX_BRANCH_REFUSED',
        );
        assert.equal(await bank.balance('alice'), 150);
        assert.throws(
          () =>
            commutativeUpdate(bank.barrier, { table: 'a b', keyColumn: 'id', column: 'c', key: 1, delta: 1 }),
          (e) => isDtxError(e) && e.code === 'DTX_INVALID_ARGUMENT',
        );
      } finally {
        await bank.close();
        await bank.drop();
      }
    });
  });
}

/** The PostgreSQL bank's table suffix, read back from the barrier's table name. */
async function pgSuffix(bank: Bank): Promise<string> {
  return bank.barrier.table.slice('dtx_w2_bar_'.length);
}

for (const kind of ['sqlite', 'postgres'] as const) {
  for (const credit of ['refuse', 'succeed'] as const) {
    test(`${kind}: the flag survives a SIGKILL of the orchestrator; the recovered saga ${credit === 'refuse' ? 'compensates' : 'completes'} and clears it`, async () => {
      const bankName =
        kind === 'sqlite' ? join(dir, `crash-${credit}.sqlite`) : `${run}k${credit.slice(0, 3)}`;
      const logPath = join(dir, `crash-${kind}-${credit}.log`);
      // The credit step hangs once the debit and its flag are committed.
      await runUntilCrashPoint(fixture, [logPath, kind, bankName, `order-${credit}`]);
      const bank = await openBank(kind, bankName);
      try {
        // The debit committed with its flag; the process that set it is gone.
        assert.equal(await bank.balance('alice'), 70);
        await assert.rejects(
          bank.locks.read(['account:alice'], async () => 0),
          isLockError,
        );
        const log = await openSagaLog({ sqlite: logPath });
        const o = await createSagaOrchestrator({
          log,
          definitions: [lockedTransfer(bank, credit)],
          timing: { retryBaseMs: 20, retryCapMs: 40, jitter: 0 },
        });
        const [saga] = await o.list({});
        const r = await o.result(saga!.id, { timeoutMs: 30_000 });
        await o.close();
        await log.close();
        assert.equal(r.outcome, credit === 'refuse' ? 'compensated' : 'completed');
        assert.equal(await bank.balance('alice'), credit === 'refuse' ? 100 : 70);
        assert.equal(await bank.balance('bob'), credit === 'refuse' ? 0 : 30);
        assert.equal(await bank.locks.read(['account:alice'], async () => 'free'), 'free');
      } finally {
        await bank.close();
        if (kind === 'postgres') await dropPgBank(bankName);
      }
    });
  }
}
