// The after-persist sequencer (src/protocol/common/sequencer.ts) against a
// model of the ordering rule of src/protocol/common/types.ts: random steps,
// writes completing or failing in any order, releases and crashes, with every
// promise of the rule checked on every operation.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { AfterPersistSequencer } from '../../../src/protocol/common/sequencer.ts';

type Fx =
  | { type: 'persist'; record: number; force: boolean }
  | { type: 'send'; id: number }
  | { type: 'sendAfterPersist'; id: number }
  | { type: 'reportOutcome'; id: number; afterPersist: boolean };

/** One operation on the sequencer; `pick` chooses among the pending writes. */
type Op =
  | { op: 'step'; shape: ('persist' | 'send' | 'after' | 'report')[] }
  | { op: 'durable' | 'failed'; pick: number }
  | { op: 'release' }
  | { op: 'crash' };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      op: fc.constant('step' as const),
      shape: fc.array(fc.constantFrom('persist', 'send', 'after', 'report'), { maxLength: 5 }),
    }),
  },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('durable' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('failed' as const), pick: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('release' as const) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('crash' as const) }) },
);

/** What the model knows of an after-persist effect's step. */
interface Waiter {
  /** Its own step's writes. */
  own: number[];
  /** Every write issued up to the end of its step. */
  upto: number;
  /** Writes already reported failed when its step was issued. */
  failedBefore: Set<number>;
}

function idOf(e: Fx): number {
  assert.ok(e.type !== 'persist');
  return e.id;
}

/**
 * Runs `ops` on a sequencer and checks, on every operation: an after-persist
 * effect is carried out only when every write of its own step is durable and
 * every earlier write has settled without a failure it did not know of;
 * carried out in step order; never after a write it waited for failed; never
 * after a crash of its incarnation; and each one ends exactly once (carried
 * out, dropped, lost, or still waiting at the end).
 */
function check(ops: Op[]): void {
  const seq = new AfterPersistSequencer<Fx, number>();
  const status = new Map<number, 'pending' | 'durable' | 'failed' | 'lost'>();
  const waiters = new Map<number, Waiter>();
  const ended = new Map<number, 'done' | 'dropped' | 'lost'>();
  let nextId = 1;
  let issued = 0;
  let lastDone = 0;
  const failedSoFar = new Set<number>();
  const pendingSeqs = () => [...status].filter(([, s]) => s === 'pending').map(([k]) => k);

  const carryOut = (e: Fx) => {
    if (e.type === 'send' || (e.type === 'reportOutcome' && !e.afterPersist)) {
      ended.set(e.id, 'done');
      return;
    }
    const id = idOf(e);
    const w = waiters.get(id)!;
    assert.ok(!ended.has(id), `effect ${id} ended twice`);
    for (const s of w.own) assert.equal(status.get(s), 'durable', `effect ${id}: own write ${s} not durable`);
    for (let s = 1; s <= w.upto; s++) {
      const st = status.get(s);
      assert.ok(st !== 'pending', `effect ${id} released while write ${s} is pending`);
      if (st === 'failed') assert.ok(w.failedBefore.has(s), `effect ${id} released after write ${s} failed`);
    }
    assert.ok(id > lastDone, `effect ${id} released after effect ${lastDone} (step order)`);
    lastDone = id;
    ended.set(id, 'done');
  };
  const end = (e: Fx, how: 'dropped' | 'lost') => {
    const id = idOf(e);
    assert.ok(!ended.has(id), `effect ${id} ended twice`);
    ended.set(id, how);
  };

  for (const o of ops) {
    switch (o.op) {
      case 'step': {
        const effects: Fx[] = [];
        const own: number[] = [];
        for (const kind of o.shape) {
          if (kind === 'persist') {
            own.push(++issued);
            effects.push({ type: 'persist', record: issued * 10, force: issued % 2 === 0 });
          } else if (kind === 'send') effects.push({ type: 'send', id: nextId++ });
          else if (kind === 'after') effects.push({ type: 'sendAfterPersist', id: nextId++ });
          else effects.push({ type: 'reportOutcome', id: nextId++, afterPersist: nextId % 2 === 0 });
        }
        for (const e of effects) {
          if (e.type === 'persist') continue;
          waiters.set(e.id, { own, upto: issued, failedBefore: new Set(failedSoFar) });
        }
        const plan = seq.step(effects);
        // Writes and plain effects come out in the step's order.
        const expected = effects.filter(
          (e) => e.type === 'persist' || e.type === 'send' || (e.type === 'reportOutcome' && !e.afterPersist),
        );
        assert.deepEqual(
          plan.actions.map((a) => (a.kind === 'write' ? a.write.record : idOf(a.effect))),
          expected.map((e) => (e.type === 'persist' ? e.record : e.id)),
        );
        for (const a of plan.actions) {
          if (a.kind === 'write') {
            assert.equal(a.write.record, a.write.seq * 10, 'writes are numbered in issue order');
            status.set(a.write.seq, 'pending');
          } else carryOut(a.effect);
        }
        for (const e of plan.afterPersist) carryOut(e);
        break;
      }
      case 'durable':
      case 'failed': {
        const pending = pendingSeqs();
        if (pending.length === 0) break;
        const s = pending[o.pick % pending.length]!;
        if (o.op === 'durable') {
          status.set(s, 'durable');
          seq.durable(s);
          break;
        }
        // The failing write and every later pending one fail together (a log is sequential).
        const tail = pending.filter((p) => p >= s);
        const { failed, dropped, inputs } = seq.failed(s);
        assert.deepEqual(
          failed.map((w) => w.seq),
          tail,
        );
        assert.deepEqual(
          inputs,
          tail.map((p) => ({ type: 'persistFailed', record: p * 10 })),
        );
        for (const p of tail) {
          status.set(p, 'failed');
          failedSoFar.add(p);
        }
        for (const e of dropped) {
          assert.ok(waiters.get(idOf(e))!.upto >= s, `effect ${idOf(e)} dropped by a later write ${s}`);
          end(e, 'dropped');
        }
        // Everything that waited for this write is gone: what is left waits only for earlier ones.
        for (const [id, w] of waiters)
          if (!ended.has(id) && !w.failedBefore.has(s) && w.upto >= s)
            assert.fail(`effect ${id} still waits after write ${s} it depended on failed`);
        break;
      }
      case 'release': {
        const before = seq.releasable;
        const out = seq.release();
        assert.equal(before, out.length > 0);
        for (const e of out) carryOut(e);
        assert.equal(seq.releasable, false);
        break;
      }
      case 'crash': {
        const lost = seq.crash();
        assert.deepEqual(
          lost.writes.map((w) => w.seq),
          pendingSeqs(),
          'a crash discards exactly the pending writes',
        );
        for (const w of lost.writes) status.set(w.seq, 'lost');
        for (const e of lost.effects) end(e, 'lost');
        assert.ok(seq.idle);
        assert.equal(seq.releasable, false);
        // What waited before the crash never comes out afterwards.
        for (const [id] of waiters) if (!ended.has(id)) ended.set(id, 'lost');
        break;
      }
    }
    assert.equal(seq.idle, pendingSeqs().length === 0);
  }
}

