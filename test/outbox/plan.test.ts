// The outbox's pure decisions: which rows a relay claims, what it publishes
// after a claim, its backoff, and what the inbox does with a failed message.
// The property test replays random interleavings of several relays over one
// outbox through these functions alone and checks that no key is ever
// published out of order.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  backoffMs,
  type OutboxCandidate,
  onHandlerFailure,
  planClaim,
  publishChains,
} from '../../src/protocol/outbox/plan.ts';

const row = (
  seq: number,
  key: string | null,
  claimedBy: string | null = null,
  claimUntilMs: number | null = null,
) => ({
  seq,
  key,
  claimedBy,
  claimUntilMs,
});

test('planClaim takes free rows in order and skips a key behind a row another relay holds', () => {
  const rows = [
    row(1, 'a', 'r2', 100),
    row(2, 'a'),
    row(3, 'b'),
    row(4, null, 'r2', 100),
    row(5, null),
    row(6, 'b'),
  ];
  assert.deepEqual(planClaim(rows, 'r1', 50, 10), [3, 5, 6]);
  // Once r2's claim has lapsed, everything is free again.
  assert.deepEqual(planClaim(rows, 'r1', 100, 10), [1, 2, 3, 4, 5, 6]);
  // Its own claims do not block a relay.
  assert.deepEqual(planClaim(rows, 'r2', 50, 10), [1, 2, 3, 4, 5, 6]);
  assert.deepEqual(planClaim(rows, 'r1', 100, 2), [1, 2]);
});

test('publishChains publishes a key only up to the first row the claim did not get', () => {
  const planned = [
    row(1, 'a'),
    row(2, 'a'),
    row(3, 'b'),
    row(4, null),
    row(5, 'a'),
    row(6, 'b'),
    row(7, null),
  ];
  const { chains, release } = publishChains(planned, new Set([1, 3, 5, 6, 7]));
  assert.deepEqual(chains, [[1], [3, 6], [7]]);
  assert.deepEqual(release, [5]);
  const none = publishChains(planned, new Set([2, 5]));
  assert.deepEqual(none, { chains: [], release: [2, 5] });
});

test('backoff doubles from the base and stops at the cap', () => {
  assert.deepEqual(
    [0, 1, 2, 3, 4, 10, 1000].map((n) => backoffMs(n, 100, 1000)),
    [0, 100, 200, 400, 800, 1000, 1000],
  );
});

test('a failed message is retried with a growing delay, then dead-lettered on its last allowed delivery', () => {
  assert.deepEqual(onHandlerFailure(1, 3, 200, 30_000), { kind: 'retry', delayMs: 200 });
  assert.deepEqual(onHandlerFailure(2, 3, 200, 30_000), { kind: 'retry', delayMs: 400 });
  assert.deepEqual(onHandlerFailure(3, 3, 200, 30_000), { kind: 'deadLetter' });
  assert.deepEqual(onHandlerFailure(1, 1, 200, 30_000), { kind: 'deadLetter' });
});

/**
 * A model outbox shared by relays that interleave their steps: scan, claim,
 * publish one row of a chain (after the previous one's ack), mark, crash
 * (losing the in-memory chain; the claim stays until it lapses). A claim may
 * miss rows another relay's claim has locked.
 */
test('several relays, random interleavings, partial claims and crashes: every key is published in order', () => {
  fc.assert(
    fc.property(
      fc.array(fc.constantFrom('a', 'b', 'c', null), { minLength: 1, maxLength: 25 }),
      fc.array(fc.tuple(fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 9 })), { maxLength: 400 }),
      (keys, schedule) => {
        const rows = keys.map((key, i) => ({ ...row(i + 1, key), sent: false }));
        const stream: number[] = [];
        const relays = [0, 1, 2].map((i) => ({ id: `r${i}`, chains: [] as number[][] }));
        let now = 0;
        const lease = 5;
        for (const [who, action] of schedule) {
          now++;
          const relay = relays[who]!;
          if (action === 0) {
            // crash: forget everything in memory
            relay.chains = [];
          } else if (action <= 3 && relay.chains.length === 0) {
            const unsent: OutboxCandidate[] = rows.filter((r) => !r.sent);
            const planned = planClaim(unsent, relay.id, now, 4);
            const got = new Set<number>();
            for (const [i, seq] of planned.entries()) {
              // Action 2: the first planned row is locked by a concurrent
              // claim (SKIP LOCKED passes over it), so the claim is partial.
              if (action === 2 && i === 0) continue;
              const r = rows[seq - 1]!;
              const free = r.claimedBy === null || r.claimedBy === relay.id || (r.claimUntilMs ?? 0) <= now;
              if (!r.sent && free) {
                r.claimedBy = relay.id;
                r.claimUntilMs = now + lease;
                got.add(seq);
              }
            }
            const plannedSet = new Set(planned);
            relay.chains = publishChains(
              unsent.filter((r) => plannedSet.has(r.seq)),
              got,
            ).chains.map((c) => [...c]);
          } else if (relay.chains.length > 0) {
            // publish the head of one chain and mark it (an ack and a mark)
            const chain = relay.chains[action % relay.chains.length]!;
            const seq = chain.shift()!;
            if (chain.length === 0) relay.chains = relay.chains.filter((c) => c.length > 0);
            const r = rows[seq - 1]!;
            if (r.claimedBy !== relay.id || (r.claimUntilMs ?? 0) <= now) continue; // lapsed: stop
            // Concurrent holders would both pass this check; the claim rule forbids it.
            if (!stream.includes(seq)) stream.push(seq);
            r.sent = true;
          }
        }
        // Every key's rows appear in the stream in seq order, without gaps before them.
        for (const key of ['a', 'b', 'c']) {
          const order = stream.filter((s) => rows[s - 1]!.key === key);
          const expected = rows
            .filter((r) => r.key === key)
            .map((r) => r.seq)
            .slice(0, order.length);
          assert.deepEqual(order, expected, `key ${key}`);
        }
      },
    ),
    { numRuns: 300 },
  );
});
