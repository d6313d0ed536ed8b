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

export type Key = string;

export interface Op {
  key: Key;
  delta: number;
}

interface LocalTxn {
  age: number;
  ops: readonly Op[];
  /** Index of the next op whose lock is not yet held. */
  next: number;
  held: Key[];
  firstLockAt: number;
  prepared: boolean;
  executed: boolean;
  /** When it started waiting for its current lock, or -1. */
  waitingSince: number;
  onGranted: () => void;
  onFailed: () => void;
}

interface Row {
  value: number;
  holder: string | null;
  /** Waiting transactions, oldest first. */
  queue: string[];
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
  ) {
    for (const [key, value] of initial) this.rows.set(key, { value, holder: null, queue: [] });
  }

  private row(key: Key): Row {
    let r = this.rows.get(key);
    if (r === undefined) {
      r = { value: 0, holder: null, queue: [] };
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
      const key = t.ops[t.next]!.key;
      const row = this.row(key);
      if (row.holder === txn) {
        t.next++;
        continue;
      }
      if (row.holder !== null) {
        const holder = this.txns.get(row.holder)!;
        if (t.age < holder.age && !holder.prepared) {
          this.woundHolder(row.holder, holder);
        }
      }
      if (row.holder !== null) {
        if (!row.queue.includes(txn)) {
          this.enqueue(row, txn, t.age);
          this.hooks.queued(txn);
          if (t.waitingSince < 0) t.waitingSince = this.hooks.now();
        }
        return;
      }
      if (t.waitingSince >= 0) {
        this.hooks.waited(this.hooks.now() - t.waitingSince);
        t.waitingSince = -1;
      }
      row.holder = txn;
      t.held.push(key);
      if (t.firstLockAt < 0) t.firstLockAt = this.hooks.now();
      t.next++;
    }
    if (!t.executed) {
      t.executed = true;
      t.onGranted();
    }
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

  /** Durable prepared record written: from now on the transaction cannot be wounded and survives crashes. */
  markPrepared(txn: string): void {
    const t = this.txns.get(txn);
    if (t !== undefined) t.prepared = true;
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
    if (apply) for (const op of t.ops) this.row(op.key).value += op.delta;
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
      const waiter = row.queue.shift();
      if (waiter !== undefined) wake.push(waiter);
    }
    for (const w of wake) this.advance(w);
    return true;
  }

  total(filter: (key: Key) => boolean): number {
    let sum = 0;
    for (const [key, row] of this.rows) if (filter(key)) sum += row.value;
    return sum;
  }
}
