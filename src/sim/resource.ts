// The local resource model of one simulated participant: keyed rows holding a
// number, exclusive row locks held from a transaction's first write until it
// commits or aborts, wait queues, and a deadlock rule. It exists so that lock
// hold time and queueing behind a held lock are measured, not assumed.
//
// Deadlock rule: wound-wait (Rosenkrantz, Stearns & Lewis 1978), by
// transaction age (a smaller `age` is older). An older requester wounds a
// younger holder; a younger requester waits. Waits therefore only ever point
// from younger to older, so no cycle can form, across participants too,
// without any participant seeing another's locks. We prefer it to wait-die
// because the older transaction is never the one restarted, so a long
// transaction cannot starve. A holder that is *prepared* cannot be wounded —
// it has promised to commit if told — so the requester waits for it: this is
// exactly 2PC's blocking, and the queue behind a prepared transaction is what
// the simulator measures. It cannot deadlock either, because a prepared
// transaction has finished taking locks everywhere and waits for nothing local.
//
// Reads (the bank-audit and append workloads) come in two modes. A `plain`
// read returns the row's latest committed value and takes no lock. A
// `locking` read takes a shared lock, held like a write lock until the
// transaction commits or aborts here (strict two-phase locking): readers
// share a row, a writer needs it alone. The deadlock rule stays wound-wait,
// over shared and exclusive holders alike: an older requester wounds every
// younger, unprepared holder it conflicts with, a younger one waits, so waits
// still point only from younger to older and no cycle can form. (The runtime
// cannot see the age of a lock's holder in PostgreSQL or MariaDB, and orders
// resources instead; the simulator sees everything, and keeps the rule it
// already had.) Every read sees the transaction's own earlier writes to the
// row. Rows also hold a list, for the append workload's list-append ops.
//
// Timestamp-ordered reads (`versioned`): every commit also keeps the row's
// new value as a version stamped with the transaction's commit timestamp
// (a hybrid logical clock value, ../protocol/common/hlc.ts), and a read at a
// snapshot timestamp returns the latest version at or before it, without a
// lock. A prepared writer of the row whose prepare timestamp is at or before
// the snapshot may still commit at or before it, so such a read waits for its
// outcome (as Spanner's and CockroachDB's do); a writer that prepares later
// gets a prepare timestamp after the snapshot, because the participant's
// clock has seen the snapshot's timestamp (the world updates it). Versions
// are appended in timestamp order; the model asserts it.

import { assert } from '../protocol/common/assert.ts';
import { compareHlc, type Hlc, hlcZero } from '../protocol/common/hlc.ts';

export type Key = string;

export interface Op {
  key: Key;
  /** Added to the row's value at commit (0 for reads and appends). */
  delta: number;
  /** A read, plain or locking as the model's read mode says (delta 0). */
  read?: true;
  /** List-append: appended to the row's list at commit (delta 0). */
  append?: number;
  /** Position of the op among its transaction's micro-ops (the history's order). */
  seq?: number;
}

/** Whether an op changes its row: a delta or an append. */
export const writes = (op: Op): boolean => op.delta !== 0 || op.append !== undefined;

/** What a read returned. */
export interface ReadResult {
  key: Key;
  seq: number;
  value: number;
  list: readonly number[];
}

export type LockReadMode = 'plain' | 'locking';

interface LocalTxn {
  age: number;
  ops: readonly Op[];
  /** Index of the next op whose lock is not yet held. */
  next: number;
  held: Key[];
  /** Rows it holds a shared lock on. */
  shared: Key[];
  reads: ReadResult[];
  firstLockAt: number;
  prepared: boolean;
  executed: boolean;
  /** When it started waiting for its current lock, or -1. */
  waitingSince: number;
  /** Versioned rows: its prepare timestamp here, once its prepared record is durable. */
  prepareTs?: Hlc;
  /** Versioned rows: its commit timestamp, once a COMMIT carrying it arrived. */
  commitTs?: Hlc;
  onGranted: () => void;
  onFailed: () => void;
}

