// Histories from real databases, checked (src/cli/bench-append.ts,
// src/history): the list-append workload over three throwaway PostgreSQL
// clusters (and MariaDB as a participant), through the real coordinator.
// Plain reads produce histories the checker finds anomalies in (the run must
// see some, or it could not tell); read-write transactions with locking reads
// plus read-only ones in consistent snapshots produce histories that are
// strict-serializable. And SERIALIZABLE on every PostgreSQL database is not
// enough across them: two transactions scheduled by hand commit on both
// databases and make a write-skew cycle (G2-item) that neither database sees.

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { createPostgresAdapter } from '../../src/adapters/postgres.ts';
import type { AuditReads } from '../../src/cli/audit.ts';
import { type AppendBenchReport, listOf, runAppendBench } from '../../src/cli/bench-append.ts';
import { checkHistoryOps, checkHistoryText } from '../../src/history/check.ts';
import type { TwoPcRecord } from '../../src/protocol/twopc/types.ts';
import { createCoordinator } from '../../src/runtime/coordinator.ts';
import { openSqliteLog } from '../../src/runtime/log/sqlite.ts';
import { mariaAdmin as maria } from '../adapters/helpers.ts';
import { type PgCluster, startPgCluster } from '../adapters/pg-cluster.ts';

const work = mkdtempSync(join(tmpdir(), 'dtx-histories-'));
/** This run's own MariaDB database. */
const mariaDatabase = `dtx_hist_${process.pid}`;
let clusters: PgCluster[] = [];
const pgUrls = () => clusters.map((c) => `postgres://postgres@127.0.0.1:${c.port}/postgres`);

before(async () => {
  await maria(`CREATE DATABASE IF NOT EXISTS ${mariaDatabase}`);
  clusters = await Promise.all([startPgCluster(), startPgCluster(), startPgCluster()]);
});

after(async () => {
  await maria(`DROP DATABASE IF EXISTS ${mariaDatabase}`).catch(() => undefined);
  await Promise.allSettled(clusters.map((c) => c.stop()));
  rmSync(work, { recursive: true, force: true });
});

let runs = 0;
function appendRun(dbs: string[], reads: AuditReads, durationS = 3): Promise<AppendBenchReport> {
  const n = ++runs;
  return runAppendBench({
    dbs,
    log: join(work, `append-${n}.sqlite`),
    concurrency: 8,
    auditors: 2,
    reads,
    keys: 4,
    durationS,
    init: true,
    history: join(work, `append-${n}.jsonl`),
  });
}

function assertRan(r: AppendBenchReport): void {
  assert.ok(r.readWrite.ok >= 20, `${r.reads}: only ${r.readWrite.ok} read-write transactions committed`);
  assert.ok(
    r.readOnly.ok >= 5,
    `${r.reads}: only ${r.readOnly.ok} read-only transactions: ${r.firstFailure}`,
  );
  // What the report says is what the file says: the checker run on the written history agrees.
  const text = readFileSync(r.history!, 'utf8');
  assert.equal(text.trim().split('\n').length, r.historyOps);
  const again = checkHistoryText(text, 'append', {
    model: 'list-append',
    consistency: 'strict-serializable',
  });
  assert.deepEqual(again.anomalyTypes, r.check['strict-serializable'].anomalyTypes);
}

test('plain reads across PostgreSQL databases: the checker finds anomalies in the recorded history', async () => {
  // Anomalies need transactions to meet; on a loaded machine a short run may
  // hold too few, so it gets up to three runs to show one. It must show one.
  let report: AppendBenchReport | undefined;
  for (let attempt = 0; attempt < 3; attempt++) {
    report = await appendRun(pgUrls(), 'plain');
    assertRan(report);
    if (!report.check.serializable.valid) break;
  }
  process.stderr.write(`histories plain: ${JSON.stringify(report!.check)}\n`);
  assert.equal(report!.check.serializable.valid, false, 'plain reads: no anomaly found in three runs');
  assert.equal(report!.check['strict-serializable'].valid, false);
});

for (const reads of ['snapshot', 'locking'] as const) {
  test(`${reads === 'snapshot' ? 'locking reads plus snapshot read-only transactions' : 'locking reads everywhere'}: strict-serializable`, async () => {
    const report = await appendRun(pgUrls(), reads);
    assertRan(report);
    process.stderr.write(`histories ${reads}: ${JSON.stringify(report.check)}\n`);
    assert.deepEqual(report.check.serializable.anomalyTypes, []);
    assert.deepEqual(report.check['strict-serializable'].anomalyTypes, []);
  });
}

