// Fixture of test/runtime/saga/recovery.test.ts: a transfer saga over a SQLite
// "bank" whose branches write through the barrier. Run as a script, it starts
// one saga on a durable SQLite log and, at the crash point named by
// DTX_FIXTURE_CRASH (`<branch>:<op>`), prints CRASH-POINT once that branch's
// local transaction committed and then hangs, for the test to SIGKILL it.
// With DTX_FIXTURE_UNDO_DOWN=<branch>, that branch's compensation fails every
// attempt; the run's stuck alert (after 3 attempts) prints STUCK and
// CRASH-POINT, and the saga keeps retrying until it is killed.
//
//   node --import tsx test/runtime/saga/crash.fixture.ts <logPath> <bankPath> <key> <refuseFee>

import { pathToFileURL } from 'node:url';
import Database from 'better-sqlite3';
import { type BarrierDb, sqliteBarrierDb, withBarrier } from '../../../src/adapters/barrier.ts';
import {
  type BranchContext,
  createSagaOrchestrator,
  openSagaLog,
  refuse,
  type SagaDefinition,
} from '../../../src/runtime/saga/orchestrator.ts';

export function openBank(path: string): { conn: Database.Database; barrier: BarrierDb<Database.Database> } {
  const conn = new Database(path);
  conn.pragma('journal_mode = WAL');
  conn.pragma('synchronous = FULL');
  conn.exec('CREATE TABLE IF NOT EXISTS accounts (id TEXT PRIMARY KEY, balance INT NOT NULL)');
  conn.exec("INSERT OR IGNORE INTO accounts VALUES ('alice', 100), ('bob', 0), ('fees', 0)");
  return { conn, barrier: sqliteBarrierDb(conn) };
}

export function balances(conn: Database.Database): Record<string, number> {
  const rows = conn.prepare('SELECT id, balance FROM accounts ORDER BY id').all() as {
    id: string;
    balance: number;
  }[];
  return Object.fromEntries(rows.map((r) => [r.id, r.balance]));
}

/** The transfer saga: debit alice, credit bob, charge a fee (refused when the input says so). */
export function transferSaga(
  barrier: BarrierDb<Database.Database>,
  seen: { duplicates: number } = { duplicates: 0 },
): SagaDefinition {
  const crashAt = process.env.DTX_FIXTURE_CRASH;
  const undoDown = process.env.DTX_FIXTURE_UNDO_DOWN;
  const write =
    (account: string, delta: number, refusable = false) =>
    async (ctx: BranchContext): Promise<void> => {
      if (refusable && ctx.op === 'action' && (ctx.input as { refuseFee: boolean }).refuseFee) {
        refuse('fee limit exceeded');
      }
      if (undoDown === ctx.branchId && ctx.op === 'compensation') throw new Error(`${account} ledger down`);
      const r = await withBarrier(
        barrier,
        { sagaId: ctx.sagaId, branchId: ctx.branchId, op: ctx.op },
        async (tx) => {
          tx.prepare('UPDATE accounts SET balance = balance + ? WHERE id = ?').run(delta, account);
        },
      );
      if (r.status === 'duplicate') seen.duplicates++;
      if (crashAt === `${ctx.branchId}:${ctx.op}`) {
        process.stdout.write('CRASH-POINT\n');
        await new Promise(() => undefined); // hang until killed
      }
    };
  return {
    name: 'transfer',
    steps: [
      { name: 'debit', action: write('alice', -30), compensation: write('alice', 30) },
      { name: 'credit', action: write('bob', 30), compensation: write('bob', -30) },
      { name: 'fee', action: write('fees', 1, true), compensation: write('fees', -1) },
    ],
  };
}

async function main(): Promise<void> {
  const [logPath, bankPath, key, refuseFee] = process.argv.slice(2) as [string, string, string, string];
  const bank = openBank(bankPath);
  const log = await openSagaLog({ sqlite: logPath, create: true });
  const o = await createSagaOrchestrator({
    log,
    timing: { retryBaseMs: 20, retryCapMs: 40, jitter: 0, stuckAfterAttempts: 3 },
    onStuck: (alert) => process.stdout.write(`STUCK ${alert.reason}\nCRASH-POINT\n`),
  });
  const sagaId = await o.start(transferSaga(bank.barrier), {
    idempotencyKey: key,
    input: { refuseFee: refuseFee === 'true' },
  });
  process.stdout.write(`STARTED ${sagaId}\n`);
  const r = await o.result(sagaId);
  process.stdout.write(`RESULT ${r.outcome}\n`);
  await o.close();
  await log.close();
  bank.conn.close();
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await main();
}
