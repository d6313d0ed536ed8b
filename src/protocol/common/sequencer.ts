// The after-persist sequencer: the ordering rule of ./types.ts carried out in
// one place, for every driver (the simulator's worlds, the runtime driver, the
// scripted test cluster). Compare etcd-io/raft's `Ready`/`Advance`: the driver
// hands over a step's effects and is told, in order, which writes to issue and
// which effects to carry out now; as it reports writes durable or failed, it
// is told which after-persist effects are released, which are dropped and
// which `persistFailed` inputs the core must hear; a crash discards whatever
// is still pending.
//
// Pure: no I/O, no clock, no randomness. It never carries anything out; the
// driver does, which is what lets the simulator put a crash between "the
// write is durable" and "what waited for it is done" (`release` is a separate
// call from `durable`).
//
// The rule, precisely. Writes are numbered in issue order (`seq`, 1, 2, ...,
// never reused, also across a crash). A step's after-persist effects form one
// batch that waits for every write issued up to the end of that step, its own
// and any earlier step's (a log is sequential). A batch is ready once every
// one of those writes is durable; ready batches are released in step order,
// and a batch issued while an earlier one still waits (or is ready but not yet
// taken) queues behind it even if it wrote nothing. A write that fails drops
// the batch of the step that issued it and every batch queued behind it (they
// were computed by a core that believed the write would land). A log is
// sequential, so every write issued after the failing one and still pending
// fails with it (the driver must not make them durable), and the core is fed
// `persistFailed` for each failed record, in issue order: that is how it
// learns that the effects it asked for behind them were dropped and redoes
// what it must (a participant writes its `committed` again). Batches issued
// before the failing write are not affected. Writes may be reported in any order (a real store's
// appends can settle out of order); a batch waits for all writes up to its own.

import { assert } from './assert.ts';

/** A write the driver must issue to the node's log. */
export interface SequencedWrite<R> {
  /** Issue number on this node: 1, 2, ...; report it back to `durable` or `failed`. */
  seq: number;
  record: R;
  force: boolean;
}

/** The shape the sequencer needs of an effect: every core's effects have it. */
export interface SequencedEffect {
  type: string;
  afterPersist?: boolean;
}

/** One thing to do now, in the step's order. */
export type StepAction<E, R> = { kind: 'write'; write: SequencedWrite<R> } | { kind: 'apply'; effect: E };

export interface StepPlan<E, R> {
  /** The step's writes and plain effects, in the order the core listed them. */
  actions: StepAction<E, R>[];
  /**
   * The step's after-persist effects when they may be carried out at once,
   * after `actions` (nothing was pending); empty when they wait in the sequencer.
   */
  afterPersist: E[];
}

/** What a failed write costs. */
export interface WriteFailure<E, R> {
  /**
   * The failed write and every write issued after it that was still pending,
   * in issue order: none of them may be made durable by the driver.
   */
  failed: SequencedWrite<R>[];
  /** After-persist effects that will never be carried out: the failing step's and every later one's. */
  dropped: E[];
  /** One per failed write, in issue order: feed each to the core, after carrying out whatever `release()` now returns. */
  inputs: { type: 'persistFailed'; record: R }[];
}

/** What a crash discards. */
export interface CrashLoss<E, R> {
  /** Writes issued but not yet reported durable or failed. */
  writes: SequencedWrite<R>[];
  /** After-persist effects not yet taken by `release()`, in step order. */
  effects: E[];
}

interface Batch<E> {
  /** Every write up to this one must be durable before the effects run. */
  uptoSeq: number;
  effects: E[];
}

export function isAfterPersist(e: SequencedEffect): boolean {
  return e.type === 'sendAfterPersist' || e.afterPersist === true;
}

export class AfterPersistSequencer<E extends SequencedEffect, R = unknown> {
  private issuedSeq = 0;
  /** Every write up to this one has settled (durable or failed). */
  private settledSeq = 0;
  /** Writes issued and not yet settled, by seq, in issue order (a Map keeps insertion order). */
  private readonly pendingWrites = new Map<number, SequencedWrite<R>>();
  /** Batches in step order; the ready ones are a prefix (uptoSeq never decreases). */
  private batches: Batch<E>[] = [];

