// A read-only vote beside snapshot readers, on two throwaway PostgreSQL
// clusters (A and B), with the interleaving forced by barriers.
//
// T reads x on A with a share lock and appends to y on B. At PREPARE, A's
// branch only read: it commits locally and releases its lock (the read-only
// vote), B prepares. Before T's COMMIT PREPARED on B, T2 appends to x on A and
// commits. A snapshot S opened now sees T2 and not T:
//
//   T -rw-> T2 (T read x without T2's append)
//   T2 -wr-> S (S read T2's append)
//   S -rw-> T (S read y without T's append)
//
// a cycle with two anti-dependencies: G2-item, which snapshot isolation
// allows and serializability forbids (Fekete, O'Neil & O'Neil, "A Read-Only
// Transaction Anomaly Under Snapshot Isolation", 2004). The first test drives
// T by hand with the fence entered at its decision, the rule before: the
// history is G2-item. The second runs the same interleaving through the
// coordinator, which holds the fence from a transaction's first PREPARE: S
// waits for T and the history is serializable. Each history is recorded in
// Jepsen's form and judged by the history checker (src/history).

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { createPostgresAdapter, type PostgresAdapter } from '../../src/adapters/postgres.ts';
import type { Branch, ResourceAdapter, SqlBranch } from '../../src/adapters/types.ts';
import { checkHistoryOps } from '../../src/history/check.ts';
import type { CheckResult, Consistency } from '../../src/history/types.ts';
import type { TwoPcRecord } from '../../src/protocol/twopc/types.ts';
import { LocalCommitFence } from '../../src/runtime/commit-fence.ts';
import { createCoordinator } from '../../src/runtime/coordinator.ts';
import { openSqliteLog } from '../../src/runtime/log/sqlite.ts';
import { type SnapshotReads, withSnapshot } from '../../src/runtime/snapshot.ts';
import { type PgCluster, startPgCluster } from '../adapters/pg-cluster.ts';

const work = mkdtempSync(join(tmpdir(), 'dtx-read-only-vote-'));
const clusters: PgCluster[] = [];

before(async () => {
  // One after the other: initdb is slow on a loaded machine.
  clusters.push(await startPgCluster());
  clusters.push(await startPgCluster());
});

after(async () => {
  await Promise.allSettled(clusters.map((c) => c.stop()));
  rmSync(work, { recursive: true, force: true });
});

/** Key 1 (x) lives on A, key 2 (y) on B; a list is stored as text, `,3,7`. */
const x = 1;
const y = 2;
const readSql = 'SELECT v FROM ro_lists WHERE k = $1';
const appendSql = "UPDATE ro_lists SET v = v || ',' || $2 WHERE k = $1";

function listOf(rows: { v: string }[]): number[] {
  assert.equal(rows.length, 1);
  return rows[0]!.v.split(',').flatMap((s) => (s === '' ? [] : [Number(s)]));
}

async function withLists(run: (a: PostgresAdapter, b: PostgresAdapter) => Promise<void>): Promise<void> {
  const [a, b] = await Promise.all(
    clusters.map((c) => createPostgresAdapter({ connection: c.connection, lockTimeoutMs: 5_000 })),
  );
  try {
    for (const adapter of [a!, b!]) {
      await adapter.pool.query('DROP TABLE IF EXISTS ro_lists');
      await adapter.pool.query("CREATE TABLE ro_lists (k int PRIMARY KEY, v text NOT NULL DEFAULT '')");
    }
    await a!.pool.query('INSERT INTO ro_lists (k) VALUES ($1)', [x]);
    await b!.pool.query('INSERT INTO ro_lists (k) VALUES ($1)', [y]);
    await run(a!, b!);
  } finally {
    await Promise.allSettled([a!.close(), b!.close()]);
  }
}

type MicroOp = ['r', number, number[] | null] | ['append', number, number];

/** A Jepsen history in memory: ops are numbered in the order they happen. */
class History {
  readonly ops: { index: number; process: number; type: 'invoke' | 'ok'; value: MicroOp[] }[] = [];
  invoke(process: number, value: MicroOp[]): void {
    this.ops.push({ index: this.ops.length, process, type: 'invoke', value });
  }
  ok(process: number, value: MicroOp[]): void {
    this.ops.push({ index: this.ops.length, process, type: 'ok', value });
  }
  check(consistency: Consistency): CheckResult {
    return checkHistoryOps(this.ops, 'read-only vote history', { model: 'list-append', consistency });
  }
}

