// The dtx command's contract: JSON alone on stdout with --json, the same
// output for the same seed, exit code 2 with a clear message on usage errors.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const bin = join(root, 'bin', 'dtx.js');

function dtx(...args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', cwd: root, timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const simArgs = [
  'sim',
  '--protocol',
  '2pc',
  '--workload',
  'bank',
  '--txns',
  '300',
  '--seed',
  '17',
  '--loss',
  '0.1',
  '--dup',
  '0.2',
  '--partitions',
  '--crash-rate',
  '0.01',
  '--json',
];

test('dtx sim --json prints exactly one JSON object with the contract fields', () => {
  const r = dtx(...simArgs);
  assert.equal(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout);
  for (const field of [
    'protocol',
    'workload',
    'seed',
    'txns',
    'committed',
    'aborted',
    'partial',
    'undecided',
    'violations',
    'latencyMs',
    'lockHeldMs',
    'inDoubtMs',
    'queuedBehindLocks',
    'messagesPerCommit',
    'forcedWritesPerCommit',
    'simulatedMs',
    'wallMs',
  ]) {
    assert.ok(field in report, `missing ${field}`);
  }
  for (const s of ['latencyMs', 'lockHeldMs', 'inDoubtMs'])
    assert.deepEqual(Object.keys(report[s]), ['p50', 'p99', 'max']);
  assert.deepEqual(report.violations, []);
});

test('the same seed gives the same output, but for wallMs', () => {
  const a = JSON.parse(dtx(...simArgs).stdout);
  const b = JSON.parse(dtx(...simArgs).stdout);
  delete a.wallMs;
  delete b.wallMs;
  assert.deepEqual(a, b);
  const c = JSON.parse(dtx(...simArgs.map((x) => (x === '17' ? '18' : x))).stdout);
  delete c.wallMs;
  assert.notDeepEqual(a, c, 'a different seed should give a different run');
});

test('dtx swarm --json summarizes and exits 0 when nothing breaks', () => {
  const r = dtx('swarm', '--protocol', '2pc', '--seeds', '30', '--json');
  assert.equal(r.code, 0, r.stderr);
  const s = JSON.parse(r.stdout);
  assert.equal(s.protocol, '2pc');
  assert.equal(s.seeds, 30);
  assert.equal(s.violations, 0);
  assert.equal(s.undecidedAfterHeal, 0);
});

test('dtx swarm --protocol 3pc finds the partition violation, prints the reproducing command and exits 1', () => {
  const r = dtx('swarm', '--protocol', '3pc', '--seeds', '300', '--json');
  assert.equal(r.code, 1, r.stderr);
  const s = JSON.parse(r.stdout);
  assert.ok(s.violations > 0);
  assert.match(r.stderr, /reproduce with:\n {2}dtx sim --protocol 3pc .*--seed \d+/);
  const args = (s.reproduce as string).split(' ').slice(1);
  const again = dtx(...args, '--json');
  assert.equal(again.code, 0);
  assert.ok(
    JSON.parse(again.stdout).violationCount > 0,
    'the printed command does not reproduce the violation',
  );
});

test('usage errors exit 2 with a clear message', () => {
  for (const [args, pattern] of [
    [['sim', '--protocol', 'nope', '--txns', '1'], /Allowed choices/],
    [['sim', '--protocol', '2pc', '--txns', 'ten'], /--txns must be an integer/],
    [['sim', '--protocol', '2pc', '--txns', '5', '--loss', '2'], /--loss must be between 0 and 1/],
    [['sim', '--protocol', '2pc', '--txns', '5', '--fail-rates', '0.1,x'], /must be a number/],
    [['sim', '--protocol', '2pc', '--txns', '5', '--think-ms', '-1'], /--think-ms must be between 0/],
    [['sim', '--txns', '5'], /required option/],
    [['swarm', '--protocol', '2pc'], /required option/],
    [['frobnicate'], /unknown command/],
  ] as const) {
    const r = dtx(...args);
    assert.equal(r.code, 2, `${args.join(' ')} exited ${r.code}`);
    assert.match(r.stderr, pattern);
    assert.equal(r.stdout, '');
  }
});

test('dtx --help lists the commands', () => {
  const r = dtx('--help');
  assert.equal(r.code, 0);
  for (const c of ['sim', 'swarm', 'demo']) assert.match(r.stdout, new RegExp(`\\b${c}\\b`));
});
