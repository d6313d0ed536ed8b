// The outbox world (src/sim/outbox/): the real outbox and inbox survive a
// swarm of faults with every committed change applied exactly once, and each
// deliberately broken variant is caught, at a seed named here.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  ackBeforeCommit,
  claimingPastHeldRows,
  inboxInSeparateTransaction,
  publishAfterCommit,
  publishBeforeCommit,
  publishingAllAtOnce,
} from '../../src/sim/outbox/broken.ts';
import { runOutboxSim } from '../../src/sim/outbox/run.ts';
import { outboxSwarmRequest } from '../../src/sim/outbox/swarm.ts';
import type { OutboxProtocol } from '../../src/sim/outbox/world.ts';
import { simCommand } from '../../src/sim/sim-flags.ts';
import { runSwarm } from '../../src/sim/swarm.ts';

test('the outbox and inbox pass 300 swarm seeds, and the faults did reach them', () => {
  const s = runSwarm({ protocol: 'outbox', seeds: 300, from: 1 });
  assert.equal(s.failure, null, s.failure?.command);
  assert.equal(s.seeds, 300);
  assert.equal(s.violations, 0);
  assert.equal(s.undecidedAfterHeal, 0);
  assert.ok(s.committed > 0 && s.rolledBack > 0);
  assert.equal(s.applied, s.committed, 'every committed change applied once');
  // Both lines of defence were needed: the broker's window and the inbox each dropped copies.
  assert.ok(s.duplicatesSuppressedByDedup > 0, 'no duplicate ever reached the broker');
  assert.ok(s.duplicatesSuppressedByInbox > 0, 'no duplicate ever reached the inbox');
});

const broken: { make: () => OutboxProtocol; seed: number; checker: string }[] = [
  { make: ackBeforeCommit, seed: 3, checker: 'missing' },
  { make: inboxInSeparateTransaction, seed: 6, checker: 'duplicate' },
  { make: publishAfterCommit, seed: 8, checker: 'missing' },
  { make: publishBeforeCommit, seed: 1, checker: 'phantom' },
  { make: publishingAllAtOnce, seed: 3, checker: 'key-order' },
  { make: claimingPastHeldRows, seed: 3, checker: 'key-order' },
];

for (const { make, seed, checker } of broken) {
  const protocol = make();
  test(`the swarm catches ${protocol.name} at seed ${seed} (${checker})`, () => {
    const s = runSwarm({ protocol, seeds: 300, from: 1 });
    assert.notEqual(s.failure, null, `${protocol.name} passed 300 seeds`);
    assert.equal(s.failure!.seed, seed);
    const r = s.failure!.report;
    assert.ok((r.violationsByChecker as Record<string, number>)[checker]! > 0, JSON.stringify(r.violations));
    // The same seed with the real protocol is clean: the variant's change is what the checker saw.
    const real = runOutboxSim({ ...s.failure!.request, protocol: 'outbox' }).report;
    assert.equal(real.violationCount, 0);
  });
}

test('a rolled-back transaction never reaches the consumer, a committed one exactly once', () => {
  const { report, world } = runOutboxSim({
    protocol: 'outbox',
    txns: 200,
    seed: 9,
    loss: 0.1,
    crashRate: 0.02,
  });
  assert.ok(report.rolledBack > 0);
  for (const t of world.txns.values()) {
    assert.equal(world.applied.get(t.txn)?.count ?? 0, t.committed ? 1 : 0, t.txn);
  }
});

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

test('a swarm seed reproduces from its dtx sim line, which carries every setting', () => {
  const req = outboxSwarmRequest('outbox', 7);
  const line = simCommand(req);
  assert.match(line, /^dtx sim --protocol outbox .*--relays \d+ --keys \d+/);
  const r = spawnSync(
    process.execPath,
    [join(root, 'bin', 'dtx.js'), ...line.split(' ').slice(1), '--json'],
    {
      encoding: 'utf8',
      cwd: root,
      env: { ...process.env, DTX_FROM_SOURCE: '1' },
      timeout: 120_000,
    },
  );
  assert.equal(r.status, 0, r.stderr);
  const { wallMs: _a, ...fromCli } = JSON.parse(r.stdout);
  const { wallMs: _b, ...direct } = JSON.parse(JSON.stringify(runOutboxSim(req).report));
  assert.deepEqual(fromCli, direct);
});
