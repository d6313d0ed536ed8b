// Paxos Commit (Gray & Lamport, "Consensus on Transaction Commit", ACM TODS
// 2006): the tests of the cores that are not interaction scripts. The
// scripted scenarios are testdata/paxos-commit/*.txt (run by
// ../scripts.test.ts); here are the acceptor's rules step by step, the
// invariant checker itself, a property over delivery orders, and log
// compaction. Each test names the part of the paper (or of PaxosCommit.tla)
// it checks.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { NodeId } from '../../../src/protocol/common/types.ts';
import { paxosAcceptor } from '../../../src/protocol/paxos-commit/acceptor.ts';
import { paxosInvariants } from '../../../src/protocol/paxos-commit/invariants.ts';
import { paxosCommitLayout } from '../../../src/protocol/paxos-commit/layout.ts';
import { compactPaxosCommitLog } from '../../../src/protocol/paxos-commit/log.ts';
import { type PaxosNodeState, paxosCommitNode } from '../../../src/protocol/paxos-commit/node.ts';
import type { PaxosCommitMsg, PaxosCommitRecord } from '../../../src/protocol/paxos-commit/types.ts';
import { Cluster } from '../../support/script.ts';
import { paxosCommitProtocol } from '../../support/script-cores.ts';

/** A small seeded generator for delivery orders (the cores themselves never draw randomness). */
function lcg(seed: number): (n: number) => number {
  let x = seed >>> 0 || 1;
  return (n) => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return x % n;
  };
}

/** Runs script commands on `cluster`, failing with the command that broke. */
function run(cluster: Cluster, ...commands: string[]): void {
  for (const c of commands) cluster.run(c);
}

/** Delivers every undelivered message, in an order `pick` draws, until none is left. */
function deliverShuffled(cluster: Cluster, pick: (n: number) => number): void {
  for (let i = 0; ; i++) {
    assert.ok(i < 100_000, 'messages do not settle');
    const pending = cluster.undelivered();
    if (pending.length === 0) return;
    const e = pending[pick(pending.length)]!;
    cluster.run(`deliver ${e.from} ${e.to} ${e.text}`);
  }
}

/** An INQUIRY for t1 that nobody sent, as an RM's inquiry reaching a candidate. */
const inquiry = (from: NodeId, to: NodeId) =>
  `inject ${from} ${to} ${JSON.stringify({ type: 'INQUIRY', txn: 't1', participants: ['A', 'B', 'C'], client: 'client' })}`;

test('two candidates recovering at once decide the same, in any delivery order (paper: any process may become leader)', () => {
  for (let seed = 1; seed <= 60; seed++) {
    const c = new Cluster(paxosCommitProtocol);
    run(
      c,
      'paxos-commit A B C fanout=all',
      'executed A t1 coord',
      'executed B t1 coord',
      'executed C t1 coord',
    );
    run(c, 'begin coord t1 A B C');
    // The leader dies; C's vote reached acc2 only (votes go to every acceptor
    // here, so that one can reach the acceptor outside the normal case's
    // F+1), so whether the outcome is commit or abort depends on which
    // promises each candidate collects.
    run(c, 'stabilize lose PHASE2B lose PHASE2A from=C to!=acc2', 'crash coord');
    run(c, inquiry('A', 'acc1'), inquiry('B', 'acc2'));
    deliverShuffled(c, lcg(seed));
    // Either may have given up (been outrun); ask again until both decided.
    for (let i = 0; i < 5; i++) {
      for (const cand of ['acc1', 'acc2']) {
        if (c.node(cand).timers.has('lead/recover:t1')) c.run(`timeout ${cand} lead/recover:t1`);
        c.run(inquiry('A', cand));
      }
      deliverShuffled(c, lcg(seed * 7 + i));
    }
    const decided = (id: string) => (c.node(id).state as PaxosNodeState).candidate!.decided.get('t1');
    const d1 = decided('acc1');
    const d2 = decided('acc2');
    assert.ok(d1 !== undefined && d2 !== undefined, `seed ${seed}: undecided`);
    assert.equal(d1, d2, `seed ${seed}`);
    const expect = d1 === 'committed' ? 'committed' : 'aborted';
    for (const rm of ['A', 'B', 'C']) assert.equal(c.rm('t1', rm), expect, `seed ${seed} ${rm}`);
  }
});

