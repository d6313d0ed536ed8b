// `dtx swarm --workers K` must print what one worker prints: the same counts
// and the same first failing seed (the smallest, not the first one a worker
// happened to finish), wallMs aside. Checked here on the library call (from
// the TypeScript sources) and through the CLI, from dist/ and from source.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { mutants } from '../../scripts/mutant-catalogue.ts';
import { mutatedCopy } from '../../scripts/mutants.ts';
import type { ProtocolName, SagaProtocolName } from '../../src/sim/protocols.ts';
import { runSwarm, runSwarmOnWorkers } from '../../src/sim/swarm.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** A summary through JSON as the CLI prints it, without wallMs (its own, and its failing report's). */
function comparable(summary: object): unknown {
  return JSON.parse(JSON.stringify(summary, (key, value) => (key === 'wallMs' ? undefined : value)));
}

const cases: Array<{ protocol: ProtocolName | SagaProtocolName; from: number; seeds: number }> = [
  { protocol: '2pc', from: 1, seeds: 300 },
  { protocol: 'naive', from: 1, seeds: 300 },
  // 3PC fails under partitions: its first failing seeds from 1 are 3, 20, 27,
  // 46, ...; from 4 the smallest is 20, in the second chunk of seeds.
  { protocol: '3pc', from: 1, seeds: 300 },
  { protocol: '3pc', from: 4, seeds: 300 },
  { protocol: '3pc', from: 21, seeds: 300 },
  { protocol: 'saga', from: 1, seeds: 200 },
  { protocol: 'tcc', from: 1, seeds: 200 },
];

for (const { protocol, from, seeds } of cases) {
  test(`${protocol}, seeds ${from}..${from + seeds - 1}: two workers summarize exactly as one`, async () => {
    const one = runSwarm({ protocol: protocol as ProtocolName, seeds, from });
    const two = await runSwarmOnWorkers({ protocol: protocol as ProtocolName, seeds, from }, 2);
    assert.deepEqual(comparable(two), comparable(one));
  });
}

test('the first failing seed on three workers is the smallest failing seed', async () => {
  // From seed 7 one thread first fails at seed 40 (then 47, 67, 71).
  const summary = await runSwarmOnWorkers({ protocol: '3pc', seeds: 300, from: 7 }, 3);
  assert.equal(summary.failure?.seed, 40);
  assert.equal(summary.seeds, 34);
});

test('paxos-commit options reach the workers', async () => {
  const options = {
    protocol: 'paxos-commit' as const,
    seeds: 40,
    from: 1,
    protocolOptions: { faster: true },
  };
  const one = runSwarm(options);
  const two = await runSwarmOnWorkers(options, 2);
  assert.deepEqual(comparable(two), comparable(one));
});

function dtx(env: Record<string, string>, ...args: Array<string | { cwd: string }>) {
  const cwd = args.find((a): a is { cwd: string } => typeof a !== 'string')?.cwd ?? root;
  const strings = args.filter((a): a is string => typeof a === 'string');
  const r = spawnSync(process.execPath, [join(cwd, 'bin', 'dtx.js'), ...strings], {
    encoding: 'utf8',
    cwd,
    env: { ...process.env, ...env },
    timeout: 120_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

for (const [how, env] of [
  ['dist/', { DTX_FROM_SOURCE: '0' }],
  ['source (DTX_FROM_SOURCE=1)', { DTX_FROM_SOURCE: '1' }],
] as const) {
  test(`dtx swarm --workers 2 from ${how} prints what --workers 1 prints`, () => {
    for (const protocol of ['3pc', 'tcc']) {
      const args = ['swarm', '--protocol', protocol, '--seeds', '150', '--from', '4', '--json'];
      const one = dtx(env, ...args, '--workers', '1');
      const two = dtx(env, ...args, '--workers', '2');
      assert.equal(two.code, one.code, two.stderr);
      assert.equal(two.stderr, one.stderr);
      assert.deepEqual(comparable(JSON.parse(two.stdout)), comparable(JSON.parse(one.stdout)));
    }
  });
}

test('a run that throws on a worker stops the swarm only where one thread would: after the smallest failing seed', () => {
  // With this mutant, seed 1 breaks the invariant checker and seed 27 throws
  // an assertion, in the same chunk of seeds on one worker.
  const mutant = mutants.find((m) => m.id === 'paxos-phase2a-ignores-promises')!;
  const dir = mutatedCopy(mutant);
  try {
    const args = ['swarm', '--protocol', 'paxos-commit', '--seeds', '2000', '--json'];
    const one = dtx({ DTX_FROM_SOURCE: '1' }, ...args, '--workers', '1', { cwd: dir });
    const two = dtx({ DTX_FROM_SOURCE: '1' }, ...args, '--workers', '2', { cwd: dir });
    assert.equal(JSON.parse(one.stdout).failingSeed, 1, one.stderr);
    assert.equal(two.code, one.code, two.stderr);
    assert.deepEqual(comparable(JSON.parse(two.stdout)), comparable(JSON.parse(one.stdout)));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('dtx swarm --workers 0 is a usage error', () => {
  const r = dtx({}, 'swarm', '--protocol', '2pc', '--seeds', '10', '--workers', '0');
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--workers must be between 1 and/);
});
