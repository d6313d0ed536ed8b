// Pairing: each process runs one transaction at a time, so an invocation is
// completed by the next op of the same process. The pair becomes one `Txn`
// whose micro-ops are the completion's (where reads are filled in).
//
// As in Jepsen: `fail` means the transaction did not happen, `info` that it
// may or may not have; an invocation never completed is an `info`. A
// completion with no invocation before it (hand-written histories often list
// only completions) is taken as invoked where it completed.
//
// Pure.

import { HistoryFormatError } from './parse.ts';
import type { Atom, MicroOp, Op, Txn } from './types.ts';

function sameShape(invoked: readonly MicroOp[], completed: readonly MicroOp[]): boolean {
  if (invoked.length !== completed.length) return false;
  for (let i = 0; i < invoked.length; i++) {
    const a = invoked[i]!;
    const b = completed[i]!;
    if (a[0] !== b[0] || a[1] !== b[1]) return false;
    if (a[0] !== 'r' && a[2] !== b[2]) return false;
  }
  return true;
}

export function pairTxns(ops: readonly Op[], source: string): Txn[] {
  const pending = new Map<Atom, { op: Op; at: number }>();
  const txns: Txn[] = [];
  for (let at = 0; at < ops.length; at++) {
    const op = ops[at]!;
    if (op.type === 'invoke') {
      const open = pending.get(op.process);
      if (open !== undefined)
        throw new HistoryFormatError(
          source,
          op.line,
          `process ${JSON.stringify(op.process)} invoked a transaction while its invocation on line ${open.op.line} had not completed`,
        );
      pending.set(op.process, { op, at });
      continue;
    }
    const open = pending.get(op.process);
    pending.delete(op.process);
    const invoked = open?.op.value ?? null;
    if (invoked !== null && op.value !== null && !sameShape(invoked, op.value))
      throw new HistoryFormatError(
        source,
        op.line,
        `the completion's micro-ops do not match the invocation's on line ${open!.op.line} (same functions, keys and written values expected)`,
      );
    const value = op.value ?? invoked;
    if (value === null)
      throw new HistoryFormatError(source, op.line, 'an info op without a value and without an invocation');
    txns.push({
      id: txns.length,
      type: op.type,
      process: op.process,
      index: op.index,
      invokedAt: open?.at ?? at,
      completedAt: op.type === 'info' ? Number.POSITIVE_INFINITY : at,
      ops: value,
      line: op.line,
    });
  }
  for (const { op, at } of pending.values()) {
    txns.push({
      id: txns.length,
      type: 'info',
      process: op.process,
      index: op.index,
      invokedAt: at,
      completedAt: Number.POSITIVE_INFINITY,
      ops: op.value ?? [],
      line: op.line,
    });
  }
  return txns;
}