test('acceptor: promises only upwards, accepts only at or above its promise, and writes before it answers (spec: Phase1b, Phase2b)', () => {
  const config = paxosCommitLayout(['A', 'B']).config;
  const a = paxosAcceptor.init('acc1', config);
  const step = (from: NodeId, msg: PaxosCommitMsg) =>
    paxosAcceptor.step(a, { type: 'receive', from, msg }).effects;
  let fx = step('acc2', { type: 'PHASE1A', txn: 't1', bal: 5, instances: ['A'] });
  assert.deepEqual(
    fx.map((e) => e.type),
    ['persist', 'sendAfterPersist'],
  );
  // Ballot 0 (the RM's own vote) now comes too late.
  fx = step('A', {
    type: 'PHASE2A',
    txn: 't1',
    bal: 0,
    entries: [{ ins: 'A', val: 'prepared' }],
    leader: 'coord',
    participants: ['A', 'B'],
    client: 'client',
  });
  assert.deepEqual(fx, []);
  // A lower phase 1a is rejected with the promise that beat it.
  fx = step('coord', { type: 'PHASE1A', txn: 't1', bal: 3, instances: ['A'] });
  assert.deepEqual(fx, [
    { type: 'send', to: 'coord', msg: { type: 'REJECT', txn: 't1', acc: 'acc1', bal: 3, mbal: 5 } },
  ]);
  fx = step('acc2', {
    type: 'PHASE2A',
    txn: 't1',
    bal: 5,
    entries: [{ ins: 'A', val: 'aborted' }],
    leader: 'acc2',
    participants: ['A', 'B'],
    client: 'client',
  });
  assert.equal(fx[0]!.type, 'persist');
  assert.ok(fx.slice(1).every((e) => e.type === 'sendAfterPersist'));
  assert.deepEqual(a.txns.get('t1')!.instances.get('A'), { mbal: 5, bal: 5, val: 'aborted' });
  // A write that failed is written again (its reply was dropped with it), so
  // that a repeated phase 2a is never answered from a state that is not durable.
  const failed = fx[0]!.type === 'persist' ? fx[0]!.record : null;
  assert.deepEqual(paxosAcceptor.step(a, { type: 'persistFailed', record: failed }).effects, [
    {
      type: 'persist',
      force: true,
      record: { type: 'acc', txn: 't1', ins: 'A', mbal: 5, bal: 5, val: 'aborted' },
    },
  ]);
  // One ballot, one value: a second, different phase 2a in ballot 5 is a bug.
  assert.throws(
    () =>
      step('acc2', {
        type: 'PHASE2A',
        txn: 't1',
        bal: 5,
        entries: [{ ins: 'A', val: 'prepared' }],
        leader: 'acc2',
        participants: ['A', 'B'],
        client: 'client',
      }),
    /ballot 5 proposed both/,
  );
});

test('paxosInvariants flags a chosen value overturned in a later ballot, and an acceptor whose bal exceeds mbal', () => {
  const config = { ...paxosCommitLayout(['A']).config };
  const acc = (self: string, mbal: number, bal: number, val: 'prepared' | 'aborted' | 'none') => {
    const s = paxosAcceptor.init(self, config);
    s.txns.set('t1', {
      instances: new Map([['A', { mbal, bal, val }]]),
      participants: ['A'],
      leader: 'coord',
      pending: [],
    });
    return s;
  };
  assert.deepEqual(
    paxosInvariants([
      acc('coord', 0, 0, 'prepared'),
      acc('acc1', 0, 0, 'prepared'),
      acc('acc2', 0, -1, 'none'),
    ]),
    [],
  );
  // Legal: prepared accepted once in ballot 0 (not chosen), aborted chosen in 4.
  assert.deepEqual(
    paxosInvariants([
      acc('coord', 0, 0, 'prepared'),
      acc('acc1', 4, 4, 'aborted'),
      acc('acc2', 4, 4, 'aborted'),
    ]),
    [],
  );
  // Not: prepared was chosen in ballot 0, so no later ballot may carry aborted.
  const broken = paxosInvariants([
    acc('coord', 0, 0, 'prepared'),
    acc('acc1', 0, 0, 'prepared'),
    acc('acc2', 4, 4, 'aborted'),
  ]);
  assert.deepEqual(broken, ['t1/A: prepared chosen in ballot 0 but acc2 accepted aborted in 4']);
  assert.ok(paxosInvariants([acc('coord', 1, 2, 'aborted')]).some((l) => l.includes('bal 2 > mbal 1')));
});

test('a compacted log rebuilds the same state as the full one (crash and recovery in the middle)', () => {
  const c = new Cluster(paxosCommitProtocol);
  run(c, 'paxos-commit A B', 'executed A t1 coord', 'executed B t1 coord', 'begin coord t1 A B');
  run(c, 'stabilize lose COMMIT', 'crash A acc1', 'recover acc1', 'recover A', 'stabilize');
  assert.equal(c.rm('t1', 'A'), 'committed');
  for (const id of ['coord', 'acc1', 'A']) {
    const n = c.node(id);
    const log = c.durableLog(n) as unknown as PaxosCommitRecord[];
    const config = n.config(n.incarnation);
    const full = paxosCommitNode.recover(id, config as never, log);
    const compact = paxosCommitNode.recover(id, config as never, compactPaxosCommitLog(log));
    assert.deepEqual(compact.state, full.state, id);
  }
});
