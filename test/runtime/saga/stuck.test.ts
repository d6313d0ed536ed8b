// Stuck is an alert, not a dead end (issue 9, item 7). A compensation (or a
// TCC confirm) that keeps failing is retried without a limit under a capped
// backoff; past `stuckAfterAttempts` (or `stuckAfterMs`) the run is reported
// stuck — a durable `stuck` record, `onStuck`, a state `list()` shows — and
// it still ends normally by itself once the branch recovers, across a restart
// too, or at once on `retry(id)`. Real SQLite logs and real timers, with
// small timings standing in for the runtime's seconds.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import {
  type BranchContext,
  createSagaOrchestrator,
  openSagaLog,
  refuse,
  type SagaDefinition,
  type StuckAlert,
} from '../../../src/runtime/saga/orchestrator.ts';
import {
  createTccOrchestrator,
  openTccLog,
  type TccDefinition,
} from '../../../src/runtime/tcc/orchestrator.ts';

const dir = mkdtempSync(join(tmpdir(), 'dtx-saga-stuck-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** a, then b which refuses: a's compensation runs `undo`. */
function refusing(name: string, undo: (ctx: BranchContext) => Promise<void>): SagaDefinition {
  return {
    name,
    steps: [
      { name: 'a', action: async () => undefined, compensation: undo },
      { name: 'b', action: async () => refuse('sold out'), compensation: async () => undefined },
    ],
  };
}

const until = async (what: string, cond: () => boolean, ms = 5000) => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
};

test('a compensation failing its first 20 attempts ends compensated by itself, with one stuck alert on the way', async () => {
  const log = await openSagaLog({ sqlite: join(dir, 'twenty.sqlite'), create: true });
  const alerts: StuckAlert[] = [];
  const o = await createSagaOrchestrator({
    log,
    timing: { retryBaseMs: 1, retryCapMs: 5, stuckAfterAttempts: 8 },
    onStuck: (a) => alerts.push(a),
  });
  let attempts = 0;
  const id = await o.start(
    refusing('twenty', async () => {
      if (++attempts <= 20) throw new Error('refund service down');
    }),
    { idempotencyKey: 'k' },
  );
  await until('the alert', () => alerts.length > 0);
  // Alerted and listed as stuck, still retrying.
  assert.equal(o.status(id).state, 'stuck');
  assert.match(
    o.status(id).alert ?? '',
    /compensation .* of a failed 8 times \(last answer: refund service down\); still retrying/,
  );
  assert.deepEqual(
    (await o.list({ state: 'stuck' })).map((t) => t.id),
    [id],
  );
  const r = await o.result(id);
  assert.equal(r.outcome, 'compensated');
  assert.equal(attempts, 21);
  assert.equal(alerts.length, 1, 'raised once');
  assert.deepEqual(alerts[0], { sagaId: id, reason: alerts[0]!.reason, retrying: true });
  // The alert is cleared: the saga is listed as compensated, its history keeps the alert.
  assert.equal(o.status(id).state, 'compensated');
  const shown = await o.show(id);
  assert.equal(shown.state, 'compensated');
  assert.deepEqual(
    shown.records.map((v) => (v.record as { type: string }).type).filter((t) => t === 'stuck' || t === 'end'),
    ['stuck', 'end'],
  );
  await o.close();
  await log.close();
});

test('a saga stuck across an orchestrator restart resumes and finishes after the restart', async () => {
  const path = join(dir, 'restart.sqlite');
  let down = true;
  let calls = 0;
  const def = refusing('restart', async () => {
    calls++;
    if (down) throw new Error('ledger offline');
  });
  const alerts: StuckAlert[] = [];
  const timing = { retryBaseMs: 1, retryCapMs: 5, stuckAfterAttempts: 3 };
  const log = await openSagaLog({ sqlite: path, create: true });
  const o = await createSagaOrchestrator({ log, timing, onStuck: (a) => alerts.push(a) });
  const id = await o.start(def, { idempotencyKey: 'k' });
  await until('the alert', () => alerts.length > 0);
  // Keep it failing well past what used to be a hard limit (16 attempts).
  await until('20 attempts', () => calls >= 20);
  assert.equal(o.status(id).state, 'stuck');
  await o.close();
  await log.close();

  down = false;
  const log2 = await openSagaLog({ sqlite: path, create: true });
  const alerts2: StuckAlert[] = [];
  const o2 = await createSagaOrchestrator({
    log: log2,
    timing,
    definitions: [def],
    onStuck: (a) => alerts2.push(a),
  });
  const r = await o2.result(id);
  assert.equal(r.outcome, 'compensated');
  // The restart raised the alert again (its first report may have died with the process).
  assert.equal(alerts2.length, 1);
  assert.equal(alerts2[0]!.retrying, true);
  await o2.close();
  await log2.close();
});

test('stuckAfterMs raises the alert on elapsed time alone', async () => {
  const log = await openSagaLog({ sqlite: join(dir, 'elapsed.sqlite'), create: true });
  const alerts: StuckAlert[] = [];
  const o = await createSagaOrchestrator({
    log,
    timing: {
      retryBaseMs: 5,
      retryCapMs: 10,
      stuckAfterAttempts: Number.POSITIVE_INFINITY,
      stuckAfterMs: 60,
    },
    onStuck: (a) => alerts.push(a),
  });
  const started = Date.now();
  const id = await o.start(
    refusing('elapsed', async () => {
      if (Date.now() - started < 200) throw new Error('still down');
    }),
    { idempotencyKey: 'k' },
  );
  assert.equal((await o.result(id)).outcome, 'compensated');
  assert.equal(alerts.length, 1);
  assert.match(alerts[0]!.reason, /still compensating after 60 ms \(a: still down\)/);
  await o.close();
  await log.close();
});

test('retry(id) calls a failing compensation now instead of at its next backoff', async () => {
  const log = await openSagaLog({ sqlite: join(dir, 'retry.sqlite'), create: true });
  // A backoff of a minute: only an operator's retry can finish this in time.
  const o = await createSagaOrchestrator({
    log,
    timing: { retryBaseMs: 60_000, retryCapMs: 60_000, jitter: 0 },
  });
  let attempts = 0;
  const id = await o.start(
    refusing('retry', async () => {
      if (++attempts === 1) throw new Error('first try fails');
    }),
    { idempotencyKey: 'k' },
  );
  await until('the first compensation attempt', () => attempts === 1);
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(o.status(id).state, 'compensating');
  await o.retry(id);
  const r = await o.result(id, { timeoutMs: 2000 });
  assert.equal(r.outcome, 'compensated');
  assert.equal(attempts, 2);
  await assert.rejects(
    o.retry(id),
    (e: Error & { code?: string }) => e.code === 'DTX_INVALID_STATE' && /ended already/.test(e.message),
  );
  await assert.rejects(o.retry('nope'), (e: Error & { code?: string }) => e.code === 'DTX_INVALID_ARGUMENT');
  await o.close();
  await log.close();
});

test('a hard-stopped saga (a finite compensationAttemptsMax) resumes on retry(id) with a fresh attempts budget, and stays resumed across a restart', async () => {
  const path = join(dir, 'hard.sqlite');
  // down: the compensation fails; held: it hangs until released (so nothing
  // can hard-stop the saga again between the retry and the close); up: it works.
  let mode: 'down' | 'held' | 'up' = 'down';
  let calls = 0;
  let release = () => {};
  const def = refusing('hard', async () => {
    calls++;
    if (mode === 'down') throw new Error('down');
    if (mode === 'held') {
      await new Promise<void>((resolve) => {
        release = resolve;
      });
      throw new Error('still down');
    }
  });
  const timing = { retryBaseMs: 1, retryCapMs: 5, compensationAttemptsMax: 3 };
  const stops: StuckAlert[] = [];
  const log = await openSagaLog({ sqlite: path, create: true });
  const o = await createSagaOrchestrator({ log, timing, onStuck: (a) => stops.push(a) });
  const id = await o.start(def, { idempotencyKey: 'k' });
  assert.equal((await o.result(id)).outcome, 'stuck');
  // The core counts attempts; a backoff that ends while a call is still out
  // counts one without a second call, so the calls made are at most that.
  assert.equal(stops.length, 1);
  assert.equal(stops[0]!.retrying, false);
  assert.match(stops[0]!.reason, /failed 3 times/);
  const before = calls;
  assert.ok(before >= 1 && before <= 3, `${before} calls`);

  // Still down: the retry gives the compensation three more attempts (it was
  // once one, that hard-stopped it again as "failed 4 times").
  await o.retry(id, { reason: 'first look' });
  assert.equal(o.status(id).state, 'stuck', 'still alerted while it retries');
  await until('the second hard stop', () => stops.length === 2);
  assert.equal(stops[1]!.retrying, false);
  assert.match(stops[1]!.reason, /failed 3 times/);
  assert.ok(calls > before && calls <= before + 3, `${calls - before} calls after the retry`);

  // Retried again on an orchestrator whose backoff is a minute, its call held
  // (with the fast backoff, attempts counted while a call is out could stop
  // it again before the close): the restart must find it resumed, not stopped.
  await o.close();
  await log.close();
  mode = 'held';
  const slow = { retryBaseMs: 60_000, retryCapMs: 60_000, compensationAttemptsMax: 3 };
  const logSlow = await openSagaLog({ sqlite: path, create: true });
  const oSlow = await createSagaOrchestrator({ log: logSlow, timing: slow, definitions: [def] });
  const held = calls;
  assert.equal(oSlow.status(id).state, 'stuck', 'a hard stop stays stopped across a restart');
  await oSlow.retry(id, { reason: 'ledger is back' });
  await until('the held call', () => calls === held + 1);
  await oSlow.close();
  await logSlow.close();
  release();
  mode = 'up';
  const log2 = await openSagaLog({ sqlite: path, create: true });
  const o2 = await createSagaOrchestrator({ log: log2, timing, definitions: [def] });
  assert.equal((await o2.result(id, { timeoutMs: 5000 })).outcome, 'compensated');
  assert.equal(stops.length, 2);
  await o2.close();
  await log2.close();
});

test('TCC: a confirm failing its first 12 attempts completes by itself, with one stuck alert', async () => {
  const log = await openTccLog({ sqlite: join(dir, 'tcc.sqlite'), create: true });
  const alerts: StuckAlert[] = [];
  const o = await createTccOrchestrator({
    log,
    timing: { retryBaseMs: 1, retryCapMs: 5, stuckAfterAttempts: 5 },
    onStuck: (a) => alerts.push(a),
  });
  let confirms = 0;
  const def: TccDefinition = {
    name: 'tccstuck',
    branches: [
      {
        name: 'x',
        try: async () => undefined,
        confirm: async () => {
          if (++confirms <= 12) throw new Error('confirm service down');
        },
        cancel: async () => undefined,
      },
    ],
  };
  const id = await o.start(def, { idempotencyKey: 'k' });
  const r = await o.result(id);
  assert.equal(r.outcome, 'completed');
  assert.equal(confirms, 13);
  assert.equal(alerts.length, 1);
  assert.match(alerts[0]!.reason, /confirm .* of x failed 5 times/);
  await o.close();
  await log.close();
});

test('TCC: a hard-stopped confirm (a finite phaseTwoAttemptsMax) resumes on retry(id) with a fresh attempts budget', async () => {
  const log = await openTccLog({ sqlite: join(dir, 'tcc-hard.sqlite'), create: true });
  const stops: StuckAlert[] = [];
  const o = await createTccOrchestrator({
    log,
    timing: { retryBaseMs: 1, retryCapMs: 5, phaseTwoAttemptsMax: 3 },
    onStuck: (a) => stops.push(a),
  });
  let up = false;
  const def: TccDefinition = {
    name: 'tcchard',
    branches: [
      {
        name: 'x',
        try: async () => undefined,
        confirm: async () => {
          if (!up) throw new Error('confirm service down');
        },
        cancel: async () => undefined,
      },
    ],
  };
  const id = await o.start(def, { idempotencyKey: 'k' });
  assert.equal((await o.result(id)).outcome, 'stuck');
  assert.match(stops[0]!.reason, /confirm .* of x failed 3 times/);
  await o.retry(id, { reason: 'first look' });
  await until('the second hard stop', () => stops.length === 2);
  assert.equal(stops[1]!.retrying, false);
  assert.match(stops[1]!.reason, /failed 3 times/, 'three more attempts, not one');
  // The service is back. Retried on an orchestrator whose backoff is a minute,
  // so that the fresh budget cannot run out (attempts are counted while the
  // confirm waits for the forced record) before the confirm succeeds.
  await o.close();
  await log.close();
  up = true;
  const log2 = await openTccLog({ sqlite: join(dir, 'tcc-hard.sqlite'), create: true });
  const o2 = await createTccOrchestrator({
    log: log2,
    timing: { retryBaseMs: 60_000, retryCapMs: 60_000, phaseTwoAttemptsMax: 3 },
    definitions: [def],
    onStuck: (a) => stops.push(a),
  });
  assert.equal(o2.status(id).state, 'stuck', 'a hard stop stays stopped across a restart');
  await o2.retry(id, { reason: 'confirm service is back' });
  await until('the end', () => o2.status(id).state === 'completed');
  await o2.close();
  await log2.close();
});
