// Hybrid logical clocks (Kulkarni et al., "Logical Physical Clocks", 2014):
// the properties the commit timestamps of timestamp reads rely on, over
// random event sequences (fast-check).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { compareHlc, type Hlc, hlcNow, hlcUpdate, hlcZero, isHlc } from '../../../src/protocol/common/hlc.ts';

/** A local event (`now`) or a receive of a timestamp, at a physical clock reading. */
const event = fc.record({
  physicalMs: fc.integer({ min: 0, max: 50 }),
  received: fc.option(fc.record({ wallMs: fc.integer({ min: 0, max: 60 }), logical: fc.nat(5) }), {
    nil: undefined,
  }),
});

test('hlc: monotonic, never behind what it received, wall part the largest physical reading seen, counter bounded', () => {
  fc.assert(
    fc.property(fc.array(event, { minLength: 1, maxLength: 60 }), (events) => {
      let clock: Hlc = hlcZero;
      let largestWallSeen = 0;
      let sinceWallMoved = 0;
      for (const e of events) {
        const next =
          e.received === undefined ? hlcNow(clock, e.physicalMs) : hlcUpdate(clock, e.received, e.physicalMs);
        assert.ok(compareHlc(next, clock) > 0, 'every event gets a later timestamp');
        if (e.received !== undefined)
          assert.ok(compareHlc(next, e.received) > 0, 'later than what it received');
        assert.ok(next.wallMs >= e.physicalMs, 'never behind the physical clock');
        largestWallSeen = Math.max(largestWallSeen, e.physicalMs, e.received?.wallMs ?? 0);
        assert.equal(next.wallMs, largestWallSeen, 'the wall part is the largest reading heard of, no more');
        sinceWallMoved = next.wallMs === clock.wallMs ? sinceWallMoved + 1 : 0;
        // The counter grows by one per event while the wall part stands, over what a received timestamp brought.
        assert.ok(next.logical <= sinceWallMoved + 1 + (e.received?.logical ?? 0) + clock.logical);
        if (next.wallMs > clock.wallMs && next.wallMs > (e.received?.wallMs ?? -1))
          assert.equal(next.logical, 0);
        clock = next;
      }
    }),
  );
});

test('hlc: a clock that moves resets the counter; a clock that stands still counts', () => {
  const a = hlcNow(hlcZero, 10);
  assert.deepEqual(a, { wallMs: 10, logical: 0 });
  assert.deepEqual(hlcNow(a, 10), { wallMs: 10, logical: 1 });
  assert.deepEqual(hlcNow(a, 9), { wallMs: 10, logical: 1 }, 'a clock read behind the timestamp counts on');
  assert.deepEqual(hlcUpdate(a, { wallMs: 12, logical: 3 }, 11), { wallMs: 12, logical: 4 });
  assert.deepEqual(hlcUpdate(a, { wallMs: 10, logical: 7 }, 10), { wallMs: 10, logical: 8 });
  assert.deepEqual(hlcUpdate(a, { wallMs: 5, logical: 9 }, 20), { wallMs: 20, logical: 0 });
});

test('hlc: well-formed timestamps only', () => {
  assert.ok(isHlc({ wallMs: 1.5, logical: 0 }));
  for (const bad of [
    null,
    {},
    { wallMs: -1, logical: 0 },
    { wallMs: 1, logical: 0.5 },
    { wallMs: 1, logical: -1 },
    { wallMs: Number.NaN, logical: 0 },
    { wallMs: 1, logical: 0, extra: 1 },
    { wallMs: '1', logical: 0 },
  ])
    assert.equal(isHlc(bad), false, JSON.stringify(bad));
  assert.throws(() => hlcNow({ wallMs: 5, logical: 1_000_000 }, 1), /logical counter/);
});
