// Inference for list-append histories: transactions append unique elements
// to lists and read whole lists, so a read reveals the order in which every
// element it contains was appended. Following Elle (Kingsbury & Alvaro,
// VLDB 2020, section 4.1), the version order of a key is taken from its
// longest read; every other read must be a prefix of it (else
// `incompatible-order`). From that order:
//
//   ww  T1 → T2  T2 appended the element that follows, in the key's order, the one T1 appended;
//   wr  T1 → T2  T2 read a list whose last element T1 appended;
//   rw  T1 → T2  T1 read a list whose last element (or the empty list) T2's append follows.
//
// An append no read observed came after every observed one (a read that
// included a later element would include it), which still orders it after
// the last observed element. Only ok and info transactions are nodes; a
// failed transaction's elements read by someone is G1a. Besides the graph it
// reports the anomalies a single read shows: G1a, G1b (the read ends on
// an element its writer later followed with another append to the same key),
// internal (a read contradicting the transaction's own earlier ops),
// duplicate-elements and incompatible-order.
//
// Pure.

import {
  type Atom,
  type CaseWitness,
  type EdgeKind,
  EdgeList,
  type Inference,
  nameOf,
  RW,
  showValue,
  type Txn,
  viewOf,
  WR,
  WW,
} from './types.ts';
import {
  addCase,
  addReader,
  INIT,
  indexWriters,
  type ReaderIndex,
  type Version,
  type Writer,
} from './writes.ts';

const show = showValue;

/** The list a read observed, or undefined when it is unknown (an info's null). */
function observed(txn: Txn, value: unknown): readonly Atom[] | undefined {
  if (value === null) return txn.type === 'ok' ? [] : undefined;
  return value as readonly Atom[];
}

/** Elle's INT: a read must show what the transaction's own earlier ops on the key imply. */
function internalCase(txn: Txn): CaseWitness | undefined {
  // Per key: the elements the transaction knows end the list, and whether it knows the whole list.
  const known = new Map<Atom, { whole: boolean; list: Atom[] }>();
  for (const [f, k, v] of txn.ops) {
    const state = known.get(k);
    if (f === 'append') {
      if (state === undefined) known.set(k, { whole: false, list: [v] });
      else state.list.push(v);
      continue;
    }
    if (f !== 'r') continue;
    const list = observed(txn, v);
    if (list === undefined) continue;
    if (state !== undefined) {
      const expected = state.list;
      const offset = list.length - expected.length;
      const fits = state.whole
        ? offset === 0 && expected.every((e, i) => list[i] === e)
        : offset >= 0 && expected.every((e, i) => list[offset + i] === e);
      if (!fits) {
        const shape = state.whole ? show(expected) : `[..., ${expected.map(show).join(', ')}]`;
        return {
          txn: viewOf(txn),
          key: k,
          why: `read key ${show(k)} as ${show(list)} after its own earlier ops on it imply ${shape}`,
        };
      }
    }
    known.set(k, { whole: true, list: [...list] });
  }
  return undefined;
}

function isPrefix(list: readonly Atom[], of: readonly Atom[]): boolean {
  if (list.length > of.length) return false;
  for (let i = 0; i < list.length; i++) if (list[i] !== of[i]) return false;
  return true;
}

/** The first element of `list` appended by a transaction that failed. */
function failedWriterIn(
  list: readonly Atom[],
  byElement: Map<Atom, Writer>,
): { element: Atom; txn: Txn } | undefined {
  for (const element of list) {
    const w = byElement.get(element);
    if (w !== undefined && w.txn.type === 'fail') return { element, txn: w.txn };
  }
  return undefined;
}

/** Where two reads of a key part ways, for incompatible-order's message. */
function divergence(list: readonly Atom[], other: readonly Atom[], otherName: string): string {
  let i = 0;
  while (i < list.length && i < other.length && list[i] === other[i]) i++;
  return `at position ${i} this read has ${JSON.stringify(list[i])} where ${otherName}'s has ${JSON.stringify(other[i] ?? null)}`;
}

