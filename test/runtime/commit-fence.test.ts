// The in-process commit fence driven with real promises and timers: a
// snapshot waits for the commit phase under way and holds new ones back; a
// snapshot that waits too long gives up with DTX_TIMEOUT and leaves nothing
// held, so the commits behind it go on.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isDtxError } from '../../src/errors.ts';
import { LocalCommitFence } from '../../src/runtime/commit-fence.ts';

const tick = () => new Promise((r) => setTimeout(r, 10));

test('a snapshot waits for the running commit phase, and a commit asked for meanwhile waits for the snapshot', async () => {
  const fence = new LocalCommitFence();
  const order: string[] = [];
  const leaveFirst = await fence.enterCommitPhase();
  const snapshot = fence.holdCommitPhases(1_000).then((release) => {
    order.push('snapshot');
    return release;
  });
  await tick();
  const second = fence.enterCommitPhase().then((release) => {
    order.push('second commit');
    return release;
  });
  await tick();
  assert.deepEqual(order, [], 'nothing may start while the first commit phase runs');
  leaveFirst();
  const releaseSnapshot = await snapshot;
  await tick();
  assert.deepEqual(order, ['snapshot']);
  releaseSnapshot();
  (await second)();
  assert.deepEqual(order, ['snapshot', 'second commit']);
  assert.deepEqual(fence.state, { commitPhases: 0, snapshotOpen: false, waiting: [] });
});

test('a snapshot that waits too long fails with DTX_TIMEOUT and holds nothing back afterwards', async () => {
  const fence = new LocalCommitFence();
  const stuck = await fence.enterCommitPhase();
  const snapshot = fence.holdCommitPhases(50);
  const behind = fence.enterCommitPhase();
  const err = await snapshot.then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.ok(isDtxError(err, 'DTX_TIMEOUT') && err.retryable, String(err));
  (await behind)();
  stuck();
  assert.deepEqual(fence.state, { commitPhases: 0, snapshotOpen: false, waiting: [] });
});
