// What both models' inference starts from: who wrote each value (values are
// unique per key, which is what lets a read name its writer), which writes a
// transaction overwrote itself, and who read each version.
//
// Pure.

import { HistoryFormatError } from './parse.ts';
import type { Atom, CaseWitness, Txn } from './types.ts';

/** The state before any write: what an empty (list-append) or null (rw-register) ok read observed. */
export const INIT = Symbol('initial state');
export type Version = Atom | typeof INIT;

export interface Writer {
  txn: Txn;
  /** The writer wrote the same key again later in the transaction: this value was never installed alone. */
  intermediate: boolean;
}

/**
 * Every written value's writer, per key, for micro-ops `f` (`append` or `w`);
 * throws when a value is written twice to a key, since the inference needs
 * each one to name a single writer.
 */
export function indexWriters(
  txns: readonly Txn[],
  source: string,
  f: 'append' | 'w',
): Map<Atom, Map<Atom, Writer>> {
  const writers = new Map<Atom, Map<Atom, Writer>>();
  const [verb, model] = f === 'append' ? ['appended', 'list-append'] : ['written', 'rw-register'];
  for (const txn of txns) {
    const lastWrite = new Map<Atom, Writer>();
    for (const [g, k, v] of txn.ops) {
      if (g !== f) continue;
      const value = v as Atom;
      let byValue = writers.get(k);
      if (byValue === undefined) writers.set(k, (byValue = new Map()));
      const earlier = byValue.get(value);
      if (earlier !== undefined)
        throw new HistoryFormatError(
          source,
          txn.line,
          `${JSON.stringify(value)} is ${verb} to key ${JSON.stringify(k)} again (first on line ${earlier.txn.line}): ` +
            `${model} needs every ${verb} value to be unique per key`,
        );
      const writer = { txn, intermediate: false };
      byValue.set(value, writer);
      const before = lastWrite.get(k);
      if (before !== undefined) before.intermediate = true;
      lastWrite.set(k, writer);
    }
  }
  return writers;
}

/** Readers of each version of each key, by transaction id. */
export type ReaderIndex = Map<Atom, Map<Version, number[]>>;

export function addReader(readers: ReaderIndex, key: Atom, version: Version, txnId: number): void {
  let byVersion = readers.get(key);
  if (byVersion === undefined) readers.set(key, (byVersion = new Map()));
  const ids = byVersion.get(version);
  if (ids === undefined) byVersion.set(version, [txnId]);
  else ids.push(txnId);
}

export function addCase(cases: Map<string, CaseWitness[]>, type: string, witness: CaseWitness): void {
  let list = cases.get(type);
  if (list === undefined) cases.set(type, (list = []));
  list.push(witness);
}