/**
 * What snapshot isolation forbids among the checker's classes: dirty writes
 * and reads (G0, G1a, G1b, G1c), read skew (G-single, a cycle with one
 * anti-dependency), and the single-read anomalies. A cycle with two or more
 * anti-dependencies (G2-item) is what it allows.
 */
const forbiddenUnderSnapshotIsolation = new Set([
  'G0',
  'G1a',
  'G1b',
  'G1c',
  'G-single',
  'internal',
  'incompatible-order',
  'duplicate-elements',
]);

function verdicts(history: History) {
  const serializable = history.check('serializable');
  const strict = history.check('strict-serializable');
  const snapshotIsolation = serializable.anomalyTypes.filter((t) => forbiddenUnderSnapshotIsolation.has(t));
  process.stderr.write(
    `read-only vote: ${JSON.stringify({
      history: history.ops,
      serializable: serializable.anomalyTypes,
      strictSerializable: strict.anomalyTypes,
      forbiddenUnderSnapshotIsolation: snapshotIsolation,
    })}\n`,
  );
  return { serializable, strict, snapshotIsolation };
}

/** x on A and y on B, read in one snapshot. */
async function readBoth(reads: SnapshotReads): Promise<[number[], number[]]> {
  const [xs, ys] = await Promise.all([
    reads.query<{ v: string }>('a', readSql, [x]),
    reads.query<{ v: string }>('b', readSql, [y]),
  ]);
  return [listOf(xs.rows), listOf(ys.rows)];
}

/** The last word: a snapshot after everything, so that every append is observed. */
async function finalRead(history: History, adapters: Record<string, ResourceAdapter>): Promise<void> {
  history.invoke(3, [
    ['r', x, null],
    ['r', y, null],
  ]);
  const [xs, ys] = await withSnapshot(adapters, new LocalCommitFence(), readBoth);
  history.ok(3, [
    ['r', x, xs],
    ['r', y, ys],
  ]);
}

test('fence entered at the decision: a snapshot sees T2 and not T, a G2-item cycle', async () => {
  await withLists(async (a, b) => {
    const fence = new LocalCommitFence();
    const history = new History();
    const adapters = { a, b };

    // T: a locking read of x on A, an append of 1 to y on B.
    history.invoke(0, [
      ['r', x, null],
      ['append', y, 1],
    ]);
    const ta = (await a.begin('dtx_w5_t_a')) as SqlBranch;
    const tb = (await b.begin('dtx_w5_t_b')) as SqlBranch;
    const tRead = listOf((await ta.lockingRead!<{ v: string }>(readSql, [x], { wait: true })).rows);
    await tb.query(appendSql, [y, 1]);
    // Phase one: A only read and votes read-only (committed, its share lock gone); B prepares.
    assert.equal(await ta.prepare(), 'readOnly');
    assert.equal(await tb.prepare(), 'yes');

    // T2: appends 2 to x on A, which T's read-only vote let go of; it commits.
    history.invoke(1, [['append', x, 2]]);
    const t2 = (await a.begin('dtx_w5_t2_a')) as SqlBranch;
    await t2.query(appendSql, [x, 2]);
    assert.equal(await t2.prepare(), 'yes');
    const leaveT2 = await fence.enterCommitPhase();
    await a.commitPrepared('dtx_w5_t2_a');
    leaveT2();
    history.ok(1, [['append', x, 2]]);

    // S opens while T is undecided: no commit phase runs, so the fence lets it open.
    history.invoke(2, [
      ['r', x, null],
      ['r', y, null],
    ]);
    const [sx, sy] = await withSnapshot(adapters, fence, readBoth);
    history.ok(2, [
      ['r', x, sx],
      ['r', y, sy],
    ]);

    // T decides COMMIT; its commit phase enters the fence, as the coordinator's did at its commit record.
    const leaveT = await fence.enterCommitPhase();
    await b.commitPrepared('dtx_w5_t_b');
    leaveT();
    history.ok(0, [
      ['r', x, tRead],
      ['append', y, 1],
    ]);
    await finalRead(history, adapters);

    assert.deepEqual(tRead, []);
    assert.deepEqual([sx, sy], [[2], []], 'S sees T2 and not T');
    const { serializable, strict, snapshotIsolation } = verdicts(history);
    assert.deepEqual(serializable.anomalyTypes, ['G2-item']);
    assert.deepEqual(strict.anomalyTypes, ['G2-item']);
    assert.deepEqual(snapshotIsolation, [], 'nothing snapshot isolation forbids');
    const witness = serializable.anomalies['G2-item']![0]! as { steps: { rel: string }[] };
    assert.deepEqual(witness.steps.map((s) => s.rel).sort(), ['rw', 'rw', 'wr']);
  });
});

