// Isolation across databases, on three throwaway PostgreSQL clusters: while
// `dtx bench` moves money between the first two, auditors sum both sides.
// Plain reads (and SERIALIZABLE on every node, which orders each database on
// its own but not the two together) see transfers on one side only; locking
// reads (tx.read) and consistent snapshots (coordinator.snapshot) never do.
// Also: a branch of locking reads votes read-only and keeps its locks until
// then; a locking read against the resource order fails at once instead of
// waiting; a transaction acknowledged `durable` is in every later snapshot.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { createPostgresAdapter, type PostgresAdapter } from '../../src/adapters/postgres.ts';
import type { Branch, ResourceAdapter } from '../../src/adapters/types.ts';
import type { AuditReads } from '../../src/cli/audit.ts';
import { runBench } from '../../src/cli/bench.ts';
import { isDtxError } from '../../src/errors.ts';
import type { TwoPcRecord } from '../../src/protocol/twopc/types.ts';
import { createCoordinator } from '../../src/runtime/coordinator.ts';
import { openSqliteLog } from '../../src/runtime/log/sqlite.ts';
import { type PgCluster, startPgCluster } from '../adapters/pg-cluster.ts';

const work = mkdtempSync(join(tmpdir(), 'dtx-isolation-'));
let clusters: PgCluster[] = [];
const urls = () => clusters.map((c) => `postgres://postgres@127.0.0.1:${c.port}/postgres`);
const benchLog = join(work, 'bench.sqlite');

before(async () => {
  clusters = await Promise.all([startPgCluster(), startPgCluster(), startPgCluster()]);
  // Few accounts and many transfers in flight: money is in flight most of the time.
  await runBench({
    dbs: urls(),
    log: benchLog,
    protocol: '2pc',
    accounts: 200,
    concurrency: 4,
    txns: 8,
    init: true,
  });
});

after(async () => {
  await Promise.allSettled(clusters.map((c) => c.stop()));
  rmSync(work, { recursive: true, force: true });
});

function audited(reads: AuditReads, durationS: number) {
  return runBench({
    dbs: urls(),
    log: benchLog,
    protocol: '2pc',
    accounts: 200,
    concurrency: 8,
    durationS,
    init: false,
    auditors: 2,
    reads,
  });
}

test('plain reads and per-node SERIALIZABLE see money in flight; locking and snapshot reads never do', async () => {
  const seen: Record<string, unknown> = {};
  for (const reads of ['plain', 'serializable', 'locking', 'snapshot'] as const) {
    const report = await audited(reads, 2.5);
    const audit = report.audit!;
    seen[reads] = {
      tps: report.tps,
      aborted: report.aborted,
      audits: audit.audits,
      inconsistent: audit.inconsistentAudits,
      failed: audit.failedAudits,
    };
    assert.ok(report.committed > 0, `${reads}: no transfer committed`);
    assert.ok(audit.audits > 0, `${reads}: no audit completed: ${JSON.stringify(audit)}`);
    if (reads === 'plain' || reads === 'serializable') {
      // The run must be able to tell: a reader that cannot see money in flight proves nothing.
      assert.ok(audit.inconsistentAudits > 0, `${reads}: no wrong total in ${audit.audits} audits`);
    } else {
      assert.equal(audit.inconsistentAudits, 0, `${reads}: wrong totals ${audit.wrongTotals.join(', ')}`);
    }
    // Ordered transfers, and ordered locking reads, form no cycle: a lock
    // wait ends when its holder finishes, not at the 2 s lock timeout. On an
    // overloaded machine a holder can take that long all the same, so a few
    // timeouts are tolerated, not a pattern of them.
    assert.ok(report.aborted <= report.committed / 20, `${reads}: ${report.aborted} transfers aborted`);
    if (reads === 'plain' || reads === 'snapshot') {
      // Lock-free reads: nothing to fail on.
      assert.equal(audit.failedAudits, 0, `${reads}: ${audit.firstFailure}`);
    } else {
      assert.ok(
        audit.failedAudits <= audit.audits / 5,
        `${reads}: ${audit.failedAudits} failed: ${audit.firstFailure}`,
      );
    }
  }
  process.stderr.write(`isolation: ${JSON.stringify(seen)}\n`);
});

