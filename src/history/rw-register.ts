// Inference for rw-register histories: transactions write unique values to
// registers and read them. A read names the write it saw (values are
// unique), which gives wr edges exactly. The version order is mostly hidden,
// so only what is sound is inferred (Elle's rw-register does the same, with
// more optional inference behind flags):
//
//   - the initial state (an ok read of null) comes before every written value;
//   - a transaction that read value u of a key and then wrote v to it
//     installed v after u (it read u, so u was installed before it wrote).
//
// Each committed final write thus has one known predecessor (u, or the
// initial state for a blind write). From a known `u < v` with v written by T:
// ww from u's writer to T, rw from every reader of u to T. These are not
// always Adya's "next version" edges, but each stands for a chain of them
// with the same number of rw edges, so a cycle found has the class of the
// cycle it stands for. Only the first access of a key in a transaction, when
// it is a read, counts as the transaction's read of it (later reads are
// checked for internal consistency). A transaction's non-final writes to a
// key are never installed; reading one is G1b.
//
// Limits: blind writes are ordered after the initial state only, so cycles
// that need the order between two blind writers (G0 among blind writes, a
// lost update between them) are not seen; nor is anything that would need
// the version order to follow real time.
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
  type Txn,
  viewOf,
  WR,
  WW,
} from './types.ts';
import { addCase, addReader, INIT, indexWriters, type ReaderIndex, type Version } from './writes.ts';

const show = (v: Version) => (v === INIT ? 'its initial state (null)' : JSON.stringify(v));

/** What a read returned: a value, the initial state (an ok read of null), or undefined when unknown. */
function readVersion(txn: Txn, value: unknown): Version | undefined {
  if (value === null) return txn.type === 'ok' ? INIT : undefined;
  return value as Atom;
}

/** Per key of one transaction: its first read (when it read before writing) and its final write. */
interface Access {
  read: Version | undefined;
  finalWrite: Atom | undefined;
}

function accessesOf(txn: Txn): Map<Atom, Access> {
  const byKey = new Map<Atom, Access>();
  for (const [f, k, v] of txn.ops) {
    let access = byKey.get(k);
    const first = access === undefined;
    if (access === undefined) byKey.set(k, (access = { read: undefined, finalWrite: undefined }));
    if (f === 'w') access.finalWrite = v as Atom;
    else if (f === 'r' && first) access.read = readVersion(txn, v);
  }
  return byKey;
}

function internalCase(txn: Txn): CaseWitness | undefined {
  const known = new Map<Atom, Version>();
  for (const [f, k, v] of txn.ops) {
    if (f === 'w') {
      known.set(k, v as Atom);
      continue;
    }
    const got = readVersion(txn, v);
    if (got === undefined) continue;
    const expected = known.get(k);
    if (expected !== undefined && expected !== got)
      return {
        txn: viewOf(txn),
        key: k,
        why: `read key ${JSON.stringify(k)} as ${show(got)} after its own earlier ops on it left ${show(expected)}`,
      };
    known.set(k, got);
  }
  return undefined;
}

export function inferRwRegister(txns: readonly Txn[], source: string): Inference {
  const writers = indexWriters(txns, source, 'w');
  const possible = (t: Txn) => t.type !== 'fail';
  const possibleWriter = (k: Atom, v: Version): Txn | undefined => {
    if (v === INIT) return undefined;
    const w = writers.get(k)?.get(v);
    return w === undefined || !possible(w.txn) ? undefined : w.txn;
  };

  const cases = new Map<string, CaseWitness[]>();
  const accesses: (Map<Atom, Access> | undefined)[] = [];
  const readers: ReaderIndex = new Map();
  for (const txn of txns) {
    if (!possible(txn)) continue;
    const byKey = accessesOf(txn);
    accesses[txn.id] = byKey;
    if (txn.type === 'ok') {
      const internal = internalCase(txn);
      if (internal !== undefined) addCase(cases, 'internal', internal);
    }
    for (const [k, { read }] of byKey) {
      if (read === undefined) continue;
      addReader(readers, k, read, txn.id);
      if (txn.type !== 'ok' || read === INIT) continue;
      const w = writers.get(k)?.get(read);
      if (w === undefined || w.txn === txn) continue;
      if (w.txn.type === 'fail')
        addCase(cases, 'G1a', {
          txn: viewOf(txn),
          key: k,
          other: viewOf(w.txn),
          why: `read key ${JSON.stringify(k)} as ${show(read)}, written by a transaction that failed`,
        });
      else if (w.intermediate)
        addCase(cases, 'G1b', {
          txn: viewOf(txn),
          key: k,
          other: viewOf(w.txn),
          why: `read key ${JSON.stringify(k)} as ${show(read)}, which its writer overwrote within the same transaction`,
        });
    }
  }

  const edges = new EdgeList();
  for (const txn of txns) {
    const byKey = accesses[txn.id];
    if (byKey === undefined) continue;
    for (const [k, { read, finalWrite }] of byKey) {
      if (read !== undefined) {
        const w = possibleWriter(k, read);
        if (w !== undefined) edges.add(w.id, txn.id, WR);
      }
      if (finalWrite === undefined) continue;
      // The version this write is known to follow: what the transaction read, else the initial state.
      const prev = read ?? INIT;
      const w = possibleWriter(k, prev);
      if (w !== undefined) edges.add(w.id, txn.id, WW);
      const rs = readers.get(k)?.get(prev);
      if (rs !== undefined) for (const r of rs) edges.add(r, txn.id, RW);
    }
  }

  const explain = (from: Txn, to: Txn, kind: EdgeKind): { key?: Atom; why: string } | undefined => {
    const target = accesses[to.id];
    if (target === undefined) return undefined;
    for (const [k, { read, finalWrite }] of target) {
      const key = JSON.stringify(k);
      if (kind === WR && read !== undefined && possibleWriter(k, read) === from)
        return { key: k, why: `${nameOf(to)} read key ${key} as ${show(read)}, written by ${nameOf(from)}` };
      if (finalWrite === undefined) continue;
      const prev = read ?? INIT;
      if (kind === WW && possibleWriter(k, prev) === from)
        return {
          key: k,
          why: `${nameOf(to)} read key ${key} as ${show(prev)}, written by ${nameOf(from)}, then wrote ${show(finalWrite)}`,
        };
      if (kind === RW && accesses[from.id]?.get(k)?.read === prev)
        return {
          key: k,
          why: `${nameOf(from)} read key ${key} as ${show(prev)}, which ${nameOf(to)}'s write of ${show(finalWrite)} follows`,
        };
    }
    return undefined;
  };

  return { edges, cases, explain };
}
