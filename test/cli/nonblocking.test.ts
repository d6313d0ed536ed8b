// `dtx demo nonblocking`, end to end on real processes: 2PC stays in doubt
// for the coordinator's whole downtime; Paxos Commit does not wait for the
// leader. Both keep the books.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const bin = fileURLToPath(new URL('../../bin/dtx.js', import.meta.url));

test('dtx demo nonblocking --json: 2PC in doubt for the downtime, Paxos Commit well under it', () => {
  const downtimeMs = 8000;
  const dir = mkdtempSync(join(tmpdir(), 'dtx-nonblocking-'));
  const r = spawnSync(
    process.execPath,
    [bin, 'demo', 'nonblocking', '--downtime-ms', String(downtimeMs), '--dir', dir, '--json'],
    {
      env: { ...process.env, DTX_FROM_SOURCE: '1' },
      encoding: 'utf8',
      timeout: 900_000,
    },
  );
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as Record<
    '2pc' | 'paxos-commit',
    { inDoubtMaxMs: number; lockHeldMaxMs: number; blocked: number; verifyOk: boolean }
  >;
  process.stdout.write(`# ${JSON.stringify(out)}\n`);
  assert.equal(out['2pc'].verifyOk, true);
  assert.equal(out['paxos-commit'].verifyOk, true);
  assert.ok(
    out['2pc'].inDoubtMaxMs >= downtimeMs,
    `2PC in doubt ${out['2pc'].inDoubtMaxMs} ms, below the downtime`,
  );
  assert.ok(out['2pc'].blocked > 0);
  assert.ok(
    out['paxos-commit'].inDoubtMaxMs < downtimeMs,
    `Paxos Commit in doubt ${out['paxos-commit'].inDoubtMaxMs} ms, not below the downtime`,
  );
});
