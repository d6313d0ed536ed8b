// Isolation benchmark, on three PostgreSQL databases with prepared
// transactions enabled (`--db` three times, or three throwaway clusters made
// with scripts/pg-cluster.sh when none is given).
//
// Part 1, auditors: `dtx bench --protocol 2pc` transfers with 0 auditors and
// with 2 auditors of each read mode (plain, serializable, locking, snapshot),
// interleaved round by round so that the machine's drift hits every mode
// alike; prints per mode the median tps, its ratio to the plain auditors' tps
// of the same round, audits, wrong totals and audit latency, and for
// snapshots how long commits were held back.
//
// Part 2, the read-only vote: a read-then-write transaction (a locking read
// on the first database, an update on the second), with the first
// database's adapter voting read-only (default) and then told not to
// (`readOnlyVote: false`, so it prepares and takes part in phase two).
// Prints per transaction (one read-only branch each): statements sent to the
// reading database (round trips), of which PREPARE TRANSACTION, COMMIT
// PREPARED and local COMMIT, its WAL fsyncs (pg_stat_wal.wal_sync), the
// coordinator log's forced writes, and tps. Each part prints the load
// average at its start and end.
//
// Run: node --import tsx bench/isolation.ts [--rounds 3] [--seconds 4] [--db URL --db URL --db URL]

import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { createPostgresAdapter } from '../src/adapters/postgres.ts';
import type { AuditReads } from '../src/cli/audit.ts';
import { type BenchReport, runBench } from '../src/cli/bench.ts';
import type { TwoPcRecord } from '../src/protocol/twopc/types.ts';
import { createCoordinator } from '../src/runtime/coordinator.ts';
import { openSqliteLog } from '../src/runtime/log/sqlite.ts';
import { startPgCluster } from '../test/adapters/pg-cluster.ts';

const args = process.argv.slice(2);
const flag = (name: string, fallback: string) => {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : fallback;
};
const rounds = Number(flag('--rounds', '3'));
const seconds = Number(flag('--seconds', '4'));
const given = args.flatMap((a, i) => (a === '--db' && args[i + 1] !== undefined ? [args[i + 1]!] : []));

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0
    ? 0
    : s.length % 2 === 1
      ? s[(s.length - 1) / 2]!
      : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const r1 = (x: number) => Math.round(x * 10) / 10;
const r2 = (x: number) => Math.round(x * 100) / 100;
/** The machine's 1-minute load average, sampled at the start and the end of each part: figures are only comparable at the same load. */
const load = () => loadavg()[0]!.toFixed(1);

async function auditors(dbs: string[], work: string): Promise<void> {
  const log = join(work, 'bench.sqlite');
  await runBench({ dbs, log, protocol: '2pc', accounts: 1000, concurrency: 8, txns: 16, init: true });
  const modes: (AuditReads | 'none')[] = ['none', 'plain', 'snapshot', 'locking', 'serializable'];
  const runs = new Map<string, BenchReport[]>(modes.map((m) => [m, []]));
  const ratios = new Map<string, number[]>(modes.map((m) => [m, []]));
  const loadAtStart = load();
  for (let round = 0; round < rounds; round++) {
    const tps = new Map<string, number>();
    for (const mode of modes) {
      const report = await runBench({
        dbs,
        log,
        protocol: '2pc',
        accounts: 1000,
        concurrency: 8,
        durationS: seconds,
        init: false,
        ...(mode === 'none' ? {} : { auditors: 2, reads: mode }),
      });
      runs.get(mode)!.push(report);
      tps.set(mode, report.tps);
    }
    for (const mode of modes) ratios.get(mode)!.push(tps.get(mode)! / tps.get('plain')!);
  }
  console.log(
    `\nauditors: ${rounds} rounds of ${seconds} s per mode, 3 PostgreSQL databases, 1,000 accounts each, concurrency 8; ` +
      `load average ${loadAtStart} at the start, ${load()} at the end`,
  );
  console.log(
    '| auditors | tps (median) | vs plain (median of rounds) | aborted | audits/s | wrong totals | failed audits | audit p50 / p99 ms | commits held back per snapshot p50 / p99 ms | snapshot waited p50 ms |',
  );
  console.log('|---|---|---|---|---|---|---|---|---|---|');
  for (const mode of modes) {
    const rs = runs.get(mode)!;
    const audits = rs.reduce((n, r) => n + (r.audit?.audits ?? 0), 0);
    const wrong = rs.reduce((n, r) => n + (r.audit?.inconsistentAudits ?? 0), 0);
    const a = rs.map((r) => r.audit).filter((x) => x !== undefined);
    const cell = (f: (x: NonNullable<BenchReport['audit']>) => number | undefined) =>
      a.length === 0 ? '-' : r2(median(a.map((x) => f(x) ?? 0)));
    console.log(
      `| ${mode === 'none' ? '0' : `2 ${mode}`} | ${r1(median(rs.map((r) => r.tps)))} | ${r2(median(ratios.get(mode)!))} | ` +
        `${rs.reduce((n, r) => n + r.aborted, 0)} | ${mode === 'none' ? '-' : r1(audits / (rounds * seconds))} | ` +
        `${mode === 'none' ? '-' : `${wrong} of ${audits} (${r1((100 * wrong) / Math.max(1, audits))}%)`} | ` +
        `${mode === 'none' ? '-' : rs.reduce((n, r) => n + (r.audit?.failedAudits ?? 0), 0)} | ` +
        `${cell((x) => x.latencyMs.p50)} / ${cell((x) => x.latencyMs.p99)} | ` +
        `${mode === 'snapshot' ? `${cell((x) => x.snapshotHeldMs?.p50)} / ${cell((x) => x.snapshotHeldMs?.p99)}` : '-'} | ` +
        `${mode === 'snapshot' ? cell((x) => x.snapshotWaitedMs?.p50) : '-'} |`,
    );
  }
}

