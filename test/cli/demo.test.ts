// The README's main job, `dtx demo`: the simulated comparison, then real
// SQLite databases with the coordinator process killed mid-flight.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

test('dtx demo --json: naive commits partially, 2PC never; 2PC keeps real books balanced across SIGKILLs', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dtx-demo-'));
  try {
    const r = spawnSync(
      process.execPath,
      [join(root, 'bin', 'dtx.js'), 'demo', '--txns', '20000', '--rounds', '2', '--dir', dir, '--json'],
      { encoding: 'utf8', cwd: root, timeout: 240_000 },
    );
    assert.equal(r.status, 0, r.stderr);
    const data = JSON.parse(r.stdout);
    const [naive, twoPc] = data.partialCommits.runs;
    assert.ok(naive.partial > 0);
    assert.equal(twoPc.partial, 0);
    for (const c of data.coordinatorCrash) assert.equal(c.report.violationCount, 0);
    const real = data.realDatabases as {
      protocol: string;
      verify: { ok: boolean; committedTransfers: number };
    }[];
    const twoPcRounds = real.filter((x) => x.protocol === '2pc');
    assert.equal(twoPcRounds.length, 2);
    for (const round of twoPcRounds) assert.equal(round.verify.ok, true, JSON.stringify(round));
    assert.ok(twoPcRounds.at(-1)!.verify.committedTransfers > 1, 'the 2PC child never ran a transfer');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
