import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Prng } from '../../src/sim/prng.ts';

test('the same seed gives the same stream; different seeds differ', () => {
  const a = new Prng(7);
  const b = new Prng(7);
  const c = new Prng(8);
  const xs = Array.from({ length: 100 }, () => a.nextU32());
  assert.deepEqual(
    xs,
    Array.from({ length: 100 }, () => b.nextU32()),
  );
  assert.notDeepEqual(
    xs,
    Array.from({ length: 100 }, () => c.nextU32()),
  );
});

test('uniform draws look uniform and exponential draws have the right mean', () => {
  const r = new Prng(1);
  const n = 200_000;
  let sum = 0;
  let hits = 0;
  let expSum = 0;
  for (let i = 0; i < n; i++) {
    const x = r.next();
    assert.ok(x >= 0 && x < 1);
    sum += x;
    if (r.chance(0.02)) hits++;
    expSum += r.exp(5);
  }
  assert.ok(Math.abs(sum / n - 0.5) < 0.005);
  assert.ok(Math.abs(hits / n - 0.02) < 0.002);
  assert.ok(Math.abs(expSum / n - 5) < 0.1);
});