/** A real adapter whose votes and phase-two calls are counted. */
function counted(adapter: ResourceAdapter) {
  const seen = { votes: [] as string[], commitPrepared: 0 };
  const wrapped: ResourceAdapter = {
    kind: adapter.kind,
    gidBytesMax: adapter.gidBytesMax,
    begin: async (gid) => {
      const branch = await adapter.begin(gid);
      const prepare = branch.prepare.bind(branch);
      return Object.assign(branch, {
        prepare: async () => {
          const vote = await prepare();
          seen.votes.push(vote);
          return vote;
        },
      }) as Branch;
    },
    commitPrepared: (gid) => {
      seen.commitPrepared++;
      return adapter.commitPrepared(gid);
    },
    rollbackPrepared: (gid) => adapter.rollbackPrepared(gid),
    listPrepared: (prefix) => adapter.listPrepared(prefix),
    close: () => adapter.close(),
  };
  return { wrapped, seen };
}

async function withTables(run: (east: PostgresAdapter, west: PostgresAdapter) => Promise<void>) {
  const [east, west] = await Promise.all(
    clusters
      .slice(0, 2)
      .map((c) => createPostgresAdapter({ connection: c.connection, lockTimeoutMs: 5_000 })),
  );
  try {
    for (const a of [east!, west!]) {
      await a.pool.query('DROP TABLE IF EXISTS iso_acct');
      await a.pool.query('CREATE TABLE iso_acct (id int PRIMARY KEY, balance int NOT NULL)');
      await a.pool.query('INSERT INTO iso_acct VALUES (1, 100), (2, 100)');
    }
    await run(east!, west!);
  } finally {
    await Promise.allSettled([east!.close(), west!.close()]);
  }
}

test('a branch that only read with locks votes read-only, holding its locks until then', async () => {
  await withTables(async (east, west) => {
    const log = await openSqliteLog<TwoPcRecord>(join(work, 'readonly.sqlite'), { create: true });
    const e = counted(east);
    const coordinator = await createCoordinator({ log, resources: { east: e.wrapped, west } });
    try {
      await coordinator.transaction(async (tx) => {
        const { rows } = await tx.read<{ balance: number }>(
          'east',
          'SELECT balance FROM iso_acct WHERE id = $1',
          [1],
        );
        // The row is share-locked now: a writer elsewhere cannot change what was read.
        const other = await east.pool.connect();
        try {
          await other.query("BEGIN; SET LOCAL lock_timeout = '200ms'");
          await assert.rejects(other.query('UPDATE iso_acct SET balance = 0 WHERE id = 1'), /lock timeout/);
        } finally {
          await other.query('ROLLBACK');
          other.release();
        }
        await tx.query('west', 'UPDATE iso_acct SET balance = balance + $1 WHERE id = 1', [rows[0]!.balance]);
      });
      assert.deepEqual(e.seen.votes, ['readOnly']);
      assert.equal(e.seen.commitPrepared, 0, 'the read-only branch was sent to phase two');
      assert.deepEqual(await east.listPrepared(''), []);
      // Released at its read-only vote: a writer gets through at once.
      await east.pool.query("SET lock_timeout = '200ms'; UPDATE iso_acct SET balance = 100 WHERE id = 1");
      const { rows } = await west.pool.query('SELECT balance FROM iso_acct WHERE id = 1');
      assert.equal(rows[0].balance, 200);
    } finally {
      await coordinator.close();
      await log.close();
    }
  });
});