interface Row {
  value: number;
  list: number[];
  holder: string | null;
  /** Shared holders (locking reads). */
  readers: string[];
  /** Waiting transactions, oldest first. */
  queue: string[];
  /** Versioned rows only: every committed state, oldest first, by commit timestamp. */
  versions: Version[] | null;
}

interface Version {
  ts: Hlc;
  value: number;
  list: readonly number[];
}

export interface ResourceHooks {
  now(): number;
  /**
   * An older transaction needs a lock `txn` holds. If `txn` finished its work
   * here, the protocol core must give it up (it emits the abort); before that,
   * the model aborts it itself.
   */
  wound(txn: string): void;
  lockReleased(txn: string, heldMs: number): void;
  queued(txn: string): void;
  /** A transaction waited this long for a lock (granted, or given up while waiting). */
  waited(ms: number): void;
}

export class ResourceModel {
  readonly rows = new Map<Key, Row>();
  private readonly txns = new Map<string, LocalTxn>();
  /** Transactions that ended here; their ids are never executed again (a late duplicate request fails). */
  private readonly ended = new Set<string>();

  constructor(
    initial: ReadonlyMap<Key, number>,
    private readonly hooks: ResourceHooks,
    private readonly readMode: LockReadMode = 'locking',
    /** Keep committed versions by commit timestamp, for timestamp-ordered reads. */
    private readonly versioned = false,
  ) {
    for (const [key, value] of initial) this.rows.set(key, this.newRow(value));
  }

  private newRow(value: number): Row {
    return {
      value,
      list: [],
      holder: null,
      readers: [],
      queue: [],
      versions: this.versioned ? [{ ts: hlcZero, value, list: [] }] : null,
    };
  }

  private row(key: Key): Row {
    let r = this.rows.get(key);
    if (r === undefined) {
      r = this.newRow(0);
      this.rows.set(key, r);
    }
    return r;
  }

  has(txn: string): boolean {
    return this.txns.has(txn);
  }

  /** Start the transaction's work here: take its locks in order, then call `onGranted`. */
  execute(txn: string, age: number, ops: readonly Op[], onGranted: () => void, onFailed: () => void): void {
    if (this.txns.has(txn)) return; // a duplicated request
    if (this.ended.has(txn)) return onFailed();
    this.txns.set(txn, {
      age,
      ops,
      next: 0,
      held: [],
      shared: [],
      reads: [],
      firstLockAt: -1,
      prepared: false,
      executed: false,
      waitingSince: -1,
      onGranted,
      onFailed,
    });
    this.advance(txn);
  }

  private advance(txn: string): void {
    const t = this.txns.get(txn);
    if (t === undefined) return;
    while (t.next < t.ops.length) {
      const op = t.ops[t.next]!;
      const key = op.key;
      const row = this.row(key);
      if (op.read === true) {
        if (this.readMode === 'locking' && row.holder !== txn && !row.readers.includes(txn)) {
          if (!this.mayTake(row, txn, t, false)) return;
          row.readers.push(txn);
          t.shared.push(key);
          if (t.firstLockAt < 0) t.firstLockAt = this.hooks.now();
        }
        t.reads.push(this.readOf(row, t, op));
        t.next++;
        continue;
      }
      if (row.holder === txn && row.readers.length === 0) {
        t.next++;
        continue;
      }
      if (!this.mayTake(row, txn, t, true)) return;
      if (row.holder !== txn) {
        row.holder = txn;
        t.held.push(key);
      }
      // An upgrade: its own shared lock is part of the exclusive one now.
      if (row.readers.length > 0) row.readers = row.readers.filter((r) => r !== txn);
      if (t.firstLockAt < 0) t.firstLockAt = this.hooks.now();
      t.next++;
    }
    if (!t.executed) {
      t.executed = true;
      t.onGranted();
    }
  }

