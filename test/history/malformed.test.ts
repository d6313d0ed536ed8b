// Bad input gets one clear error naming the line, never a guess: each
// malformed history in testdata/histories/bad/ against the line and the
// complaint it must produce, and the command's exit statuses (0 valid, 1
// anomalies, 2 unreadable input or a bad flag).

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { checkHistoryText } from '../../src/history/check.ts';
import { HistoryFormatError } from '../../src/history/parse.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const dir = join(root, 'testdata', 'histories');

const bad: [file: string, line: number, message: RegExp][] = [
  ['not-json.jsonl', 2, /not valid JSON/],
  ['bad-type.jsonl', 2, /"type" must be one of invoke, ok, fail, info, got "done"/],
  ['wrong-function.jsonl', 3, /list-append takes append and r, got "w"/],
  [
    'double-invoke.jsonl',
    2,
    /process 0 invoked a transaction while its invocation on line 1 had not completed/,
  ],
  ['mismatch.jsonl', 2, /do not match the invocation's on line 1/],
  ['duplicate-append.jsonl', 2, /1 is appended to key 1 again \(first on line 1\)/],
  ['missing-process.jsonl', 2, /"process" must be a number or a string, got nothing/],
  ['read-not-list.jsonl', 1, /a list-append read must be a list/],
  ['array-bad-value.json', 4, /"value" must be a list of micro-ops/],
  ['array-not-json.json', 3, /not valid JSON/],
  ['empty.jsonl', 1, /the history is empty/],
];

for (const [file, line, message] of bad) {
  test(`${file}: line ${line}, ${message.source}`, () => {
    const text = readFileSync(join(dir, 'bad', file), 'utf8');
    assert.throws(
      () => checkHistoryText(text, file, { model: 'list-append', consistency: 'serializable' }),
      (err: unknown) => {
        assert.ok(err instanceof HistoryFormatError, String(err));
        assert.equal(err.code, 'DTX_BAD_HISTORY');
        assert.equal(err.line, line);
        assert.ok(err.message.startsWith(`${file} line ${line}: `), err.message);
        assert.match(err.message, message);
        return true;
      },
    );
  });
}

test('rw-register refuses a value written twice to the same key, naming both lines', () => {
  const text = [
    '{"process":0,"type":"ok","value":[["w","x",1]]}',
    '{"process":1,"type":"ok","value":[["w","x",1]]}',
  ].join('\n');
  assert.throws(
    () => checkHistoryText(text, 'h.jsonl', { model: 'rw-register', consistency: 'serializable' }),
    /h\.jsonl line 2: 1 is written to key "x" again \(first on line 1\)/,
  );
});

function dtx(args: string[], input?: string) {
  const r = spawnSync(process.execPath, [join(root, 'bin', 'dtx.js'), ...args], {
    encoding: 'utf8',
    cwd: root,
    input,
    env: { ...process.env, DTX_FROM_SOURCE: '1' },
    timeout: 120_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('dtx check-history: exit 0 valid, 1 with anomalies (JSON shape), 2 for unreadable input and bad flags', () => {
  const valid = dtx(['check-history', join(dir, 'valid-serial.jsonl')]);
  assert.equal(valid.code, 0, valid.stderr);
  assert.match(valid.stdout, /^valid: valid-serial\.jsonl, 5 transactions/);

  const found = dtx(['check-history', join(dir, 'g2-item.jsonl'), '--json']);
  assert.equal(found.code, 1, found.stderr);
  const report = JSON.parse(found.stdout);
  assert.deepEqual(Object.keys(report), ['valid', 'anomalyTypes', 'anomalies']);
  assert.equal(report.valid, false);
  assert.deepEqual(report.anomalyTypes, ['G2-item']);
  assert.equal(report.anomalies['G2-item'].length, 1);

  const text = dtx(['check-history', join(dir, 'stale-read.jsonl'), '--consistency', 'strict-serializable']);
  assert.equal(text.code, 1);
  assert.match(text.stdout, /G-single-realtime: 1 found/);
  assert.match(text.stdout, /T1 -realtime-> T3: T1 completed before T3 was invoked/);

  const stdin = dtx(
    ['check-history', '-', '--model', 'rw-register'],
    readFileSync(join(dir, 'register-g1c.jsonl'), 'utf8'),
  );
  assert.equal(stdin.code, 1);
  assert.match(stdin.stdout, /^NOT valid: stdin, 2 transactions, anomalies: G1c/);

  const unreadable = dtx(['check-history', join(dir, 'bad', 'bad-type.jsonl')]);
  assert.equal(unreadable.code, 2);
  assert.equal(unreadable.stdout, '');
  assert.equal(
    unreadable.stderr,
    'error: DTX_BAD_HISTORY: bad-type.jsonl line 2: "type" must be one of invoke, ok, fail, info, got "done"\n',
  );

  for (const flags of [
    ['--model', 'set'],
    ['--consistency', 'snapshot-isolation'],
  ]) {
    const wrong = dtx(['check-history', join(dir, 'g0.jsonl'), ...flags]);
    assert.equal(wrong.code, 2);
    assert.match(wrong.stderr, /^error: DTX_INVALID_ARGUMENT: .*Allowed choices are/);
  }
});
