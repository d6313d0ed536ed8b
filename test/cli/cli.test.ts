// The dtx command's contract: JSON alone on stdout with --json, the same
// output for the same seed, exit code 2 with a clear message on usage errors.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { sagaSwarmRequest } from '../../src/sim/branch/swarm.ts';
import { runSim } from '../../src/sim/run.ts';
import { simCommand } from '../../src/sim/sim-flags.ts';
import { runSwarm, swarmRequest } from '../../src/sim/swarm.ts';

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

/** A report as the CLI prints it with --json, without the one field that is not deterministic. */
function comparable(report: object): object {
  const { wallMs: _wallMs, ...rest } = JSON.parse(JSON.stringify(report)) as { wallMs: number };
  return rest;
}

/** Runs a printed `dtx sim ...` line through the CLI and returns its --json report. */
function rerun(command: string): object {
  const again = dtx(...command.split(' ').slice(1), '--json');
  assert.equal(again.stderr, '', command);
  return comparable(JSON.parse(again.stdout));
}

test("a failing swarm's reproduce command re-runs to the very same report", () => {
  // 3PC is unsafe under partitions by design: the swarm finds a seed that breaks it.
  const { failure } = runSwarm({ protocol: '3pc', seeds: 300, from: 1 });
  assert.ok(failure !== null, '3pc survived 300 seeds');
  assert.deepEqual(rerun(failure.command), comparable(failure.report));
});

test('--rtt-ms, --fsync-ms and --think-ms reach the reproduce command, in both worlds', () => {
  const timings = { rttMs: 7, fsyncMs: 3, thinkMs: 2 };
  const commit = { ...swarmRequest('2pc', 11), ...timings };
  const branch = { ...sagaSwarmRequest('tcc', 11), ...timings };
  for (const [command, report] of [
    [simCommand(commit), runSim(commit).report],
    [simCommand(branch), runSim(branch).report],
  ] as const) {
    assert.match(command, /--think-ms 2 .*--rtt-ms 7 --fsync-ms 3/);
    assert.deepEqual(rerun(command), comparable(report), command);
  }
});

test('a seed with failing writes on every role, late duplicates and read-only branches re-runs exactly from its command', () => {
  const pick = <R>(requests: (seed: number) => R, drawn: (r: R) => boolean): R => {
    for (let seed = 1; ; seed++) if (drawn(requests(seed))) return requests(seed);
  };
  const twoPc = pick(
    (seed) => swarmRequest('2pc', seed),
    (r) =>
      r.readOnlyShare! > 0 &&
      r.lateDupMs! > 0 &&
      r.coordinatorFailRate! > 0 &&
      r.failRates!.some((x) => x > 0),
  );
  const paxos = pick(
    (seed) => swarmRequest('paxos-commit', seed),
    (r) => r.acceptorFailRate! > 0 && r.coordinatorFailRate! > 0,
  );
  const tcc = pick(
    (seed) => sagaSwarmRequest('tcc', seed),
    (r) => r.serviceFailRate! > 0 && r.coordinatorFailRate! > 0 && r.lateDupMs! > 0,
  );
  const toy = { protocol: '2pc', workload: 'toy', txns: 200, seed: 9, participants: 5 } as const;
  for (const [command, report] of [
    [simCommand(twoPc), runSim(twoPc).report],
    [simCommand(paxos), runSim(paxos).report],
    [simCommand(tcc), runSim(tcc).report],
    [simCommand(toy), runSim(toy).report],
  ] as const) {
    assert.match(command, /--coordinator-fail-rate|--participants 5/);
    assert.deepEqual(rerun(command), comparable(report), command);
  }
  assert.match(
    simCommand(twoPc),
    /--fail-rates \S+ --coordinator-fail-rate \S+ --read-only-share \S+ .*--late-dup-ms/,
  );
  assert.match(simCommand(paxos), /--acceptor-fail-rate/);
  assert.match(simCommand(tcc), /--coordinator-fail-rate \S+ --service-fail-rate/);
});

test('dtx swarm --crashes-only runs 3pc without partitions and prints the committed share', () => {
  const r = dtx('swarm', '--protocol', '3pc', '--seeds', '100', '--crashes-only');
  assert.equal(r.code, 0, r.stderr);
  assert.match(
    r.stdout,
    /^3pc: 100 seed\(s\), 0 violation\(s\), 0 undecided after heal, \d+ committed \/ \d+ aborted \/ 0 partial \(committed share 0\.\d+\)/,
  );
});

test('dtx sim --protocol saga prints a summary, and JSON only with --json', () => {
  const r = dtx('sim', '--protocol', 'saga', '--txns', '200', '--seed', '3');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^saga on booking, seed 3: 200 transactions/);
  assert.match(r.stdout, /checkers: no violations/);
  assert.throws(() => JSON.parse(r.stdout));
});

test('a flag of the other world is a usage error, named as typed', () => {
  for (const [args, pattern] of [
    [
      ['sim', '--protocol', 'saga', '--txns', '5', '--fail-rates', '0.1'],
      /--fail-rates does not apply to saga/,
    ],
    [['sim', '--protocol', '2pc', '--txns', '5', '--seats', '10'], /--seats does not apply to 2pc/],
  ] as const) {
    const r = dtx(...args);
    assert.equal(r.code, 2, `${args.join(' ')} exited ${r.code}`);
    assert.match(r.stderr, pattern);
  }
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

test('a bank-audit swarm seed re-runs exactly from its command, countermeasure and isolation counts included', () => {
  const request = sagaSwarmRequest('saga', 5, 'all', {
    workload: 'bank-audit',
    countermeasure: 'semantic-lock',
  });
  const command = simCommand(request);
  assert.match(command, /--workload bank-audit .*--countermeasure semantic-lock/);
  const report = runSim(request).report;
  assert.ok(report.isolation !== undefined && report.isolation.audits > 0);
  assert.deepEqual(rerun(command), comparable(report), command);
});

test('dtx sim --workload bank-audit: isolation counts in the text and JSON reports, --history for dtx check-history', () => {
  const history = join(mkdtempSync(join(tmpdir(), 'dtx-hist-')), 'saga.jsonl');
  const r = dtx(
    'sim',
    '--protocol',
    'saga',
    '--workload',
    'bank-audit',
    '--txns',
    '100',
    '--history',
    history,
  );
  assert.equal(r.code, 0, r.stderr);
  assert.match(
    r.stdout,
    /plain reads, countermeasure none: \d+ of \d+ audits inconsistent .*dirty reads \d+/,
  );
  assert.match(r.stdout, /history checker: G1a/);
  const checked = dtx('check-history', history, '--json');
  assert.equal(checked.code, 1);
  assert.ok((JSON.parse(checked.stdout) as { anomalyTypes: string[] }).anomalyTypes.includes('G1a'));
  const json = dtx('sim', '--protocol', 'tcc', '--workload', 'bank-audit', '--txns', '50', '--json');
  const isolation = (JSON.parse(json.stdout) as { isolation: Record<string, unknown> }).isolation;
  for (const key of ['audits', 'inconsistentAudits', 'anomalyTypes']) assert.ok(key in isolation, key);
  const bad = dtx(
    'sim',
    '--protocol',
    'tcc',
    '--workload',
    'bank-audit',
    '--txns',
    '5',
    '--reads',
    'snapshot',
  );
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /plain reads only/);
});