  /**
   * Wound-wait for one lock request: wounds the younger, unprepared holders
   * it conflicts with; true when nothing conflicts any more (the lock may be
   * taken), else the request waits in the row's queue.
   */
  private mayTake(row: Row, txn: string, t: LocalTxn, exclusive: boolean): boolean {
    if (row.holder !== null && row.holder !== txn) {
      const holder = this.txns.get(row.holder)!;
      if (t.age < holder.age && !holder.prepared) {
        this.woundHolder(row.holder, holder);
      }
    }
    if (exclusive && row.readers.length > 0) {
      for (const r of row.readers.slice()) {
        if (r === txn) continue;
        const reader = this.txns.get(r);
        if (reader !== undefined && t.age < reader.age && !reader.prepared) this.woundHolder(r, reader);
      }
    }
    // Wounding runs the wounded transaction's abort synchronously, and what
    // that abort wakes can in turn end this very transaction (wounded by an
    // older one): it is gone then, and must not be left in a wait queue.
    if (this.txns.get(txn) !== t) return false;
    const blocked =
      (row.holder !== null && row.holder !== txn) || (exclusive && row.readers.some((r) => r !== txn));
    if (blocked) {
      if (!row.queue.includes(txn)) {
        this.enqueue(row, txn, t.age);
        this.hooks.queued(txn);
        if (t.waitingSince < 0) t.waitingSince = this.hooks.now();
      }
      return false;
    }
    if (t.waitingSince >= 0) {
      this.hooks.waited(this.hooks.now() - t.waitingSince);
      t.waitingSince = -1;
    }
    return true;
  }

  /** A read's result: the committed row with the transaction's own earlier writes to it. */
  private readOf(row: Row, t: LocalTxn, op: Op): ReadResult {
    let value = row.value;
    const list = row.list.slice();
    for (let i = 0; i < t.next; i++) {
      const own = t.ops[i]!;
      if (own.key !== op.key) continue;
      value += own.delta;
      if (own.append !== undefined) list.push(own.append);
    }
    return { key: op.key, seq: op.seq ?? t.next, value, list };
  }

  /** What the transaction's reads returned here, in the order they ran. */
  readsOf(txn: string): readonly ReadResult[] {
    return this.txns.get(txn)?.reads ?? [];
  }

  /** The committed state of `key`: what a snapshot opened now reads. */
  committed(key: Key): { value: number; list: readonly number[] } {
    const row = this.rows.get(key);
    return row === undefined ? { value: 0, list: [] } : { value: row.value, list: row.list.slice() };
  }

  private enqueue(row: Row, txn: string, age: number): void {
    let i = row.queue.length;
    while (i > 0 && this.txns.get(row.queue[i - 1]!)!.age > age) i--;
    row.queue.splice(i, 0, txn);
  }

  private woundHolder(txn: string, t: LocalTxn): void {
    if (t.executed)
      this.hooks.wound(txn); // the core decides; it aborts unvoted work synchronously
    else this.fail(txn);
  }

  /** The transaction's work here is gone before it finished (wounded while still taking locks, or abandoned). */
  fail(txn: string): void {
    const t = this.txns.get(txn);
    if (t === undefined || t.executed) return;
    this.release(txn, false);
    t.onFailed();
  }

  /**
   * Durable prepared record written: from now on the transaction cannot be
   * wounded and survives crashes. `ts`: its prepare timestamp (versioned rows).
   */
  markPrepared(txn: string, ts?: Hlc): void {
    const t = this.txns.get(txn);
    if (t === undefined) return;
    t.prepared = true;
    if (ts !== undefined) t.prepareTs = ts;
  }

  prepareTsOf(txn: string): Hlc | undefined {
    return this.txns.get(txn)?.prepareTs;
  }

  /** A COMMIT carrying the commit timestamp arrived: the versions it installs get it. */
  setCommitTs(txn: string, ts: Hlc): void {
    const t = this.txns.get(txn);
    if (t !== undefined) t.commitTs = ts;
  }

  /**
   * Reads at snapshot timestamp `ts`, without locks: each row's latest version
   * at or before `ts`. Null when a prepared writer of one of the rows has a
   * prepare timestamp at or before `ts` (or none yet): its outcome decides
   * what the read returns, so the read waits for it.
   */
  readAt(ops: readonly Op[], ts: Hlc): ReadResult[] | null {
    assert(this.versioned, 'readAt needs versioned rows');
    const out: ReadResult[] = [];
    for (const op of ops) {
      const row = this.row(op.key);
      const holder = row.holder === null ? undefined : this.txns.get(row.holder);
      if (holder?.prepared && (holder.prepareTs === undefined || compareHlc(holder.prepareTs, ts) <= 0))
        return null;
      const versions = row.versions!;
      let i = versions.length - 1;
      while (i > 0 && compareHlc(versions[i]!.ts, ts) > 0) i--;
      const v = versions[i]!;
      out.push({ key: op.key, seq: op.seq ?? 0, value: v.value, list: v.list.slice() });
    }
    return out;
  }

