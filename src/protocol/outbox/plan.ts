// The decisions of the transactional outbox and the idempotent inbox, kept
// pure so that a simulator can drive them: which outbox rows a relay may claim
// (a key's rows strictly in order, never a row another relay holds), which of
// the rows it then holds it may publish and in what order, how long it waits
// after NATS fails, and what a consumer does with a message whose handler
// failed (retry later, or dead-letter it).
//
// The runtime (src/runtime/outbox/) reads rows and the clock, and calls these.
// May not touch: I/O, clocks, randomness, anything outside src/protocol.

/** An unsent outbox row as the relay's scan sees it (oldest first). */
export interface OutboxCandidate {
  /** Insertion order: the outbox table's auto-increment column. */
  seq: number;
  /** Ordering key; rows of one key are published strictly in `seq` order. Null: no order with any other row. */
  key: string | null;
  /** The relay holding the row, or null. */
  claimedBy: string | null;
  /** When that relay's claim lapses (ms since the epoch, the relays' clock). */
  claimUntilMs: number | null;
}

function heldByOther(row: OutboxCandidate, self: string, nowMs: number): boolean {
  return (
    row.claimedBy !== null && row.claimedBy !== self && row.claimUntilMs !== null && row.claimUntilMs > nowMs
  );
}

/**
 * The rows to try to claim, from `rows` (unsent rows in `seq` order, as far
 * as the scan reached). A keyed row is taken only if every earlier unsent row
 * of its key is taken too: once one of a key's rows is held by another relay,
 * the rest of that key waits. At most `max` rows.
 *
 * Why this is safe against a stale scan: a row that was the first unsent row
 * of its key stays so until it is sent (rows are never un-sent), and the claim
 * itself is conditional (unsent, not held by another), so two relays never
 * both hold a row; `publishChains` then drops what lost its head.
 */
export function planClaim(
  rows: readonly OutboxCandidate[],
  self: string,
  nowMs: number,
  max: number,
): number[] {
  const blockedKeys = new Set<string>();
  const out: number[] = [];
  for (const row of rows) {
    if (out.length >= max) break;
    if (row.key !== null && blockedKeys.has(row.key)) continue;
    if (heldByOther(row, self, nowMs)) {
      if (row.key !== null) blockedKeys.add(row.key);
      continue;
    }
    out.push(row.seq);
  }
  return out;
}

/**
 * What to publish after a claim: `planned` are the rows `planClaim` chose (in
 * `seq` order), `claimed` the ones the database gave this relay. A chain is
 * published one row at a time, each after the previous one's ack; chains run
 * side by side. A key's chain is its claimed rows up to the first planned row
 * the claim did not get (later rows would overtake that one); keyless rows are
 * chains of one. `release` are claimed rows that must not be published now.
 */
export function publishChains(
  planned: readonly OutboxCandidate[],
  claimed: ReadonlySet<number>,
): { chains: number[][]; release: number[] } {
  const chains: number[][] = [];
  const byKey = new Map<string, number[]>();
  const brokenKeys = new Set<string>();
  const release: number[] = [];
  for (const row of planned) {
    const got = claimed.has(row.seq);
    if (row.key === null) {
      if (got) chains.push([row.seq]);
      continue;
    }
    if (brokenKeys.has(row.key) || !got) {
      brokenKeys.add(row.key);
      if (got) release.push(row.seq);
      continue;
    }
    let chain = byKey.get(row.key);
    if (chain === undefined) {
      chain = [];
      byKey.set(row.key, chain);
      chains.push(chain);
    }
    chain.push(row.seq);
  }
  return { chains, release };
}

/**
 * The capped exponential wait after `failures` consecutive failures (the
 * first failure waits `baseMs`). No jitter: a relay is one process retrying
 * one broker, not a crowd.
 */
export function backoffMs(failures: number, baseMs: number, maxMs: number): number {
  if (failures <= 0) return 0;
  const exp = Math.min(failures - 1, 30);
  return Math.min(maxMs, baseMs * 2 ** exp);
}

/** What a consumer does with a message whose handler failed. */
export type InboxFailureAction = { kind: 'retry'; delayMs: number } | { kind: 'deadLetter' };

/**
 * After the `deliveryCount`-th delivery of a message failed: retry it later
 * (negative ack with a growing delay), or, once `attemptsMax` deliveries have
 * failed, dead-letter it so that it stops blocking and stops costing work.
 */
export function onHandlerFailure(
  deliveryCount: number,
  attemptsMax: number,
  baseMs: number,
  maxMs: number,
): InboxFailureAction {
  if (deliveryCount >= attemptsMax) return { kind: 'deadLetter' };
  return { kind: 'retry', delayMs: backoffMs(deliveryCount, baseMs, maxMs) };
}
