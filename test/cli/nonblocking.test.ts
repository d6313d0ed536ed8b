// `dtx demo nonblocking`, end to end on real processes: 2PC stays in doubt
// for the coordinator's whole downtime; Paxos Commit does not wait for the
// leader. Both keep the books, as `dtx verify` checks them. On embedded
// SQLite participants, and with `--db` on two throwaway PostgreSQL clusters.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type PgCluster, startPgCluster } from '../adapters/pg-cluster.ts';

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

type Report = Record<
  '2pc' | 'paxos-commit',
  { inDoubtMaxMs: number; lockHeldMaxMs: number; blocked: number; verifyOk: boolean; outcome: string }
>;

/** Runs dtx without blocking this process's event loop (the test keeps its clusters' handles meanwhile). */
function dtx(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [bin, ...args], {
      env: { ...process.env, DTX_FROM_SOURCE: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.once('exit', (status) => resolve({ status, stdout, stderr }));
  });
}

test('dtx demo nonblocking --db on two PostgreSQL clusters: the same report, books checked by dtx verify', async () => {
  const downtimeMs = 6000;
  const clusters: PgCluster[] = [];
  try {
    clusters.push(await startPgCluster(), await startPgCluster());
    const urls = clusters.map((c) => `postgres://postgres@127.0.0.1:${c.port}/postgres`);
    const dir = mkdtempSync(join(tmpdir(), 'dtx-nonblocking-pg-'));
    const args = ['demo', 'nonblocking', '--downtime-ms', String(downtimeMs), '--dir', dir];
    const r = await dtx([...args, '--db', urls[0]!, '--db', urls[1]!, '--json']);
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout) as Report;
    process.stdout.write(`# --db postgres x2: ${JSON.stringify(out)}\n`);
    assert.deepEqual(Object.keys(out), ['2pc', 'paxos-commit']);
    assert.equal(out['2pc'].verifyOk, true);
    assert.equal(out['paxos-commit'].verifyOk, true);
    assert.ok(out['2pc'].inDoubtMaxMs >= downtimeMs, `2PC in doubt ${out['2pc'].inDoubtMaxMs} ms`);
    assert.ok(out['2pc'].blocked > 0, 'no probe was refused while 2PC held the lock');
    assert.ok(
      out['paxos-commit'].inDoubtMaxMs < downtimeMs,
      `Paxos Commit in doubt ${out['paxos-commit'].inDoubtMaxMs} ms, not below the downtime`,
    );
    // The books the demo left pass the command itself, and its report says what the demo said.
    const verify = await dtx(['verify', '--db', urls[0]!, '--db', urls[1]!, '--json']);
    assert.equal(verify.status, 0, verify.stdout + verify.stderr);
    const books = JSON.parse(verify.stdout) as {
      ok: boolean;
      committedTransfers: number;
      preparedLeft: number;
    };
    assert.equal(books.ok, true);
    assert.equal(books.preparedLeft, 0);
    assert.equal(books.committedTransfers, out['paxos-commit'].outcome === 'committed' ? 3 : 2);
    // Bad input: one --db; a server that cannot prepare (the machine's own, max_prepared_transactions = 0) is refused before anything is changed on it.
    const one = await dtx([...args, '--db', urls[0]!]);
    assert.equal(one.status, 2, one.stderr);
    assert.match(one.stderr, /DTX_INVALID_ARGUMENT: give two --db URLs/);
    const noPrepare = await dtx([
      ...args,
      '--db',
      urls[0]!,
      '--db',
      'postgres://postgres@127.0.0.1:5432/postgres',
    ]);
    assert.notEqual(noPrepare.status, 0);
    assert.match(noPrepare.stderr, /DTX_PREPARED_TXNS_DISABLED/);
  } finally {
    for (const c of clusters) await c.stop();
  }
});
