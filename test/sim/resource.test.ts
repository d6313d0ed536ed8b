// The simulated resource manager's lock table: locks held until commit or
// abort, FIFO-by-age wait queues, and wound-wait.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type Op, ResourceModel } from '../../src/sim/resource.ts';

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

// Reads (the bank-audit and append workloads).

function readingModel(mode: 'plain' | 'locking') {
  const events: string[] = [];
  const m = new ResourceModel(
    new Map([['x', 100]]),
    {
      now: () => 0,
      wound: (txn) => events.push(`wound ${txn}`),
      lockReleased: (txn) => events.push(`release ${txn}`),
      queued: (txn) => events.push(`queued ${txn}`),
      waited: () => {},
    },
    mode,
  );
  const run = (txn: string, age: number, ops: Op[]) =>
    m.execute(
      txn,
      age,
      ops,
      () => events.push(`granted ${txn}`),
      () => events.push(`failed ${txn}`),
    );
  return { m, events, run };
}

const read = (key: string, seq = 0): Op => ({ key, delta: 0, read: true, seq });

test('locking reads share a row; a writer waits for every reader, then gets it', () => {
  const { m, events, run } = readingModel('locking');
  run('r1', 1, [read('x')]);
  run('r2', 2, [read('x')]);
  run('w', 3, [{ key: 'x', delta: 5 }]);
  assert.deepEqual(events, ['granted r1', 'granted r2', 'queued w']);
  m.commit('r1');
  assert.deepEqual(events.slice(3), ['release r1'], 'one reader left: still not alone');
  m.commit('r2');
  assert.deepEqual(events.slice(4), ['release r2', 'granted w']);
  assert.equal(m.committed('x').value, 100, 'readers change nothing, and the write is not committed yet');
});

test('an older writer wounds a younger reader; a prepared reader holds it off', () => {
  const { events, run } = readingModel('locking');
  run('young', 5, [read('x')]);
  run('old', 1, [{ key: 'x', delta: 1 }]);
  assert.deepEqual(events, ['granted young', 'wound young', 'queued old']);
  const b = readingModel('locking');
  b.run('young', 5, [read('x')]);
  b.m.markPrepared('young');
  b.run('old', 1, [{ key: 'x', delta: 1 }]);
  assert.deepEqual(b.events, ['granted young', 'queued old'], 'a prepared reader cannot be wounded');
});

test('a locking read waits behind a writer; a plain read takes no lock and sees the committed value', () => {
  const locking = readingModel('locking');
  locking.run('w', 1, [{ key: 'x', delta: 7 }]);
  locking.run('r', 2, [read('x')]);
  assert.deepEqual(locking.events, ['granted w', 'queued r']);
  locking.m.commit('w');
  assert.equal(locking.m.readsOf('r')[0]?.value, 107, 'the reader sees the write once it committed');

  const plain = readingModel('plain');
  plain.run('w', 1, [{ key: 'x', delta: 7 }]);
  plain.run('r', 2, [read('x')]);
  assert.deepEqual(plain.events, ['granted w', 'granted r']);
  assert.equal(plain.m.readsOf('r')[0]?.value, 100, 'the uncommitted write is not seen');
});

test("a read sees the transaction's own earlier writes; appends build the row's list at commit", () => {
  const { m, run } = readingModel('locking');
  run('t', 1, [
    { key: 'x', delta: 0, append: 4, seq: 0 },
    read('x', 1),
    { key: 'x', delta: 3, seq: 2 },
    read('x', 3),
  ]);
  assert.deepEqual(
    m.readsOf('t').map((r) => [r.seq, r.value, r.list]),
    [
      [1, 100, [4]],
      [3, 103, [4]],
    ],
  );
  m.commit('t');
  assert.deepEqual(m.committed('x'), { value: 103, list: [4] });
});