async function readOnlyVote(dbs: string[], work: string): Promise<void> {
  const west = await createPostgresAdapter({ connection: { connectionString: dbs[1], max: 16 } });
  await west.pool.query('DROP TABLE IF EXISTS ro_acct');
  await west.pool.query('CREATE TABLE ro_acct (id int PRIMARY KEY, balance bigint NOT NULL)');
  await west.pool.query('INSERT INTO ro_acct SELECT g, 1000 FROM generate_series(0, 999) g');
  const loadAtStart = load();
  const sides = await Promise.all(
    [true, false].map(async (readOnly) => {
      const counter = { statements: 0, prepares: 0, commitPrepared: 0, localCommits: 0 };
      const pool = new pg.Pool({ connectionString: dbs[0], max: 16 });
      pool.on('connect', (client) => {
        const query = client.query.bind(client) as (...a: unknown[]) => unknown;
        (client as unknown as { query: (...a: unknown[]) => unknown }).query = (...a: unknown[]) => {
          counter.statements++;
          const text = typeof a[0] === 'string' ? a[0] : String((a[0] as { text?: unknown })?.text ?? '');
          if (text.startsWith('PREPARE TRANSACTION')) counter.prepares++;
          else if (text.startsWith('COMMIT PREPARED')) counter.commitPrepared++;
          else if (text === 'COMMIT') counter.localCommits++;
          return query(...a);
        };
      });
      const east = await createPostgresAdapter({ pool, readOnlyVote: readOnly });
      const log = await openSqliteLog<TwoPcRecord>(join(work, `ro-${readOnly}.sqlite`), { create: true });
      const coordinator = await createCoordinator({ log, resources: { east, west } });
      return { readOnly, counter, pool, east, log, coordinator, runs: [] as number[][] };
    }),
  );
  await sides[0]!.pool.query('DROP TABLE IF EXISTS ro_acct');
  await sides[0]!.pool.query('CREATE TABLE ro_acct (id int PRIMARY KEY, balance bigint NOT NULL)');
  await sides[0]!.pool.query('INSERT INTO ro_acct SELECT g, 1000 FROM generate_series(0, 999) g');
  const walSync = async (pool: pg.Pool) =>
    Number((await pool.query('SELECT wal_sync FROM pg_stat_wal')).rows[0].wal_sync as string);
  for (let round = 0; round < rounds; round++) {
    for (const side of sides) {
      const wal0 = await walSync(side.pool);
      const flushes0 = side.log.stats.flushes;
      Object.assign(side.counter, { statements: 0, prepares: 0, commitPrepared: 0, localCommits: 0 });
      let txns = 0;
      const started = performance.now();
      const deadline = started + seconds * 1000;
      await Promise.all(
        Array.from({ length: 4 }, async () => {
          while (performance.now() < deadline) {
            const id = Math.floor(Math.random() * 1000);
            await side.coordinator.transaction(
              async (tx) => {
                const { rows } = await tx.read<{ balance: string }>(
                  'east',
                  'SELECT balance FROM ro_acct WHERE id = $1',
                  [id],
                );
                await tx.query('west', 'UPDATE ro_acct SET balance = $1 WHERE id = $2', [
                  Number(rows[0]!.balance) + 1,
                  id,
                ]);
              },
              { retries: 5 },
            );
            txns++;
          }
        }),
      );
      const elapsedS = (performance.now() - started) / 1000;
      const statements = side.counter.statements;
      const wal = (await walSync(side.pool)) - wal0;
      side.runs.push([
        txns / elapsedS,
        statements / txns,
        wal / txns,
        (side.log.stats.flushes - flushes0) / txns,
        side.counter.prepares / txns,
        side.counter.commitPrepared / txns,
        side.counter.localCommits / txns,
      ]);
    }
  }
  console.log(
    `\nread-only vote: read-then-write transactions (locking read on db1, update on db2), concurrency 4, ` +
      `${rounds} interleaved rounds of ${seconds} s, medians; load average ${loadAtStart} at the start, ${load()} at the end`,
  );
  console.log(
    '| db1 votes | tps | statements to db1 per txn | of which PREPARE TRANSACTION / COMMIT PREPARED / local COMMIT | db1 WAL fsyncs per txn | coordinator log flushes per txn | db1 branches left prepared |',
  );
  console.log('|---|---|---|---|---|---|---|');
  for (const side of sides) {
    const col = (i: number) => r2(median(side.runs.map((r) => r[i]!)));
    const left = Number(
      (await side.pool.query('SELECT count(*) AS n FROM pg_prepared_xacts')).rows[0].n as string,
    );
    console.log(
      `| ${side.readOnly ? 'read-only' : 'yes (prepares)'} | ${r1(median(side.runs.map((r) => r[0]!)))} | ${col(1)} | ` +
        `${col(4)} / ${col(5)} / ${col(6)} | ${col(2)} | ${col(3)} | ${left} |`,
    );
  }
  for (const side of sides) {
    await side.coordinator.close();
    await side.log.close();
    await side.east.close();
    await side.pool.end();
  }
  await west.close();
}

const work = mkdtempSync(join(tmpdir(), 'dtx-bench-isolation-'));
const clusters =
  given.length === 0 ? await Promise.all([startPgCluster(), startPgCluster(), startPgCluster()]) : [];
const dbs =
  given.length > 0 ? given : clusters.map((c) => `postgres://postgres@127.0.0.1:${c.port}/postgres`);
try {
  await readOnlyVote(dbs, work);
  await auditors(dbs, work);
} finally {
  await Promise.allSettled(clusters.map((c) => c.stop()));
  rmSync(work, { recursive: true, force: true });
}