test('MariaDB as a participant: plain reads show anomalies, locking reads plus snapshots none', async () => {
  const dbs = [pgUrls()[0]!, `mysql://root@127.0.0.1:3306/${mariaDatabase}`, pgUrls()[2]!];
  const snapshot = await appendRun(dbs, 'snapshot');
  assertRan(snapshot);
  assert.deepEqual(snapshot.check['strict-serializable'].anomalyTypes, []);
  let plain: AppendBenchReport | undefined;
  for (let attempt = 0; attempt < 3; attempt++) {
    plain = await appendRun(dbs, 'plain');
    assertRan(plain);
    if (!plain.check.serializable.valid) break;
  }
  process.stderr.write(
    `histories mariadb: ${JSON.stringify({ snapshot: snapshot.check, plain: plain!.check })}\n`,
  );
  assert.equal(
    plain!.check.serializable.valid,
    false,
    'plain reads with MariaDB: no anomaly found in three runs',
  );
});

test('SERIALIZABLE on every PostgreSQL database is not enough: a cross-database write skew commits', async () => {
  // T1 reads x on db1 and appends to y on db2; T2 reads y on db2 and appends
  // to x on db1, both before either commits. Each database sees one
  // anti-dependency (db1: T1 read x, T2 overwrote it; db2: T2 read y, T1
  // overwrote it) and no dangerous structure, so both commit everywhere: the
  // cycle T1 -rw-> T2 -rw-> T1 exists only across the two databases.
  const [east, west] = await Promise.all(
    clusters
      .slice(0, 2)
      .map((c) => createPostgresAdapter({ connection: c.connection, isolationLevel: 'serializable' })),
  );
  const log = await openSqliteLog<TwoPcRecord>(join(work, 'skew.sqlite'), { create: true });
  const coordinator = await createCoordinator({ log, resources: { east: east!, west: west! } });
  try {
    for (const a of [east!, west!]) {
      await a.pool.query('DROP TABLE IF EXISTS skew');
      await a.pool.query("CREATE TABLE skew (k int PRIMARY KEY, v text NOT NULL DEFAULT '')");
      await a.pool.query("INSERT INTO skew VALUES (1, ''), (2, '')");
    }
    const x = 1; // on east
    const y = 2; // on west
    const history: unknown[] = [];
    const record = (process: number, type: string, value: unknown) =>
      history.push({ index: history.length, process, type, value });
    let bothRead: () => void = () => undefined;
    const reads = { n: 0 };
    const barrier = new Promise<void>((r) => {
      bothRead = r;
    });
    const arrive = async () => {
      if (++reads.n === 2) bothRead();
      await barrier;
    };
    // T1 reads x on east and appends 1 to y on west; T2 the mirror image.
    const sides = [
      { process: 1, read: ['east', x], write: ['west', y], element: 1 },
      { process: 2, read: ['west', y], write: ['east', x], element: 2 },
    ] as const;
    for (const t of sides)
      record(t.process, 'invoke', [
        ['r', t.read[1], null],
        ['append', t.write[1], t.element],
      ]);
    const seen = await Promise.all(
      sides.map((t) =>
        coordinator.transaction(async (tx) => {
          const [at, key] = t.read;
          const { rows } = await tx.query<{ v: string }>(at, 'SELECT v FROM skew WHERE k = $1', [key]);
          await arrive();
          await tx.query(t.write[0], 'UPDATE skew SET v = v || $1 WHERE k = $2', [
            `,${t.element}`,
            t.write[1],
          ]);
          return listOf(rows[0]!.v);
        }),
      ),
    );
    for (const [i, t] of sides.entries())
      record(t.process, 'ok', [
        ['r', t.read[1], seen[i]],
        ['append', t.write[1], t.element],
      ]);
    // A final read shows both appends landed.
    const finalX = listOf((await east!.pool.query('SELECT v FROM skew WHERE k = 1')).rows[0].v);
    const finalY = listOf((await west!.pool.query('SELECT v FROM skew WHERE k = 2')).rows[0].v);
    assert.deepEqual([finalX, finalY], [[2], [1]]);
    record(3, 'invoke', [
      ['r', x, null],
      ['r', y, null],
    ]);
    record(3, 'ok', [
      ['r', x, finalX],
      ['r', y, finalY],
    ]);
    const result = checkHistoryOps(history, 'skew', { model: 'list-append', consistency: 'serializable' });
    assert.deepEqual(result.anomalyTypes, ['G2-item']);
  } finally {
    await coordinator.close();
    await log.close();
    await Promise.allSettled([east!.close(), west!.close()]);
  }
});
