// The orders a history shows besides data dependencies: real time (T1
// completed before T2 was invoked, which strict serializability must
// respect) and each process's own order (strong session serializability).
//
// Real time has up to n² pairs; as in Elle, only a transitive reduction is
// kept: when T is invoked, edges come from the "frontier" of completed
// transactions that no other completed transaction follows, and when T
// completes it replaces in the frontier the ones that preceded it. Any other
// real-time pair follows by a path of such edges. A failed transaction did
// not happen and is left out; an info one may have, so it can follow others
// but never precedes anything (it has no completion).
//
// Pure.

import { type Atom, type EdgeList, PROCESS, REALTIME, type Txn } from './types.ts';

export function addRealtimeEdges(txns: readonly Txn[], edges: EdgeList): void {
  // Events by position: an invocation as 2p, a completion as 2p + 1, so that a
  // transaction listed only by its completion is invoked just before it completes.
  const events: number[] = [];
  for (const t of txns) {
    if (t.type === 'fail') continue;
    events.push(t.invokedAt * 2, t.id);
    if (t.type === 'ok') events.push(t.completedAt * 2 + 1, t.id);
  }
  const order = Array.from({ length: events.length / 2 }, (_, i) => i).sort(
    (a, b) => events[a * 2]! - events[b * 2]!,
  );
  const frontier = new Set<number>();
  const predecessors = new Map<number, number[]>();
  for (const e of order) {
    const at = events[e * 2]!;
    const id = events[e * 2 + 1]!;
    if (at % 2 === 0) {
      const before = [...frontier];
      for (const p of before) edges.add(p, id, REALTIME);
      predecessors.set(id, before);
    } else {
      const before = predecessors.get(id);
      predecessors.delete(id);
      if (before !== undefined) for (const p of before) frontier.delete(p);
      frontier.add(id);
    }
  }
}

/** Each process's transactions in order; an info ends the chain (Jepsen retires its process). */
export function addProcessEdges(txns: readonly Txn[], edges: EdgeList): void {
  const byProcess = new Map<Atom, Txn[]>();
  for (const t of txns) {
    if (t.type === 'fail') continue;
    let list = byProcess.get(t.process);
    if (list === undefined) byProcess.set(t.process, (list = []));
    list.push(t);
  }
  for (const list of byProcess.values()) {
    list.sort((a, b) => a.invokedAt - b.invokedAt);
    let last: Txn | undefined;
    for (const t of list) {
      if (last !== undefined) edges.add(last.id, t.id, PROCESS);
      last = t.type === 'ok' ? t : undefined;
    }
  }
}
