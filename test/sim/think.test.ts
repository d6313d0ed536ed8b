// Think time: clients that pause between their transactions. The load drops,
// simulated time stretches by the pauses, and nothing else about the run's
// correctness changes.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runSim } from '../../src/sim/run.ts';

const base = { protocol: '2pc', workload: 'bank', txns: 4000, seed: 3, participants: 3 } as const;

test('think time stretches simulated time by the pauses and relieves lock contention', () => {
  const saturated = runSim({ ...base }).report;
  const thinking = runSim({ ...base, thinkMs: 500 }).report;
  for (const r of [saturated, thinking]) {
    assert.equal(r.violationCount, 0, JSON.stringify(r.violations));
    assert.equal(r.undecided, 0);
    assert.equal(r.conserved, true);
  }
  // 8 clients, each pausing 500 ms on average before each of its ~500
  // transactions: about 250 simulated seconds (exponential pauses; 20% slack).
  const expected = (base.txns / 8) * 500;
  assert.ok(
    thinking.simulatedMs > 0.8 * expected && thinking.simulatedMs < 1.2 * expected + 60_000,
    `simulated ${thinking.simulatedMs} ms, expected about ${expected}`,
  );
  assert.ok(saturated.simulatedMs < expected / 10, `saturated run took ${saturated.simulatedMs} ms`);
  assert.ok(
    thinking.queuedBehindLocks < saturated.queuedBehindLocks / 5,
    `queued ${thinking.queuedBehindLocks} with think time vs ${saturated.queuedBehindLocks} without`,
  );
});

test('think time is part of the seed: the same request gives the same run', () => {
  const a = runSim({ ...base, thinkMs: 200, loss: 0.05, crashRate: 0.002 }).report;
  const b = runSim({ ...base, thinkMs: 200, loss: 0.05, crashRate: 0.002 }).report;
  assert.deepEqual({ ...a, wallMs: 0 }, { ...b, wallMs: 0 });
  assert.equal(a.violationCount, 0, JSON.stringify(a.violations));
});

test('sagas take think time too', () => {
  const req = { protocol: 'saga', workload: 'booking', txns: 400, seed: 2 } as const;
  const saturated = runSim(req).report;
  const thinking = runSim({ ...req, thinkMs: 1000 }).report;
  // 4 clients, 100 sagas each, 1 s pauses: about 100 simulated seconds more.
  const extra = thinking.simulatedMs - saturated.simulatedMs;
  assert.ok(extra > 70_000 && extra < 130_000, `${thinking.simulatedMs} vs ${saturated.simulatedMs}`);
  assert.equal(thinking.violationCount, 0, JSON.stringify(thinking.violations));
});