/** A, whose votes are reported as they are given. */
function votesTold(adapter: ResourceAdapter, onVote: (vote: string) => void): ResourceAdapter {
  return withPrepare(adapter, async (prepare) => {
    const vote = await prepare();
    onVote(vote);
    return vote;
  });
}

/** B, whose first vote is given only once `release` is called (after it prepared). */
function voteHeld(adapter: ResourceAdapter) {
  let release!: () => void;
  const released = new Promise<void>((r) => {
    release = r;
  });
  let prepared!: () => void;
  const preparedNow = new Promise<void>((r) => {
    prepared = r;
  });
  let held = false;
  const wrapped = withPrepare(adapter, async (prepare) => {
    const vote = await prepare();
    if (held) return vote;
    held = true;
    prepared();
    await released;
    return vote;
  });
  return { wrapped, prepared: preparedNow, release };
}

function withPrepare(
  adapter: ResourceAdapter,
  prepareWith: (prepare: () => Promise<'yes' | 'readOnly'>) => Promise<'yes' | 'readOnly'>,
): ResourceAdapter {
  const begin = async (gid: string): Promise<Branch> => {
    const branch = await adapter.begin(gid);
    const prepare = branch.prepare.bind(branch);
    return Object.assign(branch, { prepare: () => prepareWith(prepare) });
  };
  // Everything else is the adapter's own, bound to it (its fields are private).
  return new Proxy(adapter, {
    get(target, key) {
      if (key === 'begin') return begin;
      const value: unknown = Reflect.get(target, key, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

test('through the coordinator, which holds the fence from the first PREPARE: the snapshot waits for T, serializable', async () => {
  await withLists(async (a, b) => {
    const history = new History();
    let aVoted!: (vote: string) => void;
    const aVote = new Promise<string>((r) => {
      aVoted = r;
    });
    const heldB = voteHeld(b);
    const log = await openSqliteLog<TwoPcRecord>(join(work, 'coordinator.sqlite'), { create: true });
    const coordinator = await createCoordinator({
      log,
      resources: { a: votesTold(a, (vote) => aVoted(vote)), b: heldB.wrapped },
    });
    try {
      history.invoke(0, [
        ['r', x, null],
        ['append', y, 1],
      ]);
      const t = coordinator.transaction(async (tx) => {
        const { rows } = await tx.read<{ v: string }>('a', readSql, [x]);
        await tx.query('b', appendSql, [y, 1]);
        return listOf(rows);
      });
      const tDone = t.then((read) => {
        history.ok(0, [
          ['r', x, read],
          ['append', y, 1],
        ]);
        return read;
      });
      // A voted read-only (its share lock is gone); B prepared and its vote is held back.
      assert.equal(await aVote, 'readOnly');
      await heldB.prepared;

      history.invoke(1, [['append', x, 2]]);
      await coordinator.transaction((tx) => tx.query('a', appendSql, [x, 2]));
      history.ok(1, [['append', x, 2]]);

      // snapshot() asks for the fence within the call: before B's vote is let go.
      history.invoke(2, [
        ['r', x, null],
        ['r', y, null],
      ]);
      const s = coordinator.snapshot(readBoth).then(([sx, sy]) => {
        history.ok(2, [
          ['r', x, sx],
          ['r', y, sy],
        ]);
        return [sx, sy];
      });
      heldB.release();
      const [tRead, seen] = await Promise.all([tDone, s]);
      await finalRead(history, { a, b });

      const { serializable, strict } = verdicts(history);
      assert.deepEqual(serializable.anomalyTypes, [], JSON.stringify(serializable.anomalies));
      assert.deepEqual(strict.anomalyTypes, [], JSON.stringify(strict.anomalies));
      assert.deepEqual(tRead, []);
      assert.deepEqual(seen, [[2], [1]], 'S sees T2 and T');
    } finally {
      heldB.release();
      await coordinator.close();
      await log.close();
    }
  });
});
