// The simulated resource manager's lock table: locks held until commit or
// abort, FIFO-by-age wait queues, and wound-wait.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ResourceModel } from '../../src/sim/resource.ts';

function model() {
  const events: string[] = [];
  let now = 0;
  const m = new ResourceModel(new Map([['x', 100]]), {
    now: () => now,
    wound: (txn) => events.push(`wound ${txn}`),
    lockReleased: (txn, ms) => events.push(`release ${txn} ${ms}`),
    queued: (txn) => events.push(`queued ${txn}`),
    waited: (ms) => events.push(`waited ${ms}`),
  });
  return { m, events, tick: (ms: number) => (now += ms) };
}

test('a younger transaction waits for an older holder, then gets the lock', () => {
  const { m, events, tick } = model();
  m.execute(
    'old',
    1,
    [{ key: 'x', delta: -10 }],
    () => events.push('granted old'),
    () => events.push('failed old'),
  );
  m.execute(
    'young',
    2,
    [{ key: 'x', delta: 5 }],
    () => events.push('granted young'),
    () => events.push('failed young'),
  );
  tick(7);
  assert.ok(m.commit('old'));
  assert.deepEqual(events, ['granted old', 'queued young', 'release old 7', 'waited 7', 'granted young']);
  assert.equal(m.rows.get('x')!.value, 90);
  assert.ok(m.abort('young'));
  assert.equal(m.rows.get('x')!.value, 90, 'abort discards the work');
});

test('an older transaction wounds a younger holder that has not prepared', () => {
  const { m, events } = model();
  m.execute(
    'young',
    2,
    [{ key: 'x', delta: 1 }],
    () => events.push('granted young'),
    () => events.push('failed young'),
  );
  m.execute(
    'old',
    1,
    [{ key: 'x', delta: 1 }],
    () => events.push('granted old'),
    () => events.push('failed old'),
  );
  assert.deepEqual(events, ['granted young', 'wound young', 'queued old']);
  m.abort('young'); // the protocol core answers the wound with an abort
  assert.deepEqual(events.slice(3), ['release young 0', 'waited 0', 'granted old']);
});

test('a prepared holder cannot be wounded: the older transaction waits (2PC blocking)', () => {
  const { m, events } = model();
  m.execute(
    'young',
    2,
    [{ key: 'x', delta: 1 }],
    () => events.push('granted young'),
    () => {},
  );
  m.markPrepared('young');
  m.execute(
    'old',
    1,
    [{ key: 'x', delta: 1 }],
    () => events.push('granted old'),
    () => {},
  );
  assert.deepEqual(events, ['granted young', 'queued old']);
  assert.deepEqual(m.crash(), ['old'], 'a crash loses unprepared work and keeps prepared work');
  assert.ok(m.isPrepared('young'));
});

test('a transaction that ended here never executes again', () => {
  const { m, events } = model();
  m.execute(
    't',
    1,
    [{ key: 'x', delta: 1 }],
    () => events.push('granted'),
    () => events.push('failed'),
  );
  m.abort('t');
  m.execute(
    't',
    1,
    [{ key: 'x', delta: 1 }],
    () => events.push('granted again'),
    () => events.push('refused'),
  );
  assert.deepEqual(events, ['granted', 'release t 0', 'refused']);
});