  isPrepared(txn: string): boolean {
    return this.txns.get(txn)?.prepared === true;
  }

  commit(txn: string): boolean {
    return this.release(txn, true);
  }

  abort(txn: string): boolean {
    return this.release(txn, false);
  }

  /** A crash: work that was not durably prepared is lost with the process; prepared work keeps its locks. */
  crash(): string[] {
    const lost: string[] = [];
    for (const [txn, t] of this.txns) if (!t.prepared) lost.push(txn);
    for (const txn of lost) this.release(txn, false);
    return lost;
  }

  private release(txn: string, apply: boolean): boolean {
    const t = this.txns.get(txn);
    if (t === undefined) return false;
    this.txns.delete(txn);
    this.ended.add(txn);
    if (t.waitingSince >= 0) this.hooks.waited(this.hooks.now() - t.waitingSince);
    if (apply) {
      const touched = new Set<Row>();
      for (const op of t.ops) {
        const row = this.row(op.key);
        row.value += op.delta;
        if (op.append !== undefined) row.list.push(op.append);
        if (writes(op)) touched.add(row);
      }
      if (this.versioned) for (const row of touched) this.addVersion(txn, t, row);
    }
    // Remove from any wait queue it sits in (it may be waiting for its next op's lock).
    if (t.next < t.ops.length) {
      const row = this.rows.get(t.ops[t.next]!.key);
      if (row !== undefined) {
        const i = row.queue.indexOf(txn);
        if (i >= 0) row.queue.splice(i, 1);
      }
    }
    if (t.firstLockAt >= 0) this.hooks.lockReleased(txn, this.hooks.now() - t.firstLockAt);
    const wake: string[] = [];
    for (const key of t.held) {
      const row = this.rows.get(key)!;
      row.holder = null;
      this.wakeRow(row, wake);
    }
    for (const key of t.shared) {
      const row = this.rows.get(key)!;
      const i = row.readers.indexOf(txn);
      if (i < 0) continue; // upgraded: released with the exclusive lock
      row.readers.splice(i, 1);
      this.wakeRow(row, wake);
    }
    for (const w of wake) this.advance(w);
    return true;
  }

  /**
   * Takes off the row's queue the waiters that may now have it: the first
   * one, if nothing it conflicts with holds the row, and while it is a
   * reader, the readers right behind it. (Without locking reads this is the
   * first waiter once the holder left, as it always was.)
   */
  private wakeRow(row: Row, wake: string[]): void {
    while (row.queue.length > 0) {
      const w = row.queue[0]!;
      const wt = this.txns.get(w);
      if (wt === undefined) {
        row.queue.shift();
        wake.push(w);
        return;
      }
      const reading = wt.ops[wt.next]?.read === true;
      if (row.holder !== null && row.holder !== w) return;
      if (!reading && row.readers.some((r) => r !== w)) return;
      row.queue.shift();
      wake.push(w);
      if (!reading) return;
    }
  }

  private addVersion(txn: string, t: LocalTxn, row: Row): void {
    const ts = t.commitTs;
    assert(ts !== undefined, `${txn} committed a write without a commit timestamp`);
    const versions = row.versions!;
    const last = versions[versions.length - 1]!;
    // Writers of a row commit one after the other under its lock, and each
    // one's prepare timestamp is past the commit timestamps its participant saw.
    assert(compareHlc(ts, last.ts) > 0, `${txn}: commit timestamp not after the row's last version`);
    versions.push({ ts, value: row.value, list: row.list.slice() });
  }

  total(filter: (key: Key) => boolean): number {
    let sum = 0;
    for (const [key, row] of this.rows) if (filter(key)) sum += row.value;
    return sum;
  }
}
