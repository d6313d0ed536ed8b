// The check every batch from the network goes through before a core sees it.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkBatch, wireVersion } from '../../../src/runtime/paxos-commit/wire.ts';
import { throwsWithCode } from '../../adapters/helpers.ts';

const batch = (msg: unknown, extra: Record<string, unknown> = {}) => ({
  v: wireVersion,
  cluster: 'dtx',
  origin: 'http://127.0.0.1:7001',
  hosts: ['l1'],
  items: [{ from: 'a', to: 'acc0', msg }],
  ...extra,
});

const vote = {
  type: 'PHASE2A',
  txn: 't1',
  bal: 0,
  entries: [{ ins: 'a', val: 'prepared' }],
  leader: 'l1',
  participants: ['a', 'b'],
  client: 'app',
};

test('a well-formed batch passes, rebuilt without extra fields', () => {
  const b = checkBatch(batch({ ...vote, extra: 1 }), 'dtx');
  assert.deepEqual(b.items[0]!.msg, vote);
});

const prepare = { type: 'PREPARE', txn: 't1', participants: ['a', 'b'], client: 'app' };

test("a PREPARE's vote order passes when given, and is absent when not", () => {
  const ordered = { ...prepare, voteTo: ['acc1', 'acc2', 'acc0'] };
  assert.deepEqual(checkBatch(batch(ordered), 'dtx').items[0]!.msg, ordered);
  assert.equal('voteTo' in checkBatch(batch(prepare), 'dtx').items[0]!.msg, false);
});

test('malformed messages are refused whole with DTX_BAD_MESSAGE', () => {
  const bad: unknown[] = [
    { ...prepare, voteTo: ['acc1', 'acc1'] },
    { ...prepare, voteTo: [] },
    { ...prepare, voteTo: 'acc1' },
    { ...vote, bal: -1 },
    { ...vote, bal: 1.5 },
    { ...vote, entries: [] },
    { ...vote, entries: [{ ins: 'a', val: 'maybe' }] },
    {
      ...vote,
      entries: [
        { ins: 'a', val: 'prepared' },
        { ins: 'a', val: 'aborted' },
      ],
    },
    { ...vote, participants: ['a', 'a'] },
    { ...vote, txn: "t'; DROP" },
    { type: 'PHASE1A', txn: 't1', bal: 0, instances: ['a'] },
    { type: 'PHASE1B', txn: 't1', acc: 'x', bal: 2, entries: [{ ins: 'a', bal: -1, val: 'prepared' }] },
    { type: 'NOPE', txn: 't1' },
    null,
  ];
  for (const msg of bad) throwsWithCode(() => checkBatch(batch(msg), 'dtx'), 'DTX_BAD_MESSAGE');
  throwsWithCode(() => checkBatch(batch(vote, { v: 99 }), 'dtx'), 'DTX_BAD_MESSAGE');
  throwsWithCode(() => checkBatch(batch(vote, { origin: 'file:///etc' }), 'dtx'), 'DTX_BAD_MESSAGE');
});

test("another cluster's batch is refused", () => {
  const e = throwsWithCode(
    () => checkBatch(batch(vote, { cluster: 'west' }), 'east'),
    'DTX_INVALID_ARGUMENT',
  );
  assert.match(e.message, /cluster "west" reached cluster "east"/);
});
