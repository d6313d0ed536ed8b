// The outbox world's checkers, outside the world they judge: after the faults
// healed and the system drained, every committed producer transaction's
// effect is applied exactly once at the consumer and no rolled-back one's is;
// and each key's messages entered the stream in the order of their outbox rows.

import type { OutboxWorld } from './world.ts';

export type OutboxChecker = 'duplicate' | 'missing' | 'phantom' | 'key-order';

export interface OutboxViolation {
  checker: OutboxChecker;
  txn: string;
  detail: string;
}

export interface OutboxVerdict {
  committed: number;
  rolledBack: number;
  /** Effects applied exactly once. */
  applied: number;
  /** Committed transactions whose message is still on its way (row unsent, or stored and unacked): a liveness failure. */
  undelivered: number;
  undeliveredTxns: string[];
  violations: OutboxViolation[];
  violationCount: number;
  violationsByChecker: Partial<Record<OutboxChecker, number>>;
}

const violationsKept = 50;

export function judgeOutbox(world: OutboxWorld): OutboxVerdict {
  const v: OutboxVerdict = {
    committed: 0,
    rolledBack: 0,
    applied: 0,
    undelivered: 0,
    undeliveredTxns: [],
    violations: [],
    violationCount: 0,
    violationsByChecker: {},
  };
  const report = (checker: OutboxChecker, txn: string, detail: string) => {
    v.violationCount++;
    v.violationsByChecker[checker] = (v.violationsByChecker[checker] ?? 0) + 1;
    if (v.violations.length < violationsKept) v.violations.push({ checker, txn, detail });
  };
  const rowOf = new Map(world.outbox.map((r) => [r.txn, r]));
  const unacked = new Set(world.stream.filter((e) => !e.acked).map((e) => e.txn));
  for (const t of world.txns.values()) {
    const count = world.applied.get(t.txn)?.count ?? 0;
    if (!t.committed) {
      v.rolledBack++;
      if (count > 0) report('phantom', t.txn, `rolled back, yet its effect was applied ${count} time(s)`);
      continue;
    }
    v.committed++;
    if (count === 1) v.applied++;
    else if (count > 1) report('duplicate', t.txn, `effect applied ${count} times`);
    else {
      const row = rowOf.get(t.txn);
      if (row !== undefined && (row.sentMs === null || unacked.has(t.txn))) {
        v.undelivered++;
        if (v.undeliveredTxns.length < violationsKept) v.undeliveredTxns.push(t.txn);
      } else {
        const why =
          row === undefined ? 'committed without an outbox row' : 'its message was acked but never applied';
        report('missing', t.txn, why);
      }
    }
  }
  for (const txn of world.applied.keys()) {
    if (!world.txns.has(txn)) report('phantom', txn, 'applied, yet no producer transaction has this id');
  }
  // Per-key order: the first copy of each message in the stream, by key, must follow the rows' order.
  const lastSeqByKey = new Map<string, { seq: number; txn: string }>();
  const seen = new Set<string>();
  for (const e of world.stream) {
    if (e.key === null || seen.has(e.msgId)) continue;
    seen.add(e.msgId);
    const row = rowOf.get(e.txn);
    if (row === undefined) continue;
    const last = lastSeqByKey.get(e.key);
    if (last !== undefined && last.seq > row.seq) {
      report('key-order', e.txn, `key ${e.key}: entered the stream after ${last.txn}, a later outbox row`);
    }
    if (last === undefined || last.seq < row.seq) lastSeqByKey.set(e.key, { seq: row.seq, txn: e.txn });
  }
  return v;
}