/** Where `list` first holds an element it held before, or -1. */
function repeatAt(list: readonly Atom[]): number {
  const seen = new Set<Atom>();
  for (let i = 0; i < list.length; i++) {
    if (seen.has(list[i]!)) return i;
    seen.add(list[i]!);
  }
  return -1;
}

export function inferListAppend(txns: readonly Txn[], source: string): Inference {
  const writers = indexWriters(txns, source, 'append');
  const cases = new Map<string, CaseWitness[]>();
  const possible = (t: Txn) => t.type !== 'fail';

  // The longest read of each key, and who read it (for incompatible-order's witness).
  const longest = new Map<Atom, { list: readonly Atom[]; txn: Txn }>();
  for (const txn of txns) {
    if (!possible(txn)) continue;
    for (const [f, k, v] of txn.ops) {
      if (f !== 'r') continue;
      const list = observed(txn, v);
      if (list === undefined) continue;
      const best = longest.get(k);
      if (best === undefined || list.length > best.list.length) longest.set(k, { list, txn });
    }
  }

  // Where the longest read of a key first repeats an element, and first holds a failed append.
  const shapes = new Map<Atom, { firstRepeat: number; firstFailed: number }>();
  const shapeOf = (k: Atom, list: readonly Atom[]) => {
    let shape = shapes.get(k);
    if (shape === undefined) {
      const repeat = repeatAt(list);
      const failed = writers.has(k) ? failedWriterIn(list, writers.get(k)!) : undefined;
      shape = {
        firstRepeat: repeat === -1 ? Number.POSITIVE_INFINITY : repeat,
        firstFailed: failed === undefined ? Number.POSITIVE_INFINITY : list.indexOf(failed.element),
      };
      shapes.set(k, shape);
    }
    return shape;
  };

  // Single-read anomalies, and the readers of each version (for rw edges).
  const readers: ReaderIndex = new Map();
  for (const txn of txns) {
    if (!possible(txn)) continue;
    if (txn.type === 'ok') {
      const internal = internalCase(txn);
      if (internal !== undefined) addCase(cases, 'internal', internal);
    }
    for (const [f, k, v] of txn.ops) {
      if (f !== 'r') continue;
      const list = observed(txn, v);
      if (list === undefined) continue;
      const last: Version = list.length === 0 ? INIT : list[list.length - 1]!;
      addReader(readers, k, last, txn.id);

      // Most reads are prefixes of the longest: what the longest holds answers for them.
      const best = longest.get(k)!;
      const prefix = list === best.list || isPrefix(list, best.list);
      const shape = shapeOf(k, best.list);
      if (!prefix)
        addCase(cases, 'incompatible-order', {
          txn: viewOf(txn),
          key: k,
          other: viewOf(best.txn),
          why: `read key ${show(k)} as ${show(list)}, which is not a prefix of ${show(best.list)} read by ${nameOf(best.txn)}: ${divergence(list, best.list, nameOf(best.txn))}`,
        });
      const repeat = prefix && list.length <= shape.firstRepeat ? -1 : repeatAt(list);
      if (repeat !== -1)
        addCase(cases, 'duplicate-elements', {
          txn: viewOf(txn),
          key: k,
          why: `read key ${show(k)} as ${show(list)}, which holds ${show(list[repeat])} more than once`,
        });
      if (txn.type !== 'ok') continue;
      const byElement = writers.get(k);
      if (byElement === undefined) continue;
      const failed = prefix && list.length <= shape.firstFailed ? undefined : failedWriterIn(list, byElement);
      if (failed !== undefined)
        addCase(cases, 'G1a', {
          txn: viewOf(txn),
          key: k,
          other: viewOf(failed.txn),
          why: `read key ${show(k)} as ${show(list)}, whose ${show(failed.element)} was appended by a transaction that failed`,
        });
      if (last !== INIT) {
        const w = byElement.get(last);
        if (w?.intermediate && w.txn !== txn)
          addCase(cases, 'G1b', {
            txn: viewOf(txn),
            key: k,
            other: viewOf(w.txn),
            why: `read key ${show(k)} as ${show(list)}, ending on ${show(last)}, which its writer followed with another append to the key`,
          });
      }
    }
  }

  // The version order of each key: its longest read, without repeats.
  const position = new Map<Atom, Map<Atom, number>>();
  const order = new Map<Atom, Atom[]>();
  for (const [k, { list }] of longest) {
    const at = new Map<Atom, number>();
    const distinct: Atom[] = [];
    for (const e of list) {
      if (at.has(e)) continue;
      at.set(e, distinct.length);
      distinct.push(e);
    }
    position.set(k, at);
    order.set(k, distinct);
  }
  /** The version an append of `e` to `k` followed. */
  const previous = (k: Atom, e: Atom): Version => {
    const keyOrder = order.get(k);
    if (keyOrder === undefined || keyOrder.length === 0) return INIT;
    const i = position.get(k)!.get(e);
    if (i === undefined) return keyOrder[keyOrder.length - 1]!;
    return i === 0 ? INIT : keyOrder[i - 1]!;
  };
  const possibleWriter = (k: Atom, e: Version): Txn | undefined => {
    if (e === INIT) return undefined;
    const w = writers.get(k)?.get(e);
    return w === undefined || !possible(w.txn) ? undefined : w.txn;
  };

  const edges = new EdgeList();
  for (const txn of txns) {
    if (!possible(txn)) continue;
    for (const [f, k, v] of txn.ops) {
      if (f === 'r') {
        const list = observed(txn, v);
        if (list === undefined || list.length === 0) continue;
        const w = possibleWriter(k, list[list.length - 1]!);
        if (w !== undefined) edges.add(w.id, txn.id, WR);
        continue;
      }
      if (f !== 'append') continue;
      const prev = previous(k, v);
      const w = possibleWriter(k, prev);
      if (w !== undefined) edges.add(w.id, txn.id, WW);
      // A read of this transaction's own earlier append is a read of its intermediate state:
      // G1b, reported above, not an anti-dependency on a version it never installed.
      if (w === txn) continue;
      const rs = readers.get(k)?.get(prev);
      if (rs !== undefined) for (const r of rs) edges.add(r, txn.id, RW);
    }
  }

  const explain = (from: Txn, to: Txn, kind: EdgeKind): { key?: Atom; why: string } | undefined => {
    for (const [f, k, v] of to.ops) {
      if (kind === WR && f === 'r') {
        const list = observed(to, v);
        if (list === undefined || list.length === 0) continue;
        const last = list[list.length - 1]!;
        if (possibleWriter(k, last) === from)
          return {
            key: k,
            why: `${nameOf(to)} read key ${show(k)} as ${show(list)}, ending on ${nameOf(from)}'s append of ${show(last)}`,
          };
      }
      if (f !== 'append') continue;
      const prev = previous(k, v);
      if (kind === WW && possibleWriter(k, prev) === from)
        return {
          key: k,
          why: `${nameOf(to)} appended ${show(v)} to key ${show(k)} after ${nameOf(from)}'s append of ${show(prev)}`,
        };
      if (kind === RW && possibleWriter(k, prev) !== to && readers.get(k)?.get(prev)?.includes(from.id)) {
        const seen = prev === INIT ? 'empty' : `a list ending on ${show(prev)}`;
        return {
          key: k,
          why: `${nameOf(from)} read key ${show(k)} as ${seen}, without ${nameOf(to)}'s later append of ${show(v)}`,
        };
      }
    }
    return undefined;
  };

  return { edges, cases, explain };
}
