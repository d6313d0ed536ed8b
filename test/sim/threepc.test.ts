// Three-phase commit (Skeen, "Nonblocking Commit Protocols", SIGMOD 1981) in
// the simulator: it survives a coordinator crash without blocking and is
// atomic under crashes alone, but a network partition makes the two sides
// terminate differently (PROTOCOLS.md section 4). The simulator finds that
// run; docs/protocols/3pc.md walks through it. The cores' scripted scenarios
// are testdata/threepc/ (the same split, step by step, is partition-splits.txt).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runSim, type SimRequest } from '../../src/sim/run.ts';

test('simulator: with crashes but no partitions, 3PC is atomic (300 seeds, zero violations, zero undecided)', () => {
  let commits = 0;
  let crashes = 0;
  for (let seed = 1; seed <= 300; seed++) {
    const req: SimRequest = {
      protocol: '3pc',
      workload: 'bank',
      txns: 40,
      seed,
      participants: 2 + (seed % 4),
      concurrency: 1 + (seed % 6),
      crashRate: [0.005, 0.02, 0.05][seed % 3]!,
      downtimeMeanMs: [20, 200, 1000][(seed >> 2) % 3]!,
      dup: 0.2,
    };
    const { report } = runSim(req);
    assert.equal(report.violationCount, 0, `seed ${seed}: ${JSON.stringify(report.violations)}`);
    assert.equal(report.undecided, 0, `seed ${seed}`);
    commits += report.committed;
    crashes += report.crashes;
  }
  assert.ok(commits > 5_000 && crashes > 1_000, `${commits} commits, ${crashes} crashes`);
});

test('simulator: 3PC does not block on a coordinator crash (lock hold does not grow with the downtime)', () => {
  const run = (downtimeMs: number) =>
    runSim({
      protocol: '3pc',
      workload: 'toy',
      txns: 60,
      seed: 3,
      failRates: [0, 0, 0],
      scenario: { kind: 'coordinator-crash', downtimeMs },
    }).report;
  const short = run(2_000);
  const long = run(10_000);
  for (const r of [short, long]) {
    assert.equal(r.violationCount, 0);
    assert.equal(r.undecided, 0);
  }
  assert.ok(long.lockHeldMs.max < 2_000, String(long.lockHeldMs.max));
  assert.ok(Math.abs(long.lockHeldMs.max - short.lockHeldMs.max) < 100);
});

/** The partition search: toy workload, partitions on, no write failures; seed is the only variable. */
const partitioned = (seed: number, trace = false): SimRequest => ({
  protocol: '3pc',
  workload: 'toy',
  txns: 30,
  seed,
  partitions: true,
  failRates: [0, 0, 0],
  trace,
});

/**
 * Found by the bounded search below (the first seed from 1). Reproduce with
 * `dtx sim --protocol 3pc --workload toy --txns 30 --seed 60 --partitions --fail-rates 0,0,0`.
 * If a change to the simulator moves it, the search test still passes:
 * record the seed it reports here.
 */
const violatingSeed = 60;

test(`simulator: partitions break 3PC — seed ${violatingSeed} commits t9 on A and B and aborts it on C`, () => {
  const { report, trace } = runSim(partitioned(violatingSeed, true));
  const atomicity = report.violations.filter((v) => v.checker === 'atomicity');
  assert.ok(atomicity.length > 0, JSON.stringify(report.violations));
  assert.equal(atomicity[0]!.txn, 't9');
  const ends = trace!.filter(
    (e) => e.kind === 'rm' && e.txn === 't9' && (e.state === 'committed' || e.state === 'aborted'),
  );
  const final = Object.fromEntries(
    ends.map((e) => [e.kind === 'rm' ? e.node : '', e.kind === 'rm' ? e.state : '']),
  );
  assert.deepEqual(final, { A: 'committed', B: 'committed', C: 'aborted' });
  // B committed from its pre-commit (the coordinator's COMMIT), A from B's
  // answer to its termination protocol, C aborted alone from `prepared`.
  const precommitted = trace!
    .filter((e) => e.kind === 'persist' && e.record === 'precommitted t9')
    .map((e) => e.kind === 'persist' && e.node);
  assert.deepEqual(precommitted, ['B']);
  assert.equal(report.undecided, 0);
});

test('simulator: a bounded search over partitioned seeds finds an atomicity violation', () => {
  let found = -1;
  for (let seed = 1; seed <= 300 && found < 0; seed++) {
    const { report } = runSim(partitioned(seed));
    if (report.violations.some((v) => v.checker === 'atomicity')) found = seed;
  }
  assert.ok(found > 0, 'no atomicity violation in 300 partitioned seeds');
  assert.ok(found <= violatingSeed, `found ${found}`);
});