test('a locking read against the resource order fails at once; in order, it waits for the writer', async () => {
  await withTables(async (east, west) => {
    const log = await openSqliteLog<TwoPcRecord>(join(work, 'order.sqlite'), { create: true });
    const coordinator = await createCoordinator({ log, resources: { east, west } });
    const writer = await east.pool.connect();
    try {
      await writer.query('BEGIN');
      await writer.query('UPDATE iso_acct SET balance = 150 WHERE id = 2');
      // west is after east: a read on east once west was used would close a cycle if it waited.
      const started = Date.now();
      const err = await coordinator
        .transaction(async (tx) => {
          await tx.read('west', 'SELECT balance FROM iso_acct WHERE id = 2');
          await tx.read('east', 'SELECT balance FROM iso_acct WHERE id = 2');
        })
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      assert.ok(isDtxError(err, 'DTX_LOCK_CONFLICT'), `expected DTX_LOCK_CONFLICT, got ${String(err)}`);
      assert.equal(err.retryable, true);
      assert.ok(Date.now() - started < 2_000, `it waited ${Date.now() - started} ms (lock timeout 5,000)`);
      // In order, the same read waits for the writer and then sees its commit.
      const reading = coordinator.transaction(async (tx) => {
        const { rows } = await tx.read<{ balance: number }>(
          'east',
          'SELECT balance FROM iso_acct WHERE id = 2',
        );
        await tx.read('west', 'SELECT balance FROM iso_acct WHERE id = 2');
        return rows[0]!.balance;
      });
      await new Promise((r) => setTimeout(r, 200));
      await writer.query('COMMIT');
      assert.equal(await reading, 150);
    } finally {
      await writer.query('ROLLBACK').catch(() => undefined);
      writer.release();
      await coordinator.close();
      await log.close();
    }
  });
});

test('a transaction acknowledged durable is in every snapshot taken after its acknowledgment', async () => {
  await withTables(async (east, west) => {
    const log = await openSqliteLog<TwoPcRecord>(join(work, 'durable.sqlite'), { create: true });
    const coordinator = await createCoordinator({ log, resources: { east, west }, acknowledge: 'durable' });
    try {
      for (let i = 1; i <= 30; i++) {
        await coordinator.transaction(async (tx) => {
          await tx.query('east', 'UPDATE iso_acct SET balance = balance - 1 WHERE id = 1');
          await tx.query('west', 'UPDATE iso_acct SET balance = balance + 1 WHERE id = 1');
        });
        const seen = await coordinator.snapshot(async (reads) => {
          const [a, b] = await Promise.all(
            ['east', 'west'].map((r) =>
              reads.query<{ balance: number }>(r, 'SELECT balance FROM iso_acct WHERE id = 1'),
            ),
          );
          return [a!.rows[0]!.balance, b!.rows[0]!.balance];
        });
        assert.deepEqual(seen, [100 - i, 100 + i], `transfer ${i}: the snapshot missed its commit`);
      }
    } finally {
      await coordinator.close();
      await log.close();
    }
  });
});

test('snapshot() refuses a resource it does not know, and bad locking-read SQL is refused before it is sent', async () => {
  await withTables(async (east, west) => {
    const log = await openSqliteLog<TwoPcRecord>(join(work, 'refuse.sqlite'), { create: true });
    const coordinator = await createCoordinator({ log, resources: { east, west } });
    try {
      await assert.rejects(
        coordinator.snapshot(async () => 1, { resources: ['north'] }),
        (e: unknown) => isDtxError(e, 'DTX_INVALID_ARGUMENT'),
      );
      for (const sql of ['UPDATE iso_acct SET balance = 0', 'SELECT 1; SELECT 2', 'SELECT 1 FOR UPDATE']) {
        await assert.rejects(
          coordinator.transaction((tx) => tx.read('east', sql)),
          (e: unknown) => isDtxError(e, 'DTX_INVALID_ARGUMENT'),
          sql,
        );
      }
      const { rows } = await east.pool.query('SELECT sum(balance)::int AS s FROM iso_acct');
      assert.equal(rows[0].s, 200);
    } finally {
      await coordinator.close();
      await log.close();
    }
  });
});
