// The durable saga orchestrator over a real SQLite log and a SQLite bank
// whose branches write through the barrier: an orchestrator process killed
// with SIGKILL mid-saga is finished by a new orchestrator on the same log,
// forward or backward, with every business effect applied exactly once.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createSagaOrchestrator, openSagaLog, sagaIdFor } from '../../../src/runtime/saga/orchestrator.ts';
import { runUntilCrashPoint } from '../../support/kill-at.ts';
import { balances, openBank, transferSaga } from './crash.fixture.ts';

const dir = mkdtempSync(join(tmpdir(), 'dtx-saga-crash-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const fixture = fileURLToPath(new URL('./crash.fixture.ts', import.meta.url));

/** Runs the fixture until it prints CRASH-POINT, then SIGKILLs it. */
function runAndKill(
  logPath: string,
  bankPath: string,
  key: string,
  refuseFee: boolean,
  crashAt: string,
  env: Record<string, string> = {},
) {
  return runUntilCrashPoint(fixture, [logPath, bankPath, key, String(refuseFee)], {
    DTX_FIXTURE_CRASH: crashAt,
    ...env,
  });
}

test('SIGKILL after a branch committed, before its reply was logged: a new orchestrator completes the saga, each effect once', async () => {
  const logPath = join(dir, 'fwd-log.sqlite');
  const bankPath = join(dir, 'fwd-bank.sqlite');
  const out = await runAndKill(logPath, bankPath, 'order-1', false, 'credit:action');
  assert.match(out, /STARTED transfer\./);
  const bank = openBank(bankPath);
  // The killed process got as far as debit and credit.
  assert.deepEqual(balances(bank.conn), { alice: 70, bob: 30, fees: 0 });
  const seen = { duplicates: 0 };
  const log = await openSagaLog({ sqlite: logPath, create: true });
  const o = await createSagaOrchestrator({
    log,
    definitions: [transferSaga(bank.barrier, seen)],
    timing: { retryBaseMs: 20, jitter: 0 },
  });
  const sagaId = sagaIdFor('transfer', 'order-1');
  const r = await o.result(sagaId);
  assert.deepEqual(r, { sagaId, outcome: 'completed', reason: null });
  assert.deepEqual(balances(bank.conn), { alice: 70, bob: 30, fees: 1 });
  assert.equal(seen.duplicates, 1, 'credit was delivered again and the barrier absorbed it');
  assert.equal(o.status(sagaId).state, 'completed');
  // Starting it again with the same key runs nothing.
  assert.equal(await o.start(transferSaga(bank.barrier, seen), { idempotencyKey: 'order-1' }), sagaId);
  assert.deepEqual(await o.result(sagaId), r);
  assert.deepEqual(balances(bank.conn), { alice: 70, bob: 30, fees: 1 });
  await o.close();
  await log.close();
  bank.conn.close();
});

test('SIGKILL in the middle of compensating: a new orchestrator finishes the compensation, each effect once', async () => {
  const logPath = join(dir, 'bwd-log.sqlite');
  const bankPath = join(dir, 'bwd-bank.sqlite');
  await runAndKill(logPath, bankPath, 'order-2', true, 'credit:compensation');
  const bank = openBank(bankPath);
  // debit and credit ran, the fee was refused, credit was compensated; debit not yet.
  assert.deepEqual(balances(bank.conn), { alice: 70, bob: 0, fees: 0 });
  const seen = { duplicates: 0 };
  const log = await openSagaLog({ sqlite: logPath, create: true });
  const o = await createSagaOrchestrator({
    log,
    definitions: [transferSaga(bank.barrier, seen)],
    timing: { retryBaseMs: 20, jitter: 0 },
  });
  const sagaId = sagaIdFor('transfer', 'order-2');
  const r = await o.result(sagaId);
  assert.equal(r.outcome, 'compensated');
  assert.match(r.reason ?? '', /fee refused: fee limit exceeded/);
  assert.deepEqual(balances(bank.conn), { alice: 100, bob: 0, fees: 0 });
  assert.equal(seen.duplicates, 1);
  await o.close();
  await log.close();
  // A third orchestrator on the log finds the saga finished and runs nothing.
  const log3 = await openSagaLog({ sqlite: logPath, create: true });
  const o3 = await createSagaOrchestrator({ log: log3, definitions: [transferSaga(bank.barrier, seen)] });
  assert.equal((await o3.result(sagaId, { wait: false }))?.outcome, 'compensated');
  assert.deepEqual(balances(bank.conn), { alice: 100, bob: 0, fees: 0 });
  await o3.close();
  await log3.close();
  bank.conn.close();
});

test('SIGKILL while a saga is stuck on a failing compensation: after the restart it resumes and ends compensated', async () => {
  const logPath = join(dir, 'stuck-log.sqlite');
  const bankPath = join(dir, 'stuck-bank.sqlite');
  const out = await runAndKill(logPath, bankPath, 'order-3', true, 'none', {
    DTX_FIXTURE_UNDO_DOWN: 'debit',
  });
  assert.match(
    out,
    /STUCK compensation transfer@1\/debit\/compensation of debit failed 3 times \(last answer: alice ledger down\); still retrying/,
  );
  const bank = openBank(bankPath);
  // credit was compensated; debit's compensation never went through.
  assert.deepEqual(balances(bank.conn), { alice: 70, bob: 0, fees: 0 });
  const log = await openSagaLog({ sqlite: logPath, create: true });
  const alerts: string[] = [];
  const o = await createSagaOrchestrator({
    log,
    definitions: [transferSaga(bank.barrier)],
    timing: { retryBaseMs: 20, jitter: 0 },
    onStuck: (a) => alerts.push(a.reason),
  });
  const sagaId = sagaIdFor('transfer', 'order-3');
  const r = await o.result(sagaId, { timeoutMs: 10_000 });
  assert.equal(r.outcome, 'compensated');
  assert.deepEqual(balances(bank.conn), { alice: 100, bob: 0, fees: 0 });
  assert.equal(alerts.length, 1, 'the alert is raised again after the restart');
  await o.close();
  await log.close();
  bank.conn.close();
});
