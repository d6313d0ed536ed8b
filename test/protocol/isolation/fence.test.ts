// The commit fence's rules (src/protocol/isolation/fence.ts) and the
// lock-order rule (lock-order.ts), input by input.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  emptyFence,
  type FenceInput,
  type FenceState,
  stepFence,
} from '../../../src/protocol/isolation/fence.ts';
import { mayWaitFor } from '../../../src/protocol/isolation/lock-order.ts';

function run(inputs: FenceInput[]): { state: FenceState; grants: number[][] } {
  let state = emptyFence;
  const grants: number[][] = [];
  for (const input of inputs) {
    const next = stepFence(state, input);
    state = next.state;
    grants.push(next.granted);
  }
  return { state, grants };
}

test('commit phases share the fence; a snapshot waits until the running ones end', () => {
  const { state, grants } = run([
    { type: 'request', id: 1, kind: 'commit' },
    { type: 'request', id: 2, kind: 'commit' },
    { type: 'request', id: 3, kind: 'snapshot' },
    { type: 'release', kind: 'commit' },
    { type: 'release', kind: 'commit' },
  ]);
  assert.deepEqual(grants, [[1], [2], [], [], [3]]);
  assert.deepEqual(state, { commitPhases: 0, snapshotOpen: true, waiting: [] });
});

test('a waiting snapshot holds new commit phases back, which all start when it releases', () => {
  const { state, grants } = run([
    { type: 'request', id: 1, kind: 'commit' },
    { type: 'request', id: 2, kind: 'snapshot' },
    { type: 'request', id: 3, kind: 'commit' },
    { type: 'request', id: 4, kind: 'commit' },
    { type: 'release', kind: 'commit' },
    { type: 'release', kind: 'snapshot' },
  ]);
  assert.deepEqual(grants, [[1], [], [], [], [2], [3, 4]]);
  assert.equal(state.commitPhases, 2);
  assert.equal(state.snapshotOpen, false);
});

test('snapshots open one at a time, in order, before the commits that queued behind them', () => {
  const { grants } = run([
    { type: 'request', id: 1, kind: 'snapshot' },
    { type: 'request', id: 2, kind: 'commit' },
    { type: 'request', id: 3, kind: 'snapshot' },
    { type: 'release', kind: 'snapshot' },
    { type: 'release', kind: 'snapshot' },
  ]);
  assert.deepEqual(grants, [[1], [], [], [3], [2]]);
});

test('a cancelled snapshot request lets the commits behind it go', () => {
  const { state, grants } = run([
    { type: 'request', id: 1, kind: 'commit' },
    { type: 'request', id: 2, kind: 'snapshot' },
    { type: 'request', id: 3, kind: 'commit' },
    { type: 'cancel', id: 2 },
    { type: 'cancel', id: 99 },
  ]);
  assert.deepEqual(grants, [[1], [], [], [3], []]);
  assert.equal(state.commitPhases, 2);
});

test('releasing what is not held is a programming error', () => {
  assert.throws(() => stepFence(emptyFence, { type: 'release', kind: 'commit' }), /never entered/);
  assert.throws(() => stepFence(emptyFence, { type: 'release', kind: 'snapshot' }), /not held/);
});

test('lock order: a read may wait unless the transaction already went to a later resource', () => {
  assert.equal(mayWaitFor(0, undefined), true);
  assert.equal(mayWaitFor(1, 0), true);
  assert.equal(mayWaitFor(1, 1), true);
  assert.equal(mayWaitFor(0, 1), false);
});
