// Hybrid logical clocks (Kulkarni, Demirbas, Madeppa, Avva & Leone, "Logical
// Physical Clocks", OPODIS 2014): a timestamp is the largest physical clock
// reading a node has heard of (`wallMs`) and a counter that orders events
// within one reading (`logical`). It never goes backwards, it is never behind
// a timestamp the node received, and it stays close to physical time: its
// wall part exceeds the node's own clock only by what some other node's clock
// read (at most the clocks' skew).
//
// Pure: the physical reading comes in as an argument, as time does
// everywhere in src/protocol. The simulator gives each node a clock with an
// offset (src/sim/commit-world.ts); the commit timestamps of 2PC
// (../twopc/types.ts) are values of this clock.

import { assert } from './assert.ts';
import { limits } from './limits.ts';

export interface Hlc {
  /** The largest physical clock reading this timestamp knows of, in ms. */
  readonly wallMs: number;
  /** Orders events that share `wallMs`; 0 whenever the wall part moved. */
  readonly logical: number;
}

/** Before every timestamp any clock gives: the version every initial row has. */
export const hlcZero: Hlc = { wallMs: 0, logical: 0 };

/** Negative when `a` is earlier than `b`, 0 when equal, positive when later. */
export function compareHlc(a: Hlc, b: Hlc): number {
  return a.wallMs !== b.wallMs ? a.wallMs - b.wallMs : a.logical - b.logical;
}

export function maxHlc(a: Hlc, b: Hlc): Hlc {
  return compareHlc(a, b) >= 0 ? a : b;
}

function checked(t: Hlc): Hlc {
  assert(
    t.logical <= limits.hlcLogicalMax,
    `hlc: logical counter ${t.logical} past ${limits.hlcLogicalMax} (a clock stands still)`,
  );
  return t;
}

/** A local event or a send: the clock's next timestamp, given its physical reading now. */
export function hlcNow(clock: Hlc, physicalMs: number): Hlc {
  if (physicalMs > clock.wallMs) return { wallMs: physicalMs, logical: 0 };
  return checked({ wallMs: clock.wallMs, logical: clock.logical + 1 });
}

/** A receive of `received`: later than both the clock and `received`, and not behind the physical reading. */
export function hlcUpdate(clock: Hlc, received: Hlc, physicalMs: number): Hlc {
  const wallMs = Math.max(clock.wallMs, received.wallMs, physicalMs);
  let logical = 0;
  if (wallMs === clock.wallMs && wallMs === received.wallMs)
    logical = Math.max(clock.logical, received.logical) + 1;
  else if (wallMs === clock.wallMs) logical = clock.logical + 1;
  else if (wallMs === received.wallMs) logical = received.logical + 1;
  return checked({ wallMs, logical });
}

/** A well-formed timestamp: finite, non-negative wall part, integer counter within the limit. */
export function isHlc(value: unknown): value is Hlc {
  if (typeof value !== 'object' || value === null) return false;
  const t = value as Record<string, unknown>;
  return (
    Object.keys(t).length === 2 &&
    typeof t.wallMs === 'number' &&
    Number.isFinite(t.wallMs) &&
    t.wallMs >= 0 &&
    Number.isInteger(t.logical) &&
    (t.logical as number) >= 0 &&
    (t.logical as number) <= limits.hlcLogicalMax
  );
}
