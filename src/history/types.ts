// The shapes shared by the history checker's steps: operations as read from a
// Jepsen-style history, transactions (an invocation paired with its
// completion), the dependency kinds of Adya's serialization graph, and the
// anomalies the checker reports.
//
// Pure data; nothing here does I/O.

/** A key or a written element: Jepsen histories use integers, sometimes strings. */
export type Atom = number | string;

export type Model = 'list-append' | 'rw-register';
export const models: readonly Model[] = ['list-append', 'rw-register'];

/**
 * serializable: ww, wr and rw dependencies only. strong-session-serializable
 * adds each process's order (a session sees its own past). strict-serializable
 * adds real-time order (a transaction that completed before another was
 * invoked precedes it), which implies the process order.
 */
export type Consistency = 'serializable' | 'strong-session-serializable' | 'strict-serializable';
export const consistencies: readonly Consistency[] = [
  'serializable',
  'strong-session-serializable',
  'strict-serializable',
];

export type OpType = 'invoke' | 'ok' | 'fail' | 'info';

/**
 * One micro-operation `[f, key, value]`. `f` is `append` or `r` (list-append),
 * `w` or `r` (rw-register). A read's value is `null` when it is not known (an
 * invocation, an indeterminate completion); otherwise the list (list-append) or
 * the register's value (rw-register, `null` being the initial state of an ok read).
 */
export type MicroOp =
  | readonly ['append', Atom, Atom]
  | readonly ['w', Atom, Atom]
  | readonly ['r', Atom, readonly Atom[] | Atom | null];

/** One line (or array element) of a history. */
export interface Op {
  /** The op's `index` field, or its position in the history when it has none. */
  index: number;
  process: Atom;
  type: OpType;
  value: readonly MicroOp[] | null;
  /** Where it came from, for error messages: 1-based line of the file. */
  line: number;
}

/**
 * A transaction: an invocation and its completion. `ok` committed, `fail` did
 * not happen, `info` may or may not have happened (its reads are unknown; its
 * writes count only where some read observed them). `id` is dense (0..n-1).
 */
export interface Txn {
  id: number;
  type: 'ok' | 'fail' | 'info';
  process: Atom;
  /** The completion's `index` (the invocation's for a transaction that never completed). */
  index: number;
  /** Position of the invocation and of the completion in the history; an info never completes (Infinity). */
  invokedAt: number;
  completedAt: number;
  /** The completion's micro-ops (the invocation's for an info without a value). */
  ops: readonly MicroOp[];
  line: number;
}

/** Dependency kinds, as bits so that a search can allow a set of them. */
export const WW = 1;
export const WR = 2;
export const RW = 4;
export const REALTIME = 8;
export const PROCESS = 16;
export type EdgeKind = typeof WW | typeof WR | typeof RW | typeof REALTIME | typeof PROCESS;

export const edgeKindName: Readonly<Record<EdgeKind, 'ww' | 'wr' | 'rw' | 'realtime' | 'process'>> = {
  [WW]: 'ww',
  [WR]: 'wr',
  [RW]: 'rw',
  [REALTIME]: 'realtime',
  [PROCESS]: 'process',
};

/** How a transaction appears in a witness: as the history recorded it. */
export interface TxnView {
  index: number;
  process: Atom;
  type: 'ok' | 'fail' | 'info';
  value: readonly MicroOp[];
}

/** One edge of a witness cycle and what justifies it. */
export interface CycleStep {
  from: number;
  to: number;
  rel: 'ww' | 'wr' | 'rw' | 'realtime' | 'process';
  key?: Atom;
  why: string;
}

export interface CycleWitness {
  /** The transactions in cycle order; steps[i] goes from txns[i] to txns[i + 1] (and the last back to the first). */
  txns: TxnView[];
  steps: CycleStep[];
}

/** A witness of an anomaly found without a cycle (G1a, G1b, internal, ...). */
export interface CaseWitness {
  txn: TxnView;
  key: Atom;
  why: string;
  /** The other transaction involved (the failed or intermediate writer, the other reader), when there is one. */
  other?: TxnView;
}

export type Witness = CycleWitness | CaseWitness;

export interface CheckResult {
  valid: boolean;
  anomalyTypes: string[];
  anomalies: Record<string, Witness[]>;
}

/** What a model's inference hands to the graph: dependency edges and the anomalies seen on the way. */
export interface Inference {
  edges: EdgeList;
  cases: Map<string, CaseWitness[]>;
  /** Why `from` → `to` of `kind` holds (for witnesses), or undefined when it does not. */
  explain(from: Txn, to: Txn, kind: EdgeKind): { key?: Atom; why: string } | undefined;
}

/** Edges in three growable columns: cheap for a million edges. */
export class EdgeList {
  from: Int32Array = new Int32Array(1024);
  to: Int32Array = new Int32Array(1024);
  kind: Uint8Array = new Uint8Array(1024);
  length = 0;

  add(from: number, to: number, kind: EdgeKind): void {
    if (from === to) return;
    if (this.length === this.from.length) {
      const grow = <T extends Int32Array | Uint8Array>(a: T, make: (n: number) => T): T => {
        const b = make(a.length * 2);
        b.set(a);
        return b;
      };
      this.from = grow(this.from, (n) => new Int32Array(n));
      this.to = grow(this.to, (n) => new Int32Array(n));
      this.kind = grow(this.kind, (n) => new Uint8Array(n));
    }
    this.from[this.length] = from;
    this.to[this.length] = to;
    this.kind[this.length] = kind;
    this.length++;
  }
}

export function viewOf(txn: Txn): TxnView {
  return { index: txn.index, process: txn.process, type: txn.type, value: txn.ops };
}

/** Elements of a long list a message shows: its first and its last few, which are what a witness turns on. */
const listHeadShown = 1;
const listTailShown = 3;

/** A value for a message: JSON, with a long list cut to its ends (`[1, ...12 more..., 40, 41, 42]`). */
export function showValue(v: unknown): string {
  if (!Array.isArray(v) || v.length <= listHeadShown + listTailShown + 1) return JSON.stringify(v);
  const head = v.slice(0, listHeadShown).map((e) => JSON.stringify(e));
  const tail = v.slice(v.length - listTailShown).map((e) => JSON.stringify(e));
  return `[${[...head, `...${v.length - listHeadShown - listTailShown} more...`, ...tail].join(',')}]`;
}

/** How witnesses name a transaction: by its completion's index. */
export function nameOf(txn: { index: number }): string {
  return `T${txn.index}`;
}

export function isCycleWitness(w: Witness): w is CycleWitness {
  return 'steps' in w;
}