  /**
   * Plan a step's effects: writes get their numbers, plain effects are to be
   * carried out at once, after-persist effects either at once (nothing is
   * pending) or once `release()` hands them out.
   */
  step(effects: readonly E[]): StepPlan<E, R> {
    const actions: StepAction<E, R>[] = [];
    const later: E[] = [];
    for (const e of effects) {
      if (e.type === 'persist') {
        const { record, force } = e as unknown as { record: R; force: boolean };
        const write: SequencedWrite<R> = { seq: ++this.issuedSeq, record, force };
        this.pendingWrites.set(write.seq, write);
        actions.push({ kind: 'write', write });
      } else if (isAfterPersist(e)) {
        later.push(e);
      } else {
        actions.push({ kind: 'apply', effect: e });
      }
    }
    if (later.length === 0) return { actions, afterPersist: later };
    if (this.pendingWrites.size === 0 && this.batches.length === 0) return { actions, afterPersist: later };
    this.batches.push({ uptoSeq: this.issuedSeq, effects: later });
    return { actions, afterPersist: [] };
  }

  /** Write `seq` is durable. What it released is taken with `release()`. */
  durable(seq: number): void {
    this.settle(seq);
  }

  /**
   * Write `seq` failed: the batch of its step and every batch queued behind
   * it are dropped. Earlier batches it did not guard may now be ready (take
   * them with `release()` before feeding the inputs to the core).
   */
  failed(seq: number): WriteFailure<E, R> {
    assert(this.pendingWrites.has(seq), `write ${seq} is not pending`);
    // A log is sequential: nothing issued after a failed append may become
    // durable ahead of it, so every later pending write fails with it.
    const failed = [...this.pendingWrites.values()].filter((w) => w.seq >= seq);
    for (const w of failed) this.pendingWrites.delete(w.seq);
    this.resettle();
    const dropped: E[] = [];
    const keep = this.batches.findIndex((b) => b.uptoSeq >= seq);
    if (keep >= 0) {
      for (const b of this.batches.splice(keep)) dropped.push(...b.effects);
    }
    return {
      failed,
      dropped,
      inputs: failed.map((w) => ({ type: 'persistFailed' as const, record: w.record })),
    };
  }

  /** Whether write `seq` was issued and has not settled (a failure may have taken it). */
  isPending(seq: number): boolean {
    return this.pendingWrites.has(seq);
  }

  /** Whether `release()` would hand out anything. */
  get releasable(): boolean {
    return this.batches.length > 0 && this.batches[0]!.uptoSeq <= this.settledSeq;
  }

  /** Take every ready after-persist effect, in step order. */
  release(): E[] {
    let ready = 0;
    while (ready < this.batches.length && this.batches[ready]!.uptoSeq <= this.settledSeq) ready++;
    if (ready === 0) return [];
    const out: E[] = [];
    for (const b of this.batches.splice(0, ready)) out.push(...b.effects);
    return out;
  }

  /** The node crashed: every pending write and waiting effect is gone. Numbering carries on. */
  crash(): CrashLoss<E, R> {
    const writes = [...this.pendingWrites.values()];
    const effects: E[] = [];
    for (const b of this.batches) effects.push(...b.effects);
    this.pendingWrites.clear();
    this.batches = [];
    this.settledSeq = this.issuedSeq;
    return { writes, effects };
  }

  /** No write is pending. */
  get idle(): boolean {
    return this.pendingWrites.size === 0;
  }

  /** Writes issued and not yet settled, in issue order. */
  pending(): SequencedWrite<R>[] {
    return [...this.pendingWrites.values()];
  }

  private settle(seq: number): SequencedWrite<R> {
    const write = this.pendingWrites.get(seq);
    assert(write !== undefined, `write ${seq} is not pending`);
    this.pendingWrites.delete(seq);
    this.resettle();
    return write;
  }

  private resettle(): void {
    // Writes enter the map in issue order, so its first key is the lowest
    // pending write, which bounds what has settled.
    const lowest = this.pendingWrites.keys().next();
    this.settledSeq = lowest.done === true ? this.issuedSeq : lowest.value - 1;
  }
}
