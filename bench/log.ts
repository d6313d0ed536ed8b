// Durable log micro-benchmark: forced appends per second for the SQLite and
// PostgreSQL stores (src/runtime/log) at concurrency 1 and 64, and durable
// writes (fsyncs / synchronous COMMITs) per append. At concurrency 1 every
// append pays its own fsync (ratio 1); at 64 group commit lets one fsync serve
// many appends, so the ratio drops and throughput rises.
//
// Run: node --import tsx bench/log.ts [--ms 2000] [--pg postgres://...]
// The PostgreSQL rows use the machine's server (default
// postgres://postgres@127.0.0.1:5432/test) and a throwaway table, dropped at
// the end; they are skipped when the server cannot be reached. The SQLite
// file goes to a temporary directory on the default tmpdir's file system, so
// its numbers are that disk's fsync latency.

import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { openPostgresLog } from '../src/runtime/log/postgres.ts';
import { openSqliteLog } from '../src/runtime/log/sqlite.ts';
import type { DurableLog } from '../src/runtime/log/types.ts';

const args = process.argv.slice(2);
const flag = (name: string, fallback: string) => {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : fallback;
};
const durationMs = Number(flag('--ms', '2000'));
const pgUrl = flag('--pg', process.env.DTX_BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test');
const concurrencies = [1, 64];

interface Row {
  store: string;
  concurrency: number;
  appends: number;
  appendsPerSec: number;
  fsyncsPerAppend: number;
  meanLatencyMs: number;
}

/** Closed loop: `concurrency` callers, each appending one forced record as soon as its last one resolved. */
async function measure(store: string, log: DurableLog<unknown>, concurrency: number): Promise<Row> {
  const record = { type: 'commit', txn: 'bench-0000000000', participants: ['p1', 'p2'], client: 'c1' };
  // Warm-up: JIT, prepared statements, table and WAL files.
  for (let i = 0; i < 20; i++) await log.append([record], true);
  const before = { ...log.stats };
  const start = performance.now();
  const deadline = start + durationMs;
  let latencyTotalMs = 0;
  let appends = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < deadline) {
        const t0 = performance.now();
        await log.append([record], true);
        latencyTotalMs += performance.now() - t0;
        appends++;
      }
    }),
  );
  const elapsedS = (performance.now() - start) / 1000;
  const flushes = log.stats.flushes - before.flushes;
  return {
    store,
    concurrency,
    appends,
    appendsPerSec: appends / elapsedS,
    fsyncsPerAppend: flushes / appends,
    meanLatencyMs: latencyTotalMs / appends,
  };
}

const rows: Row[] = [];
const skipped: string[] = [];

const dir = mkdtempSync(join(tmpdir(), 'dtx-log-bench-'));
try {
  for (const concurrency of concurrencies) {
    const log = await openSqliteLog<unknown>(join(dir, `c${concurrency}.sqlite`), { create: true });
    try {
      rows.push(await measure('sqlite', log, concurrency));
    } finally {
      await log.close();
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}

const table = `dtx_log_bench_${randomBytes(4).toString('hex')}`;
const admin = new pg.Client(pgUrl);
let pgReachable = true;
try {
  await admin.connect();
} catch (error) {
  pgReachable = false;
  skipped.push(`postgres: ${pgUrl} unreachable (${error instanceof Error ? error.message : String(error)})`);
}
if (pgReachable) {
  try {
    for (const concurrency of concurrencies) {
      const log = await openPostgresLog<unknown>(pgUrl, {
        owner: `bench-c${concurrency}`,
        table,
        create: true,
      });
      try {
        rows.push(await measure('postgres', log, concurrency));
      } finally {
        await log.close();
      }
    }
  } finally {
    await admin.query(`DROP TABLE IF EXISTS ${table}, ${table}_lease`);
    await admin.end();
  }
}

console.log(`forced appends, closed loop, ${durationMs} ms per row, one record per append`);
console.log(
  `${'store'.padEnd(9)} ${'concurrency'.padStart(11)} ${'appends'.padStart(8)} ${'appends/s'.padStart(10)} ` +
    `${'fsyncs/append'.padStart(13)} ${'mean ms'.padStart(8)}`,
);
for (const r of rows) {
  console.log(
    `${r.store.padEnd(9)} ${String(r.concurrency).padStart(11)} ${String(r.appends).padStart(8)} ` +
      `${r.appendsPerSec.toFixed(0).padStart(10)} ${r.fsyncsPerAppend.toFixed(3).padStart(13)} ` +
      `${r.meanLatencyMs.toFixed(2).padStart(8)}`,
  );
}
for (const line of skipped) console.log(`skipped ${line}`);