test('sequencer: after-persist effects run only behind durable writes, in step order; failures drop what queued behind; crashes drop all pending', () => {
  fc.assert(
    fc.property(fc.array(opArb, { maxLength: 60 }), (ops) => check(ops)),
    { numRuns: 2000 },
  );
});

test('sequencer: a step that wrote nothing waits for earlier writes and is dropped when one fails', () => {
  const seq = new AfterPersistSequencer<Fx, number>();
  const first = seq.step([
    { type: 'persist', record: 10, force: true },
    { type: 'sendAfterPersist', id: 1 },
  ]);
  assert.deepEqual(first.afterPersist, []);
  const second = seq.step([{ type: 'sendAfterPersist', id: 2 }]);
  assert.deepEqual(second.afterPersist, [], 'it queues behind the pending write');
  const failure = seq.failed(1);
  assert.deepEqual(
    failure.dropped.map(idOf),
    [1, 2],
    'the failing step and the one queued behind it are dropped',
  );
  assert.deepEqual(seq.release(), []);
  const third = seq.step([{ type: 'sendAfterPersist', id: 3 }]);
  assert.deepEqual(third.afterPersist.map(idOf), [3], 'with nothing pending, at once');
});

test('sequencer: released effects wait to be taken, and a later step queues behind them', () => {
  const seq = new AfterPersistSequencer<Fx, number>();
  seq.step([
    { type: 'persist', record: 10, force: true },
    { type: 'sendAfterPersist', id: 1 },
  ]);
  seq.durable(1);
  assert.ok(seq.releasable);
  // The driver has not carried out effect 1 yet (the crash window): 2 must not overtake it.
  assert.deepEqual(seq.step([{ type: 'sendAfterPersist', id: 2 }]).afterPersist, []);
  assert.deepEqual(seq.release().map(idOf), [1, 2]);
  // A crash in the window loses what was ready but not taken.
  seq.step([
    { type: 'persist', record: 20, force: true },
    { type: 'sendAfterPersist', id: 3 },
  ]);
  seq.durable(2);
  assert.deepEqual(seq.crash().effects.map(idOf), [3]);
});

test('sequencer: a failed write takes every later pending write with it, and the core hears of each', () => {
  const seq = new AfterPersistSequencer<Fx, number>();
  // A participant prepares t2 (write 1), then is told to commit t1 (write 2,
  // whose local commit waits behind write 1).
  seq.step([
    { type: 'persist', record: 10, force: true },
    { type: 'sendAfterPersist', id: 1 },
  ]);
  seq.step([
    { type: 'persist', record: 20, force: true },
    { type: 'sendAfterPersist', id: 2 },
  ]);
  const failure = seq.failed(1);
  assert.deepEqual(
    failure.failed.map((w) => w.seq),
    [1, 2],
  );
  assert.deepEqual(failure.dropped.map(idOf), [1, 2]);
  // Without the second input the core would never learn that its commit was dropped.
  assert.deepEqual(failure.inputs, [
    { type: 'persistFailed', record: 10 },
    { type: 'persistFailed', record: 20 },
  ]);
  assert.equal(seq.isPending(2), false);
  assert.ok(seq.idle);
});
