// Fixture of test/runtime/saga/countermeasures.test.ts: a bank on SQLite or
// PostgreSQL whose transfer saga uses the semantic lock (debit flags
// `account:alice`; the saga's last step clears the flag). Run as a script, it
// starts one saga on a durable SQLite log; the credit step prints CRASH-POINT
// and hangs, for the test to SIGKILL it with the flag set.
//
//   node --import tsx countermeasures.fixture.ts <logPath> <sqlite|postgres> <bank> <key>
// (<bank>: the SQLite file, or the suffix of the PostgreSQL table names)

import { pathToFileURL } from 'node:url';
import Database from 'better-sqlite3';
import pg from 'pg';
import {
  type BarrierDb,
  postgresBarrierDb,
  sqliteBarrierDb,
  withBarrier,
} from '../../../src/adapters/barrier.ts';
import { type SemanticLocks, semanticLocks } from '../../../src/adapters/semantic-lock.ts';
import { lockedStep, releaseLocksStep } from '../../../src/runtime/saga/countermeasures.ts';
import {
  type BranchContext,
  createSagaOrchestrator,
  openSagaLog,
  refuse,
  type SagaDefinition,
} from '../../../src/runtime/saga/orchestrator.ts';

export interface Bank {
  barrier: BarrierDb<unknown>;
  locks: SemanticLocks<unknown>;
  /** `UPDATE accounts SET balance = balance + delta`, on the barrier's transaction. */
  add(tx: unknown, account: string, delta: number): Promise<void>;
  balance(account: string): Promise<number>;
  close(): Promise<void>;
}

export const pgConnection = { host: '127.0.0.1', port: 5432, user: 'postgres', database: 'test' };

export async function openBank(kind: 'sqlite' | 'postgres', bank: string): Promise<Bank> {
  if (kind === 'sqlite') {
    const conn = new Database(bank);
    conn.pragma('journal_mode = WAL');
    conn.pragma('synchronous = FULL');
    conn.exec('CREATE TABLE IF NOT EXISTS accounts (id TEXT PRIMARY KEY, balance INT NOT NULL)');
    conn.exec("INSERT OR IGNORE INTO accounts VALUES ('alice', 100), ('bob', 0)");
    const barrier = sqliteBarrierDb(conn) as BarrierDb<unknown>;
    return {
      barrier,
      locks: semanticLocks(barrier),
      async add(tx, account, delta) {
        (tx as Database.Database)
          .prepare('UPDATE accounts SET balance = balance + ? WHERE id = ?')
          .run(delta, account);
      },
      async balance(account) {
        return (conn.prepare('SELECT balance FROM accounts WHERE id = ?').get(account) as { balance: number })
          .balance;
      },
      async close() {
        conn.close();
      },
    };
  }
  const pool = new pg.Pool({ ...pgConnection, max: 4 });
  const accounts = `dtx_w2_acc_${bank}`;
  await pool.query(`CREATE TABLE IF NOT EXISTS ${accounts} (id TEXT PRIMARY KEY, balance INT NOT NULL)`);
  await pool.query(`INSERT INTO ${accounts} VALUES ('alice', 100), ('bob', 0) ON CONFLICT DO NOTHING`);
  const barrier = postgresBarrierDb(pool, { table: `dtx_w2_bar_${bank}` }) as BarrierDb<unknown>;
  return {
    barrier,
    locks: semanticLocks(barrier, { table: `dtx_w2_lock_${bank}` }),
    async add(tx, account, delta) {
      await (tx as pg.PoolClient).query(`UPDATE ${accounts} SET balance = balance + $1 WHERE id = $2`, [
        delta,
        account,
      ]);
    },
    async balance(account) {
      return (await pool.query(`SELECT balance FROM ${accounts} WHERE id = $1`, [account])).rows[0].balance;
    },
    async close() {
      await pool.end();
    },
  };
}

/** Drops what `openBank('postgres', bank)` created. */
export async function dropPgBank(bank: string): Promise<void> {
  const pool = new pg.Pool({ ...pgConnection, max: 1 });
  await pool.query(`DROP TABLE IF EXISTS dtx_w2_acc_${bank}, dtx_w2_bar_${bank}, dtx_w2_lock_${bank}`);
  await pool.end();
}

/**
 * Debit alice under a semantic lock, credit bob, then clear the flag.
 * `credit`: what the credit step does (`hang` after printing CRASH-POINT).
 */
export function lockedTransfer(bank: Bank, credit: 'hang' | 'refuse' | 'succeed'): SagaDefinition {
  const debit = lockedStep(
    bank.barrier,
    bank.locks,
    'account:alice',
    (tx) => bank.add(tx, 'alice', -30),
    (tx) => bank.add(tx, 'alice', 30),
  );
  const creditBob = (delta: number) => async (ctx: BranchContext) => {
    if (ctx.op === 'action' && credit === 'hang') {
      process.stdout.write('CRASH-POINT\n');
      await new Promise(() => undefined);
    }
    if (ctx.op === 'action' && credit === 'refuse') refuse('bob closed his account');
    await withBarrier(bank.barrier, { sagaId: ctx.sagaId, branchId: ctx.branchId, op: ctx.op }, (tx) =>
      bank.add(tx, 'bob', delta),
    );
  };
  return {
    name: 'locked-transfer',
    steps: [
      { name: 'debit', ...debit },
      { name: 'credit', action: creditBob(30), compensation: creditBob(-30) },
      { name: 'unlock', action: releaseLocksStep(bank.barrier, bank.locks), compensation: null },
    ],
  };
}

async function main(): Promise<void> {
  const [logPath, kind, bankName, key] = process.argv.slice(2) as [
    string,
    'sqlite' | 'postgres',
    string,
    string,
  ];
  const bank = await openBank(kind, bankName);
  const log = await openSagaLog({ sqlite: logPath, create: true });
  const o = await createSagaOrchestrator({ log, timing: { retryBaseMs: 20, retryCapMs: 40, jitter: 0 } });
  const sagaId = await o.start(lockedTransfer(bank, 'hang'), { idempotencyKey: key });
  process.stdout.write(`STARTED ${sagaId}\n`);
  await o.result(sagaId);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await main();
}
