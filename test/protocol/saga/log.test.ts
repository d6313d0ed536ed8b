// Saga and TCC log checkpoints (compactSagaLog): recovering from a compacted
// log must give exactly what recovering from the whole log gives, for every
// moment of a run's log (every prefix of it is the log as it was then). The
// logs come from simulated runs with loss, duplication, crashes and stuck
// transactions, so they hold every kind of record in every order.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compactSagaLog } from '../../../src/protocol/branch/log.ts';
import { RecentIds } from '../../../src/protocol/branch/types.ts';
import { makeSagaProtocol } from '../../../src/sim/branch/protocols.ts';
import { orchestratorId } from '../../../src/sim/branch/world.ts';
import { runSim } from '../../../src/sim/run.ts';

type Rec = { type: string; txn: string };

function orchestratorLog(protocol: 'saga' | 'tcc', seed: number): Rec[] {
  const { world } = runSim({
    protocol,
    workload: 'booking',
    txns: 300,
    seed,
    loss: 0.1,
    dup: 0.2,
    crashRate: 0.01,
    partitions: true,
    // Few attempts, so that some transactions end stuck.
    orchestratorConfig: protocol === 'saga' ? { compensationAttemptsMax: 2 } : { phaseTwoAttemptsMax: 2 },
  });
  return world.nodes.get(orchestratorId)!.durable as Rec[];
}

for (const protocol of ['saga', 'tcc'] as const) {
  test(`${protocol}: recovery from a compacted log equals recovery from the whole log, at every moment`, () => {
    const role = makeSagaProtocol(protocol).orchestrator;
    let compared = 0;
    for (const seed of [1, 2, 3]) {
      const log = orchestratorLog(protocol, seed);
      assert.ok(
        log.some((r) => r.type === 'stuck'),
        'the run should leave some transaction stuck',
      );
      for (let n = 0; n <= log.length; n += 7) {
        const prefix = log.slice(0, n);
        for (const retain of [0, 5, 100_000]) {
          const config = { incarnation: 'x', retainFinished: retain };
          const whole = role.recover(orchestratorId, config, prefix);
          const compacted = compactSagaLog(prefix, retain);
          const fromCheckpoint = role.recover(orchestratorId, config, compacted);
          assert.deepEqual(fromCheckpoint, whole, `seed ${seed}, ${n} records, retain ${retain}`);
          // And a checkpoint of a checkpoint changes nothing.
          assert.deepEqual(compactSagaLog(compacted, retain), compacted);
          compared++;
        }
      }
    }
    assert.ok(compared > 100);
  });
}

// An id whose end was forgotten (past the retention) may run again: the log
// then holds a whole ended run and, after it, a new run of the same id.
for (const protocol of ['saga', 'tcc'] as const) {
  test(`${protocol}: an id run again after its end is recovered from a compacted log`, () => {
    const role = makeSagaProtocol(protocol).orchestrator;
    const log = orchestratorLog(protocol, 4);
    const ended = log.find((r) => r.type === 'end')!.txn;
    const firstRun = log.filter((r) => r.txn === ended);
    const again = firstRun.slice(
      0,
      firstRun.findIndex((r) => r.type === 'end'),
    );
    assert.ok(again.length >= 2, 'the second run should have more than its begin');
    const withRerun = [...log, ...again];
    for (let n = log.length; n <= withRerun.length; n++) {
      const prefix = withRerun.slice(0, n);
      for (const retain of [0, 5, 100_000]) {
        const config = { incarnation: 'x', retainFinished: retain };
        const whole = role.recover(orchestratorId, config, prefix);
        const fromCheckpoint = role.recover(orchestratorId, config, compactSagaLog(prefix, retain));
        assert.deepEqual(fromCheckpoint, whole, `${n} records, retain ${retain}`);
        if (n > log.length) assert.ok(role.recover(orchestratorId, config, prefix).effects.length > 0);
      }
    }
  });
}

test('a checkpoint keeps only the last run of an id that ran again', () => {
  const log: Rec[] = [
    { type: 'begin', txn: 't' },
    { type: 'start', txn: 't' },
    { type: 'result', txn: 't' },
    { type: 'end', txn: 't' },
    { type: 'begin', txn: 't' },
    { type: 'start', txn: 't' },
  ];
  for (const retain of [0, 10]) assert.deepEqual(compactSagaLog(log, retain), log.slice(4));
  assert.deepEqual(compactSagaLog([...log, { type: 'end', txn: 't' }], 10), [{ type: 'end', txn: 't' }]);
});

test('a checkpoint keeps the open transactions whole and only the newest ends', () => {
  const log: Rec[] = [
    { type: 'begin', txn: 'a' },
    { type: 'begin', txn: 'b' },
    { type: 'start', txn: 'a' },
    { type: 'begin', txn: 'c' },
    { type: 'end', txn: 'b' },
    { type: 'result', txn: 'a' },
    { type: 'stuck', txn: 'c' },
    { type: 'begin', txn: 'd' },
    { type: 'end', txn: 'd' },
    { type: 'end', txn: 'a' },
  ];
  assert.deepEqual(compactSagaLog(log, 10), [
    { type: 'begin', txn: 'c' },
    { type: 'end', txn: 'b' },
    { type: 'stuck', txn: 'c' },
    { type: 'end', txn: 'd' },
    { type: 'end', txn: 'a' },
  ]);
  assert.deepEqual(compactSagaLog(log, 2), [
    { type: 'begin', txn: 'c' },
    { type: 'stuck', txn: 'c' },
    { type: 'end', txn: 'd' },
    { type: 'end', txn: 'a' },
  ]);
  assert.deepEqual(compactSagaLog(log, 0), [
    { type: 'begin', txn: 'c' },
    { type: 'stuck', txn: 'c' },
  ]);
});

test('RecentIds forgets the oldest first and refreshes a re-added id', () => {
  const ids = new RecentIds(2);
  ids.add('a');
  ids.add('b');
  ids.add('a');
  ids.add('c');
  assert.deepEqual([...ids.ids], ['a', 'c']);
  assert.equal(ids.has('b'), false);
});
