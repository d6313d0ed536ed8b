// Known answers: one small hand-made history per anomaly class, checked to
// be reported as exactly that class (not a weaker or a stronger one), and
// valid histories that must stay valid. The histories are in
// testdata/histories/; each one's comment-free shape is the whole story, so
// read it next to the expectation here.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { checkHistoryOps, checkHistoryText } from '../../src/history/check.ts';
import type { Consistency, CycleWitness, Model } from '../../src/history/types.ts';

const dir = join(resolve(dirname(fileURLToPath(import.meta.url)), '../..'), 'testdata', 'histories');

function check(file: string, model: Model = 'list-append', consistency: Consistency = 'serializable') {
  return checkHistoryText(readFileSync(join(dir, file), 'utf8'), file, { model, consistency });
}

const cases: [file: string, model: Model, consistency: Consistency, expected: string[]][] = [
  // list-append
  ['g0.jsonl', 'list-append', 'serializable', ['G0']],
  ['g1a.jsonl', 'list-append', 'serializable', ['G1a']],
  ['g1b.jsonl', 'list-append', 'serializable', ['G1b']],
  ['g1c.jsonl', 'list-append', 'serializable', ['G1c']],
  ['g-single.jsonl', 'list-append', 'serializable', ['G-single']],
  ['g-single.json', 'list-append', 'serializable', ['G-single']],
  // The read missed an append that followed the second element of the list, not the first.
  ['g-single-later-version.jsonl', 'list-append', 'serializable', ['G-single']],
  // Two readers each see half of one transaction: two G-single cycles through it, no G2-item
  // (the closed walk through both passes the writer twice).
  ['g-single-twice.jsonl', 'list-append', 'serializable', ['G-single']],
  ['g2-item.jsonl', 'list-append', 'serializable', ['G2-item']],
  ['internal.jsonl', 'list-append', 'serializable', ['internal']],
  ['incompatible-order.jsonl', 'list-append', 'serializable', ['incompatible-order']],
  ['duplicate-elements.jsonl', 'list-append', 'serializable', ['duplicate-elements']],
  // Serializable but not strict-serializable: the read missed a write that completed before it began.
  ['stale-read.jsonl', 'list-append', 'serializable', []],
  ['stale-read.jsonl', 'list-append', 'strict-serializable', ['G-single-realtime']],
  ['g0-realtime.jsonl', 'list-append', 'serializable', []],
  ['g0-realtime.jsonl', 'list-append', 'strict-serializable', ['G0-realtime']],
  // A transaction read a write made by one invoked after it completed.
  ['g1c-realtime.jsonl', 'list-append', 'serializable', []],
  ['g1c-realtime.jsonl', 'list-append', 'strict-serializable', ['G1c-realtime']],
  ['g2-item-realtime.jsonl', 'list-append', 'serializable', []],
  ['g2-item-realtime.jsonl', 'list-append', 'strict-serializable', ['G2-item-realtime']],
  ['session-stale-read.jsonl', 'list-append', 'serializable', []],
  ['session-stale-read.jsonl', 'list-append', 'strong-session-serializable', ['G-single-process']],
  ['session-stale-read.jsonl', 'list-append', 'strict-serializable', ['G-single-realtime']],
  ['valid-serial.jsonl', 'list-append', 'strict-serializable', []],
  ['valid-concurrent.jsonl', 'list-append', 'serializable', []],
  ['valid-concurrent.jsonl', 'list-append', 'strict-serializable', []],
  ['valid-concurrent.jsonl', 'list-append', 'strong-session-serializable', []],
  // rw-register
  ['register-g1a.jsonl', 'rw-register', 'serializable', ['G1a']],
  ['register-g1b.jsonl', 'rw-register', 'serializable', ['G1b']],
  ['register-g1c.jsonl', 'rw-register', 'serializable', ['G1c']],
  ['register-g-single.jsonl', 'rw-register', 'serializable', ['G-single']],
  ['register-g2-item.jsonl', 'rw-register', 'serializable', ['G2-item']],
  ['register-internal.jsonl', 'rw-register', 'serializable', ['internal']],
  ['register-stale-read.jsonl', 'rw-register', 'serializable', []],
  ['register-stale-read.jsonl', 'rw-register', 'strict-serializable', ['G-single-realtime']],
  ['register-valid.jsonl', 'rw-register', 'strict-serializable', []],
];

for (const [file, model, consistency, expected] of cases) {
  test(`${file} (${model}, ${consistency}): ${expected.length === 0 ? 'valid' : expected.join(', ')}`, () => {
    const result = check(file, model, consistency);
    assert.deepEqual(result.anomalyTypes, expected);
    assert.equal(result.valid, expected.length === 0);
    assert.deepEqual(Object.keys(result.anomalies), expected);
  });
}

test('a G-single witness names both transactions and the key and value behind each edge', () => {
  const [witness] = check('g-single.jsonl').anomalies['G-single'] as CycleWitness[];
  assert.ok(witness);
  assert.deepEqual(
    witness.txns.map((t) => t.index),
    [2, 3],
  );
  assert.deepEqual(
    witness.steps.map((s) => [s.from, s.rel, s.to, s.key]),
    [
      [2, 'wr', 3, 1],
      [3, 'rw', 2, 2],
    ],
  );
  assert.match(witness.steps[1]!.why, /T3 read key 2 as empty, without T2's later append of 1/);
});

test('a G2-item witness is the two-transaction write skew, with two rw edges', () => {
  const [witness] = check('g2-item.jsonl').anomalies['G2-item'] as CycleWitness[];
  assert.deepEqual(
    witness!.steps.map((s) => s.rel),
    ['rw', 'rw'],
  );
});

test('the realtime witness says which transaction completed before which began', () => {
  const result = check('stale-read.jsonl', 'list-append', 'strict-serializable');
  const [witness] = result.anomalies['G-single-realtime'] as CycleWitness[];
  const realtime = witness!.steps.find((s) => s.rel === 'realtime');
  assert.equal(realtime?.why, 'T1 completed before T3 was invoked');
});

test('the witness is the shortest cycle: a 3-transaction G0 inside a larger component', () => {
  // T1 -> T2 -> T3 -> T1 through ww on keys 1..3 plus a longer detour through keys 4..7.
  const ops: unknown[] = [];
  let index = 0;
  const ok = (process: number, value: unknown[]) => ops.push({ index: index++, process, type: 'ok', value });
  ok(0, [
    ['append', 1, 'a'],
    ['append', 3, 'b'],
    ['append', 4, 'a'],
  ]);
  ok(1, [
    ['append', 1, 'b'],
    ['append', 2, 'a'],
    ['append', 5, 'b'],
  ]);
  ok(2, [
    ['append', 2, 'b'],
    ['append', 3, 'a'],
    ['append', 6, 'b'],
  ]);
  ok(3, [
    ['append', 4, 'b'],
    ['append', 5, 'a'],
    ['append', 6, 'a'],
  ]);
  ok(4, [
    ['r', 1, ['a', 'b']],
    ['r', 2, ['a', 'b']],
    ['r', 3, ['a', 'b']],
  ]);
  ok(5, [
    ['r', 4, ['a', 'b']],
    ['r', 5, ['a', 'b']],
    ['r', 6, ['a', 'b']],
  ]);
  const text = ops.map((o) => JSON.stringify(o)).join('\n');
  const result = checkHistoryText(text, 'inline', { model: 'list-append', consistency: 'serializable' });
  assert.deepEqual(result.anomalyTypes, ['G0']);
  const [witness, ...more] = result.anomalies.G0 as CycleWitness[];
  assert.equal(more.length, 0);
  assert.deepEqual(witness!.txns.map((t) => t.index).sort(), [0, 1, 2]);
});

test('a history recorded in memory checks the same as its file', () => {
  const text = readFileSync(join(dir, 'g2-item.jsonl'), 'utf8');
  const ops = text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l));
  const options = { model: 'list-append', consistency: 'serializable' } as const;
  assert.deepEqual(checkHistoryOps(ops, 'memory', options), checkHistoryText(text, 'g2-item.jsonl', options));
});
